// Tree attention and attention-state merging (DESIGN.md contract 2), typed wrappers over the native
// kernels. Tensors are row-major Float32Arrays [tokens, heads, dim], taken zero-copy; every output is a
// fresh Float32Array. Arguments are validated here first (TypeError / RangeError naming the argument
// and what was expected, with a `code` from errors.ts); the native layer re-checks what it reads, and
// reports a malformed tree as a RangeError naming the node. `options.backend` picks the CPU or the
// device kernels (lib/backend.ts).
import { chooseBackend, type BackendOption } from './backend.js';
import { addon } from './native.js';
import { KernelErrorCode, rangeError, typeError } from './errors.js';
import {
  attentionUnsupported, mergeStatesCsrOnDevice, mergeStatesOnDevice, treeAttentionBackwardOnDevice, treeAttentionOnDevice,
  type AttentionShape,
} from './hostDevice.js';
import { expectArray, expectFinite, expectInt } from './validate.js';

/** Largest head dimension the CPU kernels support. */
export const MAX_HEAD_DIM = 1024;
const MAX_HEADS = 2 ** 21 - 1;

/** Shape of an attention call, and where it runs. */
export interface AttentionOptions extends BackendOption {
  /** Query heads Hq >= 1. */
  numHeads: number;
  /** Key/value heads Hkv (grouped-query attention); divides numHeads. Default: numHeads. */
  numKvHeads?: number;
  /** Head dimension D, 1..1024. */
  headDim: number;
  /** Softmax scale, finite and > 0. Default: 1 / sqrt(headDim). */
  scale?: number;
}

/**
 * A forest in DFS pre-order: `parent[i]` (-1 at a root) and `subtreeEnd[i]` (exclusive), so node a is
 * an ancestor-or-self of q iff a <= q < subtreeEnd[a]. A PrefixTree from prefixTree.ts satisfies it.
 */
export interface TreeLike {
  parent: Int32Array;
  subtreeEnd: Int32Array;
}

/** Forward result: query q attends to its ancestors-or-self. */
export interface AttentionOutput {
  /** [N, Hq, D] attention output. */
  o: Float32Array;
  /** [N, Hq] natural-log sum of exp(scale * q.k) over the keys each query sees. */
  lse: Float32Array;
}

/** Gradients of a loss with respect to the forward's inputs. */
export interface AttentionGrads {
  /** [N, Hq, D] */
  dq: Float32Array;
  /** [N, Hkv, D] */
  dk: Float32Array;
  /** [N, Hkv, D] */
  dv: Float32Array;
}

/** A normalised attention state per row and head over some key set; lse = -Infinity is the empty state. */
export interface AttentionState {
  /** [rows, H, D] */
  o: Float32Array;
  /** [rows, H] natural log; finite or -Infinity. */
  lse: Float32Array;
}

/** Shape of a merge call, and where it runs. */
export interface MergeOptions extends BackendOption {
  numHeads: number;
  headDim: number;
}

function expectObject(name: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null)
    throw typeError(`${name}: expected an object, got ${value === null ? 'null' : typeof value}`);
  return value as Record<string, unknown>;
}

/** A Float32Array of exactly `length` elements; `dims` says where the length comes from. */
function expectTensor(name: string, value: unknown, length: number, dims: string): Float32Array {
  const array = expectArray(name, value, Float32Array);
  if (array.length !== length) throw rangeError(`${name}: expected ${length} elements (${dims}), got ${array.length}`);
  return array;
}

function attentionShape(tree: unknown, options: unknown): AttentionShape & { parent: Int32Array; subtreeEnd: Int32Array } {
  const t = expectObject('tree', tree);
  const parent = expectArray('tree.parent', t.parent, Int32Array);
  const n = parent.length;
  if (n < 1) throw rangeError('tree.parent: expected at least 1 node, got 0', KernelErrorCode.INVALID_ARGUMENT);
  const subtreeEnd = expectArray('tree.subtreeEnd', t.subtreeEnd, Int32Array);
  if (subtreeEnd.length !== n)
    throw rangeError(`tree.subtreeEnd: expected ${n} elements (one per node, like tree.parent), got ${subtreeEnd.length}`);
  const o = expectObject('options', options);
  const hq = expectInt('options.numHeads', o.numHeads, 1, MAX_HEADS);
  const hkv = o.numKvHeads === undefined ? hq : expectInt('options.numKvHeads', o.numKvHeads, 1, hq);
  if (hq % hkv !== 0)
    throw rangeError(`options.numHeads: expected a multiple of numKvHeads (${hkv}), got ${hq}`, KernelErrorCode.INVALID_ARGUMENT);
  const d = expectInt('options.headDim', o.headDim, 1, MAX_HEAD_DIM);
  let scale = 1 / Math.sqrt(d);
  if (o.scale !== undefined) {
    scale = expectFinite('options.scale', o.scale);
    if (!(scale > 0)) throw rangeError(`options.scale: expected a number > 0, got ${scale}`);
  }
  return { n, hq, hkv, d, scale, parent, subtreeEnd };
}

interface ForwardInputs {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  parent: Int32Array;
  subtreeEnd: Int32Array;
  shape: AttentionShape;
}

interface BackwardInputs extends ForwardInputs {
  forward: AttentionOutput;
  dO: Float32Array;
}

function forwardInputs(q: unknown, k: unknown, v: unknown, tree: unknown, options: unknown): ForwardInputs {
  const { parent, subtreeEnd, ...shape } = attentionShape(tree, options);
  const { n, hq, hkv, d } = shape;
  const qDims = `[N=${n}, Hq=${hq}, D=${d}]`, kvDims = `[N=${n}, Hkv=${hkv}, D=${d}]`;
  return {
    q: expectTensor('q', q, n * hq * d, qDims), k: expectTensor('k', k, n * hkv * d, kvDims),
    v: expectTensor('v', v, n * hkv * d, kvDims), parent, subtreeEnd, shape,
  };
}

function backwardInputs(
  q: unknown, k: unknown, v: unknown, tree: unknown, forward: unknown, dO: unknown, options: unknown,
): BackwardInputs {
  const inputs = forwardInputs(q, k, v, tree, options);
  const { n, hq, d } = inputs.shape;
  const f = expectObject('forward', forward);
  const o = expectTensor('forward.o', f.o, n * hq * d, `[N=${n}, Hq=${hq}, D=${d}]`);
  const lse = expectTensor('forward.lse', f.lse, n * hq, `[N=${n}, Hq=${hq}]`);
  return { ...inputs, forward: { o, lse }, dO: expectTensor('dO', dO, n * hq * d, `[N=${n}, Hq=${hq}, D=${d}]`) };
}

// The addon's argument lists (without the trailing `async`).
const forwardCall = ({ q, k, v, parent, subtreeEnd, shape: s }: ForwardInputs) => [q, k, v, parent, subtreeEnd, s.hq, s.hkv, s.d, s.scale];
const backwardCall = ({ q, k, v, parent, subtreeEnd, forward, dO, shape: s }: BackwardInputs) =>
  [q, k, v, parent, subtreeEnd, forward.o, forward.lse, dO, s.hq, s.hkv, s.d, s.scale];

/** Where this attention call runs: options.backend (or the default), the head dim permitting. */
const attentionOn = (what: string, options: AttentionOptions, inputs: ForwardInputs) =>
  chooseBackend(what, options.backend, attentionUnsupported(inputs.shape.d));

const forwardOnDevice = (i: ForwardInputs) => treeAttentionOnDevice(i.q, i.k, i.v, i.parent, i.subtreeEnd, i.shape);
const backwardOnDevice = (i: BackwardInputs) =>
  treeAttentionBackwardOnDevice(i.q, i.k, i.v, i.parent, i.subtreeEnd, i.forward, i.dO, i.shape);

/**
 * Tree attention forward: query q attends to every ancestor-or-self of q.
 * q [N, Hq, D], k and v [N, Hkv, D]; query head h reads kv head floor(h / (Hq / Hkv)).
 * Returns o [N, Hq, D] and lse [N, Hq].
 */
export function treeAttention(
  q: Float32Array, k: Float32Array, v: Float32Array, tree: TreeLike, options: AttentionOptions,
): AttentionOutput {
  const inputs = forwardInputs(q, k, v, tree, options);
  if (attentionOn('treeAttention', options, inputs) === 'cuda') return forwardOnDevice(inputs);
  return addon.treeAttention(...forwardCall(inputs), false) as AttentionOutput;
}

/**
 * treeAttention on a worker thread; invalid arguments reject the promise. With backend 'cuda' the
 * device call blocks the event loop until the device is done.
 */
export async function treeAttentionAsync(
  q: Float32Array, k: Float32Array, v: Float32Array, tree: TreeLike, options: AttentionOptions,
): Promise<AttentionOutput> {
  const inputs = forwardInputs(q, k, v, tree, options);
  if (attentionOn('treeAttentionAsync', options, inputs) === 'cuda') return forwardOnDevice(inputs);
  return (await addon.treeAttention(...forwardCall(inputs), true)) as AttentionOutput;
}

/**
 * Tree attention backward. `forward` is what treeAttention returned for these inputs, dO [N, Hq, D] the
 * gradient of the loss with respect to o. Returns dq [N, Hq, D], dk and dv [N, Hkv, D].
 */
export function treeAttentionBackward(
  q: Float32Array, k: Float32Array, v: Float32Array, tree: TreeLike, forward: AttentionOutput, dO: Float32Array,
  options: AttentionOptions,
): AttentionGrads {
  const b = backwardInputs(q, k, v, tree, forward, dO, options);
  if (attentionOn('treeAttentionBackward', options, b) === 'cuda') return backwardOnDevice(b);
  return addon.treeAttentionBackward(...backwardCall(b), false) as AttentionGrads;
}

/**
 * treeAttentionBackward on a worker thread; invalid arguments reject the promise. With backend 'cuda'
 * the device call blocks the event loop until the device is done.
 */
export async function treeAttentionBackwardAsync(
  q: Float32Array, k: Float32Array, v: Float32Array, tree: TreeLike, forward: AttentionOutput, dO: Float32Array,
  options: AttentionOptions,
): Promise<AttentionGrads> {
  const b = backwardInputs(q, k, v, tree, forward, dO, options);
  if (attentionOn('treeAttentionBackwardAsync', options, b) === 'cuda') return backwardOnDevice(b);
  return (await addon.treeAttentionBackward(...backwardCall(b), true)) as AttentionGrads;
}

// ---- state merging -----------------------------------------------------------------------------

function mergeShape(options: unknown): { h: number; d: number } {
  const o = expectObject('options', options);
  return {
    h: expectInt('options.numHeads', o.numHeads, 1, MAX_HEADS),
    d: expectInt('options.headDim', o.headDim, 1, 2 ** 20),
  };
}

/** Checks a state and returns its row count. */
function stateRows(name: string, state: unknown, h: number, d: number, rows?: number): number {
  const s = expectObject(name, state);
  const lse = expectArray(`${name}.lse`, s.lse, Float32Array);
  if (rows === undefined) {
    if (lse.length % h !== 0)
      throw rangeError(`${name}.lse: expected a multiple of numHeads (${h}) elements ([rows, H=${h}]), got ${lse.length}`);
    rows = lse.length / h;
  } else if (lse.length !== rows * h) {
    throw rangeError(`${name}.lse: expected ${rows * h} elements ([rows=${rows}, H=${h}]), got ${lse.length}`);
  }
  expectTensor(`${name}.o`, s.o, rows * h * d, `[rows=${rows}, H=${h}, D=${d}]`);
  for (let i = 0; i < lse.length; i++) {
    const x = lse[i];
    if (Number.isNaN(x) || x === Infinity)
      throw rangeError(`${name}.lse[${i}]: expected a finite number or -Infinity (empty state), got ${x}`, KernelErrorCode.NON_FINITE);
  }
  return rows;
}

type MergeArgs = [aO: Float32Array, aLse: Float32Array, bO: Float32Array, bLse: Float32Array, h: number, d: number];
type CsrArgs = [o: Float32Array, lse: Float32Array, offsets: Int32Array, h: number, d: number];

function mergeArgs(a: unknown, b: unknown, options: unknown): MergeArgs {
  const { h, d } = mergeShape(options);
  const rows = stateRows('a', a, h, d);
  stateRows('b', b, h, d, rows);
  const sa = a as AttentionState, sb = b as AttentionState;
  return [sa.o, sa.lse, sb.o, sb.lse, h, d];
}

function csrArgs(states: unknown, offsets: unknown, options: unknown): CsrArgs {
  const { h, d } = mergeShape(options);
  const m = stateRows('states', states, h, d);
  const off = expectArray('offsets', offsets, Int32Array);
  if (off.length < 1) throw rangeError('offsets: expected rows + 1 >= 1 elements, got 0', KernelErrorCode.INVALID_ARGUMENT);
  if (off[0] !== 0) throw rangeError(`offsets[0]: expected 0, got ${off[0]}`, KernelErrorCode.INVALID_ARGUMENT);
  for (let r = 1; r < off.length; r++)
    if (off[r] < off[r - 1]) throw rangeError(`offsets[${r}]: expected >= offsets[${r - 1}] (${off[r - 1]}), got ${off[r]}`);
  if (off[off.length - 1] !== m)
    throw rangeError(`offsets[${off.length - 1}]: expected the number of input states (${m}), got ${off[off.length - 1]}`);
  const s = states as AttentionState;
  return [s.o, s.lse, off, h, d];
}

/**
 * Merges two normalised states over disjoint key sets, row by row and head by head:
 * lse = log(e^la + e^lb), o = (e^la oa + e^lb ob) / (e^la + e^lb). a and b are [rows, H, D] / [rows, H].
 */
export function mergeStates(a: AttentionState, b: AttentionState, options: MergeOptions): AttentionState {
  const args = mergeArgs(a, b, options);
  if (chooseBackend('mergeStates', options.backend) === 'cuda') return mergeOnDevice(args);
  return addon.mergeStates(...args, false) as AttentionState;
}

/** mergeStates on a worker thread (with backend 'cuda': on the device, blocking); invalid arguments reject the promise. */
export async function mergeStatesAsync(a: AttentionState, b: AttentionState, options: MergeOptions): Promise<AttentionState> {
  const args = mergeArgs(a, b, options);
  if (chooseBackend('mergeStatesAsync', options.backend) === 'cuda') return mergeOnDevice(args);
  return (await addon.mergeStates(...args, true)) as AttentionState;
}

const mergeOnDevice = ([aO, aLse, bO, bLse, h, d]: MergeArgs) => mergeStatesOnDevice({ o: aO, lse: aLse }, { o: bO, lse: bLse }, h, d);
const csrOnDevice = ([o, lse, offsets, h, d]: CsrArgs) => mergeStatesCsrOnDevice({ o, lse }, offsets, h, d);

/**
 * N-way merge: `states` holds M input rows [M, H, D] / [M, H]; output row r merges input rows
 * [offsets[r], offsets[r+1]) (offsets [rows + 1], offsets[0] = 0, non-decreasing, last = M).
 * An empty range gives the empty state (o = 0, lse = -Infinity).
 */
export function mergeStatesCsr(states: AttentionState, offsets: Int32Array, options: MergeOptions): AttentionState {
  const args = csrArgs(states, offsets, options);
  if (chooseBackend('mergeStatesCsr', options.backend) === 'cuda') return csrOnDevice(args);
  return addon.mergeStatesCsr(...args, false) as AttentionState;
}

/** mergeStatesCsr on a worker thread (with backend 'cuda': on the device, blocking); invalid arguments reject the promise. */
export async function mergeStatesCsrAsync(
  states: AttentionState, offsets: Int32Array, options: MergeOptions,
): Promise<AttentionState> {
  const args = csrArgs(states, offsets, options);
  if (chooseBackend('mergeStatesCsrAsync', options.backend) === 'cuda') return csrOnDevice(args);
  return (await addon.mergeStatesCsr(...args, true)) as AttentionState;
}
