// The nano policy: a small decoder-only transformer (token embedding, RMSNorm, RoPE, grouped-query
// tree attention, SwiGLU MLP, tied or untied head) that runs and trains on forge-rl's own CPU kernels
// over a prefix-tree batch. A typed wrapper of forge.h's "Nano policy model" section: every parameter
// lives in one flat Float32Array (see paramInfo for the named tensors), so optimizers and checkpoints
// work on plain buffers. Arguments are validated here first (TypeError / RangeError naming the
// argument, with a `code` from errors.ts); the C ABI re-checks everything it reads.
import { resolveLossOptions, type CispoStats, type PolicyLossTerms } from '../cispo.js';
import { KernelErrorCode, rangeError, typeError } from '../errors.js';
import { addon } from '../native.js';
import { validateTree } from '../prefixTree.js';
import { expectArray, expectInt } from '../validate.js';
import { vocabSize as TOKENIZER_VOCAB_SIZE } from './tokenizer.js';

export interface NanoPolicyConfig {
  /** Vocabulary size (token ids in [0, vocabSize)). */
  vocabSize: number;
  /** Model width. */
  dim: number;
  numLayers: number;
  /** Query heads. */
  numHeads: number;
  /** Key/value heads (grouped-query attention); divides numHeads. */
  numKvHeads: number;
  /** Head dimension: even (RoPE rotates pairs), at most 1024. */
  headDim: number;
  /** SwiGLU hidden width. */
  ffnDim: number;
  /** true: the output head is the embedding table transposed; false: a separate [dim, vocab] matrix. */
  tiedEmbeddings: boolean;
  /** RoPE base (rotate-half form, as GPT-NeoX / Llama-HF). */
  ropeTheta: number;
  /** RMSNorm epsilon. */
  normEps: number;
}

/**
 * The default: ~0.8 M parameters, trains in minutes on 2 CPU cores. The vocabulary is the tokenizer's
 * (256 bytes + specials, lib/model/tokenizer.ts).
 */
export function defaultConfig(): NanoPolicyConfig {
  return {
    vocabSize: TOKENIZER_VOCAB_SIZE,
    dim: 128,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 32,
    ffnDim: 352,
    tiedEmbeddings: false,
    ropeTheta: 10000,
    normEps: 1e-5,
  };
}

/** One named tensor of the flat parameter buffer. */
export interface ParamTensorInfo {
  /** "tok_embeddings", "layers.<l>.attn_norm", "layers.<l>.attn.wq" ... "layers.<l>.mlp.w_down", "norm", "output". */
  name: string;
  /** First element in the parameter buffer. */
  offset: number;
  /** [rows, cols] for matrices ([in, out]: y = x W), [dim] for the RMSNorm gains. */
  shape: number[];
  /** Number of elements. */
  size: number;
}

/** A forest in DFS pre-order: a is an ancestor-or-self of q iff a <= q < subtreeEnd[a]. */
export interface PolicyTree {
  /** [N] parent node, -1 at a root. */
  parent: Int32Array;
  /** [N] exclusive end of each node's subtree. */
  subtreeEnd: Int32Array;
}

/** What a training step reads from a prefix-tree batch; a PrefixTree (lib/prefixTree.ts) satisfies it. */
export interface PolicyBatch extends PolicyTree {
  /** [N] token of each node. */
  token: Int32Array;
  /** [N] RoPE position of each node (its depth). */
  position: Int32Array;
  /** The loss terms: term j predicts target[j] from the logits of node[j]. */
  terms: PolicyLossTerms;
}

export interface PolicyLossOptions {
  /**
   * 'cispo' (default): -(1/Z) sum_j sg(clip(r_j, 1 - epsLow, 1 + epsHigh)) A_j logp_j.
   * 'ppo-clip': -(1/Z) sum_j min(r_j A_j, clip(r_j) A_j).
   * 'cross-entropy': -(1/Z) sum_j A_j logp_j (supervised; A = 1 gives token-level cross-entropy).
   */
  mode?: 'cispo' | 'ppo-clip' | 'cross-entropy';
  /** Lower clip 1 - epsLow, >= 0. Default: Infinity for CISPO, 0.2 for PPO (as lib/cispo.ts). */
  epsLow?: number;
  /** Upper clip 1 + epsHigh, >= 0. Default: 4 for CISPO, 0.2 for PPO (as lib/cispo.ts). */
  epsHigh?: number;
  /** Z, finite and > 0. Default: the number of terms (token-level mean). */
  normalizer?: number;
}

export interface LossAndGrad {
  loss: number;
  /** d loss / d params, laid out as the parameter buffer. */
  grads: Float32Array;
  /** logp of each term [J]. */
  logprobs: Float32Array;
  stats: CispoStats;
}

const MAX_SIZE = 2 ** 24;
const INT32_MAX = 2 ** 31 - 1;
const NON_FINITE = KernelErrorCode.NON_FINITE;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function positiveFinite(name: string, value: unknown): number {
  if (typeof value !== 'number') throw typeError(`${name}: expected a number, got ${typeof value}`);
  if (!Number.isFinite(value))
    throw rangeError(`${name}: expected a finite number > 0, got ${value}`, NON_FINITE);
  if (!(value > 0)) throw rangeError(`${name}: expected a number > 0, got ${value}`);
  return value;
}

function checkConfig(config: unknown): NanoPolicyConfig {
  if (config !== undefined && !isObject(config)) throw typeError(`config: expected an object, got ${typeof config}`);
  const c = { ...defaultConfig(), ...(config ?? {}) } as Record<string, unknown>;
  const out: NanoPolicyConfig = {
    vocabSize: expectInt('config.vocabSize', c.vocabSize, 1, MAX_SIZE),
    dim: expectInt('config.dim', c.dim, 1, MAX_SIZE),
    numLayers: expectInt('config.numLayers', c.numLayers, 0, 4096),
    numHeads: expectInt('config.numHeads', c.numHeads, 1, 4096),
    numKvHeads: expectInt('config.numKvHeads', c.numKvHeads, 1, 4096),
    headDim: expectInt('config.headDim', c.headDim, 2, 1024),
    ffnDim: expectInt('config.ffnDim', c.ffnDim, 1, MAX_SIZE),
    tiedEmbeddings: c.tiedEmbeddings as boolean,
    ropeTheta: positiveFinite('config.ropeTheta', c.ropeTheta),
    normEps: positiveFinite('config.normEps', c.normEps),
  };
  if (out.numHeads % out.numKvHeads !== 0)
    throw rangeError(`config.numKvHeads: expected a divisor of numHeads (${out.numHeads}), got ${out.numKvHeads}`);
  if (out.headDim % 2 !== 0)
    throw rangeError(`config.headDim: expected an even number (RoPE rotates pairs), got ${out.headDim}`);
  if (typeof out.tiedEmbeddings !== 'boolean')
    throw typeError(`config.tiedEmbeddings: expected a boolean, got ${typeof out.tiedEmbeddings}`);
  return out;
}

function lossOptions(options: unknown): [number, number, number, number] {
  const { mode, epsLow, epsHigh, normalizer } = resolveLossOptions(options);
  return [mode, epsLow, epsHigh, normalizer];
}

/** A nano policy of one configuration. Holds no weights: parameters are passed to every call. */
export class NanoPolicy {
  readonly config: Readonly<NanoPolicyConfig>;
  /** Floats in the parameter buffer. */
  readonly numParams: number;

  /** `config` overrides fields of defaultConfig(). Throws TypeError / RangeError naming a bad field. */
  constructor(config?: Partial<NanoPolicyConfig>) {
    this.config = Object.freeze(checkConfig(config));
    this.numParams = addon.modelNumParams(this.config) as number;
  }

  /** The named tensors of the parameter buffer, in buffer order. */
  paramInfo(): ParamTensorInfo[] {
    const raw = addon.modelParamInfo(this.config) as { name: string; offset: number; shape: number[] }[];
    return raw.map(({ name, offset, shape }) => ({ name, offset, shape, size: shape.reduce((a, b) => a * b, 1) }));
  }

  /**
   * A fresh parameter buffer, deterministic in `seed` (an integer in [0, 2^53]): matrices N(0, 0.02^2),
   * residual projections (wo, w_down) scaled by 1/sqrt(2 numLayers), norm gains 1.
   */
  init(seed: number): Float32Array {
    return addon.modelInit(this.config, expectInt('seed', seed, 0, 2 ** 53), false) as Float32Array;
  }

  async initAsync(seed: number): Promise<Float32Array> {
    return (await addon.modelInit(this.config, expectInt('seed', seed, 0, 2 ** 53), true)) as Float32Array;
  }

  /**
   * Logits [N, vocabSize] of every node of a tree batch: node i has token tokens[i] at RoPE position
   * positions[i] and attends to its ancestors-or-self in `tree`.
   */
  forward(params: Float32Array, tokens: Int32Array, positions: Int32Array, tree: PolicyTree): Float32Array {
    return addon.modelForward(this.config, ...this.forwardArgs(params, tokens, positions, tree), false) as Float32Array;
  }

  /** forward on a libuv worker thread; the arrays must not change until the promise settles. */
  async forwardAsync(
    params: Float32Array,
    tokens: Int32Array,
    positions: Int32Array,
    tree: PolicyTree,
  ): Promise<Float32Array> {
    const args = this.forwardArgs(params, tokens, positions, tree);
    return (await addon.modelForward(this.config, ...args, true)) as Float32Array;
  }

  /**
   * Loss, gradient of every parameter, per-term log-probs and statistics of one training step on a
   * prefix-tree batch (the forward, forge_cispo_loss on its logits, the backward through every layer).
   */
  lossAndGrad(params: Float32Array, batch: PolicyBatch, options?: PolicyLossOptions): LossAndGrad {
    return addon.modelLossBackward(this.config, ...this.lossArgs(params, batch, options), false) as LossAndGrad;
  }

  /** lossAndGrad on a libuv worker thread; the arrays must not change until the promise settles. */
  async lossAndGradAsync(params: Float32Array, batch: PolicyBatch, options?: PolicyLossOptions): Promise<LossAndGrad> {
    return (await addon.modelLossBackward(this.config, ...this.lossArgs(params, batch, options), true)) as LossAndGrad;
  }

  private forwardArgs(params: unknown, tokens: unknown, positions: unknown, tree: unknown): unknown[] {
    const p = expectArray('params', params, Float32Array, this.numParams);
    const t = expectArray('tokens', tokens, Int32Array);
    const N = t.length;
    if (N < 1) throw rangeError('tokens: expected at least 1 node, got 0', KernelErrorCode.INVALID_ARGUMENT);
    const pos = expectArray('positions', positions, Int32Array, N);
    if (!isObject(tree)) throw typeError('tree: expected an object { parent, subtreeEnd }');
    const parent = expectArray('tree.parent', tree.parent, Int32Array, N);
    const subtreeEnd = expectArray('tree.subtreeEnd', tree.subtreeEnd, Int32Array, N);
    const V = this.config.vocabSize;
    for (let i = 0; i < N; i++) {
      if (t[i] < 0 || t[i] >= V) throw rangeError(`tokens[${i}]: token id ${t[i]} out of the vocabulary [0, ${V})`);
      if (pos[i] < 0) throw rangeError(`positions[${i}]: expected a position >= 0, got ${pos[i]}`);
    }
    if (N * V > 2 ** 32) throw rangeError(`tokens: ${N} nodes x ${V} logits do not fit one Float32Array`);
    validateTree(parent, subtreeEnd);
    return [p, t, pos, parent, subtreeEnd];
  }

  private lossArgs(params: unknown, batch: unknown, options: unknown): unknown[] {
    if (!isObject(batch))
      throw typeError('batch: expected a PrefixTree-like object { token, position, parent, subtreeEnd, terms }');
    const base = this.forwardArgs(params, batch.token, batch.position, batch);
    const N = (base[1] as Int32Array).length;
    const V = this.config.vocabSize;
    const terms = batch.terms;
    if (!isObject(terms)) throw typeError('batch.terms: expected an object { node, target, oldLogprob, advantage }');
    const node = expectArray('batch.terms.node', terms.node, Int32Array);
    const J = node.length;
    if (J > INT32_MAX) throw rangeError(`batch.terms.node: ${J} terms exceed 2^31 - 1`);
    const target = expectArray('batch.terms.target', terms.target, Int32Array, J);
    const oldLogprob = expectArray('batch.terms.oldLogprob', terms.oldLogprob, Float32Array, J);
    const advantage = expectArray('batch.terms.advantage', terms.advantage, Float32Array, J);
    for (let j = 0; j < J; j++) {
      if (node[j] < 0 || node[j] >= N)
        throw rangeError(`batch.terms.node[${j}]: node ${node[j]} out of range [0, ${N})`);
      if (target[j] < 0 || target[j] >= V)
        throw rangeError(`batch.terms.target[${j}]: token id ${target[j]} out of the vocabulary [0, ${V})`);
      if (!Number.isFinite(oldLogprob[j]))
        throw rangeError(`batch.terms.oldLogprob[${j}]: expected a finite number, got ${oldLogprob[j]}`, NON_FINITE);
      if (!Number.isFinite(advantage[j]))
        throw rangeError(`batch.terms.advantage[${j}]: expected a finite number, got ${advantage[j]}`, NON_FINITE);
    }
    return [...base, node, target, oldLogprob, advantage, ...lossOptions(options)];
  }
}
