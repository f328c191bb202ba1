// The OpenAI-compatible upstream: a vLLM or SGLang server renders the chat template, samples, and
// parses tool calls; the gateway asks it for token ids and logprobs and checks they came back
// complete (completionAssembler.ts). A call without them is answered but recorded not trainable.
//
// What each dialect is sent (beyond the OpenAI fields model, messages/prompt, max_tokens,
// temperature, top_p, seed, stop, tools):
//   vllm  (vLLM >= 0.10.2, its OpenAI server): stream: true, stream_options.include_usage (the
//         token count the ids are checked against), return_token_ids: true (the first chunk carries
//         prompt_token_ids, at the top level for chat and on the choice for completions; each
//         chunk's choice carries the `token_ids` of its tokens, and vLLM then sends a chunk for
//         every step even when its text delta is empty), return_tokens_as_token_ids: true (logprob
//         entries name their token "token_id:<id>", so each logprob is checked against its id), and
//         logprobs: true + top_logprobs: k for chat, logprobs: max(1, k) for completions (k: the
//         alternatives the agent asked for, 0 if none); vLLM's alternatives (its default
//         logprobs mode: the raw model distribution, what the token's own logprob is from) name
//         their tokens by id too and are passed on with each token.
//   sglang (SGLang's OpenAI server, recent versions): it refuses token ids on streamed chat, so the
//         request is not streamed (the agent's stream gets the whole answer at once): stream: false,
//         return_prompt_token_ids + return_token_ids: true (choice.prompt_token_ids and
//         choice.token_ids), logprobs: true + top_logprobs: 0 (chat) or logprobs: 1 (completions);
//         its logprob entries hold token text, so only their count is checked (and alternatives,
//         which could not be named by id, are not asked for). An older SGLang ignores these
//         fields: its calls are recorded not trainable, with the reason.
// tool_choice: "required" and a named function are passed through (vLLM supports both, by guided
// decoding); "auto" and "none" are sent as "auto" (under "none" the gateway withholds the calls).
// parallel_tool_calls: false is passed through.
// The policy version is not reported by either server: `version()` is read when each token arrives
// (servedVersion.ts holds it for the gateway's admin route). Requests go out on keep-alive
// connections (upstreamHttp.ts).
import { normalizeTools, type ChatMessage } from '../model/chatTemplate.js';
import { CompletionAssembler, tokenIdOf, type LogprobEntry, type ToolCallDelta } from './completionAssembler.js';
import { GatewayError, GatewayErrorCode, gatewayError } from './errors.js';
import { SseDecoder } from './sseReader.js';
import { bodyText, fetchTransport, KeepAliveTransport, type TransportResponse, type UpstreamTransport } from './upstreamHttp.js';
import type { ModelInfo, ToolChoice, TopLogprob, Upstream, UpstreamEvent, UpstreamRequest, UpstreamResult } from './upstream.js';

export interface OpenAICompatibleUpstreamOptions {
  /** The server's API root, e.g. "http://127.0.0.1:8000/v1". */
  baseURL: string;
  apiKey?: string;
  /** The model name the server serves; sent for any name the agent asks for unless `modelMap` maps it. */
  model: string;
  /** Names agents use -> names the server serves (e.g. { "gpt-4o": "Qwen/Qwen3-8B" }). */
  modelMap?: Readonly<Record<string, string>>;
  /** Which extensions the server speaks (see the header of this file). Default 'vllm'. */
  dialect?: 'vllm' | 'sglang';
  /** The policy version the server serves now; set by whoever pushes weights to it. */
  version: () => number;
  /** One request to the server longer than this fails with 504. Default 10 minutes. */
  timeoutMs?: number;
  /** The server's max_model_len (vLLM lists it in /v1/models), reported as the context length. */
  contextLength?: number;
  /** Connections to the server at most (requests beyond wait for one); as many idle ones are kept
   *  open for reuse. Size it for the calls the gateway runs at once. Default 1024. */
  maxConnections?: number;
  /** A fetch-compatible function to send requests with instead of node:http (e.g. a fake server in a
   *  test). Default: node:http(s) on a keep-alive agent. */
  fetch?: typeof fetch;
}

type Json = Record<string, any>;

/** Tool-call arguments as the JSON text servers expect (the Anthropic path holds objects). */
function outgoingMessages(messages: readonly ChatMessage[]): unknown[] {
  return messages.map((m) => {
    if (m.role !== 'assistant' || !m.tool_calls) return m;
    return {
      ...m,
      tool_calls: m.tool_calls.map((c) => ({
        ...c, type: 'function',
        function: { ...c.function, arguments: typeof c.function.arguments === 'string' ? c.function.arguments : JSON.stringify(c.function.arguments) },
      })),
    };
  });
}

/** The error message in an OpenAI ({ error: { message } }) or vLLM/SGLang ({ message }) error body. */
function errorMessage(text: string): string {
  try {
    const j = JSON.parse(text) as Json;
    const m = j?.error?.message ?? j?.message ?? j?.detail;
    if (typeof m === 'string') return m;
  } catch {
    // not JSON: the text itself
  }
  return text.slice(0, 500) || '(empty body)';
}

const CONTEXT_LENGTH = /context length|maximum context|max_model_len|too long/i;

/** A server's HTTP error as the agent should see it: its 400s are the request's fault, the rest the upstream's. */
function httpError(status: number, message: string): GatewayError {
  if (status === 400 || status === 422)
    return CONTEXT_LENGTH.test(message)
      ? gatewayError(GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED, `upstream: ${message}`)
      : gatewayError(GatewayErrorCode.INVALID_REQUEST, `upstream rejected the request: ${message}`);
  return gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `upstream answered HTTP ${status}: ${message}`);
}

/** The tool_choice sent to the server (see the header). */
function toolChoiceBody(choice: ToolChoice | undefined): unknown {
  if (choice === 'required') return 'required';
  if (typeof choice === 'object') return { type: 'function', function: { name: choice.name } };
  return 'auto';
}

/** A vLLM alternative entry named "token_id:<id>", or undefined when it is not one. */
function alternative(token: unknown, logprob: unknown): TopLogprob | undefined {
  const id = tokenIdOf(token);
  return id !== undefined && typeof logprob === 'number' && Number.isFinite(logprob) && logprob <= 0 ? { token: id, logprob } : undefined;
}

/** The k most likely of a completions-style { "token_id:<id>": logprob } dict (it may hold k + 1). */
function alternativesOfDict(dict: unknown, k: number): TopLogprob[] {
  if (typeof dict !== 'object' || dict === null) return [];
  const list = Object.entries(dict as Record<string, unknown>).flatMap(([t, lp]) => alternative(t, lp) ?? []);
  return list.sort((a, b) => b.logprob - a.logprob || a.token - b.token).slice(0, k);
}

/**
 * Puts each chunk's alternatives on the assembler's token events: the assembler emits one event per
 * completion id in order, so the entries (named by id) are matched to them in order, skipping any
 * entry whose token got no event.
 */
class Alternatives {
  private queue: { id: number; top: TopLogprob[] }[] = [];

  wrap(onEvent: (e: UpstreamEvent) => void): (e: UpstreamEvent) => void {
    return (e) => {
      if (e.type === 'token' && this.queue.length > 0) {
        while (this.queue.length > 0 && this.queue[0].id !== e.token) this.queue.shift();
        const next = this.queue.shift();
        if (next) return onEvent({ ...e, top: next.top });
      }
      onEvent(e);
    };
  }

  /** The entries of the chunk about to be handed to the assembler (cleared after it). */
  set(entries: { id: number; top: TopLogprob[] }[]): void {
    this.queue = entries;
  }
}

/** A connection failure in a word where there is one: node:http's code, or fetch's cause. */
function causeOf(e: unknown): string {
  const err = e as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return err?.cause?.code ?? err?.cause?.message ?? (err?.code?.startsWith('E') ? err.code : undefined) ?? err?.message ?? String(e);
}

export class OpenAICompatibleUpstream implements Upstream {
  readonly name: string;
  private readonly baseURL: string;
  private readonly dialect: 'vllm' | 'sglang';
  private readonly timeoutMs: number;
  private readonly transport: UpstreamTransport;
  /** The same for every request. */
  private readonly headers: Readonly<Record<string, string>>;

  constructor(private readonly options: OpenAICompatibleUpstreamOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options: expected { baseURL, model, version, ... }');
    if (typeof options.baseURL !== 'string' || !/^https?:\/\//.test(options.baseURL))
      throw new TypeError(`options.baseURL: expected an http(s) URL, got ${JSON.stringify(options.baseURL)}`);
    if (typeof options.model !== 'string' || options.model === '') throw new TypeError('options.model: expected a non-empty string');
    if (typeof options.version !== 'function') throw new TypeError('options.version: expected a function returning the served policy version');
    const dialect = options.dialect ?? 'vllm';
    if (dialect !== 'vllm' && dialect !== 'sglang') throw new TypeError(`options.dialect: expected "vllm" or "sglang", got ${JSON.stringify(dialect)}`);
    const timeoutMs = options.timeoutMs ?? 600_000;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new RangeError(`options.timeoutMs: expected a positive integer, got ${timeoutMs}`);
    this.baseURL = options.baseURL.replace(/\/+$/, '');
    this.dialect = dialect;
    this.timeoutMs = timeoutMs;
    const maxConnections = options.maxConnections ?? 1024;
    if (!Number.isInteger(maxConnections) || maxConnections < 1)
      throw new RangeError(`options.maxConnections: expected a positive integer, got ${maxConnections}`);
    if (options.fetch !== undefined && typeof options.fetch !== 'function') throw new TypeError('options.fetch: expected a fetch-compatible function');
    this.headers = { 'content-type': 'application/json', ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}) };
    this.transport = options.fetch ? fetchTransport(options.fetch) : new KeepAliveTransport(this.baseURL, { maxConnections });
    this.name = `openai-compatible:${dialect}`;
  }

  close(): void {
    this.transport.close();
  }

  models(): ModelInfo[] {
    const version = this.options.version();
    const names = [this.options.model, ...Object.keys(this.options.modelMap ?? {}).filter((k) => k !== this.options.model)];
    return names.map((id) => ({ id, ownedBy: this.dialect, version, ...(this.options.contextLength ? { contextLength: this.options.contextLength } : {}) }));
  }

  /** The request body for the server (see the header for each dialect's fields). */
  private body(req: UpstreamRequest): Json {
    const s = req.sampling;
    const vllm = this.dialect === 'vllm';
    const body: Json = { model: this.options.modelMap?.[req.model] ?? this.options.model };
    if (req.prompt !== undefined) {
      body.prompt = typeof req.prompt === 'string' ? req.prompt : Array.from(req.prompt);
      body.logprobs = Math.max(1, this.topK(req));
      body.echo = false;
    } else {
      body.messages = outgoingMessages(req.messages);
      if (req.tools) {
        // Anthropic-shaped tools ({ name, input_schema }) are sent in the OpenAI shape the server reads.
        body.tools = normalizeTools(req.tools).map((fn) => ({ type: 'function', function: fn }));
        body.tool_choice = toolChoiceBody(req.toolChoice);
        if (req.parallelToolCalls === false) body.parallel_tool_calls = false;
      }
      body.logprobs = true;
      body.top_logprobs = this.topK(req);
    }
    if (vllm) Object.assign(body, { stream: true, stream_options: { include_usage: true }, return_token_ids: true, return_tokens_as_token_ids: true });
    else Object.assign(body, { stream: false, return_token_ids: true, ...(req.prompt === undefined ? { return_prompt_token_ids: true } : {}) });
    if (s.maxTokens !== undefined) body.max_tokens = s.maxTokens;
    if (s.temperature !== undefined) body.temperature = s.temperature;
    if (s.topP !== undefined) body.top_p = s.topP;
    if (s.seed !== undefined) body.seed = s.seed;
    if (s.stop && s.stop.length > 0) body.stop = s.stop;
    return body;
  }

  /** Alternatives asked for per token (vLLM only, see the header). */
  private topK(req: UpstreamRequest): number {
    return this.dialect === 'vllm' ? req.sampling.topLogprobs ?? 0 : 0;
  }

  async complete(req: UpstreamRequest, onEvent: (event: UpstreamEvent) => void): Promise<UpstreamResult> {
    const start = performance.now();
    const alternatives = new Alternatives();
    const asm = new CompletionAssembler(this.options.version, alternatives.wrap(onEvent), start, req.tools);
    const controller = new AbortController();
    let timedOut = false;
    let responded = false;
    let queueMs = 0;
    let complete = false; // the response was read to its end
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.timeoutMs);
    const onAbort = () => controller.abort();
    req.signal.addEventListener('abort', onAbort, { once: true });
    if (req.signal.aborted) controller.abort();
    const path = req.prompt === undefined ? '/chat/completions' : '/completions';
    try {
      const res = await this.transport.post({
        url: `${this.baseURL}${path}`,
        headers: this.headers,
        body: JSON.stringify(this.body(req)),
        signal: controller.signal,
      });
      // The server does not report its queue time; its response headers are the nearest sign of admission.
      queueMs = performance.now() - start;
      responded = true;
      if (res.status < 200 || res.status > 299) throw httpError(res.status, errorMessage(await bodyText(res)));
      if (this.dialect === 'vllm') await this.readStream(res, req, asm, controller, alternatives);
      else this.readWhole(await bodyText(res), req, asm, controller);
      complete = true;
      return asm.result(false, queueMs);
    } catch (e) {
      if (req.signal.aborted) return asm.result(true, queueMs); // the agent left or the gateway timed out
      if (timedOut)
        throw gatewayError(GatewayErrorCode.UPSTREAM_TIMEOUT, `the upstream did not finish within ${this.timeoutMs} ms (after ${asm.tokenCount} tokens)`);
      if (e instanceof GatewayError) throw e;
      if (responded)
        throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `the upstream connection broke after ${asm.tokenCount} tokens: ${causeOf(e)}`);
      const cause = causeOf(e);
      // A reset after connecting (the server dropped the request) is not the server being unreachable.
      const what = cause === 'ECONNRESET' ? 'closed the connection before answering' : 'unreachable';
      throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `upstream ${this.baseURL} ${what}: ${cause}`);
    } finally {
      clearTimeout(timer);
      req.signal.removeEventListener('abort', onAbort);
      if (!complete) controller.abort(); // releases the connection if anything is left of it
    }
  }

  /** The prompt ids, refused (and the server request cancelled) when over the gateway's limit. */
  private promptIds(value: unknown, req: UpstreamRequest, asm: CompletionAssembler, controller: AbortController): void {
    const n = asm.setPromptIds(value);
    if (n === undefined || req.maxPromptTokens === undefined || n <= req.maxPromptTokens) return;
    controller.abort();
    throw gatewayError(GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED,
      `the prompt has ${n} tokens, more than the limit of ${req.maxPromptTokens}`, req.prompt === undefined ? 'messages' : 'prompt');
  }

  /** vLLM's stream: chunk by chunk until [DONE]; a stream that ends before finishing is a failure. */
  private async readStream(
    res: TransportResponse, req: UpstreamRequest, asm: CompletionAssembler, controller: AbortController, alternatives: Alternatives,
  ): Promise<void> {
    let done = false;
    const onData = (data: string) => {
      if (done) return;
      if (data === '[DONE]') {
        done = true;
        return;
      }
      let chunk: Json;
      try {
        chunk = JSON.parse(data) as Json;
      } catch {
        throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `the upstream sent a malformed chunk: ${data.slice(0, 200)}`);
      }
      if (chunk.error || chunk.object === 'error')
        throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `upstream error mid-stream: ${chunk.error?.message ?? chunk.message ?? JSON.stringify(chunk).slice(0, 200)}`);
      if (req.prompt === undefined) this.promptIds(chunk.prompt_token_ids, req, asm, controller);
      if (chunk.usage) asm.setUsage(chunk.usage);
      for (const choice of (chunk.choices ?? []) as Json[]) {
        if ((choice.index ?? 0) !== 0) continue; // one choice per request: the gateway fans n out itself
        if (req.prompt !== undefined) this.promptIds(choice.prompt_token_ids, req, asm, controller);
        this.readChoice(choice, choice.delta ?? {}, req, asm, alternatives);
      }
    };
    // After [DONE] the body is still read to its end: a connection is reused only once its response
    // is complete, and leaving it early costs a new connection (about half of a local call's CPU).
    // A throw in onData leaves the loop, which closes the connection (the server stops generating).
    const sse = new SseDecoder();
    for await (const text of res.chunks) sse.push(text, onData);
    if (!done || !asm.finished)
      throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR,
        `the upstream stream ended before the completion finished (after ${asm.tokenCount} tokens${done ? ', no finish reason' : ''})`);
  }

  /** SGLang's whole response: ids, logprobs and the message in one piece. */
  private readWhole(text: string, req: UpstreamRequest, asm: CompletionAssembler, controller: AbortController): void {
    let json: Json;
    try {
      json = JSON.parse(text) as Json;
    } catch {
      throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `the upstream sent a malformed response: ${text.slice(0, 200)}`);
    }
    const choice = (json?.choices as Json[] | undefined)?.find((c) => (c.index ?? 0) === 0);
    if (!choice) throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, 'the upstream response has no choice');
    this.promptIds(choice.prompt_token_ids ?? json.prompt_token_ids, req, asm, controller);
    asm.setUsage(json.usage);
    this.readChoice(choice, choice.message ?? {}, req, asm);
    if (!asm.finished) asm.setFinish(choice.finish_reason ?? 'stop', choice.matched_stop ?? choice.stop_reason);
  }

  /** One choice (a chunk's, or the whole response's): tokens first, then text, tool calls, finish. */
  private readChoice(choice: Json, message: Json, req: UpstreamRequest, asm: CompletionAssembler, alternatives?: Alternatives): void {
    const lp = choice.logprobs as Json | null | undefined;
    let entries: LogprobEntry[] | undefined;
    if (req.prompt === undefined && Array.isArray(lp?.content))
      entries = (lp!.content as Json[]).map((e) => ({ logprob: e?.logprob, id: tokenIdOf(e?.token) }));
    else if (req.prompt !== undefined && Array.isArray(lp?.token_logprobs))
      entries = (lp!.token_logprobs as unknown[]).map((v, j) => ({ logprob: v, id: tokenIdOf(lp!.tokens?.[j]) }));
    const k = this.topK(req);
    if (alternatives && k > 0 && entries) {
      const tops = req.prompt === undefined
        ? (lp!.content as Json[]).map((e) => (Array.isArray(e?.top_logprobs) ? (e.top_logprobs as Json[]).flatMap((t) => alternative(t?.token, t?.logprob) ?? []).slice(0, k) : []))
        : entries.map((_, j) => alternativesOfDict(lp!.top_logprobs?.[j], k));
      alternatives.set(entries.flatMap((e, j) => (e.id === undefined ? [] : [{ id: e.id, top: tops[j] }])));
    }
    asm.addTokens(choice.token_ids ?? message.token_ids, entries);
    alternatives?.set([]);
    if (req.prompt !== undefined) asm.addContent(choice.text);
    else {
      // vLLM's newer servers name it `reasoning`, older ones and SGLang `reasoning_content`.
      asm.addReasoning(message.reasoning ?? message.reasoning_content);
      asm.addContent(message.content);
      ((message.tool_calls ?? []) as ToolCallDelta[]).forEach((d, k) => asm.addToolCall(d, k));
    }
    if (choice.finish_reason) asm.setFinish(choice.finish_reason, choice.stop_reason ?? choice.matched_stop);
  }
}
