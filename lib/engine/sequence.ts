// One request inside the engine: its place in the prefix cache (the nodes of its path, each holding a
// reference), the tokens still to feed (the rest of the prompt, then each sampled token), its sampler
// and stop rules, and the token stream its caller reads.
//
// Slot accounting: on admission a sequence reserves one slot per token it may still add to its path
// (the prompt tokens not found in the cache, maxTokens - 1 sampled tokens) plus one scratch slot. Every
// node it then adds to its path, new or found in the cache, uses up one unit; so the engine admits a
// request only when free + evictable slots cover every running sequence's reservation, and a step
// never runs out of slots.
import type { CacheNode, PrefixCache } from './prefixCache.js';
import { sampleToken, type Random, type SamplingOptions } from './sampler.js';
import type { StepBatch } from './stepBatch.js';
import type { FinishReason, GenerateResult, TokenEvent, TopLogprob } from './types.js';

/** A push-to-pull queue of token events that ends with the request. */
export class TokenChannel implements AsyncIterable<TokenEvent> {
  private readonly items: TokenEvent[] = [];
  private waiting: ((r: IteratorResult<TokenEvent>) => void) | undefined;
  private rejectWaiting: ((e: unknown) => void) | undefined;
  private done = false;
  private error: unknown;

  push(item: TokenEvent): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = this.rejectWaiting = undefined;
      w({ value: item, done: false });
    } else this.items.push(item);
  }

  end(error?: unknown): void {
    this.done = true;
    this.error = error;
    if (this.waiting) {
      const w = this.waiting, r = this.rejectWaiting!;
      this.waiting = this.rejectWaiting = undefined;
      if (error !== undefined) r(error);
      else w({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<TokenEvent> {
    return {
      next: () => {
        if (this.items.length > 0) return Promise.resolve({ value: this.items.shift()!, done: false });
        if (this.done) return this.error !== undefined ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.rejectWaiting = reject;
        });
      },
    };
  }
}

export interface SequenceSpec {
  prompt: Int32Array;
  sampling: Required<SamplingOptions>;
  maxTokens: number;
  stopIds: ReadonlySet<number>;
  /** Stop strings as token ids, with the string each came from. */
  stopSeqs: readonly { ids: Int32Array; text: string }[];
  seed: number;
  random: Random;
  signal?: AbortSignal;
  /** Alternatives reported per sampled token (0: none). */
  topLogprobs: number;
}

export class Sequence {
  readonly channel = new TokenChannel();
  readonly completion: number[] = [];
  readonly logprobs: number[] = [];
  readonly versions: number[] = [];
  /** Each sampled token's alternatives (only when spec.topLogprobs > 0). */
  readonly top: TopLogprob[][] = [];
  /** Path nodes, root first; a reference is held on each. */
  readonly nodes: CacheNode[] = [];
  /** Row of this sequence's logits in the current step (-1: none). */
  logitRow = -1;
  /** Slots still reserved (see the file comment). */
  reserve = 0;
  finishReason: FinishReason | undefined;
  stoppedBy: number | string | undefined;
  /** Prompt tokens whose K/V this sequence computed. */
  computedPrompt = 0;
  readonly enqueuedAt = performance.now();
  admittedAt = 0;
  firstTokenAt = 0;

  private slots = new Int32Array(64);
  private pending: Int32Array;
  private pendingAt = 0;

  constructor(readonly id: number, readonly spec: SequenceSpec) {
    this.pending = spec.prompt;
  }

  get promptDone(): boolean {
    return this.pending !== this.spec.prompt;
  }

  /** Prompt tokens taken from the cache so far (all of them once the prompt is done). */
  get cachedPromptTokens(): number {
    return (this.promptDone ? this.spec.prompt.length : this.pendingAt) - this.computedPrompt;
  }

  /** Tokens still to feed before the next sample. */
  get remaining(): number {
    return this.pending.length - this.pendingAt;
  }

  /** Set for a request that bypasses the prefix cache (see PrefixCache.privateRoot). */
  privateRoot: CacheNode | undefined;

  cursor(cache: PrefixCache): CacheNode {
    return this.nodes.length > 0 ? this.nodes[this.nodes.length - 1] : (this.privateRoot ?? cache.rootNode);
  }

  /** Takes the cached prefix found for the prompt at admission (see PrefixCache.match). */
  adopt(cache: PrefixCache, nodes: readonly CacheNode[]): void {
    for (const node of nodes) {
      cache.acquire(node);
      this.pushNode(node);
      this.pendingAt++;
    }
  }

  /**
   * Follows the cache along the pending tokens as far as it has them, except the last one (its logits
   * are needed, so it is always run). Returns the number of nodes taken.
   */
  advance(cache: PrefixCache): number {
    let taken = 0;
    while (this.remaining > 1) {
      const node = cache.child(this.cursor(cache), this.pending[this.pendingAt]);
      if (!node) break;
      cache.acquire(node);
      this.pushNode(node);
      this.pendingAt++;
      taken++;
    }
    return taken;
  }

  /**
   * Adds up to `budget` of this sequence's pending tokens to the step. The last pending token asks for
   * logits; if the cache already holds it (a concurrent sequence made it, or the whole prompt was
   * cached), it is run once more in a scratch slot just for its logits and the cached node joins the
   * path. Returns the number of tokens added.
   */
  plan(cache: PrefixCache, batch: StepBatch, budget: number): number {
    this.advance(cache);
    this.logitRow = -1;
    if (budget <= 0 || this.remaining === 0) return 0;
    const parent = this.cursor(cache);
    if (this.remaining === 1) {
      const token = this.pending[this.pendingAt];
      const existing = cache.child(parent, token);
      if (existing) {
        const scratch = cache.takeScratch();
        if (scratch < 0) throw new Error('engine: no scratch slot although one was reserved');
        batch.scratch.push(scratch);
        const offset = batch.addPath(this.slots, this.nodes.length, scratch);
        this.logitRow = batch.addToken(token, existing.depth, scratch, offset, this.nodes.length + 1, true);
        cache.acquire(existing);
        this.pushNode(existing);
        this.pendingAt++;
        if (!this.promptDone) this.computedPrompt++;
        batch.sequences++;
        return 1;
      }
    }
    const n = Math.min(this.remaining, budget);
    const first = this.nodes.length;
    let node = parent;
    for (let i = 0; i < n; i++) {
      const next = cache.insert(node, this.pending[this.pendingAt + i]);
      if (!next) throw new Error('engine: the KV cache ran out of slots although they were reserved');
      this.pushNode(next);
      node = next;
    }
    const offset = batch.addPath(this.slots, this.nodes.length);
    for (let i = 0; i < n; i++) {
      const nd = this.nodes[first + i];
      const last = this.pendingAt + i === this.pending.length - 1;
      const row = batch.addToken(nd.token, nd.depth, nd.slot, offset, nd.depth + 1, last);
      if (last) this.logitRow = row;
    }
    this.pendingAt += n;
    if (!this.promptDone) this.computedPrompt += n;
    batch.sequences++;
    return n;
  }

  /**
   * Samples from this step's logits row and streams the token; returns the finish reason when the
   * completion is over (undefined to go on).
   */
  accept(logits: Float32Array, vocab: number, version: number): FinishReason | undefined {
    const row = logits.subarray(this.logitRow * vocab, (this.logitRow + 1) * vocab);
    this.logitRow = -1;
    const { token, logprob, top } = sampleToken(row, this.spec.sampling, this.spec.random, this.spec.topLogprobs);
    if (this.spec.signal?.aborted) return 'abort'; // dropped: the caller asked to stop before it was seen
    if (this.completion.length === 0) this.firstTokenAt = performance.now();
    this.completion.push(token);
    this.logprobs.push(logprob);
    this.versions.push(version);
    if (top) {
      this.top.push(top);
      this.channel.push({ token, logprob, version, top });
    } else this.channel.push({ token, logprob, version });
    if (this.spec.stopIds.has(token)) {
      this.stoppedBy = token;
      return 'stop';
    }
    for (const s of this.spec.stopSeqs)
      if (this.endsWith(s.ids)) {
        this.stoppedBy = s.text;
        return 'stop';
      }
    if (this.completion.length >= this.spec.maxTokens) return 'length';
    this.pending = Int32Array.of(token);
    this.pendingAt = 0;
    return undefined;
  }

  result(finishedAt: number): GenerateResult {
    const first = this.firstTokenAt || finishedAt;
    const admitted = this.admittedAt || finishedAt;
    return {
      completionIds: Int32Array.from(this.completion),
      logprobs: Float64Array.from(this.logprobs),
      versions: Int32Array.from(this.versions),
      ...(this.spec.topLogprobs > 0 ? { topLogprobs: this.top.slice() } : {}),
      finishReason: this.finishReason!,
      ...(this.stoppedBy !== undefined ? { stoppedBy: this.stoppedBy } : {}),
      promptTokens: this.spec.prompt.length,
      cachedPromptTokens: this.cachedPromptTokens,
      seed: this.spec.seed,
      timings: {
        queueMs: admitted - this.enqueuedAt,
        prefillMs: first - admitted,
        decodeMs: finishedAt - first,
        totalMs: finishedAt - this.enqueuedAt,
      },
    };
  }

  private endsWith(ids: Int32Array): boolean {
    const c = this.completion, n = ids.length;
    if (c.length < n) return false;
    for (let i = 0; i < n; i++) if (c[c.length - n + i] !== ids[i]) return false;
    return true;
  }

  private pushNode(node: CacheNode): void {
    this.nodes.push(node);
    this.reserve--;
    if (this.nodes.length > this.slots.length) {
      const next = new Int32Array(this.slots.length * 2);
      next.set(this.slots);
      this.slots = next;
    }
    this.slots[this.nodes.length - 1] = node.slot;
  }
}
