// The upstream interface: what the gateway needs from whatever produces completions (the embedded
// engine, an OpenAI-compatible server such as vLLM or SGLang). Imports no implementation.
//
// An upstream takes the conversation (not token ids): a server like vLLM renders its own chat
// template. Legacy Completions send a raw prompt instead (text, or token ids the agent rendered
// itself), completed without any chat template. The upstream must give back the prompt and
// completion token ids, per-token logprobs and policy versions; one that cannot returns
// `trainable: false` with the reason, and the gateway records the call as not trainable. It never
// re-tokenizes text to make up ids.
import type { ChatMessage, ParseError, ParsedToolCall, ToolDefinition } from '../model/chatTemplate.js';

export interface SamplingParams {
  temperature?: number;
  topP?: number;
  /** Completion tokens at most. */
  maxTokens?: number;
  /** Stop strings; the completion ends with one, and it is trimmed from the text returned. */
  stop?: readonly string[];
  seed?: number;
  /**
   * Alternatives wanted with each token (0 or absent: none), at most 20. Reported on the 'token'
   * events by an upstream that can compute them; one that cannot sends the events without `top`.
   */
  topLogprobs?: number;
}

/**
 * Which tool calls the model may or must make: 'auto' (may), 'none' (calls it makes anyway are
 * withheld from the agent and noted in the record), 'required' (at least one call, any offered
 * tool), { name } (a call to that offered tool).
 */
export type ToolChoice = 'auto' | 'none' | 'required' | { name: string };

/** One alternative token and its log-probability (the distribution the token's own logprob is from). */
export interface TopLogprob {
  token: number;
  logprob: number;
}

interface UpstreamRequestBase {
  /** The model name the agent asked for. */
  model: string;
  sampling: SamplingParams;
  /** Aborted when the agent disconnects or the gateway times the call out. */
  signal: AbortSignal;
  /**
   * Prompt tokens at most (the gateway's limits.maxPromptTokens): a longer prompt is refused with
   * CONTEXT_LENGTH_EXCEEDED (400) as soon as its length is known, before or instead of generating.
   */
  maxPromptTokens?: number;
}

/** A chat request: the upstream renders `messages` (and `tools`) with its chat template. */
export interface ChatUpstreamRequest extends UpstreamRequestBase {
  messages: readonly ChatMessage[];
  tools?: readonly ToolDefinition[];
  /** Default 'auto'. 'required' and { name } come only with tools, the name among them. */
  toolChoice?: ToolChoice;
  /** false: at most one tool call per completion. Default true. */
  parallelToolCalls?: boolean;
  /**
   * Assistant messages (by index in `messages`) that are completions this upstream returned in the
   * session, resent by the agent: render them from these ids (UpstreamResult.turnIds) instead of
   * re-encoding their text. An upstream that has a server render the template ignores it.
   */
  verbatimTurns?: ReadonlyMap<number, Int32Array>;
  prompt?: undefined;
}

/**
 * A raw-prompt request (legacy Completions): text, or token ids, completed as they are — no chat
 * template, no tool-call parsing; the completion is plain text.
 */
export interface PromptUpstreamRequest extends UpstreamRequestBase {
  prompt: string | Int32Array;
  messages?: undefined;
  tools?: undefined;
  toolChoice?: undefined;
  parallelToolCalls?: undefined;
  verbatimTurns?: undefined;
}

export type UpstreamRequest = ChatUpstreamRequest | PromptUpstreamRequest;

/** Deltas of a completion as it is produced, in order (the same as the final result's fields). */
export type UpstreamEvent =
  /** `top`: the most likely tokens at this step, most likely first, when sampling.topLogprobs > 0. */
  | { type: 'token'; token: number; logprob: number; version: number; top?: TopLogprob[] }
  | { type: 'content'; text: string }
  | { type: 'reasoning'; text: string }
  /** A well-formed tool call, complete (streamed whole so a malformed one is never half-sent). */
  | { type: 'tool_call'; index: number; call: ParsedToolCall }
  | { type: 'tool_call_error'; error: ParseError };

export type UpstreamFinishReason = 'stop' | 'length' | 'abort';

export interface UpstreamResult {
  /**
   * Token ids of the rendered prompt; absent when the upstream cannot return them. Tokens the
   * upstream forced (a tool call's opening under tool_choice 'required' or { name }) are part of it.
   */
  promptIds?: Int32Array;
  completionIds?: Int32Array;
  /**
   * This completion as an assistant turn of a later prompt, in the upstream's own template: the ids
   * after the role token (a forced tool-call opening, the completion, the end token when the turn
   * did not reach one). Only an upstream that renders the prompt itself gives it (the gateway then
   * hands it back as verbatimTurns when the agent resends the message).
   */
  turnIds?: Int32Array;
  /** [completion length] per-token logprobs of the sampled tokens. */
  logprobs?: Float64Array;
  /** [completion length] policy version of each token. */
  versions?: Int32Array;
  /** False when any of the four arrays above is missing or incomplete; `notTrainableReason` says why. */
  trainable: boolean;
  notTrainableReason?: string;
  finishReason: UpstreamFinishReason;
  /** The stop string that ended the completion (trimmed from `content`). */
  stopSequence?: string;
  /** Text outside reasoning and tool calls, stop string trimmed. */
  content: string;
  reasoning?: string;
  toolCalls: ParsedToolCall[];
  /** Malformed tool calls and other format errors (a process-reward signal). */
  parseErrors: ParseError[];
  /** The completion ended its turn (an end token), rather than by length, stop string or abort. */
  finishedTurn: boolean;
  promptTokens: number;
  completionTokens: number;
  cachedPromptTokens: number;
  /** Milliseconds from the call's start: admitted (left the upstream's queue), first token, done. */
  timings: { queueMs: number; firstTokenMs: number | null; totalMs: number };
}

export interface ModelInfo {
  id: string;
  ownedBy: string;
  /** Policy version of the weights now served. */
  version?: number;
  /** Longest sequence (prompt + completion) the model takes, when the upstream knows it. */
  contextLength?: number;
}

/** What a token count needs: a chat request without sampling (Anthropic's count_tokens body). */
export type TokenCountRequest = Pick<ChatUpstreamRequest, 'model' | 'messages' | 'tools' | 'toolChoice' | 'verbatimTurns'>;

export interface Upstream {
  readonly name: string;
  models(): ModelInfo[];
  /**
   * The prompt tokens `complete` would send for this request (the same rendering, a forced tool-call
   * opening included), without generating. Only an upstream that renders the prompt itself has it.
   * Throws a GatewayError (400) for a request `complete` would reject.
   */
  countTokens?(request: TokenCountRequest): number;
  /**
   * Runs one completion; `onEvent` sees its deltas as they come. Rejects with a GatewayError for a
   * bad request (400) or an upstream failure; an abort resolves with finishReason 'abort'.
   */
  complete(request: UpstreamRequest, onEvent: (event: UpstreamEvent) => void): Promise<UpstreamResult>;
  /**
   * The text of one token id, for logprob entries; only an upstream that knows its vocabulary has
   * it. Without it a protocol writes tokens as "token_id:<id>" (vLLM's convention).
   */
  tokenText?(id: number): string;
  close?(): Promise<void> | void;
}
