// The `backend` option of the host-array kernels (issue 7: "everything falls back to the CPU kernels,
// with one clear line saying so"), lib/backend.ts and lib/hostDevice.ts. Runs in both vitest projects:
// on the `cpu` project (no GPU) 'auto' must give the CPU path's results bit for bit after exactly one
// console line, and 'cuda' a coded error naming the reason; on the `cuda-emulator` project (the device
// kernels on the CPU emulator, cuda/simt/) 'cuda' and 'auto' must give the device results, within the
// device tolerances of test/cuda.test.ts of the CPU path (gather and scatter exactly), and free every
// device tensor they allocate, also when a call fails. Inputs are fresh seeded random draws.
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  mergeStates, mergeStatesAsync, mergeStatesCsr, mergeStatesCsrAsync, treeAttention, treeAttentionAsync, treeAttentionBackward,
  treeAttentionBackwardAsync, type AttentionOptions, type AttentionState,
} from '../lib/attention.js';
import { getDefaultBackend, setDefaultBackend, type Backend, type BackendOption } from '../lib/backend.js';
import { cispoLoss, cispoLossAsync, type CispoResult } from '../lib/cispo.js';
import { device, DeviceTensor } from '../lib/device.js';
import { addon } from '../lib/native.js';
import { gatherToSamples, gatherToSamplesAsync, scatterFromSamples, scatterFromSamplesAsync } from '../lib/prefixTree.js';
import { expectError } from './helpers/errors.js';
import { gauss, seededRun } from './helpers/random.js';
import { bushy, randomArray } from './helpers/trees.js';

delete process.env.FORGE_BACKEND;  // the tests pick the backend themselves (vi.stubEnv where they test it)
const report = device();
const gpu = report.available;
const run = seededRun();
const F32 = 1e-4;  // test/cuda.test.ts's float32 device tolerance, relative to the scale of the result
const GPU_LINE = `forge-rl: no usable GPU (${report.reason}); kernels run on the CPU`;

// ---- inputs: one fresh seeded draw per run ----------------------------------------------------------

const rng = run.rng();
const tree = bushy(90, rng, { branch: 0.2 });
const N = tree.parent.length;
const attn: AttentionOptions = { numHeads: 4, numKvHeads: 2, headDim: 64 };
const q = randomArray(N * 4 * 64, rng), k = randomArray(N * 2 * 64, rng), v = randomArray(N * 2 * 64, rng);
const dO = randomArray(N * 4 * 64, rng);
const forward = treeAttention(q, k, v, tree, attn);

const V = 301, rows = 24, J = 40;
const logits = Float32Array.from({ length: rows * V }, () => 2 * gauss(rng));
const terms = {
  node: Int32Array.from({ length: J }, () => Math.floor(rng() * (rows - 3))),  // the last rows carry no term
  target: Int32Array.from({ length: J }, () => Math.floor(rng() * V)),
  oldLogprob: Float32Array.from({ length: J }, () => -Math.log(V) + 0.8 * gauss(rng)),
  advantage: Float32Array.from({ length: J }, () => gauss(rng)),
};
const lossOptions = { mode: 'cispo' as const, epsHigh: 0.5 };

const H = 2, D = 16, mergeRows = 30;
const state = (n: number): AttentionState => {
  const lse = Float32Array.from({ length: n * H }, () => (rng() < 0.15 ? -Infinity : 3 * gauss(rng)));
  return { o: randomArray(n * H * D, rng), lse };
};
const a = state(mergeRows), b = state(mergeRows);
const offsets = new Int32Array(mergeRows + 1);
for (let r = 1; r <= mergeRows; r++) offsets[r] = offsets[r - 1] + Math.floor(rng() * 4);  // 0..3 states a row
const many = state(offsets[mergeRows]);

const C = 3, layout = { numNodes: 50, nodeOf: Int32Array.from({ length: 140 }, () => Math.floor(rng() * 50)) };
const nodeValues = randomArray(50 * C, rng), sampleValues = randomArray(140 * C, rng);

// ---- every kernel, as comparable arrays --------------------------------------------------------------

type Out = Record<string, ArrayLike<number>>;
const cispoOut = (r: CispoResult): Out => ({
  loss: Float64Array.of(r.loss), dlogits: r.dlogits!, logprobs: r.logprobs, stats: Float64Array.from(Object.values(r.stats)),
});

interface Kernel {
  name: string;
  /** The addon functions of the CPU and of the device kernel: which one ran is checked, not guessed. */
  cpu: string;
  cuda: string;
  /** The device result equals the CPU's bitwise. */
  exact?: boolean;
  call: (o: BackendOption) => Out | Promise<Out>;
}

const kernels: Kernel[] = [
  { name: 'treeAttention', cpu: 'treeAttention', cuda: 'cudaTreeAttention', call: (o) => ({ ...treeAttention(q, k, v, tree, { ...attn, ...o }) }) },
  {
    name: 'treeAttentionAsync', cpu: 'treeAttention', cuda: 'cudaTreeAttention',
    call: async (o) => ({ ...(await treeAttentionAsync(q, k, v, tree, { ...attn, ...o })) }),
  },
  {
    name: 'treeAttentionBackward', cpu: 'treeAttentionBackward', cuda: 'cudaTreeAttentionBackward',
    call: (o) => ({ ...treeAttentionBackward(q, k, v, tree, forward, dO, { ...attn, ...o }) }),
  },
  {
    name: 'treeAttentionBackwardAsync', cpu: 'treeAttentionBackward', cuda: 'cudaTreeAttentionBackward',
    call: async (o) => ({ ...(await treeAttentionBackwardAsync(q, k, v, tree, forward, dO, { ...attn, ...o })) }),
  },
  { name: 'cispoLoss', cpu: 'cispoLoss', cuda: 'cudaCispoLoss', call: (o) => cispoOut(cispoLoss(logits, V, terms, { ...lossOptions, ...o })) },
  {
    name: 'cispoLossAsync', cpu: 'cispoLoss', cuda: 'cudaCispoLoss',
    call: async (o) => cispoOut(await cispoLossAsync(logits, V, terms, { ...lossOptions, ...o })),
  },
  { name: 'mergeStates', cpu: 'mergeStates', cuda: 'cudaMergeStates', call: (o) => ({ ...mergeStates(a, b, { numHeads: H, headDim: D, ...o }) }) },
  {
    name: 'mergeStatesAsync', cpu: 'mergeStates', cuda: 'cudaMergeStates',
    call: async (o) => ({ ...(await mergeStatesAsync(a, b, { numHeads: H, headDim: D, ...o })) }),
  },
  {
    name: 'mergeStatesCsr', cpu: 'mergeStatesCsr', cuda: 'cudaMergeStatesCsr',
    call: (o) => ({ ...mergeStatesCsr(many, offsets, { numHeads: H, headDim: D, ...o }) }),
  },
  {
    name: 'mergeStatesCsrAsync', cpu: 'mergeStatesCsr', cuda: 'cudaMergeStatesCsr',
    call: async (o) => ({ ...(await mergeStatesCsrAsync(many, offsets, { numHeads: H, headDim: D, ...o })) }),
  },
  { name: 'gatherToSamples', cpu: 'gatherToSamples', cuda: 'cudaGather', exact: true, call: (o) => ({ out: gatherToSamples(layout, nodeValues, C, o) }) },
  {
    name: 'gatherToSamplesAsync', cpu: 'gatherToSamples', cuda: 'cudaGather', exact: true,
    call: async (o) => ({ out: await gatherToSamplesAsync(layout, nodeValues, C, o) }),
  },
  {
    name: 'scatterFromSamples', cpu: 'scatterFromSamples', cuda: 'cudaScatter', exact: true,
    call: (o) => ({ out: scatterFromSamples(layout, sampleValues, C, o) }),
  },
  {
    name: 'scatterFromSamplesAsync', cpu: 'scatterFromSamples', cuda: 'cudaScatter', exact: true,
    call: async (o) => ({ out: await scatterFromSamplesAsync(layout, sampleValues, C, o) }),
  },
];

/** Runs `kernel` with `backend` and returns its result and which addon functions it called. */
async function traced(kernel: Kernel, backend: BackendOption): Promise<{ out: Out; cpuCalls: number; cudaCalls: number }> {
  const native = addon as Record<string, (...args: unknown[]) => unknown>;
  const cpu = vi.spyOn(native, kernel.cpu), cuda = vi.spyOn(native, kernel.cuda);
  try {
    const out = await kernel.call(backend);
    return { out, cpuCalls: cpu.mock.calls.length, cudaCalls: cuda.mock.calls.length };
  } finally {
    cpu.mockRestore();
    cuda.mockRestore();
  }
}

/** |got - want| <= tol (|want| + max |want|) element by element (so tiny gradient entries are judged
 * against the size of the gradient), equal infinities allowed. */
function near(label: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  expect(got.length, run.why(`${label}: length`)).toBe(want.length);
  let scale = 0;
  for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++)
    if (!(got[i] === want[i] || Math.abs(got[i] - want[i]) <= tol * (Math.abs(want[i]) + scale)))
      run.fail(`${label}[${i}]: got ${got[i]}, expected ${want[i]} (tolerance ${tol} relative to ${scale})`);
}

/** Scalars (the loss, the stats) as test/cuda.test.ts judges them: |got - want| <= tol (1 + |want|). */
function closeEach(label: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  expect(got.length, run.why(`${label}: length`)).toBe(want.length);
  for (let i = 0; i < want.length; i++)
    if (!(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])))) run.fail(`${label}[${i}]: got ${got[i]}, expected ${want[i]} (tolerance ${tol})`);
}

function expectDeviceResult(name: string, got: Out, cpu: Out, exact: boolean | undefined): void {
  expect(Object.keys(got).sort(), name).toEqual(Object.keys(cpu).sort());
  for (const key of Object.keys(cpu)) {
    if (exact) expect(got[key], `${name}.${key}`).toEqual(cpu[key]);
    else if (key === 'loss' || key === 'stats') closeEach(`${name}.${key}`, got[key], cpu[key], 1e-6);
    else near(`${name}.${key}`, got[key], cpu[key], F32);
  }
}

async function caught(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

afterEach(() => {
  setDefaultBackend(undefined);
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

// ---- without a GPU --------------------------------------------------------------------------------

describe.skipIf(gpu)('without a GPU: auto falls back with one line, cuda says why', () => {
  // First in the file: selectBackend() decides (and speaks) once per process.
  it("'auto' runs every kernel on the CPU, bit for bit, after exactly one console line", async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    for (const kernel of kernels) {
      const cpu = await kernel.call({});
      const auto = await traced(kernel, { backend: 'auto' });
      expect(auto.out, kernel.name).toEqual(cpu);
      expect([auto.cpuCalls, auto.cudaCalls], kernel.name).toEqual([1, 0]);
    }
    // An unsupported head dim says nothing more: the GPU line has said it all.
    const small = { numHeads: 2, headDim: 8 };
    const qs = randomArray(N * 16, rng);
    expect(treeAttention(qs, qs, qs, tree, { ...small, backend: 'auto' })).toEqual(treeAttention(qs, qs, qs, tree, small));
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn).toHaveBeenCalledWith(GPU_LINE);
  });

  it("'cuda' throws FORGE_ERR_DEVICE naming the function and the reason (async forms reject)", async () => {
    for (const kernel of kernels) {
      const e = (await caught(() => kernel.call({ backend: 'cuda' }))) as Error & { code: string };
      expect(e.code, kernel.name).toBe('FORGE_ERR_DEVICE');
      expect(e.message).toBe(`${kernel.name}: backend 'cuda': no usable GPU (${report.reason})`);
    }
  });
});

// ---- on a GPU (the emulator here) --------------------------------------------------------------------

const onGpu = gpu
  ? `on ${report.devices[0].name}: cuda and auto give the device results and free what they allocate`
  : `on a GPU (skipped: no usable GPU: ${report.reason})`;

describe.skipIf(!gpu)(onGpu, () => {
  it("'cuda' and 'auto' match the CPU path, print nothing, and leave no device tensor behind", async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const before = DeviceTensor.held();
    for (const kernel of kernels) {
      const cpu = await traced(kernel, { backend: 'cpu' });
      expect([cpu.cpuCalls, cpu.cudaCalls], kernel.name).toEqual([1, 0]);
      for (const backend of ['cuda', 'auto'] as const) {
        const got = await traced(kernel, { backend });
        expect([got.cpuCalls, got.cudaCalls], `${kernel.name} (${backend}): kernels called`).toEqual([0, 1]);
        expectDeviceResult(`${kernel.name} (${backend})`, got.out, cpu.out, kernel.exact);
        expect(DeviceTensor.held(), `${kernel.name} (${backend})`).toEqual(before);
      }
    }
    expect(warn).not.toHaveBeenCalled();
  });

  it("cispoLoss on 'cuda': in place writes the host logits, without grad there are none", () => {
    const z = logits.slice();
    const cpu = cispoLoss(logits.slice(), V, terms, { ...lossOptions, inPlace: true });
    const got = cispoLoss(z, V, terms, { ...lossOptions, inPlace: true, backend: 'cuda' });
    expect(got.dlogits).toBe(z);
    near('in-place dlogits', z, cpu.dlogits!, F32);
    const lossOnly = cispoLoss(logits, V, terms, { ...lossOptions, grad: false, backend: 'cuda' });
    expect(lossOnly.dlogits).toBeUndefined();
    closeEach('loss without grad', [lossOnly.loss], [cpu.loss], 1e-6);
  });

  it("'auto' runs an unsupported head dim on the CPU with one line per reason; 'cuda' refuses it", () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    const qs = randomArray(N * 2 * 32, rng), dOs = randomArray(N * 2 * 32, rng);
    const d32 = { numHeads: 2, headDim: 32 };
    const cpu = treeAttention(qs, qs, qs, tree, d32);
    expect(treeAttention(qs, qs, qs, tree, { ...d32, backend: 'auto' })).toEqual(cpu);
    expect(treeAttention(qs, qs, qs, tree, { ...d32, backend: 'auto' })).toEqual(cpu);
    expect(treeAttentionBackward(qs, qs, qs, tree, cpu, dOs, { ...d32, backend: 'auto' }))
      .toEqual(treeAttentionBackward(qs, qs, qs, tree, cpu, dOs, d32));
    expect(warn.mock.calls.map((c) => c[0])).toEqual([
      'forge-rl: treeAttention runs on the CPU (the GPU kernels serve head dim 64 or 128, got 32)',
      'forge-rl: treeAttentionBackward runs on the CPU (the GPU kernels serve head dim 64 or 128, got 32)',
    ]);
    expectError(() => treeAttention(qs, qs, qs, tree, { ...d32, backend: 'cuda' }), RangeError, 'FORGE_ERR_UNSUPPORTED',
      /^treeAttention: backend 'cuda': the GPU kernels serve head dim 64 or 128, got 32$/);
  });

  it("'cuda' checks on the host what the device kernels trust, and frees everything when a call fails", async () => {
    const before = DeviceTensor.held();
    const badLayout = { numNodes: 50, nodeOf: layout.nodeOf.slice() };
    badLayout.nodeOf[77] = 50;
    for (const call of [
      () => gatherToSamples(badLayout, nodeValues, C, { backend: 'cuda' }),
      () => scatterFromSamples(badLayout, sampleValues, C, { backend: 'cuda' }),
    ])
      expectError(call, RangeError, 'FORGE_ERR_OUT_OF_RANGE', /^tree\.nodeOf\[77\]: node 50 out of range \[0, 50\)$/);
    // A subtreeEnd that does not describe the tree is refused as on the CPU, not trusted.
    const badTree = { parent: tree.parent, subtreeEnd: tree.subtreeEnd.slice() };
    badTree.subtreeEnd[0] = N - 1;
    const onCpu = (await caught(() => treeAttention(q, k, v, badTree, { ...attn, backend: 'cpu' }))) as Error;
    expectError(() => treeAttention(q, k, v, badTree, { ...attn, backend: 'cuda' }), RangeError, 'FORGE_ERR_INVALID_ARGUMENT', /subtree_end\[0\]/);
    expect((await caught(() => treeAttention(q, k, v, badTree, { ...attn, backend: 'cuda' }))) as Error).toEqual(onCpu);
    const badForward = { o: forward.o, lse: forward.lse.slice() };
    badForward.lse[5] = NaN;
    expectError(() => treeAttentionBackward(q, k, v, tree, badForward, dO, { ...attn, backend: 'cuda' }), RangeError,
      'FORGE_ERR_NON_FINITE', /^forward\.lse\[5\]: expected a finite number/);
    // The device kernel itself fails here (a NaN logit), after the uploads.
    const z = logits.slice();
    z[7 * V + 123] = NaN;
    expectError(() => cispoLoss(z, V, terms, { ...lossOptions, backend: 'cuda' }), RangeError, 'FORGE_ERR_NON_FINITE',
      /^logits\[row 7, column 123\]: expected a finite number, got nan$/);
    expect(DeviceTensor.held()).toEqual(before);
  });
});

// ---- everywhere -------------------------------------------------------------------------------------

describe('the default backend and bad backend names', () => {
  it("is 'cpu' unless setDefaultBackend or FORGE_BACKEND says otherwise", async () => {
    vi.stubEnv('FORGE_BACKEND', '');
    expect(getDefaultBackend()).toBe('cpu');
    const cpu = mergeStates(a, b, { numHeads: H, headDim: D, backend: 'cpu' });
    vi.stubEnv('FORGE_BACKEND', 'cuda');
    expect(getDefaultBackend()).toBe('cuda');
    const viaEnv = () => mergeStates(a, b, { numHeads: H, headDim: D });
    const check = async () => {
      if (gpu) expectDeviceResult('mergeStates (FORGE_BACKEND=cuda)', { ...viaEnv() }, { ...cpu }, false);
      else expect(((await caught(viaEnv)) as { code?: string }).code).toBe('FORGE_ERR_DEVICE');
    };
    await check();
    setDefaultBackend('cpu');  // overrides the environment
    expect(getDefaultBackend()).toBe('cpu');
    expect(viaEnv()).toEqual(cpu);
    setDefaultBackend(undefined);  // back to the environment
    expect(getDefaultBackend()).toBe('cuda');
    await check();
  });

  it('rejects a bad backend name wherever it comes from, naming it; argument errors come first', () => {
    const bad = 'FORGE_ERR_INVALID_ARGUMENT';
    vi.stubEnv('FORGE_BACKEND', 'gpu');
    expectError(() => mergeStates(a, b, { numHeads: H, headDim: D }), RangeError, bad, /^FORGE_BACKEND: expected 'cpu', 'cuda' or 'auto', got 'gpu'$/);
    expectError(() => setDefaultBackend('gpu' as Backend), RangeError, bad, /^backend: expected 'cpu', 'cuda' or 'auto', got 'gpu'$/);
    expectError(() => cispoLoss(logits, V, terms, { backend: 'GPU' as Backend }), RangeError, bad, /^options\.backend: expected 'cpu', 'cuda' or 'auto', got 'GPU'$/);
    expectError(() => gatherToSamples(layout, nodeValues, C, { backend: 1 as unknown as Backend }), TypeError, bad, /^options\.backend: expected .*, got number$/);
    expectError(() => gatherToSamples(layout, nodeValues, C, 'cuda' as never), TypeError, bad, /^options: expected \{ backend \}, got string$/);
    // A bad argument is reported as such, whatever the backend.
    expectError(() => cispoLoss(logits, 300, terms, { backend: 'cuda' }), RangeError, 'FORGE_ERR_OUT_OF_RANGE', /^logits: length 7224 is not a multiple of vocabSize 300$/);
    expectError(() => treeAttention(q, k, v, tree, { ...attn, numHeads: 3, backend: 'cuda' }), RangeError, bad, /options\.numHeads/);
  });
});

describe('DeviceTensor sizes beyond the device limit (checked before any device call)', () => {
  it('names the shape and its bytes', async () => {
    const huge = /^shape: \[1099511627776, 1099511627776\] of f32: 4\.83\d*e\+24 bytes exceed the limit of 2\^50 \(1125899906842624\)$/;
    expectError(() => DeviceTensor.empty([2 ** 40, 2 ** 40], 'f32'), RangeError, 'FORGE_ERR_OUT_OF_RANGE', huge);
    expectError(() => DeviceTensor.upload(new Float32Array(4), [2 ** 40, 2 ** 40]), RangeError, 'FORGE_ERR_OUT_OF_RANGE', huge);
    expectError(() => DeviceTensor.empty([2 ** 24, 2 ** 24, 4], 'bf16'), RangeError, 'FORGE_ERR_OUT_OF_RANGE',
      /^shape: \[16777216, 16777216, 4\] of bf16: 2251799813685248 bytes exceed/);
    // Exactly 2^50 bytes passes the shape check: what follows is the device's answer.
    const e = (await caught(() => DeviceTensor.empty([2 ** 24, 2 ** 24], 'f32'))) as Error & { code: string };
    expect(e).toBeInstanceOf(Error);
    expect(e.message).not.toMatch(/bytes exceed/);
    expect(e.code).toBe(gpu ? 'FORGE_ERR_OUT_OF_MEMORY' : 'FORGE_ERR_DEVICE');
  });
});
