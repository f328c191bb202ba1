// The CUDA backend (issue 7). On a machine with a GPU, every device kernel is checked against the CPU
// kernel and the float64 references on fresh seeded inputs (f32 within 1e-4, bf16 within 1e-2,
// relative to the scale of the reference); without one those tests are skipped, and the describe
// name says why; they then run in the `cuda-emulator` project, on the CPU emulator build of the same
// kernels (cuda/simt/). What runs everywhere: device discovery and its reason, the one-line CPU fallback,
// every device entry point failing with a coded error instead of crashing, and argument checks that
// come before any device call.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { mergeStates, mergeStatesCsr } from '../lib/attention.js';
import { cispoLoss, type CispoOptions } from '../lib/cispo.js';
import {
  cispoLossDevice,
  device,
  DeviceTensor,
  gatherToSamplesDevice,
  mergeStatesCsrDevice,
  mergeStatesDevice,
  mergeToTreeDevice,
  scatterFromSamplesDevice,
  selectBackend,
} from '../lib/device.js';
import { addon, nativeInfo } from '../lib/native.js';
import { buildPrefixTree, gatherToSamples, mergeToTree, scatterFromSamples } from '../lib/prefixTree.js';
import { expectError } from './helpers/errors.js';
import { gauss, seededRun, type Rng } from './helpers/random.js';
import { referencePolicyLoss } from './reference/cispo.js';
import { randomSamples, referenceGather, referenceMergeToTree, referenceScatter } from './reference/prefixTree.js';

const report = device();
const gpu = report.available;
const run = seededRun();
const F32 = 1e-4, BF16 = 1e-2;

// ---- helpers ------------------------------------------------------------------------------------------

/** |actual - expected| <= tol * (|expected| + scale), scale = max |expected| (so tiny entries of a
 * gradient are judged against the size of the gradient, not their own). */
function expectNear(label: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): void {
  expect(actual.length, run.why(`${label}: length`)).toBe(expected.length);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    if (!(err <= tol * (Math.abs(expected[i]) + scale) || actual[i] === expected[i]))
      run.fail(`${label}[${i}]: got ${actual[i]}, expected ${expected[i]} (tolerance ${tol} relative to ${scale})`);
  }
}

function close(label: string, actual: number, expected: number, tol: number): void {
  if (!(Math.abs(actual - expected) <= tol * (1 + Math.abs(expected))))
    run.fail(`${label}: got ${actual}, expected ${expected} (tolerance ${tol})`);
}

/** bf16 bits widened to the float32 values they hold. */
function widenBf16(bits: Uint16Array): Float32Array {
  return new Float32Array(Uint32Array.from(bits, (b) => b << 16).buffer);
}

function gaussArray(n: number, rng: Rng, sd = 1): Float32Array {
  return Float32Array.from({ length: n }, () => sd * gauss(rng));
}

/** Terms over rows [0, N) leaving some rows empty, with repeated (node, target) pairs and repeated
 * nodes with other targets (the branches of a prefix tree), old log-probs near the current ones. */
function randomTerms(rng: Rng, N: number, V: number, J: number, logits: Float32Array) {
  const node = new Int32Array(J), target = new Int32Array(J), oldLogprob = new Float32Array(J), advantage = new Float32Array(J);
  const rowsUsed = Math.max(1, Math.floor(N * 0.7));
  for (let j = 0; j < J; j++) {
    const repeat = j > 0 && rng() < 0.25;
    node[j] = repeat ? node[j - 1] : Math.floor(rng() * rowsUsed) * Math.floor(N / rowsUsed);
    target[j] = repeat && rng() < 0.5 ? target[j - 1] : Math.floor(rng() * V);
    advantage[j] = rng() < 0.1 ? 0 : gauss(rng);
  }
  for (let j = 0; j < J; j++) {
    // logp of the target, plus noise: ratios around 1, some beyond the clip bounds.
    let max = -Infinity, sum = 0;
    const row = logits.subarray(node[j] * V, (node[j] + 1) * V);
    for (const z of row) max = Math.max(max, z);
    for (const z of row) sum += Math.exp(z - max);
    oldLogprob[j] = row[target[j]] - max - Math.log(sum) + 0.6 * gauss(rng);
  }
  return { node, target, oldLogprob, advantage };
}

const live: DeviceTensor[] = [];
/** Uploads and remembers the tensor so afterEach frees it. */
function up(data: Float32Array | Uint16Array | Int32Array, shape: number[], dtype?: 'f32' | 'bf16' | 'f16' | 'i32'): DeviceTensor {
  const t = DeviceTensor.upload(data, shape, dtype);
  live.push(t);
  return t;
}
function keep<T extends DeviceTensor | undefined>(t: T): T {
  if (t) live.push(t);
  return t;
}
afterEach(() => {
  for (const t of live.splice(0)) t.free();
});

// ---- everywhere ---------------------------------------------------------------------------------------

function nvccFound(): boolean {
  if (spawnSync('nvcc', ['--version']).status === 0) return true;
  return existsSync('/usr/local/cuda/bin/nvcc');
}

describe('CUDA backend: discovery, fallback, errors', () => {
  it('device() reports whether a GPU is usable, and why not', () => {
    if (gpu) {
      expect(report.reason).toBe('');
      expect(report.devices.length).toBeGreaterThan(0);
      for (const d of report.devices) {
        expect(d.name.length).toBeGreaterThan(0);
        expect(d.computeCapability).toMatch(/^\d+\.\d+$/);
        expect(d.totalMemory).toBeGreaterThan(0);
      }
    } else {
      expect(report.reason.length).toBeGreaterThan(0);
      expect(report.devices).toEqual([]);
      expect(nativeInfo().cudaReason).toBe(report.reason);
    }
  });

  it.skipIf(!nvccFound())('the build compiled cuda/ since nvcc is installed', () => {
    expect(nativeInfo().cudaCompiled).toBe(true);
  });

  it('selectBackend picks the GPU, or says once that the CPU runs the kernels', () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      expect(selectBackend()).toBe(gpu ? 'cuda' : 'cpu');
      expect(selectBackend()).toBe(gpu ? 'cuda' : 'cpu');
      if (gpu) expect(warn).not.toHaveBeenCalled();
      else {
        expect(warn).toHaveBeenCalledTimes(1);
        expect(warn.mock.calls[0][0]).toBe(`forge-rl: no usable GPU (${report.reason}); kernels run on the CPU`);
      }
    } finally {
      warn.mockRestore();
    }
  });

  it.skipIf(gpu)('without a GPU, DeviceTensor.upload throws FORGE_ERR_DEVICE naming the reason', () => {
    let caught: unknown;
    try {
      DeviceTensor.upload(new Float32Array(4), [2, 2]);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(Error);
    expect((caught as { code: string }).code).toBe('FORGE_ERR_DEVICE');
    expect((caught as Error).message).toContain(report.reason);
    expect(() => DeviceTensor.empty([3], 'bf16')).toThrow(report.reason);
  });

  it.skipIf(gpu)('without a GPU, every device entry point returns a coded error instead of crashing', () => {
    // FORGE_ERR_DEVICE from a CUDA build on a machine without a GPU, FORGE_ERR_UNSUPPORTED from a build
    // without CUDA; the message names the C function. The addresses are never dereferenced.
    const code = nativeInfo().cudaCompiled ? 'FORGE_ERR_DEVICE' : 'FORGE_ERR_UNSUPPORTED';
    const p = 4096n, q = 8192n, r = 12288n, s = 16384n, t = 20480n, u = 24576n;
    const calls: [string, () => unknown][] = [
      ['forge_cuda_malloc', () => addon.cudaMalloc(64)],
      ['forge_cuda_memcpy_h2d', () => addon.cudaUpload(p, new Float32Array(4))],
      ['forge_cuda_memcpy_d2h', () => addon.cudaDownload(p, new Float32Array(4))],
      ['forge_cuda_convert', () => addon.cudaConvert(4, 0, p, 2, q)],
      ['forge_cuda_gather_to_samples', () => addon.cudaGather(0, p, 4, 2, q, 3, r)],
      ['forge_cuda_scatter_from_samples', () => addon.cudaScatter(p, 3, 2, q, 4, r)],
      ['forge_cuda_merge_to_tree', () => addon.cudaMergeToTree(0, p, 3, 2, q, 4, r)],
      ['forge_cuda_merge_states', () => addon.cudaMergeStates(2, 1, 4, p, q, r, s, t, u)],
      ['forge_cuda_merge_states_csr', () => addon.cudaMergeStatesCsr(2, 1, 4, p, 3, q, r, s, t)],
      ['forge_cuda_cispo_loss', () => addon.cudaCispoLoss(0, 2, 8, p, 1, q, r, s, t, 0, 1e9, 4, 0, null, null)],
    ];
    expect(addon.cudaFree(null)).toBeUndefined();  // NULL: a no-op in every build
    if (nativeInfo().cudaCompiled) calls.push(['forge_cuda_free', () => addon.cudaFree(p)]);
    else expect(addon.cudaFree(p)).toBeUndefined();  // nothing can have been allocated
    for (const [fn, call] of calls) {
      let caught: unknown;
      try {
        call();
      } catch (e) {
        caught = e;
      }
      expect((caught as { code?: string })?.code, fn).toBe(code);
      expect((caught as Error).message, fn).toContain(fn);
    }
  });

  it('rejects bad dtypes and shapes before touching the device', () => {
    const bad = 'FORGE_ERR_INVALID_ARGUMENT';
    expectError(() => DeviceTensor.upload(new Float32Array(4), [2, 2], 'f64' as 'f32'), RangeError, bad, /dtype: expected one of f32, bf16, f16, got 'f64'/);
    expectError(() => DeviceTensor.upload(new Float32Array(4), [2, 3]), RangeError, bad, /shape: \[2, 3\] holds 6 elements, data has 4/);
    expectError(() => DeviceTensor.upload(new Float32Array(4), [2, 2.5]), RangeError, 'FORGE_ERR_OUT_OF_RANGE', /shape\[1\]/);
    expectError(() => DeviceTensor.upload(new Uint16Array(4), [4]), TypeError, bad, /dtype: required for Uint16Array/);
    expectError(() => DeviceTensor.upload(new Int32Array(4), [4], 'f32'), RangeError, bad, /dtype: expected one of i32/);
    expectError(() => DeviceTensor.upload(new Float64Array(4) as unknown as Float32Array, [4]), TypeError, bad, /data: expected/);
    expectError(() => DeviceTensor.empty([2], 'u8' as 'f32'), RangeError, bad, /dtype/);
    expectError(() => cispoLossDevice(new Float32Array(4) as unknown as DeviceTensor, {} as never), TypeError, bad, /logits: expected a DeviceTensor/);
    expectError(() => gatherToSamplesDevice({} as DeviceTensor, {} as DeviceTensor), TypeError, bad, /nodeValues: expected a DeviceTensor/);
    expectError(() => mergeToTreeDevice({} as DeviceTensor, {} as DeviceTensor, 3), TypeError, bad, /sampleValues: expected a DeviceTensor/);
    expectError(() => mergeStatesDevice({} as never, {} as never), TypeError, bad, /a.o: expected a DeviceTensor/);
  });
});

// ---- on a GPU ---------------------------------------------------------------------------------------

const kernels = gpu
  ? `CUDA kernels on ${report.devices[0].name} against the CPU kernels and float64 references`
  : `CUDA kernels against the CPU kernels (skipped: no usable GPU: ${report.reason})`;

describe(kernels, () => {
  it.skipIf(!gpu)('uploads and downloads every dtype, converting f32 to bf16 / f16 on the device', () => {
    const rng = run.rng();
    const x = gaussArray(1003, rng, 3);
    expect(up(x, [1003]).download()).toEqual(x);
    const ids = Int32Array.from({ length: 77 }, () => Math.floor(rng() * 1e6) - 5e5);
    expect(up(ids, [7, 11]).download()).toEqual(ids);
    const b = up(x, [17, 59], 'bf16');
    expect(b.bytes).toBe(2006);
    const widened = widenBf16(b.download() as Uint16Array);
    expect(b.downloadFloat32()).toEqual(widened);
    expectNear('bf16 round trip', widened, x, 2 ** -8);
    // Round to nearest: no float32 value is further from its bf16 than half a bf16 step.
    for (let i = 0; i < x.length; i++) expect(Math.abs(widened[i] - x[i])).toBeLessThanOrEqual(Math.abs(x[i]) * 2 ** -8);
    const h = up(x, [1003], 'f16');
    expectNear('f16 round trip', h.downloadFloat32(), x, 2 ** -11);
    expect(up(new Uint16Array(b.download()), [1003], 'bf16').downloadFloat32()).toEqual(widened);
  });

  const modes: [string, CispoOptions][] = [
    ['cispo', { mode: 'cispo', epsHigh: 0.3 }],
    ['ppo-clip', { mode: 'ppo-clip' }],
    ['cross-entropy', { mode: 'cross-entropy', normalizer: 13 }],
  ];
  for (const [name, options] of modes) {
    it.skipIf(!gpu)(`cispoLossDevice (${name}, f32 and bf16) matches the CPU kernel and the float64 reference`, () => {
      const rng = run.rng();
      for (const V of [1000, 1003]) {  // 1003: rows start at every alignment
        const N = 41, J = 90;
        const z = gaussArray(N * V, rng, 2.5);
        const terms = randomTerms(rng, N, V, J, z);
        const dterms = {
          node: up(terms.node, [J]), target: up(terms.target, [J]),
          oldLogprob: up(terms.oldLogprob, [J]), advantage: up(terms.advantage, [J]),
        };
        for (const dtype of ['f32', 'bf16'] as const) {
          const logits = up(z, [N, V], dtype);
          const values = dtype === 'f32' ? z : widenBf16(logits.download() as Uint16Array);
          const tol = dtype === 'f32' ? F32 : BF16;
          const ref = referencePolicyLoss(values, V, terms, {
            mode: options.mode!, epsLow: options.epsLow ?? (name === 'ppo-clip' ? 0.2 : Infinity),
            epsHigh: options.epsHigh ?? 0.2, normalizer: options.normalizer,
          });
          const cpu = cispoLoss(values, V, terms, options);
          const got = cispoLossDevice(logits, dterms, options);
          keep(got.dlogits);
          keep(got.logprobs);
          const label = `${name} ${dtype} V=${V}`;
          close(`${label} loss vs reference`, got.loss, ref.loss, F32);
          close(`${label} loss vs CPU`, got.loss, cpu.loss, 1e-6);
          for (const key of Object.keys(cpu.stats) as (keyof typeof cpu.stats)[])
            close(`${label} stats.${key}`, got.stats[key], cpu.stats[key], 1e-6);
          expectNear(`${label} logprobs`, got.logprobs.download() as Float32Array, ref.logprobs, F32);
          expectNear(`${label} dlogits vs reference`, got.dlogits!.downloadFloat32(), ref.dlogits, tol);
          expectNear(`${label} dlogits vs CPU`, got.dlogits!.downloadFloat32(), cpu.dlogits!, tol);
        }
      }
    });
  }

  it.skipIf(!gpu)('cispoLossDevice at a Qwen-sized vocabulary, in place, and without a gradient', () => {
    const rng = run.rng();
    const N = 3, V = 152_064, J = 5;
    const z = gaussArray(N * V, rng, 4);
    const terms = randomTerms(rng, N, V, J, z);
    const dterms = { node: up(terms.node, [J]), target: up(terms.target, [J]), oldLogprob: up(terms.oldLogprob, [J]), advantage: up(terms.advantage, [J]) };
    const ref = referencePolicyLoss(z, V, terms, { mode: 'cispo', epsLow: Infinity, epsHigh: 4 });
    const lossOnly = cispoLossDevice(up(z, [N, V]), dterms, { grad: false });
    keep(lossOnly.logprobs);
    expect(lossOnly.dlogits).toBeUndefined();
    close('loss only', lossOnly.loss, ref.loss, F32);
    close('entropy', lossOnly.stats.meanEntropy, ref.stats.meanEntropy, F32);
    const logits = up(z, [N, V], 'bf16');
    const refBf16 = referencePolicyLoss(logits.downloadFloat32(), V, terms, { mode: 'cispo', epsLow: Infinity, epsHigh: 4 });
    const inPlace = cispoLossDevice(logits, dterms, { inPlace: true });
    keep(inPlace.logprobs);
    expect(inPlace.dlogits).toBe(logits);
    close('in-place bf16 loss', inPlace.loss, refBf16.loss, F32);
    expectNear('in-place bf16 dlogits', logits.downloadFloat32(), refBf16.dlogits, BF16);
  });

  it.skipIf(!gpu)('cispoLossDevice names the row and column of a non-finite logit', () => {
    const rng = run.rng();
    const N = 6, V = 300, J = 4;
    const z = gaussArray(N * V, rng);
    const terms = randomTerms(rng, N, V, J, z);
    const dterms = { node: up(terms.node, [J]), target: up(terms.target, [J]), oldLogprob: up(terms.oldLogprob, [J]), advantage: up(terms.advantage, [J]) };
    const row = 5, col = 211;  // a row without terms is checked too (randomTerms leaves the last rows empty)
    z[row * V + col] = NaN;
    z[row * V + col + 17] = Infinity;  // a later bad column is not the one named
    for (const inPlace of [false, true]) {
      let caught: unknown;
      try {
        cispoLossDevice(up(z, [N, V]), dterms, { inPlace });
      } catch (e) {
        caught = e;
      }
      expect((caught as { code: string }).code, `inPlace ${inPlace}`).toBe('FORGE_ERR_NON_FINITE');
      // In place, the kernel found the column before dlogits overwrote the row.
      expect((caught as Error).message, `inPlace ${inPlace}`).toContain(`logits[row ${row}, column ${col}]`);
    }
  });

  it.skipIf(!gpu)('gather and scatter match the CPU kernels (scatter bitwise: same order, float64) and the references', () => {
    const rng = run.rng();
    for (const C of [1, 5, 64]) {
      const N = 300, T = 1000;
      const nodeOf = Int32Array.from({ length: T }, () => Math.floor(rng() * N));
      const tree = { numNodes: N, nodeOf };
      const ids = up(nodeOf, [T]);
      const nodeValues = gaussArray(N * C, rng);
      const gathered = keep(gatherToSamplesDevice(up(nodeValues, C === 1 ? [N] : [N, C]), ids));
      expect(gathered.shape).toEqual(C === 1 ? [T] : [T, C]);
      expect(gathered.download()).toEqual(gatherToSamples(tree, nodeValues, C));
      expect(Float32Array.from(referenceGather(nodeValues, nodeOf, C))).toEqual(gathered.download());
      const bf = up(nodeValues, [N, C], 'bf16');
      const bits = bf.download() as Uint16Array, gatheredBits = keep(gatherToSamplesDevice(bf, ids)).download() as Uint16Array;
      for (let i = 0; i < T * C; i++) expect(gatheredBits[i]).toBe(bits[nodeOf[Math.floor(i / C)] * C + (i % C)]);

      const sampleValues = gaussArray(T * C, rng);
      const summed = keep(scatterFromSamplesDevice(up(sampleValues, [T, C]), ids, N)).download() as Float32Array;
      expect(summed).toEqual(scatterFromSamples(tree, sampleValues, C));
      expectNear(`scatter C=${C}`, summed, referenceScatter(sampleValues, nodeOf, N, C), 1e-6);
    }
  });

  it.skipIf(!gpu)('mergeToTreeDevice (f32, bf16, f16) on prefix trees: undoes the device gather, equals the CPU merge on the widened values', () => {
    const rng = run.rng();
    for (const C of [1, 6, 128]) {
      const tree = buildPrefixTree(randomSamples(rng, { vocabSize: 3, numSamples: 24, maxLength: 30 }));
      const N = tree.numNodes, T = tree.nodeOf.length;
      const ids = up(tree.nodeOf, [T]);
      const shape = (rows: number) => (C === 1 ? [rows] : [rows, C]);
      const treeValues = gaussArray(N * C, rng);
      const sampleValues = gaussArray(T * C, rng);  // copies that differ: the first position must win
      for (const dtype of ['f32', 'bf16', 'f16'] as const) {
        const label = `${dtype} C=${C}`;
        // Per-sample values gathered from tree values (a packed K/V cache) merge back to them, bit for bit.
        const nodes = up(treeValues, shape(N), dtype);
        const merged = keep(mergeToTreeDevice(keep(gatherToSamplesDevice(nodes, ids)), ids, N));
        expect(merged.shape).toEqual(shape(N));
        expect(merged.dtype).toBe(dtype);
        expect(merged.download(), run.why(label)).toEqual(nodes.download());
        // Arbitrary per-sample values: the CPU kernel and the reference on the widened values.
        const samples = up(sampleValues, shape(T), dtype);
        const widened = samples.downloadFloat32();
        const got = keep(mergeToTreeDevice(samples, ids, N)).downloadFloat32();
        expect(got, run.why(`${label} vs CPU`)).toEqual(mergeToTree(tree, widened, C));
        expect(got, run.why(`${label} vs reference`)).toEqual(Float32Array.from(referenceMergeToTree(widened, tree.nodeOf, N, C)));
      }
    }
  });

  it.skipIf(!gpu)('mergeToTreeDevice: nodes without positions read zeros; out-of-range ids (trusted) are skipped', () => {
    const rng = run.rng();
    const tree = buildPrefixTree(randomSamples(rng, { vocabSize: 3, numSamples: 16, maxLength: 20 }));
    const N = tree.numNodes, C = 3;
    // The first half of the samples only: nodes only the others reach have no position. Fresh device
    // memory is not zero (the emulator fills it with NaN), so the zeros are written by the kernel.
    const nodeOf = tree.nodeOf.slice(0, tree.offsets[Math.max(1, tree.numSamples >> 1)]);
    const T = nodeOf.length;
    const values = gaussArray(T * C, rng);
    const got = keep(mergeToTreeDevice(up(values, [T, C]), up(nodeOf, [T]), N)).download();
    expect(got, run.why('half the samples')).toEqual(mergeToTree({ numNodes: N, nodeOf }, values, C));
    expect(keep(mergeToTreeDevice(up(new Float32Array(0), [0, C]), up(new Int32Array(0), [0]), N)).download()).toEqual(new Float32Array(N * C));
    // Corrupt ids are skipped: the result is the merge of the remaining positions.
    const corrupt = nodeOf.slice(), kept: number[] = [];
    for (let i = 0; i < T; i++) {
      if (rng() < 0.3) corrupt[i] = [-1, N, 2 ** 31 - 1, -(2 ** 31)][Math.floor(rng() * 4)];
      else kept.push(i);
    }
    const keptValues = Float32Array.from(kept.flatMap((i) => Array.from(values.subarray(i * C, (i + 1) * C))));
    const expected = referenceMergeToTree(keptValues, Int32Array.from(kept, (i) => nodeOf[i]), N, C);
    expect(keep(mergeToTreeDevice(up(values, [T, C]), up(corrupt, [T]), N)).download(), run.why('corrupt ids')).toEqual(Float32Array.from(expected));
    expectError(() => mergeToTreeDevice(up(values, [T, C]), up(nodeOf.subarray(1), [T - 1]), N), RangeError, 'FORGE_ERR_INVALID_ARGUMENT', /^nodeOf: expected \d+ elements \(one per row of sampleValues\)/);
    expectError(() => mergeToTreeDevice(up(values, [T, C]), up(nodeOf, [T]), 0), RangeError, 'FORGE_ERR_OUT_OF_RANGE', /^numNodes: expected an integer in \[1, /);
  });

  it.skipIf(!gpu)('cispo with no rows but some terms: every logprob reads NaN, none is left stale', () => {
    const J = 2, V = 8;
    const terms = {
      node: up(Int32Array.from([0, 1]), [J]), target: up(Int32Array.from([3, 4]), [J]),
      oldLogprob: up(Float32Array.from([-1, -2]), [J]), advantage: up(Float32Array.from([1, -1]), [J]),
    };
    // The raw call, into a buffer holding earlier values (DeviceTensor.empty memory may already be NaN).
    const logprobs = up(Float32Array.from([123, 456]), [J]);
    const raw = addon.cudaCispoLoss(0, 0, V, 0n, J, terms.node.address, terms.target.address, terms.oldLogprob.address,
      terms.advantage.address, 0, 1e9, 4, 0, null, logprobs.address) as { loss: number; stats: { numTerms: number; numRows: number } };
    expect(Array.from(logprobs.download())).toEqual([NaN, NaN]);
    expect(raw.loss).toBe(0);
    expect(raw.stats.numTerms).toBe(0);
    const viaApi = cispoLossDevice(up(new Float32Array(0), [0, V]), terms);
    keep(viaApi.logprobs);
    keep(viaApi.dlogits);
    expect(Array.from(viaApi.logprobs.download())).toEqual([NaN, NaN]);
    expect(viaApi.loss).toBe(0);
  });

  it.skipIf(!gpu)('mergeStatesDevice and mergeStatesCsrDevice match the CPU merges, empty states included', () => {
    const rng = run.rng();
    const rows = 57, H = 3, D = 64;
    const state = (n: number) => {
      const lse = gaussArray(n * H, rng, 3);
      for (let i = 0; i < lse.length; i++) if (rng() < 0.15) lse[i] = -Infinity;
      return { o: gaussArray(n * H * D, rng), lse };
    };
    const a = state(rows), b = state(rows);
    const onDevice = (s: { o: Float32Array; lse: Float32Array }, n: number) => ({ o: up(s.o, [n, H, D]), lse: up(s.lse, [n, H]) });
    const got = mergeStatesDevice(onDevice(a, rows), onDevice(b, rows));
    keep(got.o);
    keep(got.lse);
    const cpu = mergeStates(a, b, { numHeads: H, headDim: D });
    expectNear('merge o', got.o.download() as Float32Array, cpu.o, F32);
    expect(Array.from(got.lse.download() as Float32Array).map((x) => x === -Infinity)).toEqual(Array.from(cpu.lse).map((x) => x === -Infinity));
    expectNear('merge lse', (got.lse.download() as Float32Array).map((x) => (x === -Infinity ? 0 : x)), cpu.lse.map((x) => (x === -Infinity ? 0 : x)), F32);

    const offsets = new Int32Array(rows + 1);
    for (let r = 1; r <= rows; r++) offsets[r] = offsets[r - 1] + Math.floor(rng() * 4);  // 0..3 states per row
    const M = offsets[rows];
    const many = state(M);
    const csr = mergeStatesCsrDevice(onDevice(many, M), offsets);
    keep(csr.o);
    keep(csr.lse);
    const cpuCsr = mergeStatesCsr(many, offsets, { numHeads: H, headDim: D });
    expectNear('csr o', csr.o.download() as Float32Array, cpuCsr.o, F32);
    expectNear('csr lse', (csr.lse.download() as Float32Array).map((x) => (x === -Infinity ? 0 : x)), cpuCsr.lse.map((x) => (x === -Infinity ? 0 : x)), F32);

    b.lse[7] = NaN;
    expect(() => mergeStatesDevice(onDevice(a, rows), onDevice(b, rows))).toThrow(/lse_b\[7\]: expected a finite number or -inf, got nan/);
  });
});
