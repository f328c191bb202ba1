// Checkpoints as safetensors files. Writes are atomic: the file is written under a temporary name in
// the same directory, fsynced, then renamed over the final name (and the directory fsynced), so a
// process killed at any moment leaves either the previous file or the complete new one under the
// final name; at worst a stale hidden temporary (".<name>.tmp-<pid>-<random>") remains beside it.
// Reads validate the whole header before touching data, and read each tensor straight into its array.
//
// saveTrainingState / loadTrainingState add the model-level layout: the flat parameter buffer stored
// tensor by tensor, the optimizer moments as "optimizer.m.<name>" / "optimizer.v.<name>", and the
// step, the optimizer definition and the model config in the metadata, so training resumes exactly.
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { endianness } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

import { rangeError, typeError } from '../errors.js';
import { expectArray, expectInt } from '../validate.js';
import { AdamW, type AdamWConfig } from './optimizer.js';
import {
  CheckpointError,
  CheckpointErrorCode,
  LOADABLE_DTYPES,
  decodeToFloat32,
  elementCount,
  encodeHeader,
  float32Bytes,
  headerLength,
  parseHeader,
} from './safetensors.js';

export { CheckpointError, CheckpointErrorCode } from './safetensors.js';

export interface CheckpointTensor {
  name: string;
  /** [] for a scalar (one element); any dimension may be 0. */
  shape: number[];
  data: Float32Array;
}

export interface Checkpoint {
  /** In file data order. */
  tensors: (CheckpointTensor & { dtype: string })[];
  metadata: Record<string, string>;
}

const LITTLE_ENDIAN = endianness() === 'LE';
// Large tensors are written in pieces: one write call is limited to 2 GiB.
const WRITE_CHUNK = 1 << 26;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function checkTensors(tensors: unknown): CheckpointTensor[] {
  if (!Array.isArray(tensors)) throw typeError('tensors: expected an array of { name, shape, data }');
  const names = new Set<string>();
  return tensors.map((t, i) => {
    if (!isObject(t)) throw typeError(`tensors[${i}]: expected { name, shape, data }`);
    if (typeof t.name !== 'string' || t.name === '') throw typeError(`tensors[${i}].name: expected a non-empty string`);
    if (t.name === '__metadata__') throw rangeError(`tensors[${i}].name: '__metadata__' is reserved`);
    if (names.has(t.name)) throw rangeError(`tensors[${i}].name: '${t.name}' appears twice`);
    names.add(t.name);
    if (!Array.isArray(t.shape)) throw typeError(`tensors[${i}].shape: expected an array of integers`);
    const shape = t.shape.map((d, k) => expectInt(`tensors[${i}].shape[${k}]`, d, 0));
    const data = expectArray(`tensors[${i}].data`, t.data, Float32Array, elementCount(shape));
    return { name: t.name, shape, data };
  });
}

function checkMetadata(metadata: unknown): Record<string, string> {
  if (metadata === undefined) return {};
  if (!isObject(metadata)) throw typeError('metadata: expected an object of strings');
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata)) {
    if (typeof value !== 'string') throw typeError(`metadata.${key}: expected a string, got ${typeof value}`);
    out[key] = value;
  }
  return out;
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length; ) {
    const { bytesWritten } = await fh.write(bytes, at, Math.min(WRITE_CHUNK, bytes.length - at));
    at += bytesWritten;
  }
}

async function readExact(fh: FileHandle, into: Uint8Array, position: number, path: string): Promise<void> {
  for (let at = 0; at < into.length; ) {
    const { bytesRead } = await fh.read(into, at, Math.min(WRITE_CHUNK, into.length - at), position + at);
    if (bytesRead === 0) throw new CheckpointError(path, `file ended at byte ${position + at} (changed while reading?)`);
    at += bytesRead;
  }
}

/**
 * Writes `tensors` (float32) and string `metadata` to `path` in the safetensors format, atomically.
 * The data is read while the promise is pending: do not modify the arrays until it settles.
 */
export async function saveCheckpoint(
  path: string,
  checkpoint: { tensors: CheckpointTensor[]; metadata?: Record<string, string> },
): Promise<void> {
  if (typeof path !== 'string' || path === '') throw typeError('path: expected a non-empty string');
  if (!isObject(checkpoint)) throw typeError('checkpoint: expected { tensors, metadata? }');
  const tensors = checkTensors(checkpoint.tensors);
  const metadata = checkMetadata(checkpoint.metadata);
  const header = encodeHeader(tensors.map((t) => ({ ...t, byteLength: t.data.byteLength })), metadata);

  const target = resolve(path);
  const dir = dirname(target);
  const temp = join(dir, `.${basename(target)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const fh = await open(temp, 'wx', 0o644);
  try {
    await writeAll(fh, header.bytes);
    for (const t of tensors) await writeAll(fh, float32Bytes(t.data));
    await fh.sync();
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(temp, { force: true });
    throw e;
  }
  await fh.close();
  try {
    await rename(temp, target);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
  // The rename is durable only once the directory entry is on disk. Some file systems refuse to
  // fsync a directory; the file itself is complete either way.
  const d = await open(dir, 'r').catch(() => undefined);
  if (d) await d.sync().catch(() => {}).finally(() => d.close());
}

/**
 * Reads a safetensors file. F32 tensors load as they are; F16, BF16 and F64 are converted to float32.
 * @throws CheckpointError naming the file (and the tensor): CORRUPT for a malformed file,
 *   UNSUPPORTED_DTYPE for a valid one holding other dtypes.
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  if (typeof path !== 'string' || path === '') throw typeError('path: expected a non-empty string');
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const prefix = new Uint8Array(8);
    if (size >= 8) await readExact(fh, prefix, 0, path);
    const n = headerLength(prefix, size, path);
    const json = new Uint8Array(n);
    await readExact(fh, json, 8, path);
    const dataStart = 8 + n;
    const header = parseHeader(json, size - dataStart, path);
    for (const t of header.tensors)
      if (!(LOADABLE_DTYPES as readonly string[]).includes(t.dtype))
        throw new CheckpointError(
          path,
          `tensor ${JSON.stringify(t.name)}: dtype ${t.dtype} cannot be loaded as float32 (supported: ${LOADABLE_DTYPES.join(', ')})`,
          CheckpointErrorCode.UNSUPPORTED_DTYPE,
        );
    const tensors: Checkpoint['tensors'] = [];
    for (const t of header.tensors) {
      const count = elementCount(t.shape);
      let data: Float32Array;
      if (t.dtype === 'F32' && LITTLE_ENDIAN) {
        // Straight into the result: no second copy of the largest tensors.
        data = new Float32Array(count);
        await readExact(fh, new Uint8Array(data.buffer), dataStart + t.begin, path);
      } else {
        const bytes = new Uint8Array(t.end - t.begin);
        await readExact(fh, bytes, dataStart + t.begin, path);
        data = decodeToFloat32(bytes, t.dtype, count);
      }
      tensors.push({ name: t.name, shape: t.shape, dtype: t.dtype, data });
    }
    return { tensors, metadata: header.metadata };
  } finally {
    await fh.close();
  }
}

// ------------------------------------------------------------------------------------------------
// Training state: parameters + optimizer + step, resumable bit for bit.

/** A named tensor of the flat parameter buffer: elements [offset, offset + product(shape)). */
export interface ParamTensorInfo {
  name: string;
  offset: number;
  shape: number[];
}

export interface TrainingState {
  /** The flat parameter buffer. */
  params: Float32Array;
  paramInfo: ParamTensorInfo[];
  optimizer: AdamW;
  /** The trainer's step (e.g. the policy version). */
  step: number;
  /** The model config given to saveTrainingState (JSON). */
  config: unknown;
}

const FORMAT = 'forge-rl/training-state';
const FORMAT_VERSION = '1';
const M_PREFIX = 'optimizer.m.';
const V_PREFIX = 'optimizer.v.';

function checkLayout(paramInfo: unknown, numParams: number, what: string): ParamTensorInfo[] {
  if (!Array.isArray(paramInfo)) throw typeError(`${what}: expected an array of { name, offset, shape }`);
  const names = new Set<string>();
  const layout = paramInfo.map((t, i) => {
    if (!isObject(t)) throw typeError(`${what}[${i}]: expected { name, offset, shape }`);
    if (typeof t.name !== 'string' || t.name === '') throw typeError(`${what}[${i}].name: expected a non-empty string`);
    if (names.has(t.name)) throw rangeError(`${what}[${i}].name: '${t.name}' appears twice`);
    if (t.name.startsWith('optimizer.')) throw rangeError(`${what}[${i}].name: names starting with 'optimizer.' are reserved`);
    names.add(t.name);
    if (!Array.isArray(t.shape)) throw typeError(`${what}[${i}].shape: expected an array of integers`);
    const shape = t.shape.map((d, k) => expectInt(`${what}[${i}].shape[${k}]`, d, 0));
    const offset = expectInt(`${what}[${i}].offset`, t.offset, 0);
    if (offset + elementCount(shape) > numParams)
      throw rangeError(`${what}[${i}] ('${t.name}'): [${offset}, ${offset + elementCount(shape)}) runs past the ${numParams} parameters`);
    return { name: t.name, offset, shape };
  });
  const sorted = layout.filter((t) => elementCount(t.shape) > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i].offset < sorted[i - 1].offset + elementCount(sorted[i - 1].shape))
      throw rangeError(`${what}: '${sorted[i - 1].name}' and '${sorted[i].name}' overlap`);
  return layout;
}

// Moments are stored per tensor, so every optimizer group must lie inside the named tensors.
function checkCoverage(layout: ParamTensorInfo[], optimizer: AdamW): void {
  const runs: [number, number][] = [];
  for (const t of [...layout].sort((a, b) => a.offset - b.offset)) {
    const end = t.offset + elementCount(t.shape);
    if (runs.length && runs[runs.length - 1][1] === t.offset) runs[runs.length - 1][1] = end;
    else runs.push([t.offset, end]);
  }
  for (const g of optimizer.groups)
    if (g.length > 0 && !runs.some(([b, e]) => b <= g.offset && g.offset + g.length <= e))
      throw rangeError(`optimizer group '${g.name}' [${g.offset}, ${g.offset + g.length}) is not covered by paramInfo's tensors`);
}

/**
 * Saves params by name, the optimizer moments ("optimizer.m.<name>", "optimizer.v.<name>"), the step,
 * the optimizer definition and `config` (JSON) atomically to `path`. Everything is copied when called,
 * so training may go on while the file is written.
 */
export async function saveTrainingState(
  path: string,
  state: { params: Float32Array; paramInfo: ParamTensorInfo[]; optimizer: AdamW; step: number; config?: unknown },
): Promise<void> {
  if (!isObject(state)) throw typeError('state: expected { params, paramInfo, optimizer, step, config? }');
  const params = expectArray('state.params', state.params, Float32Array);
  const layout = checkLayout(state.paramInfo, params.length, 'state.paramInfo');
  if (!(state.optimizer instanceof AdamW)) throw typeError('state.optimizer: expected an AdamW');
  const optimizer = state.optimizer;
  if (optimizer.numParams !== params.length)
    throw rangeError(`state.optimizer: covers ${optimizer.numParams} parameters, params has ${params.length}`);
  checkCoverage(layout, optimizer);
  const step = expectInt('state.step', state.step, 0);
  const config = JSON.stringify(state.config ?? null);

  const { m, v } = optimizer;
  const slice = (a: Float32Array, t: ParamTensorInfo) => a.slice(t.offset, t.offset + elementCount(t.shape));
  const tensors: CheckpointTensor[] = [
    ...layout.map((t) => ({ name: t.name, shape: t.shape, data: slice(params, t) })),
    ...layout.map((t) => ({ name: M_PREFIX + t.name, shape: t.shape, data: slice(m, t) })),
    ...layout.map((t) => ({ name: V_PREFIX + t.name, shape: t.shape, data: slice(v, t) })),
  ];
  await saveCheckpoint(path, {
    tensors,
    metadata: {
      format: FORMAT,
      format_version: FORMAT_VERSION,
      step: String(step),
      num_params: String(params.length),
      layout: JSON.stringify(layout),
      optimizer: JSON.stringify(optimizer.config()),
      optimizer_step: String(optimizer.stepCount),
      config,
    },
  });
}

/** Loads what saveTrainingState wrote: a step from here equals the step the saved run would have taken. */
export async function loadTrainingState(path: string): Promise<TrainingState> {
  const { tensors, metadata } = await loadCheckpoint(path);
  const mismatch = (message: string) => new CheckpointError(path, message, CheckpointErrorCode.MISMATCH);
  if (metadata.format !== FORMAT)
    throw mismatch(`not a forge-rl training state (metadata.format is ${JSON.stringify(metadata.format)})`);
  if (metadata.format_version !== FORMAT_VERSION)
    throw mismatch(`training-state format version ${metadata.format_version} is not ${FORMAT_VERSION}`);
  const parse = <T>(key: string, check: (value: unknown) => T): T => {
    try {
      return check(JSON.parse(metadata[key] ?? ''));
    } catch (e) {
      throw new CheckpointError(path, `metadata.${key}: ${(e as Error).message}`);
    }
  };
  const numParams = parse('num_params', (x) => expectInt('num_params', x, 0));
  const layout = parse('layout', (x) => checkLayout(x, numParams, 'layout'));
  const step = parse('step', (x) => expectInt('step', x, 0));
  const optimizerStep = parse('optimizer_step', (x) => expectInt('optimizer_step', x, 0));
  const optimizer = parse('optimizer', (x) => AdamW.fromConfig(x as AdamWConfig));
  const config = parse('config', (x) => x);
  if (optimizer.numParams !== numParams)
    throw new CheckpointError(path, `metadata.optimizer: covers ${optimizer.numParams} parameters, not ${numParams}`);

  const byName = new Map(tensors.map((t) => [t.name, t]));
  const gather = (prefix: string) => {
    const flat = new Float32Array(numParams);
    for (const t of layout) {
      const name = prefix + t.name;
      const found = byName.get(name);
      if (!found) throw mismatch(`tensor ${JSON.stringify(name)} is missing`);
      if (found.shape.length !== t.shape.length || found.shape.some((d, k) => d !== t.shape[k]))
        throw mismatch(`tensor ${JSON.stringify(name)}: shape [${found.shape.join(', ')}], layout says [${t.shape.join(', ')}]`);
      flat.set(found.data, t.offset);
    }
    return flat;
  };
  const params = gather('');
  const m = gather(M_PREFIX);
  const v = gather(V_PREFIX);
  try {
    optimizer.importState({ step: optimizerStep, m, v });
  } catch (e) {
    throw new CheckpointError(path, `optimizer state: ${(e as Error).message}`);
  }
  return { params, paramInfo: layout, optimizer, step, config };
}
