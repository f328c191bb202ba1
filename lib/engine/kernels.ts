// Typed wrappers of forge.h's "Inference engine" section: the KV pool, attention over slot paths, and
// the model's incremental forward. Types and lengths are checked here (TypeError / RangeError naming
// the argument, with a `code` from errors.ts); index ranges (slots, path entries, token ids) are
// checked once by the C ABI, whose RangeError names the offending element.
import type { AttentionOptions, AttentionOutput } from '../attention.js';
import { KernelErrorCode, rangeError, typeError } from '../errors.js';
import { NanoPolicy, type NanoPolicyConfig } from '../model/policy.js';
import { addon } from '../native.js';
import { expectArray, expectFinite, expectInt } from '../validate.js';

const INT32_MAX = 2 ** 31 - 1;

/** Description of a KV pool. */
export interface KvPoolInfo {
  /** Slots (one token's K and V at every layer each). */
  capacity: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Bytes held by K and V. */
  bytes: number;
}

interface NativePool {
  info(): KvPoolInfo;
  free(): void;
  readonly freed: boolean;
}

/**
 * Per-layer K and V rows [capacity, numKvHeads, headDim] for a model config, zero-filled. Freed by the
 * garbage collector, or now with free() (deferred until a running extend finishes).
 */
export class KvPool {
  readonly config: Readonly<NanoPolicyConfig>;
  readonly capacity: number;
  /** @internal the native handle */
  readonly native: NativePool;

  constructor(config: Partial<NanoPolicyConfig>, capacity: number) {
    this.config = new NanoPolicy(config).config;
    this.capacity = expectInt('capacity', capacity, 1, INT32_MAX);
    this.native = new addon.KvPool(this.config, this.capacity) as NativePool;
  }

  info(): KvPoolInfo {
    return this.native.info();
  }

  /** Releases the memory; the pool cannot be used afterwards. Idempotent. */
  free(): void {
    this.native.free();
  }

  get freed(): boolean {
    return this.native.freed;
  }
}

/** Queries and their slot paths for pathAttention. */
export interface PathAttentionInput {
  /** [M, Hq, D] */
  q: Float32Array;
  /** [numSlots, Hkv, D] */
  k: Float32Array;
  /** [numSlots, Hkv, D] */
  v: Float32Array;
  /** Rows of k and v. */
  numSlots: number;
  /** Slot lists, each entry in [0, numSlots). */
  paths: Int32Array;
  /** [M] query i attends to paths[pathOffset[i] .. pathOffset[i] + pathLen[i]). */
  pathOffset: Int32Array;
  /** [M] >= 0 (0: o = 0, lse = -Infinity). */
  pathLen: Int32Array;
}

function pathArgs(input: unknown, options: unknown): unknown[] {
  if (typeof input !== 'object' || input === null) throw typeError('input: expected an object { q, k, v, numSlots, paths, pathOffset, pathLen }');
  if (typeof options !== 'object' || options === null) throw typeError('options: expected an object { numHeads, numKvHeads, headDim, scale }');
  const i = input as Record<string, unknown>, o = options as Record<string, unknown>;
  const hq = expectInt('options.numHeads', o.numHeads, 1, 2 ** 20);
  const hkv = o.numKvHeads === undefined ? hq : expectInt('options.numKvHeads', o.numKvHeads, 1, hq);
  if (hq % hkv !== 0) throw rangeError(`options.numKvHeads: expected a divisor of numHeads (${hq}), got ${hkv}`);
  const d = expectInt('options.headDim', o.headDim, 1, 1024);
  const scale = o.scale === undefined ? 1 / Math.sqrt(d) : expectFinite('options.scale', o.scale);
  if (!(scale > 0)) throw rangeError(`options.scale: expected a number > 0, got ${scale}`);
  const slots = expectInt('input.numSlots', i.numSlots, 1, INT32_MAX);
  const pathLen = expectArray('input.pathLen', i.pathLen, Int32Array);
  const m = pathLen.length;
  if (m < 1) throw rangeError('input.pathLen: expected at least 1 query, got 0', KernelErrorCode.INVALID_ARGUMENT);
  const pathOffset = expectArray('input.pathOffset', i.pathOffset, Int32Array, m);
  const paths = expectArray('input.paths', i.paths, Int32Array);
  const q = expectArray('input.q', i.q, Float32Array, m * hq * d);
  const k = expectArray('input.k', i.k, Float32Array, slots * hkv * d);
  const v = expectArray('input.v', i.v, Float32Array, slots * hkv * d);
  return [q, k, v, slots, hq, hkv, d, scale, paths, pathOffset, pathLen];
}

/**
 * Attention of each query over its own list of slots of k / v (forge_path_attention): the attention
 * step of the engine's incremental forward. O [M, Hq, D], LSE [M, Hq] (natural log).
 */
export function pathAttention(input: PathAttentionInput, options: AttentionOptions): AttentionOutput {
  return addon.pathAttention(...pathArgs(input, options), false) as AttentionOutput;
}

/** pathAttention on a libuv worker; the arrays must not change until the promise settles. */
export async function pathAttentionAsync(input: PathAttentionInput, options: AttentionOptions): Promise<AttentionOutput> {
  return (await addon.pathAttention(...pathArgs(input, options), true)) as AttentionOutput;
}

/** One incremental step: M new tokens of one or more sequences. */
export interface ExtendBatch {
  /** [M] token ids. */
  tokens: Int32Array;
  /** [M] RoPE positions (the token's index in its sequence). */
  positions: Int32Array;
  /** [M] distinct slots: where each token's K/V are written. */
  slots: Int32Array;
  /** Slot paths; token i attends to paths[pathOffset[i] .. + pathLen[i]), which ends with slots[i]. */
  paths: Int32Array;
  pathOffset: Int32Array;
  pathLen: Int32Array;
  /** Tokens (indices in [0, M)) whose logits are returned, in this order. */
  logitRows: Int32Array;
}

function extendArgs(config: Readonly<NanoPolicyConfig>, numParams: number, params: unknown, pool: unknown, batch: unknown): unknown[] {
  if (!(pool instanceof KvPool)) throw typeError('pool: expected a KvPool');
  const c = pool.config;
  if (c.numLayers !== config.numLayers || c.numKvHeads !== config.numKvHeads || c.headDim !== config.headDim)
    throw rangeError('pool: built for another model shape (numLayers, numKvHeads, headDim differ)', KernelErrorCode.INVALID_ARGUMENT);
  const p = expectArray('params', params, Float32Array, numParams);
  if (typeof batch !== 'object' || batch === null) throw typeError('batch: expected an object');
  const b = batch as Record<string, unknown>;
  const tokens = expectArray('batch.tokens', b.tokens, Int32Array);
  const m = tokens.length;
  if (m < 1) throw rangeError('batch.tokens: expected at least 1 token, got 0', KernelErrorCode.INVALID_ARGUMENT);
  return [
    p,
    pool.native,
    tokens,
    expectArray('batch.positions', b.positions, Int32Array, m),
    expectArray('batch.slots', b.slots, Int32Array, m),
    expectArray('batch.paths', b.paths, Int32Array),
    expectArray('batch.pathOffset', b.pathOffset, Int32Array, m),
    expectArray('batch.pathLen', b.pathLen, Int32Array, m),
    expectArray('batch.logitRows', b.logitRows, Int32Array),
  ];
}

/** The nano policy's incremental forward over a KV pool (forge_model_extend). */
export class ModelRunner {
  readonly policy: NanoPolicy;

  constructor(config?: Partial<NanoPolicyConfig>) {
    this.policy = new NanoPolicy(config);
  }

  get config(): Readonly<NanoPolicyConfig> {
    return this.policy.config;
  }

  /** Logits [logitRows.length, vocabSize]; writes every token's K/V into its slot of `pool`. */
  extend(params: Float32Array, pool: KvPool, batch: ExtendBatch): Float32Array {
    const args = extendArgs(this.config, this.policy.numParams, params, pool, batch);
    return addon.modelExtend(this.config, ...args, false) as Float32Array;
  }

  /** extend on a libuv worker; the arrays must not change until the promise settles. */
  async extendAsync(params: Float32Array, pool: KvPool, batch: ExtendBatch): Promise<Float32Array> {
    const args = extendArgs(this.config, this.policy.numParams, params, pool, batch);
    return (await addon.modelExtend(this.config, ...args, true)) as Float32Array;
  }
}
