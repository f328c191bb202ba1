// Safetensors checkpoints: round trips of random tensors, the byte layout read back by hand, F16 /
// BF16 / F64 loading against values computed from the IEEE definitions, corrupt files, atomic writes
// under SIGKILL, and training-state resume bit for bit. The seed is printed in every failure;
// FORGE_TEST_SEED=<seed> replays it.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { seededRun } from './helpers/random.js';

import {
  CheckpointError,
  loadCheckpoint,
  loadTrainingState,
  saveCheckpoint,
  saveTrainingState,
  type CheckpointTensor,
} from '../lib/model/checkpoint.js';
import { AdamW, paramGroups } from '../lib/model/optimizer.js';
import { bf16ToF32, f16ToF32 } from '../lib/model/safetensors.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { seed, rng: makeRng, fail } = seededRun();
function expectBitwise(what: string, actual: Float32Array, expected: Float32Array) {
  if (actual.length !== expected.length) fail(`${what}: length ${actual.length}, expected ${expected.length}`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++)
    if (a[i] !== b[i]) fail(`${what}[${i}]: bits ${a[i].toString(16)}, expected ${b[i].toString(16)}`);
}

const dir = mkdtempSync(join(tmpdir(), 'forge-ckpt-'));
let files = 0;
const freshPath = (name = 'model') => join(dir, `${name}-${++files}.safetensors`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Random float32 bit patterns, specials included (NaN payloads, ±0, ±Inf, subnormals). */
function randomFloats(rand: () => number, n: number): Float32Array {
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) bits[i] = rand() < 0.9 ? (rand() * 2 ** 32) >>> 0 : [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00001, 0x00000001][i % 6];
  return new Float32Array(bits.buffer);
}

/** A safetensors file assembled by hand: 8-byte length, header text as given, data. */
function rawFile(header: unknown, data: Uint8Array = new Uint8Array(0), declaredLength?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

async function expectLoadError(bytes: Uint8Array, pattern: RegExp, code = 'FORGE_CHECKPOINT_CORRUPT') {
  const path = freshPath('corrupt');
  writeFileSync(path, bytes);
  const error = await loadCheckpoint(path).then(
    () => fail(`loading should fail with ${pattern}`),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CheckpointError);
  expect((error as CheckpointError).code).toBe(code);
  expect((error as Error).message).toContain(path);
  expect((error as Error).message).toMatch(pattern);
}

describe('round trip', () => {
  it('random tensors of every shape kind, with their metadata, come back bit for bit', async () => {
    const rand = makeRng();
    const shapes = [[], [0], [1], [3, 0, 2], [7], [5, 7], [2, 3, 4], [1, 1, 1, 1], [300, 257]];
    const names = ['embed.weight', '0', '12', 'layers.0.attn.q', 'ünï "quoted" \\ name', '__proto__', 'a'.repeat(200), 'x', 'z.bias'];
    const tensors: CheckpointTensor[] = shapes.map((shape, k) => ({
      name: names[k],
      shape,
      data: randomFloats(rand, shape.reduce((a, b) => a * b, 1)),
    }));
    const metadata = { config: JSON.stringify({ d: 64, note: 'ü "x"' }), step: String(Math.floor(rand() * 1e6)), empty: '' };
    const path = freshPath();
    await saveCheckpoint(path, { tensors, metadata });
    const loaded = await loadCheckpoint(path);
    expect(loaded.metadata).toEqual(metadata);
    expect(loaded.tensors.map((t) => t.name)).toEqual(names); // data order = write order
    loaded.tensors.forEach((t, k) => {
      expect(t.shape).toEqual(shapes[k]);
      expect(t.dtype).toBe('F32');
      expectBitwise(t.name, t.data, tensors[k].data);
    });

    // The bytes, read by hand: aligned header, contiguous little-endian data in order.
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    expect(header.__metadata__).toEqual(metadata);
    let at = 0;
    for (const t of tensors) {
      const info = header[t.name];
      expect(info).toEqual({ dtype: 'F32', shape: t.shape, data_offsets: [at, at + 4 * t.data.length] });
      for (let i = 0; i < Math.min(t.data.length, 50); i++) {
        const expected = new Uint32Array(t.data.buffer, t.data.byteOffset + 4 * i, 1)[0];
        if (bytes.readUInt32LE(8 + n + at + 4 * i) !== expected) fail(`${t.name}[${i}]: bytes on disk differ`);
      }
      at += 4 * t.data.length;
    }
    expect(bytes.length).toBe(8 + n + at);
  });

  it('an empty checkpoint and overwriting leave exactly one file', async () => {
    const path = freshPath('single');
    await saveCheckpoint(path, { tensors: [] });
    expect(await loadCheckpoint(path)).toEqual({ tensors: [], metadata: {} });
    await saveCheckpoint(path, { tensors: [{ name: 'w', shape: [2], data: new Float32Array([1, 2]) }] });
    expect((await loadCheckpoint(path)).tensors[0].data).toEqual(new Float32Array([1, 2]));
    expect(readdirSync(dir).filter((f) => f.includes('single'))).toEqual([path.slice(dir.length + 1)]);
  });

  it('rejects bad tensors before writing anything', async () => {
    const path = freshPath();
    const w = (shape: number[], data = new Float32Array(6)) => ({ name: 'w', shape, data });
    await expect(saveCheckpoint(path, { tensors: [w([2, 2])] })).rejects.toThrow(/tensors\[0\]\.data: expected 4 elements/);
    await expect(saveCheckpoint(path, { tensors: [w([2, 3]), w([6])] })).rejects.toThrow(/'w' appears twice/);
    await expect(saveCheckpoint(path, { tensors: [w([-2, -3])] })).rejects.toThrow(/shape\[0\]/);
    await expect(saveCheckpoint(path, { tensors: [{ ...w([6]), data: new Float64Array(6) as unknown as Float32Array }] })).rejects.toThrow(TypeError);
    await expect(saveCheckpoint(path, { tensors: [], metadata: { step: 3 as unknown as string } })).rejects.toThrow(/metadata\.step/);
    await expect(saveCheckpoint(join(dir, 'missing-dir', 'x.safetensors'), { tensors: [] })).rejects.toThrow(/ENOENT/);
    expect(readdirSync(dir).some((f) => f.startsWith(`model-${files}`) || f.includes('.tmp-'))).toBe(false);
  });
});

describe('foreign dtypes', () => {
  // The IEEE 754 definitions: sign, biased exponent, fraction; subnormals at the smallest exponent.
  function ieee(bits: number, expBits: number, fracBits: number): number {
    const bias = 2 ** (expBits - 1) - 1;
    const sign = bits >> (expBits + fracBits) ? -1 : 1;
    const e = (bits >> fracBits) & (2 ** expBits - 1);
    const f = bits & (2 ** fracBits - 1);
    if (e === 2 ** expBits - 1) return f === 0 ? sign * Infinity : NaN;
    if (e === 0) return sign * 2 ** (1 - bias) * (f / 2 ** fracBits);
    return sign * 2 ** (e - bias) * (1 + f / 2 ** fracBits);
  }
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);

  it('F16 and BF16: every bit pattern loads as its IEEE value; F64 rounds to nearest', async () => {
    const f64 = new Float64Array([1 / 3, -2.5e-40, 1e300, Math.PI, -0]);
    const data = new Uint8Array(65536 * 2 * 2 + f64.byteLength);
    data.set(new Uint8Array(all.buffer), 0); // this machine is little-endian, as the format
    data.set(new Uint8Array(all.buffer), 131072);
    data.set(new Uint8Array(f64.buffer), 262144);
    const header = {
      h: { dtype: 'F16', shape: [256, 256], data_offsets: [0, 131072] },
      b: { dtype: 'BF16', shape: [65536], data_offsets: [131072, 262144] },
      d: { dtype: 'F64', shape: [5], data_offsets: [262144, 262184] },
    };
    const path = freshPath('foreign');
    writeFileSync(path, rawFile(header, data));
    const { tensors } = await loadCheckpoint(path);
    const [h, b, d] = ['h', 'b', 'd'].map((name) => tensors.find((t) => t.name === name)!);
    expect([h.dtype, b.dtype, d.dtype, h.shape]).toEqual(['F16', 'BF16', 'F64', [256, 256]]);
    for (let i = 0; i < 65536; i++) {
      const eh = ieee(i, 5, 10), eb = ieee(i, 8, 7);
      if (!Object.is(h.data[i], eh) && !(Number.isNaN(eh) && Number.isNaN(h.data[i]))) fail(`F16 0x${i.toString(16)}: ${h.data[i]}, expected ${eh}`);
      if (!Object.is(b.data[i], eb) && !(Number.isNaN(eb) && Number.isNaN(b.data[i]))) fail(`BF16 0x${i.toString(16)}: ${b.data[i]}, expected ${eb}`);
      if (!Object.is(f16ToF32(i), h.data[i]) && !Number.isNaN(eh)) fail(`f16ToF32(0x${i.toString(16)})`);
      if (!Object.is(bf16ToF32(i), b.data[i]) && !Number.isNaN(eb)) fail(`bf16ToF32(0x${i.toString(16)})`);
    }
    // A few by heart: 1, -2, the largest half, the smallest subnormal half, bf16 of pi.
    expect([h.data[0x3c00], h.data[0xc000], h.data[0x7bff], h.data[0x0001], b.data[0x4049]]).toEqual([1, -2, 65504, 2 ** -24, 3.140625]);
    expect(Array.from(d.data)).toEqual(Array.from(f64, (x) => Math.fround(x)));
  });

  it('a valid file with another dtype names the tensor and the dtype', async () => {
    await expectLoadError(rawFile({ ids: { dtype: 'I32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8)), /"ids": dtype I32/, 'FORGE_CHECKPOINT_UNSUPPORTED_DTYPE');
  });
});

describe('corrupt files give errors naming the file and the tensor', () => {
  const t = (dtype: string, shape: number[], offsets: number[]) => ({ dtype, shape, data_offsets: offsets });
  let valid: Uint8Array;

  it('truncated anywhere', async () => {
    const path = freshPath('valid');
    await saveCheckpoint(path, { tensors: [{ name: 'w', shape: [4, 4], data: new Float32Array(16).fill(1) }], metadata: { a: 'b' } });
    valid = readFileSync(path);
    const n = Number(Buffer.from(valid).readBigUInt64LE(0));
    await expectLoadError(valid.subarray(0, 5), /too short/);
    await expectLoadError(valid.subarray(0, 8 + Math.floor(n / 2)), /header length \d+ runs past the end of the file/);
    await expectLoadError(valid.subarray(0, valid.length - 1), /tensor "w": data_offsets \[0, 64\] run past the end of the data \(63 bytes\)/);
  });

  it('bad header length, JSON, UTF-8, structure', async () => {
    await expectLoadError(rawFile('{}', new Uint8Array(0), 2n ** 63n), /header length \d+ runs past/);
    await expectLoadError(rawFile('{"w": {"dtype": "F32", '), /not valid JSON/);
    await expectLoadError(rawFile('[1, 2]'), /not a JSON object/);
    const badUtf8 = rawFile('{"ab": 1}');
    badUtf8[10] = 0xff;
    await expectLoadError(badUtf8, /not valid UTF-8/);
    await expectLoadError(rawFile({ w: 5 }), /tensor "w": expected \{ dtype, shape, data_offsets \}/);
    await expectLoadError(rawFile({ __metadata__: { a: 1 } }), /__metadata__\.a is not a string/);
  });

  it('unknown dtypes, bad shapes, wrong sizes, offsets out of range or overlapping', async () => {
    const data = new Uint8Array(32);
    await expectLoadError(rawFile({ w: t('F33', [2], [0, 8]) }, data), /tensor "w": unknown dtype "F33"/);
    await expectLoadError(rawFile({ w: t('F32', [-2], [0, 8]) }, data), /tensor "w": shape \[-2\]/);
    await expectLoadError(rawFile({ w: t('F32', [2, 1.5], [0, 8]) }, data), /tensor "w": shape/);
    await expectLoadError(rawFile({ w: t('F32', [3], [0, 8]) }, data), /tensor "w": shape \[3\] of F32 needs 12 bytes, data_offsets \[0, 8\] hold 8/);
    await expectLoadError(rawFile({ w: t('F32', [2], [8, 0]) }, data), /tensor "w": data_offsets \[8, 0\] end before they begin/);
    await expectLoadError(rawFile({ w: t('F32', [4], [24, 40]) }, data), /tensor "w": data_offsets \[24, 40\] run past the end of the data \(32 bytes\)/);
    await expectLoadError(rawFile({ w: t('F32', [2], [0]) }, data), /tensor "w": data_offsets \[0\]/);
    await expectLoadError(
      rawFile({ a: t('F32', [4], [0, 16]), b: t('F32', [4], [8, 24]) }, data),
      /tensors "a" \[0, 16\) and "b" \[8, 24\) overlap/,
    );
    // Touching ranges and empty tensors anywhere are fine.
    const path = freshPath('ok');
    writeFileSync(path, rawFile({ a: t('F32', [4], [0, 16]), e: t('F32', [0], [4, 4]), b: t('F32', [4], [16, 32]) }, data));
    expect((await loadCheckpoint(path)).tensors.map((x) => x.name)).toEqual(['a', 'e', 'b']);
  });
});

describe('atomic writes', () => {
  // A child saves version 1, 2, 3, ... of a 16 MiB checkpoint over the same file without pause, and
  // prints each version once its save resolved; it is SIGKILLed mid-loop. The file must then hold one
  // whole version, the last reported or the one after it (or version 0, written before the child).
  const CHILD = `
    import { saveCheckpoint } from ${JSON.stringify(join(root, 'lib/model/checkpoint.ts'))};
    const path = process.argv[2];
    const big = new Float32Array(1 << 22), small = new Float32Array(1000);
    console.log('ready');
    for (let k = 1; ; k++) {
      big.fill(k); small.fill(-k);
      await saveCheckpoint(path, { tensors: [{ name: 'big', shape: [1024, 4096], data: big }, { name: 'small', shape: [1000], data: small }], metadata: { version: String(k) } });
      console.log('saved ' + k);
    }`;

  async function killedWhileSaving(path: string, killWhen: 'random' | 'temp-file', rand: () => number): Promise<number> {
    const script = join(dir, `child-${++files}.mjs`);
    writeFileSync(script, CHILD);
    const child = spawn(process.execPath, ['--import', 'tsx', script, path], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<void>((done) => child.on('exit', () => done()));
    const until = async (cond: () => boolean, what: string) => {
      for (const start = Date.now(); !cond(); await new Promise((r) => setTimeout(r, 2)))
        if (Date.now() - start > 20_000 || child.exitCode !== null) fail(`child: no ${what} (${err})`);
    };
    await until(() => out.includes('ready'), 'ready');
    if (killWhen === 'random') await new Promise((r) => setTimeout(r, 100 + rand() * 900));
    else {
      // Wait for the first version, then kill as soon as a temporary of the next one is on disk.
      await until(() => out.includes('saved 1'), 'first save');
      const temp = `.${path.slice(dir.length + 1)}.tmp-`;
      await until(() => readdirSync(dir).some((f) => f.startsWith(temp)), 'temporary file');
    }
    child.kill('SIGKILL');
    await exited;
    const saved = [...out.matchAll(/saved (\d+)/g)].map((m) => Number(m[1]));
    return saved.length ? saved[saved.length - 1] : 0;
  }

  for (const killWhen of ['random', 'random', 'temp-file'] as const) {
    it(`a SIGKILL (${killWhen === 'random' ? 'at a random moment' : 'while a temporary is being written'}) leaves a whole version under the name`, async () => {
      const rand = makeRng();
      const path = freshPath('atomic');
      await saveCheckpoint(path, {
        tensors: [{ name: 'big', shape: [1024, 4096], data: new Float32Array(1 << 22) }, { name: 'small', shape: [1000], data: new Float32Array(1000) }],
        metadata: { version: '0' },
      });
      const lastSaved = await killedWhileSaving(path, killWhen, rand);
      const { tensors, metadata } = await loadCheckpoint(path);
      const version = Number(metadata.version);
      if (!(version === lastSaved || version === lastSaved + 1)) fail(`file holds version ${version}, the child had saved ${lastSaved}`);
      const [big, small] = tensors;
      if (big.data.some((x) => x !== version) || small.data.some((x) => x !== -version))
        fail(`version ${version}: the data mixes versions`);
      if (killWhen === 'temp-file') expect(lastSaved).toBeGreaterThanOrEqual(1);
    }, 40_000);
  }
});

describe('training state', () => {
  // A stand-in model: named tensors in one flat buffer, including a scalar and an empty tensor.
  const paramInfo = [
    { name: 'embed.weight', offset: 0, shape: [32, 8] },
    { name: 'layers.0.w', offset: 256, shape: [8, 8] },
    { name: 'layers.0.norm', offset: 320, shape: [8] },
    { name: 'temperature', offset: 328, shape: [] },
    { name: 'unused', offset: 329, shape: [0, 8] },
    { name: 'head.weight', offset: 329, shape: [8, 32] },
  ];
  const numParams = 329 + 256;

  it('a step after save + load equals the step without them, bit for bit', async () => {
    const rand = makeRng();
    const gradsAt = Array.from({ length: 8 }, () => Float32Array.from({ length: numParams }, () => rand() * 2 - 1));
    const options = { lr: 3e-3, betas: [0.9, 0.95] as [number, number], maxGradNorm: 5, schedule: { kind: 'warmup-cosine' as const, warmupSteps: 3, totalSteps: 8 } };
    const optimizer = new AdamW(paramGroups(paramInfo), options);
    const params = Float32Array.from({ length: numParams }, () => rand() - 0.5);
    for (const g of gradsAt.slice(0, 4)) optimizer.step(params, g);

    const path = freshPath('train');
    const config = { dModel: 8, vocab: 32, name: 'nano "test"' };
    await saveTrainingState(path, { params, paramInfo, optimizer, step: 4, config });
    const resumed = await loadTrainingState(path);
    expect(resumed.step).toBe(4);
    expect(resumed.config).toEqual(config);
    expect(resumed.paramInfo).toEqual(paramInfo);
    expect(resumed.optimizer.stepCount).toBe(4);
    expect(resumed.optimizer.config()).toEqual(optimizer.config());
    expectBitwise('params', resumed.params, params);

    for (const g of gradsAt.slice(4)) expect(resumed.optimizer.step(resumed.params, g)).toEqual(optimizer.step(params, g));
    expectBitwise('params after resume', resumed.params, params);
    expectBitwise('m after resume', resumed.optimizer.m, optimizer.m);
    expectBitwise('v after resume', resumed.optimizer.v, optimizer.v);

    // The moments are stored under their tensors' names.
    const names = (await loadCheckpoint(path)).tensors.map((t) => t.name);
    expect(names).toContain('optimizer.m.layers.0.w');
    expect(names).toContain('optimizer.v.temperature');
  });

  it('refuses what it cannot resume from', async () => {
    const optimizer = new AdamW(paramGroups(paramInfo));
    const params = new Float32Array(numParams);
    const path = freshPath('train');
    await expect(saveTrainingState(path, { params, paramInfo: paramInfo.slice(1), optimizer, step: 0 })).rejects.toThrow(/'embed\.weight'.*not covered/);
    await expect(saveTrainingState(path, { params: new Float32Array(10), paramInfo, optimizer, step: 0 })).rejects.toThrow(/runs past the 10 parameters/);

    const plain = freshPath('plain');
    await saveCheckpoint(plain, { tensors: [] });
    await expect(loadTrainingState(plain)).rejects.toThrow(/not a forge-rl training state/);

    await saveTrainingState(path, { params, paramInfo, optimizer, step: 0 });
    const { tensors, metadata } = await loadCheckpoint(path);
    const without = freshPath('train');
    await saveCheckpoint(without, { tensors: tensors.filter((t) => t.name !== 'optimizer.v.head.weight'), metadata });
    await expect(loadTrainingState(without)).rejects.toThrow(
      expect.objectContaining({ code: 'FORGE_CHECKPOINT_MISMATCH', message: expect.stringContaining('"optimizer.v.head.weight" is missing') }),
    );
    const badLayout = freshPath('train');
    await saveCheckpoint(badLayout, { tensors, metadata: { ...metadata, layout: '[{"name": "x"' } });
    await expect(loadTrainingState(badLayout)).rejects.toThrow(/metadata\.layout/);
  });
});
