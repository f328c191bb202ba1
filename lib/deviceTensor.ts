// Device memory from TypeScript: which GPUs there are (device, selectBackend) and tensors in device
// memory (DeviceTensor), with the shape and dtype checks the device kernels' wrappers (device.ts,
// attentionDevice.ts) share. Without a usable GPU every call that needs one throws an Error with
// code FORGE_ERR_DEVICE naming the reason.
import { KernelErrorCode, rangeError, typeError, type CodedError } from './errors.js';
import { addon } from './native.js';
import { expectInt } from './validate.js';

/** Element types of device tensors; 'i32' is for index arrays (node ids, targets). */
export type DeviceDtype = 'f32' | 'f16' | 'bf16' | 'i32';
/** The float dtypes as forge.h's forge_dtype values. */
export const FORGE_DTYPE = { f32: 0, f16: 1, bf16: 2 } as const;
const BYTES: Record<DeviceDtype, number> = { f32: 4, f16: 2, bf16: 2, i32: 4 };
export const INVALID = KernelErrorCode.INVALID_ARGUMENT;

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
export function requireGpu(what: string): void {
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

export function expectTensor(name: string, value: unknown, dtypes: readonly DeviceDtype[], rank?: number[]): DeviceTensor {
  if (!(value instanceof DeviceTensor)) throw typeError(`${name}: expected a DeviceTensor`);
  if (value.freed) throw rangeError(`${name}: used after free()`, INVALID);
  if (!dtypes.includes(value.dtype))
    throw rangeError(`${name}: expected dtype ${dtypes.join(' or ')}, got '${value.dtype}'`, INVALID);
  if (rank && !rank.includes(value.shape.length))
    throw rangeError(`${name}: expected ${rank.join(' or ')} dimensions, got shape [${value.shape.join(', ')}]`, INVALID);
  return value;
}

export function expectLength(name: string, t: DeviceTensor, length: number, what: string): void {
  if (t.length !== length) throw rangeError(`${name}: expected ${length} elements (${what}), got ${t.length}`, INVALID);
}

/** Allocates the outputs, runs `body`, frees the outputs if it throws. */
export function withOutputs<T>(outputs: DeviceTensor[], body: () => T): T {
  try {
    return body();
  } catch (e) {
    for (const t of outputs) t.free();
    throw e;
  }
}

/** Loss terms in device memory: node and target 'i32', oldLogprob and advantage 'f32', all [J]. */
