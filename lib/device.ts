// The device kernels of contracts 1-3 from TypeScript: thin wrappers over the addon. Shapes and
// dtypes are checked here first (TypeError / RangeError naming the argument, before any device call);
// without a usable GPU every call throws an Error with code FORGE_ERR_DEVICE naming the reason. Each
// wrapper returns when the device work is done (the addon synchronises). Tensors: deviceTensor.ts.
import type { CispoOptions, CispoStats } from './cispo.js';
import { rangeError, typeError } from './errors.js';
import { resolveLossOptions } from './lossOptions.js';
import { addon } from './native.js';
import { expectArray, expectInt } from './validate.js';
import {
  DeviceTensor,
  expectLength,
  expectTensor,
  FORGE_DTYPE,
  INVALID,
  requireGpu,
  withOutputs,
} from './deviceTensor.js';

export { device, selectBackend, DeviceTensor, type DeviceDtype, type DeviceReport, type GpuInfo } from './deviceTensor.js';

export interface DeviceLossTerms {
  node: DeviceTensor;
  target: DeviceTensor;
  oldLogprob: DeviceTensor;
  advantage: DeviceTensor;
}

export interface DeviceCispoResult {
  loss: number;
  /** [N, V] in the logits dtype (logits itself with inPlace); absent when grad is false. */
  dlogits?: DeviceTensor;
  /** [J] float32. */
  logprobs: DeviceTensor;
  stats: CispoStats;
}

/**
 * cispoLoss (lib/cispo.ts) on the device: logits [N, V] 'f32' or 'bf16', options as there. A
 * non-finite logit throws FORGE_ERR_NON_FINITE naming its row and column. Term node / target values
 * are trusted (validate them on the host, e.g. they come from buildPrefixTree): out-of-range entries
 * are skipped, never read out of bounds.
 */
export function cispoLossDevice(logits: DeviceTensor, terms: DeviceLossTerms, options?: CispoOptions): DeviceCispoResult {
  const z = expectTensor('logits', logits, ['f32', 'bf16'], [2]);
  const [N, V] = z.shape;
  if (V < 1) throw rangeError('logits: expected a vocabulary of at least 1 column', INVALID);
  if (typeof terms !== 'object' || terms === null) throw typeError('terms: expected { node, target, oldLogprob, advantage }');
  const node = expectTensor('terms.node', terms.node, ['i32'], [1]);
  const J = node.length;
  const target = expectTensor('terms.target', terms.target, ['i32'], [1]);
  const oldLogprob = expectTensor('terms.oldLogprob', terms.oldLogprob, ['f32'], [1]);
  const advantage = expectTensor('terms.advantage', terms.advantage, ['f32'], [1]);
  for (const [name, t] of [['terms.target', target], ['terms.oldLogprob', oldLogprob], ['terms.advantage', advantage]] as const)
    expectLength(name, t, J, 'one per term, like terms.node');
  const o = resolveLossOptions(options);
  requireGpu('cispoLossDevice');

  const logprobs = DeviceTensor.empty([J], 'f32');
  const dlogits = o.grad ? (o.inPlace ? z : DeviceTensor.empty([N, V], z.dtype)) : undefined;
  const owned = dlogits && dlogits !== z ? [logprobs, dlogits] : [logprobs];
  return withOutputs(owned, () => {
    const result = addon.cudaCispoLoss(
      FORGE_DTYPE[z.dtype as 'f32' | 'bf16'], N, V, z.address, J,
      node.address, target.address, oldLogprob.address, advantage.address,
      o.mode, o.epsLow, o.epsHigh, o.normalizer, dlogits ? dlogits.address : null, logprobs.address,
    ) as { loss: number; stats: CispoStats };
    return { loss: result.loss, dlogits, logprobs, stats: result.stats };
  });
}

/**
 * gatherToSamples on the device: nodeValues [N] or [N, C] (any float dtype), nodeOf 'i32' [T] -> [T(, C)],
 * same dtype. nodeOf is trusted (validate it on the host; a PrefixTree's is valid by construction): a row
 * whose node is out of [0, N) is left zero, never read out of bounds.
 */
export function gatherToSamplesDevice(nodeValues: DeviceTensor, nodeOf: DeviceTensor): DeviceTensor {
  const values = expectTensor('nodeValues', nodeValues, ['f32', 'f16', 'bf16'], [1, 2]);
  const ids = expectTensor('nodeOf', nodeOf, ['i32'], [1]);
  const [N, C = 1] = values.shape;
  if (N < 1) throw rangeError('nodeValues: expected at least 1 node', INVALID);
  const T = ids.length;
  requireGpu('gatherToSamplesDevice');
  const out = DeviceTensor.empty(values.shape.length === 1 ? [T] : [T, C], values.dtype);
  return withOutputs([out], () => {
    addon.cudaGather(FORGE_DTYPE[values.dtype as 'f32'], values.address, N, C, ids.address, T, out.address);
    return out;
  });
}

/**
 * scatterFromSamples on the device: sampleValues 'f32' [T] or [T, C], nodeOf 'i32' [T] -> 'f32' [N(, C)],
 * summed per node in position order (float64). nodeOf is trusted (validate it on the host): a position
 * whose node is out of [0, numNodes) is skipped, never written out of bounds.
 */
export function scatterFromSamplesDevice(sampleValues: DeviceTensor, nodeOf: DeviceTensor, numNodes: number): DeviceTensor {
  const values = expectTensor('sampleValues', sampleValues, ['f32'], [1, 2]);
  const ids = expectTensor('nodeOf', nodeOf, ['i32'], [1]);
  const N = expectInt('numNodes', numNodes, 1, 2 ** 31 - 2);
  const [T, C = 1] = values.shape;
  expectLength('nodeOf', ids, T, 'one per row of sampleValues');
  requireGpu('scatterFromSamplesDevice');
  const out = DeviceTensor.empty(values.shape.length === 1 ? [N] : [N, C], 'f32');
  return withOutputs([out], () => {
    addon.cudaScatter(values.address, T, C, ids.address, N, out.address);
    return out;
  });
}

/**
 * mergeToTree on the device: sampleValues [T] or [T, C] in any float dtype, nodeOf 'i32' [T] -> [N(, C)],
 * same dtype: node n takes the row of its first position (a bit copy), zeros without one. nodeOf is
 * trusted (validate it on the host, e.g. it comes from buildPrefixTree): an entry outside [0, numNodes)
 * is skipped, never read out of bounds.
 */
export function mergeToTreeDevice(sampleValues: DeviceTensor, nodeOf: DeviceTensor, numNodes: number): DeviceTensor {
  const values = expectTensor('sampleValues', sampleValues, ['f32', 'f16', 'bf16'], [1, 2]);
  const ids = expectTensor('nodeOf', nodeOf, ['i32'], [1]);
  const N = expectInt('numNodes', numNodes, 1, 2 ** 31 - 2);
  const [T, C = 1] = values.shape;
  expectLength('nodeOf', ids, T, 'one per row of sampleValues');
  if (C < 1) throw rangeError(`sampleValues: expected at least 1 channel, got shape [${values.shape.join(', ')}]`, INVALID);
  requireGpu('mergeToTreeDevice');
  const out = DeviceTensor.empty(values.shape.length === 1 ? [N] : [N, C], values.dtype);
  return withOutputs([out], () => {
    addon.cudaMergeToTree(FORGE_DTYPE[values.dtype as 'f32'], values.address, T, C, ids.address, N, out.address);
    return out;
  });
}

/** An attention state in device memory: o 'f32' [rows, H, D], lse 'f32' [rows, H]. */
export interface DeviceAttentionState {
  o: DeviceTensor;
  lse: DeviceTensor;
}

function stateShape(name: string, state: unknown): [number, number, number] {
  if (typeof state !== 'object' || state === null) throw typeError(`${name}: expected { o, lse }`);
  const s = state as Record<string, unknown>;
  const o = expectTensor(`${name}.o`, s.o, ['f32'], [3]);
  const lse = expectTensor(`${name}.lse`, s.lse, ['f32'], [2]);
  const [rows, H, D] = o.shape;
  if (lse.shape[0] !== rows || lse.shape[1] !== H)
    throw rangeError(`${name}.lse: expected shape [${rows}, ${H}] (like ${name}.o), got [${lse.shape.join(', ')}]`, INVALID);
  if (H < 1 || D < 1) throw rangeError(`${name}.o: expected H >= 1 and D >= 1, got [${o.shape.join(', ')}]`, INVALID);
  return [rows, H, D];
}

/** mergeStates (lib/attention.ts) on the device; returns new tensors. A NaN / +Infinity lse throws FORGE_ERR_NON_FINITE naming it. */
export function mergeStatesDevice(a: DeviceAttentionState, b: DeviceAttentionState): DeviceAttentionState {
  const [rows, H, D] = stateShape('a', a);
  const sb = stateShape('b', b);
  if (sb[0] !== rows || sb[1] !== H || sb[2] !== D)
    throw rangeError(`b.o: expected shape [${rows}, ${H}, ${D}] (like a.o), got [${sb.join(', ')}]`, INVALID);
  requireGpu('mergeStatesDevice');
  const o = DeviceTensor.empty([rows, H, D], 'f32');
  const lse = withOutputs([o], () => DeviceTensor.empty([rows, H], 'f32'));
  return withOutputs([o, lse], () => {
    if (rows > 0) addon.cudaMergeStates(rows, H, D, a.o.address, a.lse.address, b.o.address, b.lse.address, o.address, lse.address);
    return { o, lse };
  });
}

/** mergeStatesCsr on the device: `states` [M, H, D] / [M, H]; output row r merges rows [offsets[r], offsets[r + 1]). */
export function mergeStatesCsrDevice(states: DeviceAttentionState, offsets: Int32Array): DeviceAttentionState {
  const [M, H, D] = stateShape('states', states);
  const off = expectArray('offsets', offsets, Int32Array);
  if (off.length < 1) throw rangeError('offsets: expected rows + 1 >= 1 elements, got 0', INVALID);
  if (off[0] !== 0) throw rangeError(`offsets[0]: expected 0, got ${off[0]}`, INVALID);
  for (let r = 1; r < off.length; r++)
    if (off[r] < off[r - 1]) throw rangeError(`offsets[${r}]: expected >= offsets[${r - 1}] (${off[r - 1]}), got ${off[r]}`);
  if (off[off.length - 1] !== M)
    throw rangeError(`offsets[${off.length - 1}]: expected the number of input states (${M}), got ${off[off.length - 1]}`);
  requireGpu('mergeStatesCsrDevice');
  const rows = off.length - 1;
  // The kernel takes int64 offsets: staged raw (an 'i32' DeviceTensor of twice the length).
  const wide = BigInt64Array.from(off, (x) => BigInt(x));
  const offsetsOnDevice = DeviceTensor.empty([2 * off.length], 'i32');
  try {
    addon.cudaUpload(offsetsOnDevice.address, wide);
    const o = DeviceTensor.empty([rows, H, D], 'f32');
    const lse = withOutputs([o], () => DeviceTensor.empty([rows, H], 'f32'));
    return withOutputs([o, lse], () => {
      addon.cudaMergeStatesCsr(rows, H, D, offsetsOnDevice.address, M, states.o.address, states.lse.address, o.address, lse.address);
      return { o, lse };
    });
  } finally {
    offsetsOnDevice.free();
  }
}
