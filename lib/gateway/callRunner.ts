// One agent request, protocol-independent: checks the session's concurrency limit, runs its n choices
// on the upstream (each choice is its own call), forwards their deltas, and records every call with
// its place in the session's call tree before the answer is sent. The protocol plugins
// (openaiChat.ts, anthropicMessages.ts, openaiCompletions.ts) only translate shapes around it.
//
// Token limits: max_tokens and n are checked here; the prompt limit (limits.maxPromptTokens) is
// checked here for a prompt of token ids and by the upstream once it has rendered the prompt. Either
// way a prompt over the limit is refused with 400 before anything is generated for the agent, and it
// is not recorded as a call (like every request the upstream rejects as bad).
//
// Re-tokenization drift: the text an agent gets back does not always encode to the ids the policy
// sampled (a special token inside the content is dropped from it, bytes that are not UTF-8 become
// U+FFFD, a tool call's arguments are re-serialised by the client). So the session remembers each
// completion it returned, keyed by what the agent saw (turnKey), with its ids as a turn
// (UpstreamResult.turnIds); a resent assistant message with the same key is rendered from those ids
// (verbatimTurns), and the call continues its branch. An edited message has another key and is
// rendered from its text (a fork). Tool-call arguments are first restored to the model's own text.
// The turns are held per session (no more than its call tree holds) and dropped with it.
import { createHash, randomBytes } from 'node:crypto';
import type { ChatMessage, ParsedToolCall, ToolDefinition } from '../model/chatTemplate.js';
import { GatewayError, GatewayErrorCode, gatewayError, type Protocol } from './errors.js';
import type { CallRecord, CallRecorder } from './recorder.js';
import type { Session } from './sessions.js';
import type { SamplingParams, ToolChoice, Upstream, UpstreamEvent, UpstreamResult } from './upstream.js';

export interface GatewayLimits {
  /** Request body bytes at most. Default 8 MiB. */
  bodyBytes: number;
  /** Requests one session may have in flight. Default 8. */
  maxConcurrentCalls: number;
  /** max_tokens at most. Default 4096. */
  maxCompletionTokens: number;
  /** Choices per request (n) at most. Default 8. */
  maxChoices: number;
  /** An upstream call longer than this is aborted and fails with 504. Default 10 minutes. */
  callTimeoutMs: number;
  /** Prompt tokens at most. Default: the upstream's context length when it reports one, else 32768. */
  maxPromptTokens: number;
}

export const DEFAULT_LIMITS: Readonly<GatewayLimits> = Object.freeze({
  bodyBytes: 8 * 1024 * 1024,
  maxConcurrentCalls: 8,
  maxCompletionTokens: 4096,
  maxChoices: 8,
  callTimeoutMs: 600_000,
  maxPromptTokens: 32768,
});

export interface ChatRequest {
  protocol: Protocol;
  model: string;
  messages: ChatMessage[];
  tools?: ToolDefinition[];
  /** 'required' and { name } only with tools (the protocol routes check it). */
  toolChoice: ToolChoice;
  /** false: at most one tool call per choice (OpenAI parallel_tool_calls, Anthropic disable_parallel_tool_use). */
  parallelToolCalls?: boolean;
  sampling: SamplingParams;
  n: number;
  /** The body as the agent sent it (recorded). */
  raw: unknown;
}

/** A raw-prompt request (legacy Completions): no messages, tools or tool choice. */
export interface PromptRequest extends Omit<ChatRequest, 'messages' | 'tools' | 'toolChoice' | 'parallelToolCalls'> {
  /** Text, or token ids the agent rendered itself. */
  prompt: string | Int32Array;
}

export type IssuedToolCall = ParsedToolCall & { id: string };

/** A delta of one choice; tool calls carry the id the gateway gave them. */
export type ChoiceEvent =
  | Exclude<UpstreamEvent, { type: 'tool_call' }>
  | { type: 'tool_call'; index: number; call: IssuedToolCall };

export interface ChoiceOutcome {
  callId: string;
  result: UpstreamResult;
  toolCalls: IssuedToolCall[];
  finishReason: 'stop' | 'length' | 'tool_calls' | 'abort';
}

export interface GatewayContext {
  upstream: Upstream;
  recorder: CallRecorder;
  limits: GatewayLimits;
}

const TOOL_ID_PREFIX: Record<Protocol, string> = { openai: 'call_', anthropic: 'toolu_' };

/** Runs a request's choices; throws GatewayError (nothing recorded only for errors before the upstream ran). */
export async function runChat(
  ctx: GatewayContext,
  session: Session,
  req: ChatRequest | PromptRequest,
  onEvent: (choice: number, event: ChoiceEvent) => void,
  clientSignal: AbortSignal,
): Promise<ChoiceOutcome[]> {
  // A session that ended has no call tree any more; the routes refuse it first (resolve).
  const { tree, toolArguments, turns } = session;
  if (session.closed || tree === null || toolArguments === null || turns === null)
    throw gatewayError(GatewayErrorCode.SESSION_CLOSED, `session ${session.info.id} is closed`);
  if (req.n > ctx.limits.maxChoices)
    throw gatewayError(GatewayErrorCode.INVALID_REQUEST, `n: at most ${ctx.limits.maxChoices} choices, got ${req.n}`, 'n');
  const maxTokens = req.sampling.maxTokens;
  if (maxTokens !== undefined && maxTokens > ctx.limits.maxCompletionTokens)
    throw gatewayError(GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED,
      `max_tokens: at most ${ctx.limits.maxCompletionTokens}, got ${maxTokens}`, 'max_tokens');
  const maxPromptTokens = ctx.limits.maxPromptTokens;
  if ('prompt' in req && typeof req.prompt !== 'string' && req.prompt.length > maxPromptTokens)
    throw gatewayError(GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED,
      `the prompt has ${req.prompt.length} tokens, more than the limit of ${maxPromptTokens}`, 'prompt');
  if (session.inFlight >= ctx.limits.maxConcurrentCalls)
    throw gatewayError(GatewayErrorCode.TOO_MANY_CONCURRENT,
      `session ${session.info.id} already has ${session.inFlight} requests in flight (limit ${ctx.limits.maxConcurrentCalls})`);
  session.inFlight++;
  const receivedAt = Date.now();
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, ctx.limits.callTimeoutMs);
  const onClientAbort = () => controller.abort();
  clientSignal.addEventListener('abort', onClientAbort, { once: true });
  if (clientSignal.aborted) controller.abort();
  const toolChoice = 'prompt' in req ? 'auto' : req.toolChoice;
  const input = 'prompt' in req ? { prompt: req.prompt } : {
    ...chatInput(session, req.messages), tools: req.tools, toolChoice: req.toolChoice,
    ...(req.parallelToolCalls === false ? { parallelToolCalls: false } : {}),
  };
  try {
    const ids = Array.from({ length: req.n }, () => `call_${randomBytes(9).toString('base64url')}`);
    const settled = await Promise.allSettled(ids.map(async (callId, choice) => {
      const issued: IssuedToolCall[] = [];
      const sampling = { ...req.sampling };
      // Distinct choices of one seeded request: seed, seed+1, ... (reproducible, not identical).
      if (sampling.seed !== undefined && choice > 0) sampling.seed += choice;
      const result = await ctx.upstream.complete(
        { model: req.model, ...input, sampling, signal: controller.signal, maxPromptTokens },
        (e) => {
          if (e.type === 'tool_call') {
            if (toolChoice === 'none') return; // not sent: see notes in the record
            const call = { ...e.call, id: `${TOOL_ID_PREFIX[req.protocol]}${callId.slice(5)}_${e.index}` };
            issued.push(call);
            onEvent(choice, { type: 'tool_call', index: e.index, call });
          } else onEvent(choice, e);
        },
      );
      return { result, issued };
    }));
    // A request the upstream rejected as bad (4xx: e.g. a tool message answering no call) is the
    // agent's error, not a call: nothing is recorded.
    for (const s of settled)
      if (s.status === 'rejected' && s.reason instanceof GatewayError && s.reason.status < 500) throw s.reason;
    // Link every choice against the tree as it was before this request: siblings share a parent.
    const outcomes: ChoiceOutcome[] = [];
    const records: CallRecord[] = [];
    let failure: GatewayError | undefined;
    settled.forEach((s, choice) => {
      const callId = ids[choice];
      const base = { id: callId, sessionId: session.info.id, protocol: req.protocol, request: req.raw, choice };
      if (s.status === 'rejected') {
        const err = s.reason instanceof GatewayError ? s.reason
          : gatewayError(GatewayErrorCode.UPSTREAM_ERROR, `upstream: ${(s.reason as Error)?.message ?? String(s.reason)}`);
        failure ??= err;
        records.push({
          ...base, status: 'failed', error: `${err.code}: ${err.message}`, trainable: false, notTrainableReason: 'the call failed',
          toolCalls: [], parseErrors: [], link: tree.link(undefined),
          timings: { receivedAt, admittedAt: null, firstTokenAt: null, doneAt: Date.now() },
          usage: { promptTokens: 0, completionTokens: 0, cachedPromptTokens: 0 },
        });
        return;
      }
      const { result: r, issued } = s.value;
      const aborted = r.finishReason === 'abort';
      if (aborted && timedOut) failure ??= gatewayError(GatewayErrorCode.UPSTREAM_TIMEOUT, `the upstream did not finish within ${ctx.limits.callTimeoutMs} ms`);
      for (const c of issued) toolArguments.set(c.id, c.argumentsText);
      // What the agent got back, to render from the sampled ids when it is resent.
      if (!aborted && r.trainable && r.turnIds !== undefined) {
        const key = turnKey(r.reasoning, r.content, issued.map((c) => [c.id, c.name, c.argumentsText]));
        const same = key === undefined ? undefined : turns.get(key) ?? [];
        if (same !== undefined && !same.some((ids) => equalIds(ids, r.turnIds!))) turns.set(key!, [...same, r.turnIds]);
      }
      const finishReason = aborted ? 'abort' : issued.length > 0 && r.finishedTurn ? 'tool_calls' : r.finishReason;
      outcomes.push({ callId, result: r, toolCalls: issued, finishReason });
      const record: CallRecord = {
        ...base,
        status: aborted ? (timedOut ? 'failed' : 'aborted') : 'ok',
        promptIds: r.promptIds, completionIds: r.completionIds, logprobs: r.logprobs, versions: r.versions,
        trainable: r.trainable && !aborted,
        finishReason, content: r.content, toolCalls: r.toolCalls.map((c, k) => ({ ...c, id: issued[k]?.id ?? '' })),
        parseErrors: r.parseErrors,
        link: tree.link(r.trainable ? r.promptIds : undefined),
        timings: {
          receivedAt,
          admittedAt: receivedAt + r.timings.queueMs,
          firstTokenAt: r.timings.firstTokenMs === null ? null : receivedAt + r.timings.firstTokenMs,
          doneAt: receivedAt + r.timings.totalMs,
        },
        usage: { promptTokens: r.promptTokens, completionTokens: r.completionTokens, cachedPromptTokens: r.cachedPromptTokens },
      };
      if (aborted) record.error = timedOut ? 'timed out' : 'the client disconnected';
      if (!r.trainable) record.notTrainableReason = r.notTrainableReason ?? 'the upstream returned no token ids';
      else if (aborted) record.notTrainableReason = record.error;
      if (r.reasoning !== undefined) record.reasoning = r.reasoning;
      if (toolChoice === 'none' && r.toolCalls.length > 0)
        record.notes = [`${r.toolCalls.length} tool call(s) produced under tool_choice "none" were not sent to the agent`];
      records.push(record);
    });
    for (const rec of records)
      if (rec.trainable && rec.promptIds && rec.completionIds) tree.add(rec.id, rec.promptIds, rec.completionIds);
    session.calls += records.length;
    for (const rec of records) await ctx.recorder.callRecorded(rec);
    if (failure) throw failure;
    return outcomes;
  } finally {
    clearTimeout(timer);
    clientSignal.removeEventListener('abort', onClientAbort);
    session.inFlight--;
  }
}

/** The messages as the upstream gets them: tool-call arguments restored, returned turns verbatim. */
function chatInput(session: Session, messages: ChatMessage[]): { messages: ChatMessage[]; verbatimTurns?: Map<number, Int32Array> } {
  const restored = restoreToolArguments(session.toolArguments!, messages);
  const turns = session.turns!;
  if (turns.size === 0) return { messages: restored };
  // Returned turns with the same text but other ids (an empty answer ended by one special token or
  // another): the k-th such message of the history takes the k-th returned (the last past them).
  const seen = new Map<string, number>();
  const verbatimTurns = new Map<number, Int32Array>();
  restored.forEach((m, i) => {
    const key = m?.role === 'assistant' ? messageKey(m) : undefined;
    const same = key === undefined ? undefined : turns.get(key);
    if (same === undefined) return;
    const k = seen.get(key!) ?? 0;
    seen.set(key!, k + 1);
    verbatimTurns.set(i, same[Math.min(k, same.length - 1)]);
  });
  return verbatimTurns.size === 0 ? { messages: restored } : { messages: restored, verbatimTurns };
}

/** The prompt tokens a chat request would have (Anthropic count_tokens), rendered as runChat would. */
export function countChatTokens(ctx: GatewayContext, session: Session, req: ChatRequest): number {
  if (session.closed || session.toolArguments === null || session.turns === null)
    throw gatewayError(GatewayErrorCode.SESSION_CLOSED, `session ${session.info.id} is closed`);
  if (ctx.upstream.countTokens === undefined)
    throw gatewayError(GatewayErrorCode.ROUTE_NOT_FOUND,
      `token counting is not available: the upstream (${ctx.upstream.name}) renders prompts on its own server; the call's usage reports its prompt tokens`);
  return ctx.upstream.countTokens({ model: req.model, ...chatInput(session, req.messages), tools: req.tools, toolChoice: req.toolChoice });
}

/**
 * What identifies an assistant message the gateway returned, as the agent got it: reasoning, text
 * and tool calls (id, name, argument text), hashed. Absent and empty reasoning or text are alike (a
 * protocol leaves empty ones out), and the text may come back in parts (an Anthropic stream splits
 * it into blocks around reasoning and tool calls), so parts are joined as they were cut. Undefined
 * for a message of the wrong shape (the template refuses it with the field named).
 */
function turnKey(reasoning: unknown, content: unknown, calls: unknown[][]): string | undefined {
  if (reasoning !== undefined && reasoning !== null && typeof reasoning !== 'string') return undefined;
  let text: string;
  if (content === undefined || content === null) text = '';
  else if (typeof content === 'string') text = content;
  else if (Array.isArray(content) && content.every((p) => typeof p?.text === 'string' && p.type === 'text')) text = content.map((p) => p.text).join('');
  else return undefined;
  return createHash('sha256').update(JSON.stringify([reasoning ?? '', text, calls])).digest('base64url');
}

const equalIds = (a: Int32Array, b: Int32Array) => a.length === b.length && a.every((x, i) => x === b[i]);

function messageKey(m: ChatMessage & { role: 'assistant' }): string | undefined {
  const calls = m.tool_calls ?? [];
  if (!Array.isArray(calls)) return undefined;
  const fields: unknown[][] = [];
  for (const c of calls) {
    const args = c?.function?.arguments;
    if (typeof c?.function?.name !== 'string' || (typeof args !== 'string' && (typeof args !== 'object' || args === null))) return undefined;
    fields.push([c.id, c.function.name, typeof args === 'string' ? args : JSON.stringify(args)]);
  }
  return turnKey(m.reasoning_content ?? m.reasoning, m.content, fields);
}

/**
 * Tool-call arguments the agent sends back are swapped for the exact text the model wrote when they
 * are the same JSON (Anthropic clients send `input` objects; some OpenAI clients re-serialise), so
 * the history renders to the same ids and the call continues its branch instead of forking.
 */
function restoreToolArguments(toolArguments: ReadonlyMap<string, string>, messages: ChatMessage[]): ChatMessage[] {
  if (toolArguments.size === 0) return messages;
  return messages.map((m) => {
    if (m.role !== 'assistant' || !m.tool_calls) return m;
    return {
      ...m,
      tool_calls: m.tool_calls.map((c) => {
        const original = c.id === undefined ? undefined : toolArguments.get(c.id);
        if (original === undefined || c.function.arguments === original) return c;
        const sent = typeof c.function.arguments === 'string' ? safeParse(c.function.arguments) : c.function.arguments;
        return sameJson(sent, safeParse(original)) ? { ...c, function: { ...c.function, arguments: original } } : c;
      }),
    };
  });
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return Symbol('unparseable');
  }
}

function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}
