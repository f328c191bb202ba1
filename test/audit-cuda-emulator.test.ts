// Audit of issue 7: promises of the CUDA backend that worked but that no test held them to, checked on
// the CPU emulator build of the kernels (build-simt/, made by `npm test`'s pretest; cuda/simt/), whose
// allocations end at guard pages, so a read outside a tensor is a reported launch error.
//   - key tiles that no query of a query tile can see are never read (forward and backward): an
//     invisible branch poisoned with NaN would otherwise reach the other branches (0 * NaN in P V on
//     the tensor-core paths; the f32 path walks visible keys one by one, so there it checks that);
//   - the trusted index arrays (nodeOf, term node / target, subtreeEnd) never make a kernel read out of
//     bounds, whatever their values;
//   - a host pointer where a device pointer is required is refused naming the argument, and an error
//     inside a kernel comes back as FORGE_ERR_DEVICE with the CUDA error's name.
// This file loads the emulator addon itself (FORGE_ADDON_PATH, before lib/ is imported); vitest's forks
// pool runs each file in its own process.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { seededRun } from './helpers/random.js';
import { randomArray, subtreeEndOf } from './helpers/trees.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const emulatorAddon = 'build-simt/Release/forge.node';
const haveEmulator = existsSync(join(root, emulatorAddon));
if (haveEmulator) {
  process.env.FORGE_ADDON_PATH = emulatorAddon;
  // As the cuda-emulator project runs: thread orders and cp.async landing times vary launch by launch.
  process.env.FORGE_SIMT_ORDER ??= 'alternate';
  process.env.FORGE_SIMT_CP_ASYNC ??= 'alternate';
}
const lib = haveEmulator
  ? {
      ...(await import('../lib/device.js')),
      ...(await import('../lib/attentionDevice.js')),
      ...(await import('../lib/cispo.js')),
      native: await import('../lib/native.js'),
    }
  : undefined;
type DeviceTensor = import('../lib/device.js').DeviceTensor;
type FloatDtype = 'bf16' | 'f16' | 'f32';

const run = seededRun();
const title = haveEmulator
  ? 'CUDA kernels on the CPU emulator: audit of issue 7'
  : `CUDA kernels on the CPU emulator: audit of issue 7 (skipped: no ${emulatorAddon}; npm test builds it)`;

/** A shared chain of 64 nodes (one key tile), then `branches` sibling chains of 64 nodes each hanging
 * from its last node: every branch is exactly one 64-node tile, invisible to every other branch. */
function branchedTree(branches: number): { parent: Int32Array; subtreeEnd: Int32Array } {
  const n = 64 * (1 + branches);
  const parent = new Int32Array(n);
  for (let i = 0; i < n; i++) parent[i] = i === 0 ? -1 : i % 64 === 0 ? 63 : i - 1;
  return { parent, subtreeEnd: subtreeEndOf(parent) };
}

/** Rows [from, to) of a [N, H, D] (or [N, H]) array, flattened. */
const rows = (x: Float32Array, width: number, from: number, to: number) => x.subarray(from * width, to * width);

describe.skipIf(!haveEmulator)(title, () => {
  const L = lib!;
  const owned: DeviceTensor[] = [];
  const keep = <T extends DeviceTensor>(t: T): T => (owned.push(t), t);
  const freeAll = () => owned.splice(0).forEach((t) => t.free());

  it('runs on the emulator build (this file has its own process)', () => {
    const report = L.device();
    expect(report.available, report.reason).toBe(true);
    expect(report.devices[0].name).toContain('emulator');
  });

  const cases: { dtype: FloatDtype; d: number; hq: number; hkv: number }[] = [
    { dtype: 'bf16', d: 128, hq: 2, hkv: 1 },
    { dtype: 'f16', d: 64, hq: 2, hkv: 2 },
    { dtype: 'f32', d: 64, hq: 2, hkv: 1 },
  ];
  for (const c of cases)
    it(`tree attention never reads a key tile no query of the tile can see (${c.dtype}, D=${c.d}, Hq=${c.hq}, Hkv=${c.hkv})`, () => {
      const rng = run.rng();
      const tree = branchedTree(4);  // nodes: shared 0..63, branches 64..127, 128..191 (poisoned), 192..255, 256..319
      const n = tree.parent.length, poisonFrom = 128, poisonTo = 192;
      const qw = c.hq * c.d, kvw = c.hkv * c.d;
      const options = { numHeads: c.hq, numKvHeads: c.hkv, headDim: c.d };
      const q = randomArray(n * qw, rng), k = randomArray(n * kvw, rng), v = randomArray(n * kvw, rng), dO = randomArray(n * qw, rng);
      const kPoisoned = k.slice(), vPoisoned = v.slice();
      rows(kPoisoned, kvw, poisonFrom, poisonTo).fill(NaN);
      rows(vPoisoned, kvw, poisonFrom, poisonTo).fill(NaN);
      try {
        const ends = keep(L.DeviceTensor.upload(tree.subtreeEnd, [n]));
        const up = (x: Float32Array, width: number) => keep(L.DeviceTensor.upload(x, [n, width / c.d, c.d], c.dtype));
        const attend = (kk: Float32Array, vv: Float32Array) => {
          const Q = up(q, qw), K = up(kk, kvw), V = up(vv, kvw), G = up(dO, qw);
          const fwd = L.treeAttentionDevice(Q, K, V, ends, options);
          keep(fwd.o), keep(fwd.lse);
          const g = L.treeAttentionBackwardDevice(Q, K, V, ends, fwd, G, options);
          keep(g.dq), keep(g.dk), keep(g.dv);
          return { o: fwd.o.downloadFloat32(), lse: fwd.lse.downloadFloat32(), dq: g.dq.downloadFloat32(), dk: g.dk.downloadFloat32(), dv: g.dv.downloadFloat32() };
        };
        const clean = attend(k, v), poisoned = attend(kPoisoned, vPoisoned);

        // The poison is really there: the poisoned branch's own queries see it.
        expect(rows(poisoned.o, qw, poisonFrom, poisonTo).some((x) => Number.isNaN(x))).toBe(true);
        // Every other query never reads the poisoned tile: the same bits as with clean values (the
        // forward and dK / dV are deterministic), dQ (float32 atomics) within rounding.
        const others: [number, number][] = [[0, 64], [64, 128], [192, 256], [256, 320]];
        for (const [from, to] of others) {
          const where = run.why(`${c.dtype} rows [${from}, ${to})`);
          expect(Array.from(rows(poisoned.o, qw, from, to)), `${where}: o`).toEqual(Array.from(rows(clean.o, qw, from, to)));
          expect(Array.from(rows(poisoned.lse, c.hq, from, to)), `${where}: lse`).toEqual(Array.from(rows(clean.lse, c.hq, from, to)));
          const dq = rows(poisoned.dq, qw, from, to), ref = rows(clean.dq, qw, from, to);
          const rms = Math.sqrt(ref.reduce((s, x) => s + x * x, 0) / ref.length);
          const tol = c.dtype === 'f32' ? 1e-5 : 1e-2;
          for (let i = 0; i < ref.length; i++)
            if (!(Math.abs(dq[i] - ref[i]) <= tol * (Math.abs(ref[i]) + rms))) run.fail(`${c.dtype} dq row ${from + Math.floor(i / qw)}: ${dq[i]} vs ${ref[i]}`);
          // The shared prefix's keys are seen by the poisoned queries too: only the branches' dK / dV are clean.
          if (from >= 64) {
            expect(Array.from(rows(poisoned.dk, kvw, from, to)), `${where}: dk`).toEqual(Array.from(rows(clean.dk, kvw, from, to)));
            expect(Array.from(rows(poisoned.dv, kvw, from, to)), `${where}: dv`).toEqual(Array.from(rows(clean.dv, kvw, from, to)));
          }
        }
      } finally {
        freeAll();
      }
    });

  it('out-of-range entries of the trusted index arrays never make a kernel read out of bounds', () => {
    const extremes = [2 ** 31 - 1, -(2 ** 31), -1, 5, 3];
    try {
      const values = keep(L.DeviceTensor.upload(Float32Array.of(1, 2, 3), [3]));
      const nodeOf = keep(L.DeviceTensor.upload(Int32Array.of(...extremes, 2, 0), [extremes.length + 2]));
      // In-range positions gather their node; the others are skipped (never read), here left 0.
      const gathered = keep(L.gatherToSamplesDevice(values, nodeOf)).download() as Float32Array;
      expect(Array.from(gathered.slice(extremes.length))).toEqual([3, 1]);
      const samples = keep(L.DeviceTensor.upload(Float32Array.from({ length: extremes.length + 2 }, (_, i) => i + 1), [extremes.length + 2]));
      const summed = keep(L.scatterFromSamplesDevice(samples, nodeOf, 3)).download() as Float32Array;
      expect(Array.from(summed)).toEqual([7, 0, 6]);

      // CISPO: terms with a node or target out of range are skipped (log-prob NaN), the valid one counts.
      const V = 7, logitsHost = Float32Array.from({ length: 2 * V }, (_, i) => Math.sin(i));
      const logits = keep(L.DeviceTensor.upload(logitsHost, [2, V]));
      const t = (a: Int32Array | Float32Array) => keep(L.DeviceTensor.upload(a, [a.length]));
      const terms = {
        node: t(Int32Array.of(2 ** 31 - 1, -(2 ** 31), 1, 0, 1)),
        target: t(Int32Array.of(0, 0, 2 ** 31 - 1, -5, 4)),
        oldLogprob: t(Float32Array.of(-2, -2, -2, -2, -2)),
        advantage: t(Float32Array.of(1, 1, 1, 1, 1)),
      };
      const r = L.cispoLossDevice(logits, terms, { normalizer: 1 });
      keep(r.logprobs), r.dlogits && keep(r.dlogits);
      const lp = r.logprobs.download() as Float32Array;
      expect(Array.from(lp.slice(0, 4)).every(Number.isNaN)).toBe(true);
      const cpu = L.cispoLoss(logitsHost, V, { node: Int32Array.of(1), target: Int32Array.of(4), oldLogprob: Float32Array.of(-2), advantage: Float32Array.of(1) }, { normalizer: 1 });
      expect(lp[4]).toBeCloseTo(cpu.logprobs[0], 5);
      expect(r.stats.numTerms).toBe(1);
      expect(r.loss).toBeCloseTo(cpu.loss, 5);

      // Tree attention with subtreeEnd values outside [0, N]: meaningless numbers, but no bad read.
      const n = 130, D = 64;
      const q = keep(L.DeviceTensor.upload(randomArray(n * D, run.rng()), [n, 1, D], 'bf16'));
      for (const bad of [Int32Array.from({ length: n }, () => 2 ** 31 - 1), Int32Array.from({ length: n }, () => -(2 ** 31)), Int32Array.from({ length: n }, (_, i) => Math.imul(i, 2654435761))]) {
        const ends = keep(L.DeviceTensor.upload(bad, [n]));
        const fwd = L.treeAttentionDevice(q, q, q, ends, { numHeads: 1, headDim: D });
        keep(fwd.o), keep(fwd.lse);
        const g = L.treeAttentionBackwardDevice(q, q, q, ends, { o: fwd.o, lse: keep(L.DeviceTensor.upload(new Float32Array(n), [n, 1])) }, q, { numHeads: 1, headDim: D });
        keep(g.dq), keep(g.dk), keep(g.dv);
      }
    } finally {
      freeAll();
    }
  });

  it('a host pointer is refused naming the argument; a fault inside a kernel is FORGE_ERR_DEVICE with the CUDA name', () => {
    const addon = L.native.addon;
    const host = 4096n;  // not an allocation of the (emulated) device
    try {
      const values = keep(L.DeviceTensor.upload(Float32Array.of(1, 2, 3), [3]));
      const ids = keep(L.DeviceTensor.upload(Int32Array.of(0, 1, 2), [3]));
      const out = keep(L.DeviceTensor.empty([3], 'f32'));
      const refused = (call: () => unknown, name: string) => {
        let caught: unknown;
        try {
          call();
        } catch (e) {
          caught = e;
        }
        expect((caught as { code?: string })?.code, name).toBe('FORGE_ERR_INVALID_ARGUMENT');
        expect((caught as Error).message, name).toBe(`${name}: a host pointer where a device pointer is required`);
      };
      refused(() => addon.cudaGather(0, host, 3, 1, ids.address, 3, out.address), 'node_values');
      refused(() => addon.cudaGather(0, values.address, 3, 1, host, 3, out.address), 'node_of');
      refused(() => addon.cudaScatter(values.address, 3, 1, ids.address, 3, host), 'out');
      refused(() => addon.cudaConvert(3, 0, values.address, 2, host), 'dst');
      refused(() => addon.cudaDownload(host, new Float32Array(3)), 'src');

      // Bypassing the TypeScript checks, claim 100000 nodes for a 3-element tensor: the kernel's read
      // past the allocation comes back from the call as a coded error, not a crash.
      const far = keep(L.DeviceTensor.upload(Int32Array.of(0, 99_999, 5_000), [3]));
      let caught: unknown;
      try {
        addon.cudaGather(0, values.address, 100_000, 1, far.address, 3, out.address);
      } catch (e) {
        caught = e;
      }
      expect((caught as { code?: string })?.code).toBe('FORGE_ERR_DEVICE');
      expect((caught as Error).message).toMatch(/^forge_cuda_gather_to_samples: .*\(cudaErrorIllegalAddress\)$/);
    } finally {
      freeAll();
    }
  });
});
