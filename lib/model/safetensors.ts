// The safetensors format, without I/O: encoding a header, parsing and validating one, and decoding
// tensor bytes to float32. A file is
//   [8 bytes: N, little-endian u64] [N bytes: JSON header, padded with spaces] [raw little-endian data]
// with the header {"__metadata__": {string: string}, name: {dtype, shape, data_offsets: [begin, end]}},
// offsets relative to the start of the data. lib/model/checkpoint.ts does the file reading and writing.
import { endianness } from 'node:os';

/** Checkpoint-surface error codes (a file that is not a valid safetensors file, or not the one expected). */
export const CheckpointErrorCode = {
  /** Not a well-formed safetensors file: bad header length, JSON, offsets, shapes. */
  CORRUPT: 'FORGE_CHECKPOINT_CORRUPT',
  /** A valid file holding a dtype this loader does not convert to float32. */
  UNSUPPORTED_DTYPE: 'FORGE_CHECKPOINT_UNSUPPORTED_DTYPE',
  /** A valid file whose content does not match what the caller expects (missing tensor, wrong shape). */
  MISMATCH: 'FORGE_CHECKPOINT_MISMATCH',
} as const;
export type CheckpointErrorCode = (typeof CheckpointErrorCode)[keyof typeof CheckpointErrorCode];

export class CheckpointError extends Error {
  readonly code: CheckpointErrorCode;
  /** The file at fault. */
  readonly path: string;
  constructor(path: string, message: string, code: CheckpointErrorCode = CheckpointErrorCode.CORRUPT) {
    super(`${path}: ${message}`);
    this.name = 'CheckpointError';
    this.code = code;
    this.path = path;
  }
}

/** Bytes per element of every dtype the format defines (so that a valid file with other dtypes parses). */
export const DTYPE_SIZE: Readonly<Record<string, number>> = Object.freeze({
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  U16: 2, I16: 2, F16: 2, BF16: 2,
  U32: 4, I32: 4, F32: 4,
  U64: 8, I64: 8, F64: 8,
});

/** The dtypes decodeToFloat32 converts. */
export const LOADABLE_DTYPES = ['F32', 'F16', 'BF16', 'F64'] as const;
export type LoadableDtype = (typeof LOADABLE_DTYPES)[number];

// The reference implementation refuses headers above 100 MB; so do we (a corrupt length must not
// make us allocate gigabytes).
export const MAX_HEADER_BYTES = 100_000_000;
const LITTLE_ENDIAN = endianness() === 'LE';

export interface TensorInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** Byte range [begin, end) within the data section. */
  begin: number;
  end: number;
}

export interface ParsedHeader {
  /** In data order. */
  tensors: TensorInfo[];
  metadata: Record<string, string>;
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The header bytes (length prefix, JSON, space padding to a multiple of 8) for tensors laid out back
 * to back in the given order, and that layout. Tensor names and metadata are assumed checked.
 */
export function encodeHeader(
  tensors: readonly { name: string; shape: readonly number[]; byteLength: number; dtype?: string }[],
  metadata: Readonly<Record<string, string>>,
): { bytes: Uint8Array; tensors: TensorInfo[] } {
  // Built as text so the key order is the data order (a JS object would move integer-like names first).
  const parts: string[] = [];
  if (Object.keys(metadata).length > 0) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  let offset = 0;
  const layout = tensors.map((t) => {
    const info = { name: t.name, dtype: t.dtype ?? 'F32', shape: [...t.shape], begin: offset, end: offset + t.byteLength };
    offset = info.end;
    parts.push(`${JSON.stringify(t.name)}:${JSON.stringify({ dtype: info.dtype, shape: info.shape, data_offsets: [info.begin, info.end] })}`);
    return info;
  });
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil((8 + json.length) / 8) * 8 - 8;
  const bytes = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(padded), true);
  bytes.set(json, 8);
  return { bytes, tensors: layout };
}

/** Reads and checks the 8-byte header length of a file of `fileSize` bytes. */
export function headerLength(prefix: Uint8Array, fileSize: number, path: string): number {
  if (fileSize < 8 || prefix.length < 8)
    throw new CheckpointError(path, `${fileSize} bytes is too short for a safetensors file (an 8-byte header length comes first)`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8))
    throw new CheckpointError(path, `header length ${n} runs past the end of the file (${fileSize} bytes)`);
  if (n > BigInt(MAX_HEADER_BYTES))
    throw new CheckpointError(path, `header length ${n} is above the ${MAX_HEADER_BYTES}-byte limit`);
  if (n < 2n) throw new CheckpointError(path, `header length ${n} cannot hold a JSON object`);
  return Number(n);
}

/**
 * Parses and validates the JSON header against a data section of `dataLength` bytes: known dtypes,
 * shapes of non-negative integers, offsets in range, sized as the shape says, and not overlapping.
 */
export function parseHeader(json: Uint8Array, dataLength: number, path: string): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    throw new CheckpointError(path, 'the header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(path, `the header is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(header)) throw new CheckpointError(path, 'the header is not a JSON object');

  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(value)) throw new CheckpointError(path, '__metadata__ is not an object');
      for (const [key, s] of Object.entries(value)) {
        if (typeof s !== 'string') throw new CheckpointError(path, `__metadata__.${key} is not a string`);
        metadata[key] = s;
      }
      continue;
    }
    const at = `tensor ${JSON.stringify(name)}`;
    if (!isObject(value)) throw new CheckpointError(path, `${at}: expected { dtype, shape, data_offsets }`);
    const { dtype, shape, data_offsets: offsets } = value;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_SIZE, dtype))
      throw new CheckpointError(path, `${at}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new CheckpointError(path, `${at}: shape ${JSON.stringify(shape)} is not a list of integers >= 0`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0))
      throw new CheckpointError(path, `${at}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] of integers >= 0`);
    const [begin, end] = offsets as number[];
    if (begin > end) throw new CheckpointError(path, `${at}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLength)
      throw new CheckpointError(path, `${at}: data_offsets [${begin}, ${end}] run past the end of the data (${dataLength} bytes)`);
    const expected = elementCount(shape) * DTYPE_SIZE[dtype];
    if (end - begin !== expected)
      throw new CheckpointError(
        path,
        `${at}: shape [${shape.join(', ')}] of ${dtype} needs ${expected} bytes, data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    tensors.push({ name, dtype, shape: shape as number[], begin, end });
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let last: TensorInfo | undefined;
  for (const t of tensors) {
    if (t.begin === t.end) continue; // empty tensors occupy no bytes
    if (last && t.begin < last.end)
      throw new CheckpointError(
        path,
        `tensors ${JSON.stringify(last.name)} [${last.begin}, ${last.end}) and ${JSON.stringify(t.name)} [${t.begin}, ${t.end}) overlap`,
      );
    last = t;
  }
  return { tensors, metadata };
}

// float16 -> float32 for all 65536 bit patterns, built on first use from the IEEE 754 binary16 layout
// (1 sign, 5 exponent bits biased by 15, 10 fraction bits). Every half is exactly a float.
let halfTable: Float32Array | undefined;
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = (sign ? -1 : 1) * frac * 2 ** -24; // zero and subnormals
    else if (exp === 31) bits[h] = sign | 0x7f800000 | (frac << 13); // Inf, NaN (payload kept)
    else bits[h] = sign | ((exp - 15 + 127) << 23) | (frac << 13);
  }
  return (halfTable = table);
}

/** float16 bit pattern (0..65535) -> its value. */
export function f16ToF32(bits: number): number {
  return halfToFloatTable()[bits & 0xffff];
}

/** bfloat16 bit pattern (0..65535) -> its value: the upper half of a float32. */
export function bf16ToF32(bits: number): number {
  const u = new Uint32Array([(bits & 0xffff) << 16]);
  return new Float32Array(u.buffer)[0];
}

/** Tensor bytes (little-endian, `dtype`) -> float32. F64 rounds to nearest; values beyond float32 become ±Infinity. */
export function decodeToFloat32(bytes: Uint8Array, dtype: string, count: number): Float32Array {
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (dtype) {
    case 'F32':
      if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes.subarray(0, count * 4));
      else for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case 'F64':
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(i * 8, true);
      return out;
    case 'F16': {
      const table = halfToFloatTable();
      for (let i = 0; i < count; i++) out[i] = table[view.getUint16(i * 2, true)];
      return out;
    }
    case 'BF16': {
      // Typed arrays share the machine's byte order, so writing the bits as uint32 is right on any.
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) bits[i] = view.getUint16(i * 2, true) << 16;
      return out;
    }
    default:
      throw new RangeError(`dtype ${dtype}: not convertible to float32 (supported: ${LOADABLE_DTYPES.join(', ')})`);
  }
}

/** The little-endian bytes of a Float32Array (a view on little-endian machines, a copy otherwise). */
export function float32Bytes(data: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const bytes = new Uint8Array(data.byteLength);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  return bytes;
}
