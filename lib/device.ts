// The CUDA backend from TypeScript: which GPUs there are (device, selectBackend), tensors in device
// memory (DeviceTensor) and thin wrappers of the device kernels of contracts 1-3. Shapes and dtypes
// are checked here first (TypeError / RangeError naming the argument, before any device call);
// without a usable GPU every call that needs one throws an Error with code FORGE_ERR_DEVICE naming
// the reason. Each wrapper returns when the device work is done (the addon synchronises).
import type { CispoOptions, CispoStats } from './cispo.js';
import { KernelErrorCode, rangeError, typeError, type CodedError } from './errors.js';
import { resolveLossOptions } from './lossOptions.js';
import { addon } from './native.js';
import { expectArray, expectInt } from './validate.js';

/** Element types of device tensors; 'i32' is for index arrays (node ids, targets). */
export type DeviceDtype = 'f32' | 'f16' | 'bf16' | 'i32';
/** The float dtypes as forge.h's forge_dtype values. */
const FORGE_DTYPE = { f32: 0, f16: 1, bf16: 2 } as const;
const BYTES: Record<DeviceDtype, number> = { f32: 4, f16: 2, bf16: 2, i32: 4 };
const INVALID = KernelErrorCode.INVALID_ARGUMENT;

export interface GpuInfo {
  index: number;
  name: string;
  /** "major.minor", e.g. "9.0" for an H100. */
  computeCapability: string;
  /** Bytes. */
  totalMemory: number;
}

export interface DeviceReport {
  available: boolean;
  /** Why no GPU can be used ('' when one can). */
  reason: string;
  devices: GpuInfo[];
}

/** The GPUs this process can use, or why there are none. */
export function device(): DeviceReport {
  const r = addon.cudaDevices() as {
    count: number;
    reason: string;
    devices: { index: number; name: string; major: number; minor: number; totalMemory: number }[];
  };
  return {
    available: r.count > 0,
    reason: r.count > 0 ? '' : r.reason || 'no CUDA device',
    devices: r.devices.map((d) => ({
      index: d.index,
      name: d.name,
      computeCapability: `${d.major}.${d.minor}`,
      totalMemory: d.totalMemory,
    })),
  };
}

let backend: 'cpu' | 'cuda' | undefined;

/** 'cuda' when a GPU is usable, else 'cpu' after one console.warn saying why. Decided once per process. */
export function selectBackend(): 'cpu' | 'cuda' {
  if (backend === undefined) {
    const report = device();
    backend = report.available ? 'cuda' : 'cpu';
    if (!report.available) console.warn(`forge-rl: no usable GPU (${report.reason}); kernels run on the CPU`);
  }
  return backend;
}

let gpuMissing: string | null | undefined;  // the reason, null when a GPU is there

/** Throws FORGE_ERR_DEVICE naming the reason when no GPU is usable (checked once, then cached). */
function requireGpu(what: string): void {
  if (gpuMissing === undefined) {
    const info = addon.info() as { cudaDevices: number; cudaReason: string };
    gpuMissing = info.cudaDevices > 0 ? null : info.cudaReason || 'no CUDA device';
  }
  if (gpuMissing !== null)
    throw Object.assign(new Error(`${what}: no usable GPU (${gpuMissing})`), { code: KernelErrorCode.DEVICE }) as CodedError;
}

function expectDtype(name: string, value: unknown, allowed: readonly DeviceDtype[]): DeviceDtype {
  if (typeof value !== 'string') throw typeError(`${name}: expected one of ${allowed.join(', ')}, got ${typeof value}`);
  if (!(allowed as readonly string[]).includes(value))
    throw rangeError(`${name}: expected one of ${allowed.join(', ')}, got '${value}'`, INVALID);
  return value as DeviceDtype;
}

/** The largest device tensor, in bytes (the addon's limit on one allocation). */
const MAX_BYTES = 2 ** 50;

function expectShape(name: string, shape: unknown, dtype: DeviceDtype): number[] {
  if (!Array.isArray(shape)) throw typeError(`${name}: expected an array of dimensions`);
  const dims = shape.map((d, i) => expectInt(`${name}[${i}]`, d, 0, 2 ** 40));
  const bytes = dims.reduce((a, b) => a * b, 1) * BYTES[dtype];
  if (bytes > MAX_BYTES)
    throw rangeError(`${name}: [${dims.join(', ')}] of ${dtype}: ${bytes} bytes exceed the limit of 2^50 (${MAX_BYTES})`);
  return dims;
}

// What this process holds on the device through DeviceTensors (the addon keeps no account).
const held = { tensors: 0, bytes: 0 };

// Device memory the program forgot to free goes back when its DeviceTensor is collected.
const unreleased = new FinalizationRegistry<{ address: bigint; bytes: number }>(({ address, bytes }) => {
  held.tensors--;
  held.bytes -= bytes;
  try {
    addon.cudaFree(address);
  } catch {
    // Nothing to report to: the process may be shutting the device down.
  }
});

/** A contiguous row-major tensor in device memory. Free it with free() (or leave it to the GC). */
export class DeviceTensor {
  readonly shape: readonly number[];
  readonly dtype: DeviceDtype;
  /** Size in bytes. */
  readonly bytes: number;
  #address: bigint | null;

  private constructor(address: bigint, shape: number[], dtype: DeviceDtype) {
    this.#address = address;
    this.shape = Object.freeze(shape);
    this.dtype = dtype;
    this.bytes = DeviceTensor.elements(shape) * BYTES[dtype];
    if (address !== 0n) {
      unreleased.register(this, { address, bytes: this.bytes }, this);
      held.tensors++;
      held.bytes += this.bytes;
    }
  }

  /** Device tensors this process holds (allocated, not yet freed or collected) and their bytes. */
  static held(): { tensors: number; bytes: number } {
    return { ...held };
  }

  private static elements(shape: readonly number[]): number {
    return shape.reduce((a, b) => a * b, 1);
  }

  /** Uninitialised device memory of `shape` and `dtype`. */
  static empty(shape: number[], dtype: DeviceDtype): DeviceTensor {
    const type = expectDtype('dtype', dtype, ['f32', 'f16', 'bf16', 'i32']);
    const dims = expectShape('shape', shape, type);
    requireGpu('DeviceTensor.empty');
    const bytes = DeviceTensor.elements(dims) * BYTES[type];
    return new DeviceTensor(addon.cudaMalloc(bytes) as bigint, dims, type);
  }

  /**
   * Copies host data to the device. Float32Array: dtype 'f32' (default), or 'bf16' / 'f16' (converted
   * on the device); Uint16Array: the raw bits of 'bf16' or 'f16' (dtype required); Int32Array: 'i32'.
   */
  static upload(data: Float32Array | Uint16Array | Int32Array, shape: number[], dtype?: DeviceDtype): DeviceTensor {
    let type: DeviceDtype;
    if (data instanceof Float32Array) type = dtype === undefined ? 'f32' : expectDtype('dtype', dtype, ['f32', 'bf16', 'f16']);
    else if (data instanceof Uint16Array) {
      if (dtype === undefined) throw typeError("dtype: required for Uint16Array data ('bf16' or 'f16' bits)");
      type = expectDtype('dtype', dtype, ['bf16', 'f16']);
    } else if (data instanceof Int32Array) type = dtype === undefined ? 'i32' : expectDtype('dtype', dtype, ['i32']);
    else throw typeError('data: expected a Float32Array, Uint16Array or Int32Array');
    const dims = expectShape('shape', shape, type);
    const n = DeviceTensor.elements(dims);
    if (n !== data.length)
      throw rangeError(`shape: [${dims.join(', ')}] holds ${n} elements, data has ${data.length}`, INVALID);
    requireGpu('DeviceTensor.upload');

    if (data instanceof Float32Array && type !== 'f32') {
      // float32 on the device first, then converted into the target dtype.
      const staging = DeviceTensor.empty(dims, 'f32');
      try {
        if (n > 0) addon.cudaUpload(staging.address, data);
        const out = DeviceTensor.empty(dims, type);
        try {
          if (n > 0) addon.cudaConvert(n, FORGE_DTYPE.f32, staging.address, FORGE_DTYPE[type as 'bf16' | 'f16'], out.address);
        } catch (e) {
          out.free();
          throw e;
        }
        return out;
      } finally {
        staging.free();
      }
    }
    const out = DeviceTensor.empty(dims, type);
    try {
      if (n > 0) addon.cudaUpload(out.address, data);
    } catch (e) {
      out.free();
      throw e;
    }
    return out;
  }

  /** The device address (throws once freed). */
  get address(): bigint {
    if (this.#address === null) throw rangeError('DeviceTensor: used after free()', INVALID);
    return this.#address;
  }

  get length(): number {
    return DeviceTensor.elements(this.shape);
  }

  get freed(): boolean {
    return this.#address === null;
  }

  /** The data as stored: Float32Array (f32), Uint16Array of raw bits (bf16 / f16), Int32Array (i32). */
  download(): Float32Array | Uint16Array | Int32Array {
    const n = this.length;
    const out = this.dtype === 'f32' ? new Float32Array(n) : this.dtype === 'i32' ? new Int32Array(n) : new Uint16Array(n);
    if (n > 0) addon.cudaDownload(this.address, out);
    return out;
  }

  /** The values as float32 (bf16 / f16 widened on the device). */
  downloadFloat32(): Float32Array {
    if (this.dtype === 'f32') return this.download() as Float32Array;
    if (this.dtype === 'i32') throw rangeError('downloadFloat32: an i32 tensor holds no floats; use download()', INVALID);
    const wide = DeviceTensor.empty([...this.shape], 'f32');
    try {
      if (this.length > 0) addon.cudaConvert(this.length, FORGE_DTYPE[this.dtype], this.address, FORGE_DTYPE.f32, wide.address);
      return wide.download() as Float32Array;
    } finally {
      wide.free();
    }
  }

  /** Releases the device memory; later uses throw. Calling it again does nothing. */
  free(): void {
    if (this.#address === null) return;
    const address = this.#address;
    this.#address = null;
    if (address === 0n) return;
    unreleased.unregister(this);
    held.tensors--;
    held.bytes -= this.bytes;
    addon.cudaFree(address);
  }
}

// ---- kernels ----------------------------------------------------------------------------------------

function expectTensor(name: string, value: unknown, dtypes: readonly DeviceDtype[], rank?: number[]): DeviceTensor {
  if (!(value instanceof DeviceTensor)) throw typeError(`${name}: expected a DeviceTensor`);
  if (value.freed) throw rangeError(`${name}: used after free()`, INVALID);
  if (!dtypes.includes(value.dtype))
    throw rangeError(`${name}: expected dtype ${dtypes.join(' or ')}, got '${value.dtype}'`, INVALID);
  if (rank && !rank.includes(value.shape.length))
    throw rangeError(`${name}: expected ${rank.join(' or ')} dimensions, got shape [${value.shape.join(', ')}]`, INVALID);
  return value;
}

function expectLength(name: string, t: DeviceTensor, length: number, what: string): void {
  if (t.length !== length) throw rangeError(`${name}: expected ${length} elements (${what}), got ${t.length}`, INVALID);
}

/** Allocates the outputs, runs `body`, frees the outputs if it throws. */
function withOutputs<T>(outputs: DeviceTensor[], body: () => T): T {
  try {
    return body();
  } catch (e) {
    for (const t of outputs) t.free();
    throw e;
  }
}

/** Loss terms in device memory: node and target 'i32', oldLogprob and advantage 'f32', all [J]. */
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
