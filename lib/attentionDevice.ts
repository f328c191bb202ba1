// Tree attention (DESIGN.md contract 2) on the GPU: typed wrappers over forge_cuda_tree_attention_forward
// / _backward on DeviceTensors (lib/device.ts). Same semantics as treeAttention in lib/attention.ts:
// query q attends to key a iff a <= q < subtreeEnd[a] (nodes in DFS pre-order), query head h reads kv
// head floor(h / (Hq / Hkv)). Tensors 'bf16' or 'f16' (tensor cores, float32 accumulation) or 'f32'
// (a float32 reference path); head dim 64 or 128. Arguments are checked here first (TypeError /
// RangeError naming the argument, before any device call); each call returns when the device work is
// done. subtreeEnd is trusted: check the tree on the host before uploading it (validateTree in
// prefixTree.ts; a PrefixTree is valid by construction): a bad entry gives wrong numbers, never a bad
// read.
import { DeviceTensor, type DeviceDtype } from './device.js';
import { KernelErrorCode, rangeError, typeError } from './errors.js';
import { addon } from './native.js';
import { expectFinite, expectInt } from './validate.js';

/** The head dimensions the device kernels serve. */
export const DEVICE_HEAD_DIMS: readonly number[] = [64, 128];
const MAX_HEADS = 2 ** 21 - 1;
const FORGE_DTYPE = { f32: 0, f16: 1, bf16: 2 } as const;
type FloatDtype = keyof typeof FORGE_DTYPE;
const INVALID = KernelErrorCode.INVALID_ARGUMENT;

/** Shape of a device attention call. */
export interface DeviceAttentionOptions {
  /** Query heads Hq >= 1. */
  numHeads: number;
  /** Key/value heads Hkv, dividing numHeads. Default: numHeads. */
  numKvHeads?: number;
  /** Head dimension D: 64 or 128. */
  headDim: number;
  /** Softmax scale, finite and > 0. Default: 1 / sqrt(headDim). */
  scale?: number;
}

/** Forward result, in device memory: free both when done. */
export interface DeviceAttentionOutput {
  /** [N, Hq, D], the dtype of q. */
  o: DeviceTensor;
  /** [N, Hq] 'f32', natural-log sum of exp(scale * q.k) over the keys each query sees. */
  lse: DeviceTensor;
}

/** Gradients in device memory, in the dtype of q: free them when done. */
export interface DeviceAttentionGrads {
  /** [N, Hq, D] */
  dq: DeviceTensor;
  /** [N, Hkv, D] */
  dk: DeviceTensor;
  /** [N, Hkv, D] */
  dv: DeviceTensor;
}

interface Shape {
  hq: number;
  hkv: number;
  d: number;
  scale: number;
}

function shapeOf(options: unknown): Shape {
  if (typeof options !== 'object' || options === null) throw typeError('options: expected an object');
  const o = options as Record<string, unknown>;
  const hq = expectInt('options.numHeads', o.numHeads, 1, MAX_HEADS);
  const hkv = o.numKvHeads === undefined ? hq : expectInt('options.numKvHeads', o.numKvHeads, 1, hq);
  if (hq % hkv !== 0) throw rangeError(`options.numHeads: expected a multiple of numKvHeads (${hkv}), got ${hq}`, INVALID);
  const d = expectInt('options.headDim', o.headDim, 1);
  if (!DEVICE_HEAD_DIMS.includes(d))
    throw rangeError(`options.headDim: the GPU kernels serve ${DEVICE_HEAD_DIMS.join(' or ')}, got ${d}`, KernelErrorCode.UNSUPPORTED);
  let scale = 1 / Math.sqrt(d);
  if (o.scale !== undefined) {
    scale = expectFinite('options.scale', o.scale);
    if (!(scale > 0)) throw rangeError(`options.scale: expected a number > 0, got ${scale}`);
  }
  return { hq, hkv, d, scale };
}

function expectDeviceTensor(name: string, value: unknown, dtypes: readonly DeviceDtype[]): DeviceTensor {
  if (!(value instanceof DeviceTensor)) throw typeError(`${name}: expected a DeviceTensor`);
  if (value.freed) throw rangeError(`${name}: used after free()`, INVALID);
  if (!dtypes.includes(value.dtype)) throw rangeError(`${name}: expected dtype ${dtypes.join(' or ')}, got '${value.dtype}'`, INVALID);
  return value;
}

/** A DeviceTensor of one of `dtypes` holding exactly `length` elements (any shape with that many). */
function expectOperand(name: string, value: unknown, dtypes: readonly DeviceDtype[], length: number, dims: string): DeviceTensor {
  const t = expectDeviceTensor(name, value, dtypes);
  if (t.length !== length) throw rangeError(`${name}: expected ${length} elements (${dims}), got ${t.length} ([${t.shape.join(', ')}])`, INVALID);
  return t;
}

interface Checked extends Shape {
  n: number;
  dtype: FloatDtype;
  q: DeviceTensor;
  k: DeviceTensor;
  v: DeviceTensor;
  subtreeEnd: DeviceTensor;
}

function checkInputs(q: unknown, k: unknown, v: unknown, subtreeEnd: unknown, options: unknown): Checked {
  const s = shapeOf(options);
  const ends = expectDeviceTensor('subtreeEnd', subtreeEnd, ['i32']);
  const n = ends.length;
  if (n < 1) throw rangeError('subtreeEnd: expected at least 1 node, got 0', INVALID);
  const qt = expectOperand('q', q, ['bf16', 'f16', 'f32'], n * s.hq * s.d, `[N=${n}, Hq=${s.hq}, D=${s.d}]`);
  const same = [qt.dtype];
  const kvDims = `[N=${n}, Hkv=${s.hkv}, D=${s.d}], dtype of q`;
  const kt = expectOperand('k', k, same, n * s.hkv * s.d, kvDims);
  const vt = expectOperand('v', v, same, n * s.hkv * s.d, kvDims);
  return { ...s, n, dtype: qt.dtype as FloatDtype, q: qt, k: kt, v: vt, subtreeEnd: ends };
}

const shapeArgs = (c: Checked) => [FORGE_DTYPE[c.dtype], c.n, c.hq, c.hkv, c.d, c.scale];

/** Allocates outputs one by one; frees those made so far if `body` (or a later allocation) throws. */
function withOutputs<T>(make: (() => DeviceTensor)[], body: (outputs: DeviceTensor[]) => T): T {
  const outputs: DeviceTensor[] = [];
  try {
    for (const m of make) outputs.push(m());
    return body(outputs);
  } catch (e) {
    for (const t of outputs) t.free();
    throw e;
  }
}

/**
 * Tree attention forward on the GPU. q [N, Hq, D], k and v [N, Hkv, D] (one dtype: 'bf16', 'f16' or
 * 'f32'), subtreeEnd 'i32' [N]. Returns new tensors o [N, Hq, D] (dtype of q) and lse [N, Hq] 'f32'.
 */
export function treeAttentionDevice(
  q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, subtreeEnd: DeviceTensor, options: DeviceAttentionOptions,
): DeviceAttentionOutput {
  const c = checkInputs(q, k, v, subtreeEnd, options);
  return withOutputs(
    [() => DeviceTensor.empty([c.n, c.hq, c.d], c.dtype), () => DeviceTensor.empty([c.n, c.hq], 'f32')],
    ([o, lse]) => {
      addon.cudaTreeAttention(...shapeArgs(c), c.q.address, c.k.address, c.v.address, c.subtreeEnd.address, o.address, lse.address);
      return { o, lse };
    },
  );
}

/**
 * Tree attention backward on the GPU. `forward` is what treeAttentionDevice returned for these inputs
 * (its lse must be finite: it is not checked on the device), dO [N, Hq, D] in the dtype of q. Returns
 * new tensors dq [N, Hq, D], dk and dv [N, Hkv, D] in the dtype of q.
 */
export function treeAttentionBackwardDevice(
  q: DeviceTensor, k: DeviceTensor, v: DeviceTensor, subtreeEnd: DeviceTensor, forward: DeviceAttentionOutput,
  dO: DeviceTensor, options: DeviceAttentionOptions,
): DeviceAttentionGrads {
  const c = checkInputs(q, k, v, subtreeEnd, options);
  if (typeof forward !== 'object' || forward === null) throw typeError('forward: expected { o, lse }');
  const qDims = `[N=${c.n}, Hq=${c.hq}, D=${c.d}], dtype of q`;
  const o = expectOperand('forward.o', forward.o, [c.dtype], c.n * c.hq * c.d, qDims);
  const lse = expectOperand('forward.lse', forward.lse, ['f32'], c.n * c.hq, `[N=${c.n}, Hq=${c.hq}]`);
  const g = expectOperand('dO', dO, [c.dtype], c.n * c.hq * c.d, qDims);
  return withOutputs(
    [
      () => DeviceTensor.empty([c.n, c.hq, c.d], c.dtype),
      () => DeviceTensor.empty([c.n, c.hkv, c.d], c.dtype),
      () => DeviceTensor.empty([c.n, c.hkv, c.d], c.dtype),
    ],
    ([dq, dk, dv]) => {
      addon.cudaTreeAttentionBackward(
        ...shapeArgs(c), c.q.address, c.k.address, c.v.address, c.subtreeEnd.address,
        o.address, lse.address, g.address, dq.address, dk.address, dv.address,
      );
      return { dq, dk, dv };
    },
  );
}
