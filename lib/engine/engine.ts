// NanoEngine: the embedded inference engine of the nano policy. Continuous batching over a paged KV
// pool with a radix prefix cache:
//   - one loop; each step gathers every running request into ONE forge_model_extend call: one decode
//     token per request that has sampled, prefill chunks of newer requests under maxBatchTokens;
//   - a request that resends a history the cache holds computes only its new tokens;
//   - setWeights() swaps the parameters between steps: tokens sampled after the swap carry the new
//     version (recorded per token); requests in flight go on with their cached K/V on the new weights,
//     and the cache is detached so no new request reuses K/V of the old weights.
// The model step runs on a libuv worker: the event loop stays free while it computes.
import { KernelErrorCode, rangeError, typeError } from '../errors.js';
import { encode } from '../model/tokenizer.js';
import type { NanoPolicyConfig } from '../model/policy.js';
import { expectArray, expectInt, firstNonFinite } from '../validate.js';
import { KvPool, ModelRunner } from './kernels.js';
import { PrefixCache } from './prefixCache.js';
import { MAX_TOP_LOGPROBS, samplingOptions, seededRandom } from './sampler.js';
import { Sequence, type SequenceSpec } from './sequence.js';
import { StepBatch } from './stepBatch.js';
import type { EngineStats, FinishReason, GenerateOptions, GenerateResult, Generation } from './types.js';

export interface NanoEngineOptions {
  /** The model (fields override defaultConfig()). */
  config?: Partial<NanoPolicyConfig>;
  /** Flat parameter buffer (copied: later changes by the caller do not leak into running requests). */
  params: Float32Array;
  /** Policy version of `params`. Default 0. */
  version?: number;
  /** KV pool size in tokens: cached prefixes plus running requests. Default 32768. */
  cacheTokens?: number;
  /** Tokens per model step (decode tokens + prefill chunks), >= 1. Default 512. */
  maxBatchTokens?: number;
  /**
   * false: every request computes its whole prompt and caches nothing (the baseline the prefix cache
   * is measured against). Default true.
   */
  prefixCaching?: boolean;
  /** Turns a stop string into token ids. Default: the nano tokenizer's encode. */
  encodeStop?: (text: string) => Int32Array;
}

const DEFAULT_MAX_TOKENS = 256;

export class NanoEngine {
  readonly config: Readonly<NanoPolicyConfig>;
  readonly cacheTokens: number;
  readonly maxBatchTokens: number;
  readonly prefixCaching: boolean;
  private readonly runner: ModelRunner;
  private readonly pool: KvPool;
  private readonly cache: PrefixCache;
  private readonly encodeStop: (text: string) => Int32Array;
  private params: Float32Array;
  private currentVersion: number;
  private pendingWeights: { params: Float32Array; version: number } | undefined;
  private readonly queue: Sequence[] = [];
  private running: Sequence[] = [];
  private nextId = 0;
  private looping = false;
  private closed = false;
  private readonly batch = new StepBatch();
  private readonly counters = {
    steps: 0, computedTokens: 0, generatedTokens: 0, promptTokens: 0, cachedPromptTokens: 0, busyMs: 0,
    batchSequences: 0, maxBatchTokens: 0,
  };

  constructor(options: NanoEngineOptions) {
    if (typeof options !== 'object' || options === null) throw typeError('options: expected an object { params, ... }');
    this.runner = new ModelRunner(options.config);
    this.config = this.runner.config;
    this.params = this.checkParams('options.params', options.params);
    this.currentVersion = options.version === undefined ? 0 : expectInt('options.version', options.version, 0);
    this.cacheTokens = options.cacheTokens === undefined ? 32768 : expectInt('options.cacheTokens', options.cacheTokens, 2, 2 ** 31 - 1);
    this.maxBatchTokens = options.maxBatchTokens === undefined ? 512 : expectInt('options.maxBatchTokens', options.maxBatchTokens, 1, 2 ** 24);
    if (options.encodeStop !== undefined && typeof options.encodeStop !== 'function')
      throw typeError('options.encodeStop: expected a function');
    this.encodeStop = options.encodeStop ?? encode;
    if (options.prefixCaching !== undefined && typeof options.prefixCaching !== 'boolean')
      throw typeError('options.prefixCaching: expected a boolean');
    this.prefixCaching = options.prefixCaching ?? true;
    this.pool = new KvPool(this.config, this.cacheTokens);
    this.cache = new PrefixCache(this.cacheTokens);
  }

  /** Policy version of the weights the next step uses (a pending setWeights not yet applied excluded). */
  get version(): number {
    return this.currentVersion;
  }

  /**
   * Starts a completion of `promptIds`. The returned object is an async iterable of the tokens as they
   * are sampled, and `result` resolves with the whole completion when it ends (stop, length or abort).
   */
  generate(promptIds: Int32Array, options: GenerateOptions = {}): Generation {
    if (this.closed) throw new Error('NanoEngine: closed');
    const spec = this.spec(promptIds, options);
    const seq = new Sequence(this.nextId++, spec);
    let resolve!: (r: GenerateResult) => void, reject!: (e: unknown) => void;
    const result = new Promise<GenerateResult>((res, rej) => ((resolve = res), (reject = rej)));
    result.catch(() => {}); // a caller that only iterates still sees the error there
    this.settlers.set(seq, { resolve, reject });
    if (spec.signal) {
      if (spec.signal.aborted) {
        this.finish(seq, 'abort');
        return this.generation(seq, result);
      }
      // A queued request leaves at once; a running one at the next step boundary.
      spec.signal.addEventListener('abort', () => {
        const i = this.queue.indexOf(seq);
        if (i >= 0) {
          this.queue.splice(i, 1);
          this.finish(seq, 'abort');
        }
      }, { once: true });
    }
    this.queue.push(seq);
    this.kick();
    return this.generation(seq, result);
  }

  /**
   * Swaps in new weights (copied) between two steps; tokens sampled from then on carry `version`. The
   * prefix cache is detached at the swap. Resolves once the swap is applied.
   */
  setWeights(params: Float32Array, version: number): Promise<void> {
    const p = this.checkParams('params', params);
    const v = expectInt('version', version, 0);
    this.pendingWeights = { params: p, version: v };
    if (!this.looping) this.applyWeights();
    return new Promise((resolve) => {
      if (!this.pendingWeights) resolve();
      else this.weightWaiters.push(resolve);
    });
  }

  stats(): EngineStats {
    const c = this.counters, secs = c.busyMs / 1000;
    return {
      version: this.currentVersion,
      queued: this.queue.length,
      running: this.running.length,
      steps: c.steps,
      computedTokens: c.computedTokens,
      generatedTokens: c.generatedTokens,
      promptTokens: c.promptTokens,
      cachedPromptTokens: c.cachedPromptTokens,
      cacheHitRate: c.promptTokens > 0 ? c.cachedPromptTokens / c.promptTokens : 0,
      busyMs: c.busyMs,
      tokensPerSecond: secs > 0 ? c.computedTokens / secs : 0,
      generatedPerSecond: secs > 0 ? c.generatedTokens / secs : 0,
      meanBatchTokens: c.steps > 0 ? c.computedTokens / c.steps : 0,
      maxBatchTokens: c.maxBatchTokens,
      meanBatchSequences: c.steps > 0 ? c.batchSequences / c.steps : 0,
      cache: this.cache.stats(),
    };
  }

  /** Ends every request ('abort') and frees the KV pool (after the step in flight, if any). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const seq of [...this.queue, ...this.running]) this.finish(seq, 'abort');
    this.queue.length = 0;
    this.pool.free();
  }

  private readonly settlers = new Map<Sequence, { resolve: (r: GenerateResult) => void; reject: (e: unknown) => void }>();
  private weightWaiters: (() => void)[] = [];

  private generation(seq: Sequence, result: Promise<GenerateResult>): Generation {
    return { result, [Symbol.asyncIterator]: () => seq.channel[Symbol.asyncIterator]() };
  }

  private checkParams(name: string, params: unknown): Float32Array {
    const p = expectArray(name, params, Float32Array, this.runner.policy.numParams);
    const bad = firstNonFinite(p);
    if (bad >= 0) throw rangeError(`${name}[${bad}]: expected a finite number, got ${p[bad]}`, KernelErrorCode.NON_FINITE);
    return p.slice();
  }

  private spec(promptIds: unknown, o: GenerateOptions): SequenceSpec {
    const prompt = expectArray('promptIds', promptIds, Int32Array);
    if (prompt.length < 1) throw rangeError('promptIds: expected at least 1 token, got 0');
    const V = this.config.vocabSize;
    for (let i = 0; i < prompt.length; i++)
      if (prompt[i] < 0 || prompt[i] >= V) throw rangeError(`promptIds[${i}]: token id ${prompt[i]} out of the vocabulary [0, ${V})`);
    if (typeof o !== 'object' || o === null) throw typeError('options: expected an object');
    const sampling = samplingOptions(o, 'options');
    // Default: 256, or what the pool can hold next to the prompt.
    const maxTokens =
      o.maxTokens === undefined
        ? Math.max(1, Math.min(DEFAULT_MAX_TOKENS, this.cacheTokens - prompt.length))
        : expectInt('options.maxTokens', o.maxTokens, 1);
    // Every token of the request may need a slot at once (plus a scratch slot): it must fit the pool.
    if (prompt.length + maxTokens > this.cacheTokens)
      throw rangeError(`options.maxTokens: prompt (${prompt.length} tokens) + maxTokens (${maxTokens}) exceed cacheTokens (${this.cacheTokens})`);
    const stopIds = new Set<number>(), stopSeqs: { ids: Int32Array; text: string }[] = [];
    if (o.stop !== undefined) {
      if (!Array.isArray(o.stop)) throw typeError('options.stop: expected an array of token ids and/or strings');
      o.stop.forEach((s: unknown, i: number) => {
        if (typeof s === 'number') stopIds.add(expectInt(`options.stop[${i}]`, s, 0, V - 1));
        else if (typeof s === 'string') {
          const ids = this.encodeStop(s);
          if (ids.length === 0) throw rangeError(`options.stop[${i}]: an empty stop string never matches`);
          stopSeqs.push({ ids, text: s });
        } else throw typeError(`options.stop[${i}]: expected a token id or a string, got ${typeof s}`);
      });
    }
    const seed = o.seed === undefined ? Math.floor(Math.random() * 2 ** 53) : expectInt('options.seed', o.seed, 0, 2 ** 53);
    if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) throw typeError('options.signal: expected an AbortSignal');
    const topLogprobs = o.topLogprobs === undefined ? 0 : expectInt('options.topLogprobs', o.topLogprobs, 0, Math.min(MAX_TOP_LOGPROBS, V));
    return { prompt: prompt.slice(), sampling, maxTokens, stopIds, stopSeqs, seed, random: seededRandom(seed), signal: o.signal, topLogprobs };
  }

  private kick(): void {
    if (this.looping || this.closed) return;
    this.looping = true;
    // Started from a fresh task so generate() returns before any work is done.
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && (this.queue.length > 0 || this.running.length > 0 || this.pendingWeights)) {
        this.applyWeights();
        for (const seq of this.running) if (seq.spec.signal?.aborted) this.finish(seq, 'abort');
        this.admit();
        if (this.running.length === 0) {
          // Nothing fits although nothing runs: cannot happen while generate() checks the sizes.
          for (const seq of this.queue.splice(0)) this.fail(seq, new Error('NanoEngine: request does not fit the KV cache'));
          break;
        }
        await this.step();
      }
    } catch (e) {
      // A bug in the step itself: no request may hang on it.
      for (const seq of [...this.running, ...this.queue.splice(0)]) this.fail(seq, e);
    } finally {
      this.looping = false;
      this.applyWeights();
    }
  }

  private applyWeights(): void {
    if (!this.pendingWeights) return;
    this.params = this.pendingWeights.params;
    this.currentVersion = this.pendingWeights.version;
    this.pendingWeights = undefined;
    this.cache.newEpoch();
    for (const w of this.weightWaiters.splice(0)) w();
  }

  // FIFO admission while the cache can hold every running request's reservation plus this one's.
  private admit(): void {
    let reserved = this.running.reduce((sum, s) => sum + s.reserve, 0);
    while (this.queue.length > 0) {
      const seq = this.queue[0];
      // The last prompt token is always run (its logits are needed): match the rest.
      if (!this.prefixCaching) seq.privateRoot ??= this.cache.privateRoot();
      const found = this.prefixCaching ? this.cache.match(seq.spec.prompt, seq.spec.prompt.length - 1, false) : [];
      // Taking unreferenced cached nodes removes them from what can be evicted.
      const pinned = found.reduce((n, node) => n + (node.refs === 0 ? 1 : 0), 0);
      const need = seq.spec.prompt.length - found.length + seq.spec.maxTokens;
      if (this.cache.available() - pinned - reserved < need) return;
      seq.adopt(this.cache, found);
      seq.reserve = need;
      reserved += need;
      this.cache.recordLookup(seq.spec.prompt.length - 1, found.length);
      seq.admittedAt = performance.now();
      this.queue.shift();
      this.running.push(seq);
    }
  }

  private async step(): Promise<void> {
    const b = this.batch;
    b.reset();
    let budget = this.maxBatchTokens;
    // Decode tokens first (one each, latency), then prefill chunks in arrival order.
    const order = [...this.running.filter((s) => s.promptDone), ...this.running.filter((s) => !s.promptDone)];
    for (const seq of order) {
      if (budget <= 0) break;
      budget -= seq.plan(this.cache, b, budget);
    }
    const params = this.params, version = this.currentVersion;
    const t0 = performance.now();
    let logits: Float32Array;
    try {
      logits = await this.runner.extendAsync(params, this.pool, b.build());
    } catch (e) {
      for (const s of b.scratch) this.cache.freeScratch(s);
      for (const seq of [...this.running]) this.fail(seq, e);
      return;
    }
    const c = this.counters;
    c.busyMs += performance.now() - t0;
    c.steps++;
    c.computedTokens += b.numTokens;
    c.maxBatchTokens = Math.max(c.maxBatchTokens, b.numTokens);
    c.batchSequences += b.sequences;
    for (const s of b.scratch) this.cache.freeScratch(s);
    if (this.closed) return;
    const V = this.config.vocabSize;
    for (const seq of [...this.running]) {
      if (seq.logitRow < 0) continue;
      const firstSample = !seq.promptDone, before = seq.completion.length;
      let reason: FinishReason | undefined;
      try {
        reason = seq.accept(logits, V, version);
      } catch (e) {
        this.fail(seq, e);
        continue;
      }
      if (firstSample) {
        c.promptTokens += seq.spec.prompt.length;
        c.cachedPromptTokens += seq.cachedPromptTokens;
      }
      c.generatedTokens += seq.completion.length - before;
      if (reason) this.finish(seq, reason);
    }
  }

  // Ends a request: its path references go back to the cache, its reservation to the pool.
  private finish(seq: Sequence, reason: FinishReason): void {
    this.release(seq);
    seq.finishReason = reason;
    const settle = this.settlers.get(seq);
    this.settlers.delete(seq);
    seq.channel.end();
    settle?.resolve(seq.result(performance.now()));
  }

  private fail(seq: Sequence, error: unknown): void {
    this.release(seq);
    const settle = this.settlers.get(seq);
    this.settlers.delete(seq);
    seq.channel.end(error);
    settle?.reject(error);
  }

  private release(seq: Sequence): void {
    const i = this.running.indexOf(seq);
    if (i >= 0) this.running.splice(i, 1);
    if (seq.nodes.length > 0 && !this.closed) this.cache.release(seq.nodes.splice(0));
    seq.reserve = 0;
  }
}
