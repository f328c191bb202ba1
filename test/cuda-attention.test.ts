// Tree attention on the GPU (issue 7): forge_cuda_tree_attention_forward / _backward through
// lib/attentionDevice.ts. On a machine with a GPU, forward and backward are checked against the plain
// float64 reference (test/reference/attention.ts) on fresh seeded random trees and inputs, the
// reference fed exactly the values the kernel sees (inputs rounded to the dtype on the device and read
// back); without a GPU those tests are skipped and the describe name says why, and they run instead
// in the `cuda-emulator` project, on the CPU emulator build of the same kernels (cuda/simt/). What runs everywhere:
// the argument checks of the wrapper and of the C ABI (shape, dtype, head dim, NULL), which come
// before any device call, and the coded error of a call that would need the missing GPU.
//
// Bounds: relative L2 error ||got - ref|| / ||ref|| <= 1e-4 (f32) or 1e-2 (bf16 / f16), and every
// element within 1e-3 (f32) or 6e-2 (bf16 / f16) of the RMS of the reference or of its row, plus the
// output format's rounding of the element, so one wrong row cannot hide in a large norm (see BOUND).
import { describe, expect, it } from 'vitest';

import { treeAttentionBackwardDevice, treeAttentionDevice, type DeviceAttentionOptions } from '../lib/attentionDevice.js';
import { device, DeviceTensor, type DeviceDtype } from '../lib/device.js';
import { addon, nativeInfo } from '../lib/native.js';
import { expectError } from './helpers/errors.js';
import { seededRun } from './helpers/random.js';
import { bushy, chain, randomArray, singletons, star, type Tree } from './helpers/trees.js';
import { referenceAttention, referenceGrads, type RefShape } from './reference/attention.js';

const report = device();
const gpu = report.available;
const run = seededRun();

/** A DeviceTensor that owns no device memory (address 0): a fake, for argument checks that must fail
 * before any device call (no real DeviceTensor can be made without a GPU). Built through the class's
 * private constructor (address, shape, dtype), so instanceof and the dtype / shape checks see a real one. */
function fakeTensor(shape: number[], dtype: DeviceDtype): DeviceTensor {
  const Ctor = DeviceTensor as unknown as new (address: bigint, shape: number[], dtype: DeviceDtype) => DeviceTensor;
  return new Ctor(0n, shape, dtype);
}

// ---- everywhere -------------------------------------------------------------------------------------

describe('tree attention on the GPU: argument checks', () => {
  const opts: DeviceAttentionOptions = { numHeads: 4, numKvHeads: 2, headDim: 64 };
  const N = 70;
  const inputs = (dtype: DeviceDtype = 'bf16') => ({
    q: fakeTensor([N, 4, 64], dtype),
    k: fakeTensor([N, 2, 64], dtype),
    v: fakeTensor([N, 2, 64], dtype),
    ends: fakeTensor([N], 'i32'),
  });
  const bad = 'FORGE_ERR_INVALID_ARGUMENT';

  it('rejects head dims other than 64 and 128 as unsupported, and bad shapes and scales', () => {
    const { q, k, v, ends } = inputs();
    expectError(() => treeAttentionDevice(q, k, v, ends, { ...opts, headDim: 96 }), RangeError, 'FORGE_ERR_UNSUPPORTED',
      /^options.headDim: the GPU kernels serve 64 or 128, got 96$/);
    expectError(() => treeAttentionDevice(q, k, v, ends, { numHeads: 4, numKvHeads: 3, headDim: 64 }), RangeError, bad,
      /options.numHeads: expected a multiple of numKvHeads \(3\), got 4/);
    expectError(() => treeAttentionDevice(q, k, v, ends, { ...opts, scale: -1 }), RangeError, 'FORGE_ERR_OUT_OF_RANGE', /options.scale/);
    expectError(() => treeAttentionDevice(q, k, v, ends, { ...opts, scale: Infinity }), RangeError, 'FORGE_ERR_NON_FINITE', /options.scale/);
    expectError(() => treeAttentionDevice(q, k, v, ends, null as never), TypeError, bad, /options: expected an object/);
  });

  it('rejects what is not a DeviceTensor, wrong dtypes and wrong sizes, naming the argument', () => {
    const { q, k, v, ends } = inputs();
    expectError(() => treeAttentionDevice(q, k, v, new Int32Array(N) as never, opts), TypeError, bad, /^subtreeEnd: expected a DeviceTensor$/);
    expectError(() => treeAttentionDevice({} as never, k, v, ends, opts), TypeError, bad, /^q: expected a DeviceTensor$/);
    expectError(() => treeAttentionDevice(q, k, v, fakeTensor([N], 'f32'), opts), RangeError, bad, /^subtreeEnd: expected dtype i32, got 'f32'$/);
    expectError(() => treeAttentionDevice(fakeTensor([N, 4, 64], 'i32'), k, v, ends, opts), RangeError, bad, /^q: expected dtype bf16 or f16 or f32/);
    // k and v must share q's dtype.
    expectError(() => treeAttentionDevice(q, fakeTensor([N, 2, 64], 'f16'), v, ends, opts), RangeError, bad, /^k: expected dtype bf16, got 'f16'$/);
    expectError(() => treeAttentionDevice(q, k, fakeTensor([N, 2, 63], 'bf16'), ends, opts), RangeError, bad,
      /^v: expected 8960 elements \(\[N=70, Hkv=2, D=64\], dtype of q\), got 8820 \(\[70, 2, 63\]\)$/);
    expectError(() => treeAttentionDevice(fakeTensor([N, 2, 64], 'bf16'), k, v, ends, opts), RangeError, bad, /^q: expected 17920 elements/);
    expectError(() => treeAttentionDevice(q, k, v, fakeTensor([0], 'i32'), opts), RangeError, bad, /subtreeEnd: expected at least 1 node/);
    const freed = fakeTensor([N, 2, 64], 'bf16');
    freed.free();
    expectError(() => treeAttentionDevice(q, freed, v, ends, opts), RangeError, bad, /^k: used after free\(\)$/);
  });

  it('the backward checks the forward outputs and dO against q', () => {
    const { q, k, v, ends } = inputs('f16');
    const fwd = { o: fakeTensor([N, 4, 64], 'f16'), lse: fakeTensor([N, 4], 'f32') };
    const dO = fakeTensor([N, 4, 64], 'f16');
    expectError(() => treeAttentionBackwardDevice(q, k, v, ends, null as never, dO, opts), TypeError, bad, /forward: expected \{ o, lse \}/);
    expectError(() => treeAttentionBackwardDevice(q, k, v, ends, { ...fwd, o: fakeTensor([N, 4, 64], 'bf16') }, dO, opts), RangeError, bad,
      /^forward.o: expected dtype f16, got 'bf16'$/);
    expectError(() => treeAttentionBackwardDevice(q, k, v, ends, { ...fwd, lse: fakeTensor([N, 4], 'f16') }, dO, opts), RangeError, bad,
      /^forward.lse: expected dtype f32/);
    expectError(() => treeAttentionBackwardDevice(q, k, v, ends, { ...fwd, lse: fakeTensor([N, 2], 'f32') }, dO, opts), RangeError, bad,
      /^forward.lse: expected 280 elements \(\[N=70, Hq=4\]\), got 140/);
    expectError(() => treeAttentionBackwardDevice(q, k, v, ends, fwd, fakeTensor([N, 4, 32], 'f16'), opts), RangeError, bad, /^dO: expected 17920 elements/);
    expectError(() => treeAttentionBackwardDevice(q, k, v, ends, fwd, dO, { ...opts, headDim: 32 }), RangeError, 'FORGE_ERR_UNSUPPORTED', /headDim/);
  });

  it.skipIf(gpu)('without a GPU, valid arguments throw FORGE_ERR_DEVICE naming the reason', () => {
    const { q, k, v, ends } = inputs();
    let caught: unknown;
    try {
      treeAttentionDevice(q, k, v, ends, opts);
    } catch (e) {
      caught = e;
    }
    expect((caught as { code?: string })?.code).toBe('FORGE_ERR_DEVICE');
    expect((caught as Error).message).toContain(report.reason);
  });

  // The raw addon: (dtype, numNodes, numHeads, numKvHeads, headDim, scale, pointers...). The C ABI
  // checks the shape before it looks for a device, so these answers are the same with or without a GPU.
  const fwd = (...shape: unknown[]) => () => addon.cudaTreeAttention(...shape, 4096n, 8192n, 12288n, 16384n, 20480n, 24576n);
  const bwd = (...shape: unknown[]) => () =>
    addon.cudaTreeAttentionBackward(...shape, 4096n, 8192n, 12288n, 16384n, 20480n, 24576n, 28672n, 32768n, 36864n, 40960n);

  it.skipIf(!nativeInfo().cudaCompiled)('the C ABI names a bad shape, dtype or NULL pointer before touching the device', () => {
    for (const call of [fwd, bwd]) {
      expectError(call(2, 64, 4, 2, 96, 0), Error, 'FORGE_ERR_UNSUPPORTED', /shape.head_dim: the CUDA tree-attention kernels serve 64 or 128, got 96/);
      expectError(call(2, 64, 4, 3, 64, 0), RangeError, bad, /shape.num_kv_heads: expected a divisor of num_heads \(4\), got 3/);
      expectError(call(2, 0, 4, 2, 64, 0), RangeError, bad, /shape.num_nodes: expected an integer in \[1, 2\^31 - 128\], got 0/);
      expectError(call(2, 64, 0, 1, 64, 0), RangeError, bad, /shape.num_heads/);
      expectError(call(1, 64, 4, 2, 0, 0), RangeError, bad, /shape.head_dim: expected >= 1, got 0/);
      expectError(call(0, 64, 4, 2, 128, -Infinity), RangeError, 'FORGE_ERR_NON_FINITE', /shape.scale/);
      expectError(call(7, 64, 4, 2, 64, 0), RangeError, 'FORGE_ERR_OUT_OF_RANGE', /dtype/);
      expectError(call(2, 64, 4, 2, 64, 'x'), TypeError, bad, /scale: expected a number/);
    }
    expectError(() => addon.cudaTreeAttention(2, 64, 4, 2, 64, 0, 0n, 8192n, 12288n, 16384n, 20480n, 24576n), RangeError, bad,
      /^q: NULL where a device pointer is required$/);
    expectError(() => addon.cudaTreeAttention(2, 64, 4, 2, 64, 0, 4096n, 8192n, 12288n, 0n, 20480n, 24576n), RangeError, bad,
      /^subtree_end: NULL/);
    expectError(() => addon.cudaTreeAttentionBackward(2, 64, 4, 2, 64, 0, 4096n, 8192n, 12288n, 16384n, 20480n, 24576n, 28672n, 0n, 36864n, 40960n),
      RangeError, bad, /^dq: NULL/);
    expectError(() => addon.cudaTreeAttention(2, 64, 4, 2, 64, 0, 4096, 8192n, 12288n, 16384n, 20480n, 24576n), TypeError, bad,
      /^q: expected a device address \(bigint\)$/);
  });

  it.skipIf(gpu)('without a GPU the C ABI answers a valid call with a coded error naming the function', () => {
    const code = nativeInfo().cudaCompiled ? 'FORGE_ERR_DEVICE' : 'FORGE_ERR_UNSUPPORTED';
    for (const [name, call] of [['forge_cuda_tree_attention_forward', fwd], ['forge_cuda_tree_attention_backward', bwd]] as const) {
      let caught: unknown;
      try {
        call(2, 64, 4, 2, 64, 0)();
      } catch (e) {
        caught = e;
      }
      expect((caught as { code?: string })?.code, name).toBe(code);
      expect((caught as Error).message, name).toContain(name);
    }
  });
});

// ---- on a GPU ---------------------------------------------------------------------------------------

type FloatDtype = 'bf16' | 'f16' | 'f32';
// l2: relative L2 error; element: per element, relative to the larger of the reference's RMS and its
// row's (one token and head: a row that sums many more terms, like the root key's gradient in a star
// of 257 x 4 heads, carries proportionally larger 16-bit rounding of P and dS), plus `rounding` of
// the element itself: the spacing of the output format near it.
const BOUND: Record<FloatDtype, { l2: number; element: number; rounding: number }> = {
  f32: { l2: 1e-4, element: 1e-3, rounding: 2 ** -23 },
  bf16: { l2: 1e-2, element: 6e-2, rounding: 2 ** -7 },
  f16: { l2: 1e-2, element: 6e-2, rounding: 2 ** -10 },
};
// Inputs are N(0, 1): a gradient that is zero in exact arithmetic (a node that sees only itself has
// dQ = 0) comes out at rounding level, so the RMS is floored at this scale.
const RMS_FLOOR = 1e-2;

function compare(label: string, got: Float32Array, ref: ArrayLike<number>, dtype: FloatDtype, row = 1): void {
  expect(got.length, run.why(`${label}: length`)).toBe(ref.length);
  let diff = 0, norm = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(got[i])) run.fail(`${label}[${i}]: got ${got[i]}, expected ${ref[i]}`);
    diff += (got[i] - ref[i]) ** 2;
    norm += ref[i] ** 2;
  }
  const rms = Math.max(Math.sqrt(norm / ref.length), RMS_FLOOR), rel = Math.sqrt(diff / ref.length) / rms;
  const b = BOUND[dtype];
  if (!(rel <= b.l2)) run.fail(`${label} (${dtype}): relative L2 error ${rel} > ${b.l2}`);
  for (let r = 0; r < ref.length; r += row) {
    let rowNorm = 0;
    for (let i = r; i < r + row; i++) rowNorm += ref[i] ** 2;
    const scale = Math.max(rms, Math.sqrt(rowNorm / row));
    for (let i = r; i < r + row; i++)
      if (!(Math.abs(got[i] - ref[i]) <= b.element * scale + b.rounding * Math.abs(ref[i])))
        run.fail(`${label}[${i}] (${dtype}): got ${got[i]}, expected ${ref[i]} (bound ${b.element} x RMS ${scale} + ${b.rounding} x |expected|)`);
  }
}

/** Uploads float32 values as `dtype` and returns the tensor with the values it holds (rounded). */
function upload(x: Float32Array, shape: number[], dtype: FloatDtype): { t: DeviceTensor; held: Float32Array } {
  const t = DeviceTensor.upload(x, shape, dtype);
  return { t, held: t.downloadFloat32() };
}

interface Case {
  name: string;
  tree: (rng: () => number) => Tree;
  hq: number;
  hkv: number;
  d: number;
  scale?: number;
  amplitude?: number;
}

const cases: Case[] = [
  { name: 'a chain of 300 (causal), MHA, D = 128', tree: () => chain(300), hq: 2, hkv: 2, d: 128 },
  { name: 'a star of 257, GQA 4, D = 64', tree: () => star(257), hq: 4, hkv: 1, d: 64 },
  { name: 'a forest of 350, D = 64', tree: (rng) => bushy(350, rng, { forest: true }), hq: 2, hkv: 2, d: 64 },
  { name: 'a bushy tree of 420, GQA 4 with 8 heads, D = 128', tree: (rng) => bushy(420, rng, { branch: 0.2 }), hq: 8, hkv: 2, d: 128 },
  { name: 'separate nodes (N = 65), peaked scores, custom scale', tree: () => singletons(65), hq: 2, hkv: 1, d: 64, scale: 0.3, amplitude: 2 },
  { name: 'one node', tree: () => chain(1), hq: 1, hkv: 1, d: 128 },
];

const title = gpu
  ? `tree attention on ${report.devices[0].name} against the float64 reference`
  : `tree attention on the GPU against the float64 reference (skipped: no usable GPU: ${report.reason})`;

describe(title, () => {
  for (const c of cases)
    for (const dtype of ['bf16', 'f16', 'f32'] as const) {
      it.skipIf(!gpu)(`forward and backward: ${c.name}, ${dtype}`, () => {
        const rng = run.rng();
        const tree = c.tree(rng);
        const n = tree.parent.length, amp = c.amplitude ?? 1;
        const qShape = [n, c.hq, c.d], kvShape = [n, c.hkv, c.d];
        const owned: DeviceTensor[] = [];
        const keep = <T extends DeviceTensor>(t: T): T => (owned.push(t), t);
        try {
          const q = upload(randomArray(n * c.hq * c.d, rng, amp), qShape, dtype);
          const k = upload(randomArray(n * c.hkv * c.d, rng, amp), kvShape, dtype);
          const v = upload(randomArray(n * c.hkv * c.d, rng), kvShape, dtype);
          const dO = upload(randomArray(n * c.hq * c.d, rng), qShape, dtype);
          [q.t, k.t, v.t, dO.t].forEach(keep);
          const ends = keep(DeviceTensor.upload(tree.subtreeEnd, [n]));
          const options = { numHeads: c.hq, numKvHeads: c.hkv, headDim: c.d, scale: c.scale };
          const ref: RefShape = { hq: c.hq, hkv: c.hkv, d: c.d, scale: c.scale ?? 1 / Math.sqrt(c.d) };

          const out = treeAttentionDevice(q.t, k.t, v.t, ends, options);
          keep(out.o), keep(out.lse);
          const expected = referenceAttention(q.held, k.held, v.held, tree.parent, ref);
          compare(`${c.name}: o`, out.o.downloadFloat32(), expected.o, dtype, c.d);
          compare(`${c.name}: lse`, out.lse.downloadFloat32(), expected.lse, 'f32'); // float32 math on the held values

          const g = treeAttentionBackwardDevice(q.t, k.t, v.t, ends, out, dO.t, options);
          keep(g.dq), keep(g.dk), keep(g.dv);
          const grads = referenceGrads(q.held, k.held, v.held, tree.parent, dO.held, ref);
          compare(`${c.name}: dq`, g.dq.downloadFloat32(), grads.dq, dtype, c.d);
          compare(`${c.name}: dk`, g.dk.downloadFloat32(), grads.dk, dtype, c.d);
          compare(`${c.name}: dv`, g.dv.downloadFloat32(), grads.dv, dtype, c.d);
        } finally {
          for (const t of owned) t.free();
        }
      });
    }

  it.skipIf(!gpu)('the forward is deterministic: the same inputs give the same bits', () => {
    const rng = run.rng();
    const tree = bushy(333, rng, { branch: 0.25 });
    const n = tree.parent.length;
    const q = DeviceTensor.upload(randomArray(n * 4 * 128, rng), [n, 4, 128], 'bf16');
    const kv = DeviceTensor.upload(randomArray(n * 128, rng), [n, 1, 128], 'bf16');
    const ends = DeviceTensor.upload(tree.subtreeEnd, [n]);
    const options = { numHeads: 4, numKvHeads: 1, headDim: 128 };
    const a = treeAttentionDevice(q, kv, kv, ends, options), b = treeAttentionDevice(q, kv, kv, ends, options);
    try {
      expect(b.o.download()).toEqual(a.o.download());
      expect(b.lse.download()).toEqual(a.lse.download());
    } finally {
      for (const t of [q, kv, ends, a.o, a.lse, b.o, b.lse]) t.free();
    }
  });
});
