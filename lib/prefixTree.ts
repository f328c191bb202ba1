// Prefix-tree batches (DESIGN.md contract 1): merges samples that share token prefixes into one trie
// so shared tokens are computed once, and maps values between the tree and the per-sample layout.
// Arguments are validated here first (TypeError / RangeError naming the argument, the sample and
// the position, with a `code` from errors.ts); the native layer re-checks everything it reads.
import { chooseBackend, type BackendOption } from './backend.js';
import { addon } from './native.js';
import { KernelErrorCode, rangeError, typeError } from './errors.js';
import { gatherToSamplesOnDevice, scatterFromSamplesOnDevice } from './hostDevice.js';
import { expectArray, expectInt } from './validate.js';

const INT32_MAX = 2 ** 31 - 1;

/** One sample: a token sequence (prompt and completion of one call) with what its loss terms need. */
export interface Sample {
  /** Token ids [L], L >= 1. */
  tokens: Int32Array;
  /** [L] 1 where the policy produced the token (a loss term predicts it), else 0; must be 0 at position 0. Default: all 0. */
  trainable?: Uint8Array;
  /** [L] log-probability of each token under the policy that sampled it; finite where trainable. Default 0. */
  oldLogprobs?: Float32Array;
  /** The advantage: one number for the whole sample, or one per token [L] (the term predicting position t uses entry t). Default 0. */
  advantage?: number | Float32Array;
  /** Policy version that produced the sample (int32). Default 0. */
  version?: number;
}

/** S samples packed back to back: sample s owns positions [offsets[s], offsets[s+1]). */
export interface PackedSamples {
  /** Token ids [T]. */
  tokens: Int32Array;
  /** [S+1]: offsets[0] = 0, strictly increasing (no empty sample), offsets[S] = T. */
  offsets: Int32Array;
  /** [T] 0/1, 0 at each sample's first position. Absent: nothing is trainable. */
  trainable?: Uint8Array;
  /** [T] old log-probabilities (finite where trainable). Absent: 0. */
  oldLogprobs?: Float32Array;
  /** [T] per-token advantages; takes precedence over sampleAdvantages. */
  advantages?: Float32Array;
  /** [S] one advantage per sample. Absent (and no `advantages`): 0. */
  sampleAdvantages?: Float32Array;
  /** [S] policy version of each sample. Absent: 0. */
  versions?: Int32Array;
}

/** Loss terms [J], ordered by sample, then position: term j predicts `target[j]` from the logits at `node[j]`. */
export interface LossTerms {
  /** Tree node whose logits predict the target (the node of position - 1). */
  node: Int32Array;
  /** The token predicted (the sample's token at `position`). */
  target: Int32Array;
  oldLogprob: Float32Array;
  advantage: Float32Array;
  sample: Int32Array;
  /** Position of the target within its sample (>= 1). */
  position: Int32Array;
  /** Policy version of the sample. */
  version: Int32Array;
}

/**
 * A prefix tree batch: N nodes in DFS pre-order (children in order of first appearance), G segments
 * (maximal chains without branching, contiguous in pre-order), J loss terms, T input positions.
 * Plain data: every field is a number or a TypedArray, so it can be passed to other kernels
 * (treeAttention takes {parent, subtreeEnd}, cispoLoss takes terms) and posted to worker threads.
 * `nodeOfSample` lives on the prototype, so a structured clone drops it; use
 * `nodeOf.subarray(offsets[s], offsets[s + 1])` there.
 */
export interface PrefixTree {
  numNodes: number;
  numSegments: number;
  numTerms: number;
  numSamples: number;
  /** Max position + 1. */
  maxDepth: number;
  /** [N] token of each node. */
  token: Int32Array;
  /** [N] parent node, -1 at a root. */
  parent: Int32Array;
  /** [N] depth = position id (RoPE). */
  position: Int32Array;
  /** [N] exclusive end of the subtree: a is an ancestor-or-self of q iff a <= q < subtreeEnd[a]. */
  subtreeEnd: Int32Array;
  /** [N] segment holding each node. */
  segmentOf: Int32Array;
  /** [G] first node of each segment. */
  segStart: Int32Array;
  /** [G] nodes in each segment (segStart[g] .. segStart[g] + segLen[g] - 1). */
  segLen: Int32Array;
  /** [G] segment of the parent of segStart[g], -1 at a root. */
  segParent: Int32Array;
  terms: LossTerms;
  /** [S+1] the packed per-sample layout: sample s owns positions [offsets[s], offsets[s+1]). */
  offsets: Int32Array;
  /** [T] node of each packed position. */
  nodeOf: Int32Array;
  /** Nodes of sample s's positions (a zero-copy subarray of nodeOf). */
  nodeOfSample(s: number): Int32Array;
  stats: {
    /** T. */
    inputTokens: number;
    /** N. */
    treeTokens: number;
    /** inputTokens / treeTokens: how many times fewer tokens the tree computes. */
    ratio: number;
  };
}

// ---- packing and validation ------------------------------------------------------------------

// Names a packed position in messages: for Sample[] input "samples[3].tokens[17]", for packed input
// "tokens[1041] (sample 3, position 17)".
type Namer = (field: 'tokens' | 'trainable' | 'oldLogprobs' | 'advantages', s: number, t: number, i: number) => string;

const sampleNamer: Namer = (field, s, t) =>
  `samples[${s}].${field === 'advantages' ? 'advantage' : field}[${t}]`;
const packedNamer: Namer = (field, s, t, i) => `${field}[${i}] (sample ${s}, position ${t})`;

function checkSampleShapes(samples: Sample[]): void {
  if (samples.length < 1) throw rangeError('samples: expected at least one sample, got 0', KernelErrorCode.INVALID_ARGUMENT);
  let total = 0;
  samples.forEach((sample, s) => {
    if (typeof sample !== 'object' || sample === null) throw typeError(`samples[${s}]: expected a Sample object, got ${sample === null ? 'null' : typeof sample}`);
    const L = expectArray(`samples[${s}].tokens`, sample.tokens, Int32Array).length;
    if (L < 1) throw rangeError(`samples[${s}].tokens: expected at least 1 token, got 0`, KernelErrorCode.INVALID_ARGUMENT);
    total += L;
    if (sample.trainable !== undefined) expectArray(`samples[${s}].trainable`, sample.trainable, Uint8Array, L);
    if (sample.oldLogprobs !== undefined) expectArray(`samples[${s}].oldLogprobs`, sample.oldLogprobs, Float32Array, L);
    if (sample.advantage !== undefined && typeof sample.advantage !== 'number')
      expectArray(`samples[${s}].advantage`, sample.advantage, Float32Array, L);
    if (sample.version !== undefined) expectInt(`samples[${s}].version`, sample.version, -(2 ** 31), INT32_MAX);
  });
  if (total > INT32_MAX) throw rangeError(`samples: ${total} tokens in all exceed the int32 limit of 2^31 - 1`);
}

/** Packs samples back to back (the layout the native build and the per-sample outputs use). */
export function packSamples(samples: Sample[]): PackedSamples {
  if (!Array.isArray(samples)) throw typeError(`samples: expected an Array of Sample, got ${typeof samples}`);
  checkSampleShapes(samples);
  const S = samples.length;
  const offsets = new Int32Array(S + 1);
  for (let s = 0; s < S; s++) offsets[s + 1] = offsets[s] + samples[s].tokens.length;
  const T = offsets[S];
  const tokens = new Int32Array(T);
  samples.forEach((x, s) => tokens.set(x.tokens, offsets[s]));
  const packed: PackedSamples = { tokens, offsets };
  // Optional fields are packed only when some sample has them; the others get the defaults.
  if (samples.some((x) => x.trainable)) {
    packed.trainable = new Uint8Array(T);
    samples.forEach((x, s) => x.trainable && packed.trainable!.set(x.trainable, offsets[s]));
  }
  if (samples.some((x) => x.oldLogprobs)) {
    packed.oldLogprobs = new Float32Array(T);
    samples.forEach((x, s) => x.oldLogprobs && packed.oldLogprobs!.set(x.oldLogprobs, offsets[s]));
  }
  if (samples.some((x) => x.advantage instanceof Float32Array)) {
    const adv = (packed.advantages = new Float32Array(T));
    samples.forEach((x, s) => {
      if (x.advantage instanceof Float32Array) adv.set(x.advantage, offsets[s]);
      else adv.fill(x.advantage ?? 0, offsets[s], offsets[s + 1]);
    });
  } else if (samples.some((x) => typeof x.advantage === 'number')) {
    packed.sampleAdvantages = Float32Array.from(samples, (x) => (x.advantage as number | undefined) ?? 0);
  }
  if (samples.some((x) => x.version !== undefined)) packed.versions = Int32Array.from(samples, (x) => x.version ?? 0);
  return packed;
}

function checkPackedShapes(p: PackedSamples): void {
  if (typeof p !== 'object' || p === null) throw typeError(`samples: expected a Sample[] or PackedSamples, got ${p === null ? 'null' : typeof p}`);
  const T = expectArray('tokens', p.tokens, Int32Array).length;
  const offsets = expectArray('offsets', p.offsets, Int32Array);
  if (offsets.length < 2) throw rangeError(`offsets: expected S + 1 >= 2 entries, got ${offsets.length}`, KernelErrorCode.INVALID_ARGUMENT);
  const S = offsets.length - 1;
  if (offsets[0] !== 0) throw rangeError(`offsets[0]: expected 0, got ${offsets[0]}`, KernelErrorCode.INVALID_ARGUMENT);
  for (let s = 0; s < S; s++)
    if (offsets[s + 1] <= offsets[s])
      throw rangeError(`offsets[${s + 1}]: sample ${s} is empty or offsets decrease (${offsets[s]}, ${offsets[s + 1]}); every sample needs at least one token`, KernelErrorCode.INVALID_ARGUMENT);
  if (offsets[S] !== T) throw rangeError(`offsets[${S}]: expected tokens.length = ${T}, got ${offsets[S]}`);
  if (p.trainable !== undefined) expectArray('trainable', p.trainable, Uint8Array, T);
  if (p.oldLogprobs !== undefined) expectArray('oldLogprobs', p.oldLogprobs, Float32Array, T);
  if (p.advantages !== undefined) expectArray('advantages', p.advantages, Float32Array, T);
  if (p.sampleAdvantages !== undefined) expectArray('sampleAdvantages', p.sampleAdvantages, Float32Array, S);
  if (p.versions !== undefined) expectArray('versions', p.versions, Int32Array, S);
}

function show(x: number): string {
  return Number.isNaN(x) ? 'NaN' : String(x);
}

// The value checks of the native build, with messages naming sample and position.
function checkPackedValues(p: PackedSamples, vocabSize: number, name: Namer, sampleAdvName: (s: number) => string): void {
  const { tokens, offsets, trainable, oldLogprobs, advantages, sampleAdvantages } = p;
  const range = vocabSize > 0 ? `[0, ${vocabSize})` : '[0, 2^31)';
  const limit = vocabSize > 0 ? vocabSize : 2 ** 31;
  for (let s = 0; s + 1 < offsets.length; s++) {
    let anyTrainable = false;
    for (let i = offsets[s], t = 0; i < offsets[s + 1]; i++, t++) {
      const tok = tokens[i];
      if (tok < 0 || tok >= limit) throw rangeError(`${name('tokens', s, t, i)}: token id ${tok} out of range ${range}`);
      if (!trainable) continue;
      const m = trainable[i];
      if (m > 1) throw rangeError(`${name('trainable', s, t, i)}: expected 0 or 1, got ${m}`, KernelErrorCode.INVALID_ARGUMENT);
      if (m === 0) continue;
      if (t === 0)
        throw rangeError(`${name('trainable', s, t, i)}: must be 0, no token of sample ${s} predicts its first token`, KernelErrorCode.INVALID_ARGUMENT);
      anyTrainable = true;
      if (oldLogprobs) {
        const x = oldLogprobs[i];
        if (!Number.isFinite(x))
          throw rangeError(`${name('oldLogprobs', s, t, i)}: expected a finite log-probability at a trainable position, got ${show(x)}`, KernelErrorCode.NON_FINITE);
      }
      if (advantages && !Number.isFinite(advantages[i]))
        throw rangeError(`${name('advantages', s, t, i)}: expected a finite advantage at a trainable position, got ${show(advantages[i])}`, KernelErrorCode.NON_FINITE);
    }
    if (anyTrainable && !advantages && sampleAdvantages && !Number.isFinite(sampleAdvantages[s]))
      throw rangeError(`${sampleAdvName(s)}: expected a finite advantage for a sample with trainable positions, got ${show(sampleAdvantages[s])}`, KernelErrorCode.NON_FINITE);
  }
}

// Validates `samples` and returns them packed.
function prepare(samples: Sample[] | PackedSamples, options: { vocabSize?: number } | undefined): { packed: PackedSamples; vocabSize: number } {
  if (options !== undefined && (typeof options !== 'object' || options === null))
    throw typeError(`options: expected an object, got ${options === null ? 'null' : typeof options}`);
  const vocabSize = options?.vocabSize === undefined ? 0 : expectInt('options.vocabSize', options.vocabSize, 1, INT32_MAX);
  let packed: PackedSamples;
  if (Array.isArray(samples)) {
    packed = packSamples(samples);
    checkPackedValues(packed, vocabSize, sampleNamer, (s) => `samples[${s}].advantage`);
  } else {
    checkPackedShapes(samples);
    packed = { ...samples, offsets: samples.offsets.slice() };  // the tree keeps its own offsets
    checkPackedValues(packed, vocabSize, packedNamer, (s) => `sampleAdvantages[${s}]`);
  }
  return { packed, vocabSize };
}

function callBuild(packed: PackedSamples, vocabSize: number, async: boolean): unknown {
  const p = packed;
  return addon.prefixTreeBuild(p.tokens, p.offsets, p.trainable ?? null, p.oldLogprobs ?? null, p.advantages ?? null,
    p.sampleAdvantages ?? null, p.versions ?? null, vocabSize, async);
}

// ---- the tree object ---------------------------------------------------------------------------

const treePrototype = {
  nodeOfSample(this: PrefixTree, s: number): Int32Array {
    expectInt('s', s, 0, this.numSamples - 1);
    return this.nodeOf.subarray(this.offsets[s], this.offsets[s + 1]);
  },
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function wrap(raw: any, offsets: Int32Array): PrefixTree {
  const tree: PrefixTree = Object.create(treePrototype);
  return Object.assign(tree, {
    numNodes: raw.numNodes,
    numSegments: raw.numSegments,
    numTerms: raw.numTerms,
    numSamples: raw.numSamples,
    maxDepth: raw.maxDepth,
    token: raw.token,
    parent: raw.parent,
    position: raw.position,
    subtreeEnd: raw.subtreeEnd,
    segmentOf: raw.segmentOf,
    segStart: raw.segStart,
    segLen: raw.segLen,
    segParent: raw.segParent,
    terms: {
      node: raw.termNode,
      target: raw.termTarget,
      oldLogprob: raw.termOldLogprob,
      advantage: raw.termAdvantage,
      sample: raw.termSample,
      position: raw.termPosition,
      version: raw.termVersion,
    },
    offsets,
    nodeOf: raw.nodeOf,
    stats: { inputTokens: raw.inputTokens, treeTokens: raw.numNodes, ratio: raw.inputTokens / raw.numNodes },
  });
}

/**
 * Builds the prefix tree of a batch. `options.vocabSize` (when given) bounds the token ids.
 * Throws TypeError / RangeError (with `code`) naming the argument, sample and position at fault.
 */
export function buildPrefixTree(samples: Sample[] | PackedSamples, options?: { vocabSize?: number }): PrefixTree {
  const { packed, vocabSize } = prepare(samples, options);
  return wrap(callBuild(packed, vocabSize, false), packed.offsets);
}

/**
 * buildPrefixTree off the event loop (validation runs synchronously first, so bad input throws
 * before a promise exists). The input arrays must not be modified until the promise settles.
 */
export async function buildPrefixTreeAsync(samples: Sample[] | PackedSamples, options?: { vocabSize?: number }): Promise<PrefixTree> {
  const { packed, vocabSize } = prepare(samples, options);
  return wrap(await (callBuild(packed, vocabSize, true) as Promise<unknown>), packed.offsets);
}

// ---- layouts -----------------------------------------------------------------------------------

type TreeLayout = Pick<PrefixTree, 'numNodes' | 'nodeOf'>;

function layoutArgs(tree: TreeLayout, values: unknown, valuesName: string, channels: number, rows: 'nodes' | 'positions') {
  if (typeof tree !== 'object' || tree === null) throw typeError(`tree: expected a PrefixTree, got ${tree === null ? 'null' : typeof tree}`);
  const nodeOf = expectArray('tree.nodeOf', tree.nodeOf, Int32Array);
  const numNodes = expectInt('tree.numNodes', tree.numNodes, 1, 2 ** 31);
  expectInt('channels', channels, 1, INT32_MAX);
  const n = rows === 'nodes' ? numNodes : nodeOf.length;
  const data = expectArray(valuesName, values, Float32Array, n * channels);
  return { nodeOf, numNodes, data };
}

/** Where a layout call runs: options.backend (lib/backend.ts), or the default. */
function layoutOn(what: string, options: unknown): 'cpu' | 'cuda' {
  if (options === undefined) return chooseBackend(what, undefined);
  if (typeof options !== 'object' || options === null) throw typeError(`options: expected { backend }, got ${options === null ? 'null' : typeof options}`);
  return chooseBackend(what, (options as BackendOption).backend);
}

/** Per-node values [N, C] -> per-sample layout [T, C]: row i is the row of node nodeOf[i]. */
export function gatherToSamples(tree: TreeLayout, nodeValues: Float32Array, channels = 1, options?: BackendOption): Float32Array {
  const { nodeOf, numNodes, data } = layoutArgs(tree, nodeValues, 'nodeValues', channels, 'nodes');
  if (layoutOn('gatherToSamples', options) === 'cuda') return gatherToSamplesOnDevice(nodeOf, numNodes, data, channels);
  return addon.gatherToSamples(data, numNodes, channels, nodeOf, false) as Float32Array;
}

/**
 * gatherToSamples on a worker thread; `nodeValues` must not change until the promise settles. With
 * backend 'cuda' the device call blocks the event loop until the device is done.
 */
export async function gatherToSamplesAsync(tree: TreeLayout, nodeValues: Float32Array, channels = 1, options?: BackendOption): Promise<Float32Array> {
  const { nodeOf, numNodes, data } = layoutArgs(tree, nodeValues, 'nodeValues', channels, 'nodes');
  if (layoutOn('gatherToSamplesAsync', options) === 'cuda') return gatherToSamplesOnDevice(nodeOf, numNodes, data, channels);
  return (await addon.gatherToSamples(data, numNodes, channels, nodeOf, true)) as Float32Array;
}

/** Per-sample values [T, C] -> per-node [N, C], summed (in float64) over the positions sharing a node: the adjoint of gather, for gradients. */
export function scatterFromSamples(tree: TreeLayout, sampleValues: Float32Array, channels = 1, options?: BackendOption): Float32Array {
  const { nodeOf, numNodes, data } = layoutArgs(tree, sampleValues, 'sampleValues', channels, 'positions');
  if (layoutOn('scatterFromSamples', options) === 'cuda') return scatterFromSamplesOnDevice(nodeOf, numNodes, data, channels);
  return addon.scatterFromSamples(data, channels, nodeOf, numNodes, false) as Float32Array;
}

/**
 * scatterFromSamples on a worker thread; `sampleValues` must not change until the promise settles.
 * With backend 'cuda' the device call blocks the event loop until the device is done.
 */
export async function scatterFromSamplesAsync(tree: TreeLayout, sampleValues: Float32Array, channels = 1, options?: BackendOption): Promise<Float32Array> {
  const { nodeOf, numNodes, data } = layoutArgs(tree, sampleValues, 'sampleValues', channels, 'positions');
  if (layoutOn('scatterFromSamplesAsync', options) === 'cuda') return scatterFromSamplesOnDevice(nodeOf, numNodes, data, channels);
  return (await addon.scatterFromSamples(data, channels, nodeOf, numNodes, true)) as Float32Array;
}

/**
 * Per-sample values [T, C] -> per-node [N, C], merged: node n takes the row of its FIRST position
 * (the lowest i with nodeOf[i] = n), a node without positions a zero row. For values equal at every
 * position of a node by construction (a packed per-sample K/V cache becoming the tree's K/V) this
 * undoes gatherToSamples; the copies are not compared. Use scatterFromSamples to sum gradients.
 */
export function mergeToTree(tree: TreeLayout, sampleValues: Float32Array, channels = 1): Float32Array {
  const { nodeOf, numNodes, data } = layoutArgs(tree, sampleValues, 'sampleValues', channels, 'positions');
  return addon.mergeToTree(data, channels, nodeOf, numNodes, false) as Float32Array;
}

/** mergeToTree on a worker thread; `sampleValues` must not change until the promise settles. */
export async function mergeToTreeAsync(tree: TreeLayout, sampleValues: Float32Array, channels = 1): Promise<Float32Array> {
  const { nodeOf, numNodes, data } = layoutArgs(tree, sampleValues, 'sampleValues', channels, 'positions');
  return (await addon.mergeToTree(data, channels, nodeOf, numNodes, true)) as Float32Array;
}

/**
 * Checks that (parent, subtreeEnd) describe a forest in DFS pre-order (the tree tree-attention
 * takes): parent[i] in [-1, i) and on the root path of i - 1, subtreeEnd[i] = i + 1 + descendants.
 * Throws a RangeError whose message names the first bad entry (code FORGE_ERR_OUT_OF_RANGE or
 * FORGE_ERR_INVALID_ARGUMENT).
 */
export function validateTree(parent: Int32Array, subtreeEnd: Int32Array): void {
  const N = expectArray('parent', parent, Int32Array).length;
  if (N < 1) throw rangeError('parent: expected at least 1 node, got 0', KernelErrorCode.INVALID_ARGUMENT);
  expectArray('subtreeEnd', subtreeEnd, Int32Array, N);
  addon.treeValidate(parent, subtreeEnd, false);
}
