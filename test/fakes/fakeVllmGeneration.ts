// FAKE generation for the fake vLLM server (fakeVllmServer.ts): no model runs. A scripted completion
// (an assistant message rendered with the nano chat template, or raw ids) is cut by max_tokens, the
// template's end tokens and stop strings as vLLM would, given made-up logprobs from a seeded stream,
// and split into per-token deltas the way vLLM's streaming parsers report them (text, reasoning,
// tool-call name then argument pieces). Stop strings are trimmed from the text, never from the ids.
import { assistantIds, createParser, stopTokens, type AssistantMessage, type ToolDefinition } from '../../lib/model/chatTemplate.js';
import { encode, StreamDecoder } from '../../lib/model/tokenizer.js';
import type { Rng } from '../helpers/random.js';

export type FakeScript = (promptIds: Int32Array, call: number) => AssistantMessage | Int32Array;

export interface ChatDelta {
  content?: string;
  reasoning?: string;
  tool_calls?: { index: number; id?: string; type?: 'function'; function: { name?: string; arguments: string } }[];
}

export interface Generated {
  ids: Int32Array;
  logprobs: Float64Array;
  finishReason: 'stop' | 'length' | 'tool_calls';
  /** The stop string that ended the completion; null for an end token or the length limit. */
  stopReason: string | null;
  /** One delta per token (chat), or the text each token completes (completions). */
  chatDeltas: ChatDelta[];
  textDeltas: string[];
  /** The whole answer, for non-streamed responses. */
  content: string;
  reasoning?: string;
  toolCalls: { id: string; type: 'function'; function: { name: string; arguments: string } }[];
}

const STOP_IDS = new Set(stopTokens);

/** The scripted ids cut as vLLM would cut them: by an end token, a stop string, or max_tokens. */
function cut(scripted: Int32Array, maxTokens: number, stops: readonly string[]): Pick<Generated, 'ids' | 'finishReason' | 'stopReason'> {
  const stopIds = stops.map((s) => [s, encode(s)] as const);
  const out: number[] = [];
  for (const id of scripted) {
    out.push(id);
    if (STOP_IDS.has(id)) return { ids: Int32Array.from(out), finishReason: 'stop', stopReason: null };
    const hit = stopIds.find(([, s]) => s.length <= out.length && s.every((v, k) => out[out.length - s.length + k] === v));
    if (hit) return { ids: Int32Array.from(out), finishReason: 'stop', stopReason: hit[0] };
    if (out.length === maxTokens) return { ids: Int32Array.from(out), finishReason: 'length', stopReason: null };
  }
  return { ids: Int32Array.from(out), finishReason: 'stop', stopReason: null };
}

/** Caps a stream of text pieces at `limit` characters in all (the stop string is never sent). */
function capper(limit: number) {
  let sent = 0;
  return (text: string) => {
    const piece = text.slice(0, Math.max(0, limit - sent));
    sent += piece.length;
    return piece;
  };
}

export function generate(options: {
  kind: 'chat' | 'completions';
  promptIds: Int32Array;
  scripted: AssistantMessage | Int32Array;
  maxTokens: number;
  stops: readonly string[];
  tools?: readonly ToolDefinition[];
  rng: Rng;
}): Generated {
  const scriptedIds = options.scripted instanceof Int32Array ? options.scripted : assistantIds(options.scripted);
  const { ids, finishReason, stopReason } = cut(scriptedIds, options.maxTokens, options.stops);
  const logprobs = Float64Array.from(ids, () => -(0.001 + 4 * options.rng()));
  const trim = (text: string) => (stopReason !== null && text.endsWith(stopReason) ? text.slice(0, text.length - stopReason.length) : text);
  const base = { ids, logprobs, stopReason, chatDeltas: [] as ChatDelta[], textDeltas: [] as string[], toolCalls: [] as Generated['toolCalls'] };

  if (options.kind === 'completions') {
    const decoder = new StreamDecoder();
    const pieces = Array.from(ids, (id) => (STOP_IDS.has(id) ? decoder.end() : decoder.push(id)));
    if (pieces.length > 0) pieces[pieces.length - 1] += decoder.end();
    const content = trim(pieces.join(''));
    const cap = capper(content.length);
    return { ...base, finishReason, content, textDeltas: pieces.map(cap) };
  }

  const parser = createParser({ tools: options.tools });
  const perToken = Array.from(ids, (id) => parser.push(id));
  if (perToken.length > 0) perToken[perToken.length - 1].push(...parser.close());
  const parsed = parser.finish();
  const content = trim(parsed.content);
  const cap = capper(content.length);
  const callId = (k: number) => `chatcmpl-tool-${k}${Math.floor(options.rng() * 1e9).toString(36)}`;
  const callIds: string[] = [];
  const chatDeltas = perToken.map((events) => {
    const d: ChatDelta = {};
    for (const e of events) {
      if (e.type === 'content') d.content = (d.content ?? '') + cap(e.text);
      else if (e.type === 'reasoning') d.reasoning = (d.reasoning ?? '') + e.text;
      else if (e.type === 'tool_call_begin') {
        callIds[e.index] = callId(e.index);
        (d.tool_calls ??= []).push({ index: e.index, id: callIds[e.index], type: 'function', function: { name: e.name, arguments: '' } });
      } else if (e.type === 'tool_call_arguments') (d.tool_calls ??= []).push({ index: e.index, function: { arguments: e.text } });
    }
    return d;
  });
  const toolCalls = parsed.toolCalls.map((c, k) => ({ id: callIds[k] ?? callId(k), type: 'function' as const, function: { name: c.name, arguments: c.argumentsText } }));
  const result: Generated = {
    ...base,
    // vLLM reports tool_calls when its parser found calls in a completion that ended its turn.
    finishReason: finishReason === 'stop' && stopReason === null && toolCalls.length > 0 ? 'tool_calls' : finishReason,
    chatDeltas,
    content,
    toolCalls,
  };
  if (parsed.reasoning !== undefined) result.reasoning = parsed.reasoning;
  return result;
}
