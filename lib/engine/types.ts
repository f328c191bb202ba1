// The engine's public shapes: what generate() takes and yields, its result, and engine statistics.
import type { PrefixCacheStats } from './prefixCache.js';

export interface GenerateOptions {
  /** 0 = greedy. Default 1. */
  temperature?: number;
  /** Nucleus sampling mass in (0, 1]. Default 1. */
  topP?: number;
  /** Completion tokens at most, >= 1. Default 256, or cacheTokens - prompt length if smaller. */
  maxTokens?: number;
  /**
   * Stop conditions: token ids (the sampled id ends the completion) and/or strings (the completion
   * ends once its tokens end with the string's token ids). The stopping tokens are part of
   * completionIds (they were sampled and carry logprobs); a gateway trims them from the text.
   */
  stop?: readonly (number | string)[];
  /** RNG seed, an integer in [0, 2^53]. Default: a fresh random seed (reported in the result). */
  seed?: number;
  /** Aborting ends the request at the next step with finishReason 'abort' (the tokens so far are kept). */
  signal?: AbortSignal;
  /**
   * Alternatives to report with each sampled token: the k most likely tokens, an integer in
   * [0, 20] (at most the vocabulary). Default 0: none, and nothing extra is computed.
   */
  topLogprobs?: number;
}

/**
 * One of the most likely tokens at a step, with its log-probability under the same distribution as
 * TokenEvent.logprob: log_softmax of the raw float32 logits (temperature 1, no top-p), in float64.
 */
export interface TopLogprob {
  token: number;
  logprob: number;
}

/** One sampled token, as it is produced. */
export interface TokenEvent {
  token: number;
  /** log_softmax of the float32 logits at `token`, in float64 (what the CISPO kernel computes). */
  logprob: number;
  /** Policy version of the weights that produced the logits this token was sampled from. */
  version: number;
  /**
   * With GenerateOptions.topLogprobs = k > 0: the k most likely tokens at this step, most likely
   * first (ties: lower id first). The sampled token's entry, when it is among them, equals `logprob`.
   */
  top?: TopLogprob[];
}

export type FinishReason = 'stop' | 'length' | 'abort';

export interface GenerateTimings {
  /** Waiting for admission (KV cache room). */
  queueMs: number;
  /** Admission to the first sampled token (prefill). */
  prefillMs: number;
  /** First token to the end. */
  decodeMs: number;
  totalMs: number;
}

export interface GenerateResult {
  completionIds: Int32Array;
  /** [completion length] per-token logprobs (see TokenEvent.logprob). */
  logprobs: Float64Array;
  /** [completion length] per-token policy versions. */
  versions: Int32Array;
  /** [completion length] TokenEvent.top of each token; only with GenerateOptions.topLogprobs > 0. */
  topLogprobs?: TopLogprob[][];
  finishReason: FinishReason;
  /** The stop token id or stop string that ended the completion (finishReason 'stop'). */
  stoppedBy?: number | string;
  promptTokens: number;
  /** Prompt tokens whose K/V came from the prefix cache (not computed for this request). */
  cachedPromptTokens: number;
  seed: number;
  timings: GenerateTimings;
}

/** A running request: iterate it for its tokens as they come; `result` settles when it ends. */
export interface Generation extends AsyncIterable<TokenEvent> {
  readonly result: Promise<GenerateResult>;
}

export interface EngineStats {
  version: number;
  /** Requests waiting for room / running now. */
  queued: number;
  running: number;
  steps: number;
  /** Tokens run through the model (prefill + decode), over all steps. */
  computedTokens: number;
  generatedTokens: number;
  promptTokens: number;
  cachedPromptTokens: number;
  /** cachedPromptTokens / promptTokens. */
  cacheHitRate: number;
  /** Wall time inside model steps. */
  busyMs: number;
  /** computedTokens / busy seconds. */
  tokensPerSecond: number;
  /** generatedTokens / busy seconds. */
  generatedPerSecond: number;
  meanBatchTokens: number;
  maxBatchTokens: number;
  meanBatchSequences: number;
  cache: PrefixCacheStats;
}
