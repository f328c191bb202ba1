// The embedded-engine upstream: renders the conversation with a chat template, generates with a token
// generator (the NanoEngine, or a scripted fake in tests), and parses the sampled ids back into
// content, reasoning and tool calls with the template's streaming parser, so the streamed deltas and
// the final result come from the same state machine (streaming == non-streaming by construction).
// A raw prompt (legacy Completions) skips the template: text is encoded with the byte tokenizer after
// a BOS (what a tokenizer with add_special_tokens does, vLLM's default), token ids are used as given,
// and the completion is decoded as plain text (no tool-call parsing).
//
// tool_choice 'required' / { name } (toolCallForms below): the tool call's opening (the template's
// call token, plus the name and what precedes the arguments for a named tool) is appended to the
// PROMPT, so every completion token is sampled, with its own logprob, and trainable; the recorded
// prompt ids include the forced ones. The parser is fed the opening first (its events dropped), so
// it reads the completion in the state after it; parse-error positions count completion tokens, as
// everywhere (the token numbers inside their messages count from the start of the assistant turn).
// The agent's next request renders this assistant turn as opening + completion, so its prompt
// extends this call's prompt + completion and the session continues its branch.
// parallelToolCalls false: the completion stops at the token that closes the first tool call; the
// template's end-of-turn token after it then comes with the agent's next prompt.
//
// Context: the engine's KV cache (TokenGenerator.cacheTokens) holds a request's prompt and all its
// completion tokens, so it is the context length this upstream reports (the gateway's default prompt
// limit) and checks: prompt + max_tokens over it is CONTEXT_LENGTH_EXCEEDED naming max_tokens, a
// prompt that leaves no room for one token names messages. Verbatim turns: each result carries
// turnIds (what this completion is as an assistant turn), and a request's verbatimTurns are spliced
// into the rendering, so a resent completion whose text does not re-encode to its ids still renders
// the history the policy saw (see callRunner.ts).
import { nanoChatTemplate, normalizeTools, type ChatTemplate, type CompletionStream } from '../model/chatTemplate.js';
import type { ParseError, ParseEvent, ParsedCompletion } from '../model/chatParse.js';
import { BYTE_TOKENS, encode, SpecialToken, StreamDecoder, tokenBytes } from '../model/tokenizer.js';
import type { GenerateOptions, Generation } from '../engine/types.js';
import { type GatewayError, GatewayErrorCode, gatewayError } from './errors.js';
import type {
  ChatUpstreamRequest, ModelInfo, TokenCountRequest, Upstream, UpstreamEvent, UpstreamRequest, UpstreamResult,
} from './upstream.js';

/** What the upstream needs from an engine (NanoEngine satisfies it). */
export interface TokenGenerator {
  readonly version: number;
  /** Prompt + completion tokens one request may hold (NanoEngine: its KV cache), when bounded. */
  readonly cacheTokens?: number;
  generate(promptIds: Int32Array, options?: GenerateOptions): Generation;
}

export interface EngineUpstreamOptions {
  generator: TokenGenerator;
  template?: ChatTemplate;
  /** The model name served (any requested name is accepted). Default the template's name. */
  model?: string;
  /** Longest prompt accepted, in tokens. Default unlimited (the context length below applies). */
  maxPromptTokens?: number;
  /** Prompt + completion tokens at most, reported as the model's context length. Default the
   *  generator's cacheTokens (unbounded when it has none). */
  contextLength?: number;
}

/**
 * Holds back the content that could still become a stop string, so that a stream never sends text
 * the final result trims. Other deltas flush it first, keeping the order of events.
 */
class StopHoldback {
  private held = '';
  private readonly keep: number;
  constructor(private readonly stops: readonly string[], private readonly emit: (e: UpstreamEvent) => void) {
    this.keep = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }
  content(text: string): void {
    if (this.keep === 0) return this.emit({ type: 'content', text });
    this.held += text;
    if (this.held.length > this.keep) {
      this.emit({ type: 'content', text: this.held.slice(0, this.held.length - this.keep) });
      this.held = this.held.slice(this.held.length - this.keep);
    }
  }
  flush(trim: string | undefined): void {
    let text = this.held;
    if (trim !== undefined && text.endsWith(trim)) text = text.slice(0, text.length - trim.length);
    this.held = '';
    if (text) this.emit({ type: 'content', text });
  }
}

/**
 * The plain-text reader for raw-prompt completions, behind the template parser's interface: every
 * token is text (specials as their text, decode's convention) except a stop token, which ends the
 * turn and is not part of the text (as vLLM leaves the EOS out).
 */
class PlainTextStream implements CompletionStream {
  private readonly decoder = new StreamDecoder();
  private text = '';
  private count = 0;
  private ended = false;
  private closed = false;

  constructor(private readonly stopTokens: ReadonlySet<number>) {}

  push(id: number): ParseEvent[] {
    this.count++;
    if (this.ended) return [];
    if (this.stopTokens.has(id)) {
      this.ended = true;
      return this.emit(this.decoder.end());
    }
    return this.emit(this.decoder.push(id));
  }

  close(): ParseEvent[] {
    if (this.closed) return [];
    this.closed = true;
    return this.emit(this.decoder.end());
  }

  finish(): ParsedCompletion {
    this.close();
    return { content: this.text, toolCalls: [], finishedTurn: this.ended, errors: [], exact: true, length: this.count };
  }

  private emit(text: string): ParseEvent[] {
    if (text === '') return [];
    this.text += text;
    return [{ type: 'content', text }];
  }
}

/** How a template writes a tool call, found from two renderings that differ only where sampling starts. */
interface ToolCallForms {
  /** The ids before a call's name (name undefined: any tool) or before its arguments (a named tool). */
  opening(name?: string): Int32Array;
  /** The single special token that closes a call (a stop token for parallelToolCalls false), if any. */
  closing: number | undefined;
}

function commonPrefix(a: Int32Array, b: Int32Array): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

function toolCallForms(template: ChatTemplate): ToolCallForms {
  const call = (name: string, args: string) =>
    template.assistantIds({ role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { name, arguments: args } }] });
  const a = call('a', '{}'), b = call('a', '[]');
  let suffix = 0;
  while (suffix < a.length && suffix < b.length && a[a.length - 1 - suffix] === b[b.length - 1 - suffix]) suffix++;
  let end = a.length;
  while (end > a.length - suffix && template.stopTokens.includes(a[end - 1])) end--;
  const closing = a.slice(a.length - suffix, end);
  return {
    opening(name) {
      const x = name === undefined ? call('a', '{}') : call(name, '{}');
      const y = name === undefined ? call('b', '{}') : call(name, '[]');
      return x.slice(0, commonPrefix(x, y));
    },
    // A byte could close a call in the middle of its arguments; only a special token is a safe stop.
    closing: closing.length === 1 && closing[0] >= BYTE_TOKENS ? closing[0] : undefined,
  };
}

export class EngineUpstream implements Upstream {
  readonly name = 'engine';
  private readonly generator: TokenGenerator;
  private readonly template: ChatTemplate;
  private readonly model: string;
  private readonly maxPromptTokens: number;
  private readonly contextLength: number | undefined;
  private readonly forms: ToolCallForms;
  /** What the template writes after the body of a turn that reached no end token. */
  private readonly turnEnd: Int32Array;

  constructor(options: EngineUpstreamOptions) {
    this.generator = options.generator;
    this.template = options.template ?? nanoChatTemplate;
    this.forms = toolCallForms(this.template);
    this.turnEnd = this.template.assistantIds({ role: 'assistant', content: '' });
    this.model = options.model ?? this.template.name;
    this.maxPromptTokens = options.maxPromptTokens ?? Infinity;
    const context = options.contextLength ?? options.generator.cacheTokens;
    if (context !== undefined && (!Number.isInteger(context) || context < 2))
      throw new RangeError(`options.contextLength: expected an integer >= 2, got ${context}`);
    this.contextLength = context;
  }

  models(): ModelInfo[] {
    const info: ModelInfo = { id: this.model, ownedBy: 'forge-rl', version: this.generator.version };
    if (this.contextLength !== undefined) info.contextLength = this.contextLength;
    return [info];
  }

  /** The text of a token: bytes >= 0x80 are not text alone, so "\xNN"; specials their text. */
  tokenText(id: number): string {
    if (id < BYTE_TOKENS && id >= 0x80) return `\\x${id.toString(16)}`;
    return Buffer.from(tokenBytes(id)).toString('utf8');
  }

  /** The prompt's ids: the rendered conversation, or the raw prompt (checked against the vocabulary). */
  private promptIds(req: UpstreamRequest): Int32Array {
    if (req.prompt === undefined) {
      try {
        return this.template.render(req.messages, req.tools, { addGenerationPrompt: true, assistantTurns: req.verbatimTurns });
      } catch (e) {
        // The template names the offending field (e.g. "messages[3].tool_call_id: ...").
        throw gatewayError(GatewayErrorCode.INVALID_REQUEST, (e as Error).message, (e as Error).message.split(':', 1)[0]);
      }
    }
    if (typeof req.prompt === 'string') {
      const text = encode(req.prompt);
      const ids = new Int32Array(text.length + 1);
      ids[0] = SpecialToken.BOS;
      ids.set(text, 1);
      return ids;
    }
    const vocab = this.template.vocabSize;
    const bad = req.prompt.findIndex((t) => t < 0 || t >= vocab);
    if (bad >= 0)
      throw gatewayError(GatewayErrorCode.INVALID_REQUEST,
        `prompt[${bad}]: token id ${req.prompt[bad]} out of range [0, ${vocab})`, `prompt[${bad}]`);
    if (req.prompt.length === 0) throw gatewayError(GatewayErrorCode.INVALID_REQUEST, 'prompt: expected at least one token id', 'prompt');
    return req.prompt;
  }

  /** The tool-call opening forced after the generation prompt (empty unless tool_choice forces a call). */
  private forcedOpening(req: Pick<ChatUpstreamRequest, 'tools' | 'toolChoice'>): Int32Array {
    const choice = req.toolChoice ?? 'auto';
    if (choice === 'auto' || choice === 'none') return new Int32Array(0);
    const names = normalizeTools(req.tools).map((t) => t.name);
    if (names.length === 0)
      throw gatewayError(GatewayErrorCode.INVALID_REQUEST, 'tool_choice: a tool call is required but no tools were given', 'tool_choice');
    if (choice === 'required') return this.forms.opening();
    if (!names.includes(choice.name))
      throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `tool_choice: no tool named ${JSON.stringify(choice.name)} was given`, 'tool_choice');
    return this.forms.opening(choice.name);
  }

  /** The token that ends the completion after its first tool call (parallelToolCalls false), if any. */
  private singleCallStop(req: ChatUpstreamRequest): number | undefined {
    if (req.parallelToolCalls !== false || !req.tools?.length || req.toolChoice === 'none') return undefined;
    if (this.forms.closing === undefined)
      throw gatewayError(GatewayErrorCode.UNSUPPORTED_PARAMETER,
        `parallel tool calls cannot be turned off: template ${this.template.name} has no single token closing a tool call`, 'parallel_tool_calls');
    return this.forms.closing;
  }

  /** The prompt's ids (rendered, then a forced tool-call opening) and that opening. */
  private prompt(req: UpstreamRequest): { promptIds: Int32Array; forced: Int32Array } {
    const rendered = this.promptIds(req);
    // The tools were checked by the rendering above.
    const forced = req.prompt === undefined ? this.forcedOpening(req) : new Int32Array(0);
    if (forced.length === 0) return { promptIds: rendered, forced };
    const promptIds = new Int32Array(rendered.length + forced.length);
    promptIds.set(rendered);
    promptIds.set(forced, rendered.length);
    return { promptIds, forced };
  }

  /** Refuses a prompt over the limits, or one whose max_tokens do not fit the context next to it. */
  private checkLength(req: UpstreamRequest, promptTokens: number): void {
    const field = req.prompt === undefined ? 'messages' : 'prompt';
    const limit = Math.min(this.maxPromptTokens, req.maxPromptTokens ?? Infinity);
    if (promptTokens > limit)
      throw gatewayError(GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED, `the prompt has ${promptTokens} tokens, more than the limit of ${limit}`, field);
    const overflow = this.contextLength === undefined ? undefined : contextError(promptTokens, req.sampling.maxTokens, this.contextLength, field);
    if (overflow !== undefined) throw overflow;
  }

  /** The prompt tokens complete() would send for this request. */
  countTokens(req: TokenCountRequest): number {
    return this.prompt({ ...req, sampling: {}, signal: new AbortController().signal }).promptIds.length;
  }

  async complete(req: UpstreamRequest, onEvent: (event: UpstreamEvent) => void): Promise<UpstreamResult> {
    const start = performance.now();
    const { promptIds, forced } = this.prompt(req);
    const singleCall = req.prompt === undefined ? this.singleCallStop(req) : undefined;
    this.checkLength(req, promptIds.length);
    const stops = (req.sampling.stop ?? []).filter((s) => s.length > 0);
    let generation: Generation;
    try {
      generation = this.generator.generate(promptIds, {
        temperature: req.sampling.temperature,
        topP: req.sampling.topP,
        maxTokens: req.sampling.maxTokens,
        seed: req.sampling.seed,
        stop: [...this.template.stopTokens, ...(singleCall !== undefined ? [singleCall] : []), ...stops],
        signal: req.signal,
        ...(req.sampling.topLogprobs ? { topLogprobs: req.sampling.topLogprobs } : {}),
      });
    } catch (e) {
      const err = e as Error;
      // The engine's own capacity check (a generator that did not report cacheTokens): in the
      // agent's terms, not the engine's.
      const capacity = err instanceof RangeError ? /prompt \((\d+) tokens\) \+ maxTokens \((\d+)\) exceed cacheTokens \((\d+)\)/.exec(err.message) : null;
      if (capacity !== null)
        throw contextError(Number(capacity[1]), req.sampling.maxTokens === undefined ? undefined : Number(capacity[2]), Number(capacity[3]),
          req.prompt === undefined ? 'messages' : 'prompt') ?? gatewayError(GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED, err.message);
      if (err instanceof RangeError || err instanceof TypeError)
        throw gatewayError(GatewayErrorCode.INVALID_REQUEST, err.message);
      throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `engine: ${err.message}`);
    }
    const parser = req.prompt === undefined
      ? this.template.createParser({ tools: req.tools })
      : new PlainTextStream(new Set(this.template.stopTokens));
    for (const id of forced) parser.push(id); // the state after the opening; its events are the prompt's
    const shift = forced.length;
    const inCompletion = (error: ParseError): ParseError => (shift === 0 ? error : { ...error, at: error.at - shift });
    const hold = new StopHoldback(stops, onEvent);
    let firstTokenMs: number | null = null;
    let toolIndex = 0;
    const forward = (events: ParseEvent[]) => {
      for (const e of events) {
        if (e.type === 'content') hold.content(e.text);
        else if (e.type === 'reasoning') {
          hold.flush(undefined);
          onEvent(e);
        } else if (e.type === 'tool_call_end') {
          hold.flush(undefined);
          if (e.call) onEvent({ type: 'tool_call', index: toolIndex++, call: e.call });
          else if (e.error) onEvent({ type: 'tool_call_error', error: inCompletion(e.error) });
        } else if (e.type === 'error') onEvent({ type: 'tool_call_error', error: inCompletion(e.error) });
      }
    };
    try {
      for await (const t of generation) {
        if (firstTokenMs === null) firstTokenMs = performance.now() - start;
        onEvent(t.top
          ? { type: 'token', token: t.token, logprob: t.logprob, version: t.version, top: t.top }
          : { type: 'token', token: t.token, logprob: t.logprob, version: t.version });
        forward(parser.push(t.token));
      }
    } catch (e) {
      throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `engine: ${(e as Error).message}`);
    }
    const r = await generation.result.catch((e: Error) => {
      throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `engine: ${e.message}`);
    });
    forward(parser.close());
    const parsed = parser.finish();
    const stopSequence = typeof r.stoppedBy === 'string' ? r.stoppedBy : undefined;
    hold.flush(stopSequence);
    let content = parsed.content;
    if (stopSequence !== undefined && content.endsWith(stopSequence)) content = content.slice(0, content.length - stopSequence.length);
    const n = r.completionIds.length;
    const complete = r.logprobs.length === n && r.versions.length === n;
    const result: UpstreamResult = {
      promptIds,
      completionIds: r.completionIds,
      logprobs: r.logprobs,
      versions: r.versions,
      trainable: complete,
      finishReason: r.finishReason,
      content,
      toolCalls: parsed.toolCalls,
      parseErrors: parsed.errors.map(inCompletion),
      // Stopped after its one tool call: the turn is over (its end token comes with the next prompt).
      finishedTurn: parsed.finishedTurn || (singleCall !== undefined && r.stoppedBy === singleCall),
      promptTokens: r.promptTokens,
      completionTokens: n,
      cachedPromptTokens: r.cachedPromptTokens,
      timings: { queueMs: r.timings.queueMs, firstTokenMs, totalMs: performance.now() - start },
    };
    if (req.prompt === undefined) {
      // The turn as the next prompt renders it: the template's end token follows an unfinished one.
      const end = parsed.finishedTurn ? new Int32Array(0) : this.turnEnd;
      result.turnIds = new Int32Array(forced.length + n + end.length);
      result.turnIds.set(forced);
      result.turnIds.set(r.completionIds, forced.length);
      result.turnIds.set(end, forced.length + n);
    }
    if (!complete) result.notTrainableReason = `engine returned ${r.logprobs.length} logprobs and ${r.versions.length} versions for ${n} tokens`;
    if (stopSequence !== undefined) result.stopSequence = stopSequence;
    if (parsed.reasoning !== undefined) result.reasoning = parsed.reasoning;
    return result;
  }
}

/** Why a prompt and its max_tokens do not fit the context (naming the field to change), or undefined. */
function contextError(promptTokens: number, maxTokens: number | undefined, context: number, field: string): GatewayError | undefined {
  if (promptTokens >= context)
    return gatewayError(GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED,
      `${field}: the prompt has ${promptTokens} tokens; this model's maximum context length is ${context} tokens (prompt and completion together), so no completion fits`, field);
  if (maxTokens !== undefined && promptTokens + maxTokens > context)
    return gatewayError(GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED,
      `max_tokens: the prompt (${promptTokens} tokens) + max_tokens (${maxTokens}) exceed this model's maximum context length of ${context} tokens; at most ${context - promptTokens} completion tokens fit`, 'max_tokens');
  return undefined;
}
