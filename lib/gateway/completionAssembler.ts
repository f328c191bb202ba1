// Builds an UpstreamResult from the pieces an OpenAI-compatible server sends (streamed chunks, or one
// whole response): prompt ids, per-chunk completion ids with their logprob entries, text, reasoning
// and tool-call deltas, the finish reason and usage. Forwards deltas as UpstreamEvents as they come,
// and at the end checks that the ids and logprobs are complete. Anything missing makes the call not
// trainable with a reason that says exactly what is missing; nothing is ever re-tokenized.
import type { ParseError, ParsedToolCall, ToolDefinition } from '../model/chatTemplate.js';
import { normalizeTools } from '../model/chatTemplate.js';
import { GatewayErrorCode, gatewayError } from './errors.js';
import type { UpstreamEvent, UpstreamFinishReason, UpstreamResult } from './upstream.js';

/** One logprob entry as the server sent it; `id` when the server wrote its token as "token_id:<id>". */
export interface LogprobEntry {
  logprob: unknown;
  id?: number;
}

/** A streamed (or whole) tool call piece, OpenAI's `tool_calls[k]` delta shape. */
export interface ToolCallDelta {
  index?: number;
  id?: string;
  function?: { name?: string | null; arguments?: string | Record<string, unknown> | null } | null;
}

interface Token {
  id: number;
  logprob: number | null;
  version: number;
}

const TOKEN_ID = /^token_id:(\d+)$/;

/** The id in a "token_id:<id>" token string (vLLM's return_tokens_as_token_ids), else undefined. */
export function tokenIdOf(token: unknown): number | undefined {
  const m = typeof token === 'string' ? TOKEN_ID.exec(token) : null;
  return m ? Number(m[1]) : undefined;
}

function idArray(value: unknown): number[] | undefined {
  if (!Array.isArray(value) || !value.every((t) => Number.isInteger(t) && t >= 0 && t <= 0x7fffffff)) return undefined;
  return value as number[];
}

/** A log-softmax value: finite and <= 0. */
function validLogprob(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v) && v <= 0;
}

export class CompletionAssembler {
  private promptIds: Int32Array | undefined;
  private readonly tokens: Token[] = [];
  private idsSeen = false;
  /** Logprob entries of chunks that carried no token ids (counted only: they cannot be placed). */
  private orphanLogprobs = 0;
  private unaligned = 0;
  private mismatch: string | undefined;
  private mismatches = 0;
  private content = '';
  private reasoning: string | undefined;
  private readonly calls = new Map<number, { name: string; args: string }>();
  private readonly toolCalls: ParsedToolCall[] = [];
  private readonly parseErrors: ParseError[] = [];
  private readonly toolNames: Set<string> | undefined;
  private finish: { reason: UpstreamFinishReason; turn: boolean; stop?: string } | undefined;
  private usage: { prompt?: number; completion?: number; cached?: number } = {};
  private firstTokenMs: number | null = null;

  constructor(
    private readonly version: () => number,
    private readonly onEvent: (e: UpstreamEvent) => void,
    private readonly start: number,
    tools?: readonly ToolDefinition[],
  ) {
    this.toolNames = tools && tools.length > 0 ? new Set(normalizeTools(tools).map((t) => t.name)) : undefined;
  }

  get finished(): boolean {
    return this.finish !== undefined;
  }

  get tokenCount(): number {
    return this.tokens.length;
  }

  /** The prompt ids (once; later copies are ignored). Returns their number, or undefined if malformed. */
  setPromptIds(value: unknown): number | undefined {
    const ids = idArray(value);
    if (ids === undefined) return undefined;
    this.promptIds ??= Int32Array.from(ids);
    return this.promptIds.length;
  }

  /** One chunk's completion tokens and their logprob entries (either may be missing). */
  addTokens(idsValue: unknown, entries: LogprobEntry[] | undefined): void {
    const ids = idArray(idsValue);
    if (ids === undefined) {
      this.orphanLogprobs += entries?.length ?? 0;
      if (entries?.length) this.markFirstToken();
      return;
    }
    this.idsSeen = true;
    if (ids.length === 0) return;
    this.markFirstToken();
    const version = this.version();
    const lps = this.align(ids, entries ?? []);
    ids.forEach((id, j) => {
      const lp = lps[j];
      const logprob = validLogprob(lp) ? lp : null;
      this.tokens.push({ id, logprob, version });
      if (logprob !== null) this.onEvent({ type: 'token', token: id, logprob, version });
    });
  }

  /** Logprob values for `ids`, by position when the counts agree, else by the entries' own ids. */
  private align(ids: number[], entries: LogprobEntry[]): unknown[] {
    if (entries.length === ids.length) {
      entries.forEach((e, j) => {
        if (e.id === undefined || e.id === ids[j]) return;
        this.mismatches++;
        this.mismatch ??= `logprob ${this.tokens.length + j} is for token ${e.id} but completion token ${this.tokens.length + j} is ${ids[j]}`;
      });
      return entries.map((e) => e.logprob);
    }
    if (entries.length > 0 && entries.every((e) => e.id !== undefined)) {
      let k = 0;
      return ids.map((id) => (k < entries.length && entries[k].id === id ? entries[k++].logprob : null));
    }
    if (entries.length > 0) this.unaligned += ids.length;
    return ids.map(() => null);
  }

  addContent(text: unknown): void {
    if (typeof text !== 'string' || text === '') return;
    this.markFirstToken();
    this.content += text;
    this.onEvent({ type: 'content', text });
  }

  addReasoning(text: unknown): void {
    if (typeof text !== 'string' || text === '') return;
    this.markFirstToken();
    this.reasoning = (this.reasoning ?? '') + text;
    this.onEvent({ type: 'reasoning', text });
  }

  /** A tool-call delta; a call is complete once a later index starts or the completion finishes. */
  addToolCall(delta: ToolCallDelta, fallbackIndex: number): void {
    const index = Number.isInteger(delta.index) ? (delta.index as number) : fallbackIndex;
    for (const k of [...this.calls.keys()]) if (k < index) this.closeCall(k);
    const call = this.calls.get(index) ?? { name: '', args: '' };
    this.calls.set(index, call);
    const fn = delta.function ?? {};
    if (typeof fn.name === 'string') call.name += fn.name;
    if (typeof fn.arguments === 'string') call.args += fn.arguments;
    else if (fn.arguments && typeof fn.arguments === 'object') call.args += JSON.stringify(fn.arguments);
  }

  private closeCall(index: number): void {
    const { name, args } = this.calls.get(index)!;
    this.calls.delete(index);
    const at = this.tokens.length;
    const fail = (kind: ParseError['kind'], message: string) => {
      const error: ParseError = { kind, message, at, toolCall: index, name, argumentsText: args };
      this.parseErrors.push(error);
      this.onEvent({ type: 'tool_call_error', error });
    };
    if (name === '') return fail('missing_name', `tool call ${index}: the upstream sent no function name`);
    if (this.toolNames && !this.toolNames.has(name)) return fail('unknown_tool', `tool call ${index}: no tool named ${JSON.stringify(name)} was offered`);
    let parsed: unknown;
    try {
      parsed = JSON.parse(args === '' ? '{}' : args);
    } catch (e) {
      return fail('bad_json', `tool call ${index} (${name}): arguments are not JSON: ${(e as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      return fail('arguments_not_object', `tool call ${index} (${name}): arguments are not a JSON object`);
    const call: ParsedToolCall = { name, arguments: parsed as Record<string, unknown>, argumentsText: args };
    this.onEvent({ type: 'tool_call', index: this.toolCalls.length, call });
    this.toolCalls.push(call);
  }

  /** The server's finish reason; `stopReason` is the stop string (or token id) that ended it. */
  setFinish(reason: unknown, stopReason: unknown): void {
    if (reason === 'abort') throw gatewayError(GatewayErrorCode.UPSTREAM_ERROR, 'the upstream aborted the request');
    for (const k of [...this.calls.keys()].sort((a, b) => a - b)) this.closeCall(k);
    const stop = typeof stopReason === 'string' ? stopReason : undefined;
    this.finish = {
      reason: reason === 'length' ? 'length' : 'stop',
      // A stop string ends the completion but not the model's turn; an end token or tool calls do.
      turn: reason === 'tool_calls' || (reason !== 'length' && stop === undefined),
      ...(stop !== undefined ? { stop } : {}),
    };
  }

  setUsage(usage: unknown): void {
    if (typeof usage !== 'object' || usage === null) return;
    const u = usage as { prompt_tokens?: unknown; completion_tokens?: unknown; prompt_tokens_details?: { cached_tokens?: unknown } | null };
    const int = (v: unknown) => (Number.isInteger(v) && (v as number) >= 0 ? (v as number) : undefined);
    this.usage = { prompt: int(u.prompt_tokens), completion: int(u.completion_tokens), cached: int(u.prompt_tokens_details?.cached_tokens) };
  }

  private markFirstToken(): void {
    this.firstTokenMs ??= performance.now() - this.start;
  }

  /** Why the ids and logprobs cannot be trained on, or undefined when they are complete. */
  private incompleteness(n: number): string | undefined {
    const reasons: string[] = [];
    if (this.promptIds === undefined) reasons.push('upstream returned no prompt token ids');
    if (!this.idsSeen) reasons.push('upstream returned no completion token ids');
    else {
      if (this.tokens.length !== n) reasons.push(`upstream returned ${this.tokens.length} completion token ids for ${n} tokens`);
      const missing = this.tokens.filter((t) => t.logprob === null).length;
      if (missing > 0) reasons.push(`${missing} of ${n} completion tokens have no logprob`);
      if (this.unaligned > 0) reasons.push(`logprobs of ${this.unaligned} tokens could not be matched to their ids`);
      if (this.mismatches > 0) reasons.push(`${this.mismatches} logprob entries name another token than the ids (first: ${this.mismatch})`);
    }
    return reasons.length > 0 ? reasons.join('; ') : undefined;
  }

  /** The result; `aborted` when the call was cancelled before the server finished. */
  result(aborted: boolean, queueMs: number): UpstreamResult {
    if (aborted) for (const k of [...this.calls.keys()]) this.calls.delete(k); // cut-off calls are not calls
    const n = this.usage.completion ?? (this.idsSeen ? this.tokens.length : this.orphanLogprobs);
    const reason = this.incompleteness(n);
    const complete = this.idsSeen && this.tokens.every((t) => t.logprob !== null);
    const result: UpstreamResult = {
      trainable: reason === undefined,
      finishReason: aborted ? 'abort' : this.finish?.reason ?? 'stop',
      content: this.content,
      toolCalls: this.toolCalls,
      parseErrors: this.parseErrors,
      finishedTurn: !aborted && (this.finish?.turn ?? false),
      promptTokens: this.usage.prompt ?? this.promptIds?.length ?? 0,
      completionTokens: n,
      cachedPromptTokens: this.usage.cached ?? 0,
      timings: { queueMs, firstTokenMs: this.firstTokenMs, totalMs: performance.now() - this.start },
    };
    if (this.promptIds) result.promptIds = this.promptIds;
    if (this.idsSeen) {
      result.completionIds = Int32Array.from(this.tokens, (t) => t.id);
      result.versions = Int32Array.from(this.tokens, (t) => t.version);
      // Logprobs only whole: a partial array would pass for a complete one downstream.
      if (complete) result.logprobs = Float64Array.from(this.tokens, (t) => t.logprob!);
    }
    if (reason !== undefined) result.notTrainableReason = reason;
    if (!aborted && this.finish?.stop !== undefined) result.stopSequence = this.finish.stop;
    if (this.reasoning !== undefined) result.reasoning = this.reasoning;
    return result;
  }
}
