// forge_adamw_step / forge_grad_sq_norm and the AdamW class against the plain float64 reference
// (test/reference/adamw.ts) over many steps on fresh random inputs, plus argument checking in the TS
// layer and in the native one. The seed is printed in every failure; FORGE_TEST_SEED=<seed> replays it.
import { afterEach, describe, expect, it } from 'vitest';
import { gauss, seededRun } from './helpers/random.js';

import { addon, setNumThreads } from '../lib/native.js';
import {
  AdamW,
  adamwStep,
  adamwStepAsync,
  type AdamWHyperparameters,
  gradSqNorm,
  gradSqNormAsync,
  paramGroups,
} from '../lib/model/optimizer.js';
import {
  referenceAdamWStep,
  referenceClipScale,
  referenceGlobalNorm,
  referenceWarmupCosine,
  type ReferenceAdamWState,
} from './reference/adamw.js';

const { seed, rng: makeRng, fail } = seededRun();

/** |actual - expected| <= atol + rtol |expected| everywhere. */
function expectClose(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number) {
  if (actual.length !== expected.length) fail(`${what}: length ${actual.length}, expected ${expected.length}`);
  for (let i = 0; i < actual.length; i++) {
    const tol = atol + rtol * Math.abs(expected[i]);
    if (!(Math.abs(actual[i] - expected[i]) <= tol))
      fail(`${what}[${i}]: got ${actual[i]}, expected ${expected[i]} ± ${tol}`);
  }
}

function expectBitwise(what: string, actual: Float32Array, expected: Float32Array) {
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  if (a.length !== b.length) fail(`${what}: length ${a.length}, expected ${b.length}`);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) fail(`${what}[${i}]: ${actual[i]} differs from ${expected[i]}`);
}

/** Gradients of per-element magnitude spread over 1e-3..10, so moments of very different sizes meet. */
function gradScales(rand: () => number, n: number): Float64Array {
  return Float64Array.from({ length: n }, () => 10 ** (rand() * 4 - 3));
}
function randomGrads(rand: () => number, scales: Float64Array): Float32Array {
  return Float32Array.from(scales, (s) => s * gauss(rand));
}

function randomOptions(rand: () => number): AdamWHyperparameters {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)];
  return {
    lr: 10 ** (-4 + 2 * rand()),
    beta1: pick([0, 0.9, 0.5 + 0.49 * rand()]),
    beta2: pick([0.95, 0.999, 0.9 + 0.099 * rand()]),
    eps: pick([1e-8, 1e-6]),
    weightDecay: pick([0, 0.1, rand()]),
  };
}

/** The kernel receives float32 hyperparameters; the reference gets exactly those values. */
const asFloat32 = (o: AdamWHyperparameters) => ({
  lr: Math.fround(o.lr),
  beta1: Math.fround(o.beta1),
  beta2: Math.fround(o.beta2),
  eps: Math.fround(o.eps),
  weightDecay: Math.fround(o.weightDecay),
});

afterEach(() => {
  setNumThreads(0);
});

/** Moments compared against the element's gradient scale (m may cancel to near zero). */
function expectMoments(what: string, m: Float32Array, v: Float32Array, ref: ReferenceAdamWState, scales: Float64Array) {
  for (let i = 0; i < m.length; i++) {
    const s = scales[i];
    if (!(Math.abs(m[i] - ref.m[i]) <= 1e-5 * s)) fail(`${what}: m[${i}] = ${m[i]}, expected ${ref.m[i]} (grad scale ${s})`);
    if (!(Math.abs(v[i] - ref.v[i]) <= 1e-5 * s * s)) fail(`${what}: v[${i}] = ${v[i]}, expected ${ref.v[i]} (grad scale ${s})`);
  }
}

describe('adamwStep against the float64 reference', () => {
  // 200_003 spans several parallel chunks and a ragged tail; the others run single-threaded.
  for (const n of [0, 1, 2, 7, 33, 1000, 200_003]) {
    it(`n = ${n}: many steps with weight decay, bias correction and gradient scaling`, () => {
      const rand = makeRng();
      const steps = n > 10_000 ? 12 : 40;
      const o = randomOptions(rand);
      const params = Float32Array.from({ length: n }, () => gauss(rand));
      const m = new Float32Array(n), v = new Float32Array(n);
      const ref: ReferenceAdamWState = { params: Float64Array.from(params), m: new Float64Array(n), v: new Float64Array(n) };
      const scales = gradScales(rand, n);
      for (let t = 1; t <= steps; t++) {
        const grads = randomGrads(rand, scales);
        const gradScale = rand() < 0.3 ? 0.1 + 0.9 * rand() : 1;
        adamwStep(params, grads, m, v, t, { ...o, gradScale });
        referenceAdamWStep(ref, grads, t, asFloat32(o), Math.fround(gradScale));
      }
      const what = `n ${n}, ${JSON.stringify(o)}`;
      // Float32 state drifts from the float64 one by a few ulps per step; a wrong bias correction or
      // decay moves params by ~lr (>= 1e-4) per step.
      expectClose(`${what}: params`, params, ref.params, 2e-6, 4e-6);
      expectMoments(what, m, v, ref, scales);
    });
  }

  it('resumes mid-run: starting from step t with given moments matches the reference', () => {
    const rand = makeRng();
    const n = 257;
    const o = { lr: 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const params = Float32Array.from({ length: n }, () => gauss(rand));
    const m = Float32Array.from({ length: n }, () => 0.1 * gauss(rand));
    const v = Float32Array.from({ length: n }, () => 0.01 * rand() + 1e-4);
    const ref: ReferenceAdamWState = { params: Float64Array.from(params), m: Float64Array.from(m), v: Float64Array.from(v) };
    for (const t of [1000, 1001, 1002]) {
      const grads = randomGrads(rand, new Float64Array(n).fill(0.1));
      adamwStep(params, grads, m, v, t, o);
      referenceAdamWStep(ref, grads, t, asFloat32(o));
    }
    expectClose('params', params, ref.params, 1e-6, 1e-6);
  });

  it('gives the same bits on 1 thread, on the default pool, and through the async worker', async () => {
    const rand = makeRng();
    const n = 300_001;
    const o = randomOptions(rand);
    const init = Float32Array.from({ length: n }, () => gauss(rand));
    const grads = Float32Array.from({ length: n }, () => gauss(rand));
    const run = async (threads: number, async: boolean) => {
      setNumThreads(threads);
      const p = init.slice(), m = new Float32Array(n).fill(0.01), v = new Float32Array(n).fill(0.02);
      if (async) await adamwStepAsync(p, grads, m, v, 3, { ...o, gradScale: 0.5 });
      else adamwStep(p, grads, m, v, 3, { ...o, gradScale: 0.5 });
      return { p, m, v };
    };
    const one = await run(1, false);
    for (const other of [await run(0, false), await run(0, true)]) {
      expectBitwise('params', other.p, one.p);
      expectBitwise('m', other.m, one.m);
      expectBitwise('v', other.v, one.v);
    }
  });
});

describe('gradSqNorm', () => {
  it('equals the float64 sum of squares, whatever the thread count', async () => {
    const rand = makeRng();
    for (const n of [0, 1, 9, 16_384, 16_385, 500_000]) {
      const g = randomGrads(rand, gradScales(rand, n));
      const expected = referenceGlobalNorm([g]) ** 2;
      setNumThreads(1);
      const single = gradSqNorm(g);
      setNumThreads(0);
      const pooled = gradSqNorm(g);
      if (!(Math.abs(pooled - expected) <= 1e-12 * expected)) fail(`n ${n}: ${pooled}, expected ${expected}`);
      if (pooled !== single) fail(`n ${n}: ${pooled} on the pool, ${single} on 1 thread`);
      expect(await gradSqNormAsync(g)).toBe(pooled);
    }
  });

  it('names the first non-finite gradient', () => {
    const rand = makeRng();
    const n = 200_000;
    for (const bad of [NaN, Infinity, -Infinity]) {
      const g = Float32Array.from({ length: n }, () => gauss(rand));
      const first = 1 + Math.floor(rand() * (n - 2));
      g[first] = bad;
      g[first + 1 + Math.floor(rand() * (n - first - 1))] = NaN;
      expect(() => gradSqNorm(g)).toThrow(expect.objectContaining({ code: 'FORGE_ERR_NON_FINITE', message: expect.stringContaining(`grads[${first}]`) }));
    }
  });
});

describe('adamwStep rejects bad input and leaves everything untouched', () => {
  const o = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
  function buffers(n: number) {
    const rand = makeRng();
    const p = Float32Array.from({ length: n }, () => gauss(rand));
    const g = Float32Array.from({ length: n }, () => gauss(rand));
    const m = Float32Array.from({ length: n }, () => gauss(rand));
    const v = Float32Array.from({ length: n }, () => rand());
    return { p, g, m, v, copies: [p.slice(), m.slice(), v.slice()] };
  }
  function untouched(b: ReturnType<typeof buffers>) {
    expectBitwise('params', b.p, b.copies[0]);
    expectBitwise('m', b.m, b.copies[1]);
    expectBitwise('v', b.v, b.copies[2]);
  }

  it('a non-finite gradient anywhere (even in the last parallel chunk) names its index', () => {
    const rand = makeRng();
    for (const n of [1, 100, 250_000]) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const b = buffers(n);
        const at = n === 1 ? 0 : n - 1 - Math.floor(rand() * Math.min(n - 1, 20_000));
        b.g[at] = bad;
        expect(() => adamwStep(b.p, b.g, b.m, b.v, 1, o)).toThrow(
          expect.objectContaining({ name: 'RangeError', code: 'FORGE_ERR_NON_FINITE', message: expect.stringContaining(`grads[${at}]`) }),
        );
        untouched(b);
      }
    }
  });

  it('a gradient that overflows once scaled is rejected too', () => {
    const b = buffers(50);
    b.g[17] = 3e38;
    expect(() => adamwStep(b.p, b.g, b.m, b.v, 1, { ...o, gradScale: 10 })).toThrow(/grads\[17\] \* grad_scale/);
    untouched(b);
  });

  const badOptions: [string, Record<string, unknown>, RegExp][] = [
    ['beta1 = 1', { beta1: 1 }, /beta1/],
    ['beta1 < 0', { beta1: -0.1 }, /beta1/],
    ['beta2 = 1', { beta2: 1 }, /beta2/],
    ['beta2 NaN', { beta2: NaN }, /beta2/],
    ['eps = 0', { eps: 0 }, /eps/],
    ['eps = Infinity', { eps: Infinity }, /eps/],
    ['lr < 0', { lr: -1e-3 }, /lr/],
    ['lr NaN', { lr: NaN }, /lr/],
    ['weight decay < 0', { weightDecay: -0.1 }, /weight_?[dD]ecay/],
    ['gradScale < 0', { gradScale: -1 }, /grad_?[sS]cale/],
    ['gradScale Infinity', { gradScale: Infinity }, /grad_?[sS]cale/],
  ];
  for (const [what, change, name] of badOptions) {
    it(`${what}: in the TS layer and in the native one`, () => {
      const b = buffers(10);
      const opts = { ...o, gradScale: 1, ...change } as AdamWHyperparameters & { gradScale: number };
      expect(() => adamwStep(b.p, b.g, b.m, b.v, 1, opts)).toThrow(name);
      // The addon directly: the C ABI checks on its own.
      expect(() =>
        addon.adamwStep(b.p, b.g, b.m, b.v, 1, opts.gradScale, opts.lr, opts.beta1, opts.beta2, opts.eps, opts.weightDecay, false),
      ).toThrow(expect.objectContaining({ name: 'RangeError', message: expect.stringMatching(name) }));
      untouched(b);
    });
  }

  it('step 0, fractional steps, wrong lengths, wrong types and overlapping arrays', () => {
    const b = buffers(10);
    expect(() => adamwStep(b.p, b.g, b.m, b.v, 0, o)).toThrow(/step/);
    expect(() => adamwStep(b.p, b.g, b.m, b.v, 1.5, o)).toThrow(/step/);
    expect(() => addon.adamwStep(b.p, b.g, b.m, b.v, 0, 1, 1e-3, 0.9, 0.95, 1e-8, 0, false)).toThrow(/step/);
    expect(() => adamwStep(b.p, b.g.subarray(1), b.m, b.v, 1, o)).toThrow(/grads: expected 10 elements/);
    expect(() => adamwStep(b.p, b.g, b.m, new Float32Array(11), 1, o)).toThrow(/v: expected 10 elements/);
    expect(() => adamwStep(b.p, Float64Array.from(b.g) as unknown as Float32Array, b.m, b.v, 1, o)).toThrow(TypeError);
    expect(() => addon.adamwStep(b.p, b.g, b.m, Array.from(b.v), 1, 1, 1e-3, 0.9, 0.95, 1e-8, 0, false)).toThrow(TypeError);
    // Aliasing arrays would be read after being written: the C ABI refuses them.
    expect(() => addon.adamwStep(b.p, b.p, b.m, b.v, 1, 1, 1e-3, 0.9, 0.95, 1e-8, 0, false)).toThrow(
      expect.objectContaining({ code: 'FORGE_ERR_INVALID_ARGUMENT', message: expect.stringContaining('overlap') }),
    );
    const shared = new Float32Array(15);
    expect(() => addon.adamwStep(b.p, b.g, shared.subarray(0, 10), shared.subarray(5, 15), 1, 1, 1e-3, 0.9, 0.95, 1e-8, 0, false)).toThrow(
      /m and v: the arrays overlap/,
    );
    untouched(b);
  });
});

describe('AdamW (groups, clipping, schedule)', () => {
  interface Layout {
    groups: { name: string; offset: number; length: number; weightDecay: number }[];
    numParams: number;
  }
  /** Groups with gaps between them (parameters no group owns must stay as they are). */
  function layout(rand: () => number): Layout {
    const groups: Layout['groups'] = [];
    let at = 0;
    for (let k = 0; k < 5; k++) {
      at += Math.floor(rand() * 5);
      const length = k === 2 ? 0 : 1 + Math.floor(rand() * 300);
      groups.push({ name: `layer${k}.weight`, offset: at, length, weightDecay: k % 2 === 0 ? 0.1 : 0 });
      at += length;
    }
    return { groups: groups.reverse(), numParams: at + 3 };
  }

  it('matches the reference: global-norm clipping across groups, per-group decay, warmup + cosine', () => {
    const rand = makeRng();
    const { groups, numParams } = layout(rand);
    // The threshold sits mid-range of the gradient norms drawn below (size * sqrt(numParams), size in
    // [0.2, 1)), so about half the steps clip whatever the random layout's size.
    const lr = 5e-3, warmupSteps = 4, totalSteps = 20, minLr = 5e-4, maxGradNorm = 0.6 * Math.sqrt(numParams);
    const opt = new AdamW(groups, {
      lr, betas: [0.9, 0.99], eps: 1e-8, schedule: { kind: 'warmup-cosine', warmupSteps, totalSteps, minLr }, maxGradNorm, numParams,
    });
    const params = Float32Array.from({ length: numParams }, () => gauss(rand));
    const initial = params.slice();
    const refs = groups.map((g) => ({
      params: Float64Array.from(params.subarray(g.offset, g.offset + g.length)),
      m: new Float64Array(g.length),
      v: new Float64Array(g.length),
    }));
    let clippedSteps = 0;
    for (let t = 1; t <= 24; t++) {
      // Gradient norms around the threshold, so some steps clip and some do not.
      const size = 0.2 + 0.8 * rand();
      const grads = Float32Array.from({ length: numParams }, () => size * gauss(rand));
      const r = opt.step(params, grads);
      const views = groups.map((g) => grads.subarray(g.offset, g.offset + g.length));
      const norm = referenceGlobalNorm(views);
      const expectedLr = referenceWarmupCosine(t, lr, warmupSteps, totalSteps, minLr);
      if (!(Math.abs(r.gradNorm - norm) <= 1e-12 * norm)) fail(`step ${t}: gradNorm ${r.gradNorm}, expected ${norm}`);
      // Within rounding of the threshold either decision is right (the two norms differ in the last bits).
      if (Math.abs(norm - maxGradNorm) > 1e-9 * maxGradNorm && r.clipped !== norm > maxGradNorm)
        fail(`step ${t}: clipped ${r.clipped} with norm ${norm}`);
      const expectedScale = referenceClipScale(norm, maxGradNorm);
      if (!(Math.abs(r.gradScale - expectedScale) <= 1e-12)) fail(`step ${t}: gradScale ${r.gradScale}, expected ${expectedScale}`);
      if (!(Math.abs(r.lr - expectedLr) <= 1e-15)) fail(`step ${t}: lr ${r.lr}, expected ${expectedLr}`);
      expect(r.step).toBe(t);
      clippedSteps += r.clipped ? 1 : 0;
      const scale = Math.fround(referenceClipScale(norm, maxGradNorm));
      groups.forEach((g, k) =>
        referenceAdamWStep(refs[k], views[k], t, asFloat32({ lr: expectedLr, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: g.weightDecay }), scale),
      );
    }
    expect(clippedSteps).toBeGreaterThan(0);
    expect(clippedSteps).toBeLessThan(24);
    expect(opt.stepCount).toBe(24);
    groups.forEach((g, k) => expectClose(`group ${g.name}`, params.subarray(g.offset, g.offset + g.length), refs[k].params, 2e-6, 4e-6));
    // Parameters outside every group are not touched.
    const owned = new Uint8Array(numParams);
    for (const g of groups) owned.fill(1, g.offset, g.offset + g.length);
    for (let i = 0; i < numParams; i++) if (!owned[i] && params[i] !== initial[i]) fail(`params[${i}] is in no group but changed`);
  });

  it('a per-call maxGradNorm overrides the default; stepAsync gives the same bits as step', async () => {
    const rand = makeRng();
    const { groups, numParams } = layout(rand);
    const a = new AdamW(groups, { lr: 1e-2, numParams }), b = new AdamW(groups, { lr: 1e-2, numParams });
    const pa = Float32Array.from({ length: numParams }, () => gauss(rand)), pb = pa.slice();
    for (let t = 0; t < 5; t++) {
      const grads = Float32Array.from({ length: numParams }, () => gauss(rand));
      const ra = a.step(pa, grads, { maxGradNorm: 1 });
      const rb = await b.stepAsync(pb, grads, { maxGradNorm: 1 });
      expect(ra).toEqual(rb);
      expect(ra.clipped).toBe(true);
    }
    expectBitwise('params', pb, pa);
    expectBitwise('m', b.m, a.m);
    // One step at a time: a step while a stepAsync runs is refused, and nothing moves.
    const grads = new Float32Array(numParams).fill(0.5);
    const pending = b.stepAsync(pb, grads);
    expect(() => b.step(pb, grads)).toThrow(/one step at a time/);
    await expect(b.stepAsync(pb, grads)).rejects.toThrow(/one step at a time/);
    await pending;
    expect(b.stepCount).toBe(6);
  });

  it('a NaN gradient names the group and index; nothing changes, the step count neither', () => {
    const rand = makeRng();
    const { groups, numParams } = layout(rand);
    const opt = new AdamW(groups, { numParams });
    const params = Float32Array.from({ length: numParams }, () => gauss(rand));
    opt.step(params, Float32Array.from({ length: numParams }, () => gauss(rand)));
    const before = [params.slice(), opt.m.slice(), opt.v.slice()];
    const grads = Float32Array.from({ length: numParams }, () => gauss(rand));
    const g = groups[3];
    grads[g.offset + g.length - 1] = NaN;
    expect(() => opt.step(params, grads)).toThrow(
      expect.objectContaining({ code: 'FORGE_ERR_NON_FINITE', message: expect.stringMatching(new RegExp(`'${g.name.replace('.', '\\.')}'.*grads\\[${g.length - 1}\\]`)) }),
    );
    expectBitwise('params', params, before[0]);
    expectBitwise('m', opt.m, before[1]);
    expectBitwise('v', opt.v, before[2]);
    expect(opt.stepCount).toBe(1);
  });

  it('exported state continues bit for bit in a fresh optimizer', () => {
    const rand = makeRng();
    const { groups, numParams } = layout(rand);
    const options = { lr: 2e-3, schedule: { kind: 'warmup-cosine' as const, warmupSteps: 2, totalSteps: 10 }, maxGradNorm: 3, numParams };
    const a = new AdamW(groups, options);
    const pa = Float32Array.from({ length: numParams }, () => gauss(rand));
    const grads = Array.from({ length: 6 }, () => Float32Array.from({ length: numParams }, () => gauss(rand)));
    for (const g of grads.slice(0, 3)) a.step(pa, g);
    const b = AdamW.fromConfig(JSON.parse(JSON.stringify(a.config())));
    b.importState(a.exportState());
    const pb = pa.slice();
    for (const g of grads.slice(3)) expect(b.step(pb, g)).toEqual(a.step(pa, g));
    expectBitwise('params', pb, pa);
  });

  it('checks its construction and its state', () => {
    const g = (name: string, offset: number, length: number) => ({ name, offset, length });
    expect(() => new AdamW([g('a', 0, 10), g('b', 5, 10)])).toThrow(/'a' and 'b' overlap/);
    expect(() => new AdamW([g('a', 0, 10), g('a', 10, 10)])).toThrow(/appears twice/);
    expect(() => new AdamW([g('a', -1, 10)])).toThrow(/groups\[0\]\.offset/);
    expect(() => new AdamW([g('a', 0, 10)], { betas: [0.9, 1] })).toThrow(/betas\[1\]/);
    expect(() => new AdamW([g('a', 0, 10)], { eps: 0 })).toThrow(/eps/);
    expect(() => new AdamW([g('a', 0, 10)], { numParams: 5 })).toThrow(/numParams/);
    expect(() => new AdamW([g('a', 0, 10)], { schedule: { kind: 'warmup-cosine', warmupSteps: 10, totalSteps: 5 } })).toThrow(/totalSteps/);
    expect(() => new AdamW([g('a', 0, 10)], { maxGradNorm: -1 })).toThrow(/maxGradNorm/);
    const opt = new AdamW([g('a', 0, 10)]);
    expect(() => opt.step(new Float32Array(11), new Float32Array(11))).toThrow(/params: expected 10 elements/);
    const bad = new Float32Array(10);
    bad[3] = -1;
    expect(() => opt.importState({ step: 2, m: new Float32Array(10), v: bad })).toThrow(/state\.v\[3\]/);
    expect(() => opt.importState({ step: -1, m: new Float32Array(10), v: new Float32Array(10) })).toThrow(/state\.step/);
  });

  it('has the documented defaults, and paramGroups decays matrices only', () => {
    const opt = new AdamW([{ name: 'w', offset: 0, length: 4 }]);
    expect([opt.lr, opt.betas[0], opt.betas[1], opt.eps, opt.groups[0].weightDecay]).toEqual([1e-3, 0.9, 0.95, 1e-8, 0.1]);
    expect(opt.learningRate(1)).toBe(1e-3);
    const groups = paramGroups([
      { name: 'embed.weight', offset: 0, shape: [16, 4] },
      { name: 'layers.0.attn.q.weight', offset: 64, shape: [4, 4] },
      { name: 'layers.0.norm.weight', offset: 80, shape: [4] },
    ]);
    expect(groups.map((x) => [x.name, x.length, x.weightDecay])).toEqual([
      ['embed.weight', 64, 0],
      ['layers.0.attn.q.weight', 16, 0.1],
      ['layers.0.norm.weight', 4, 0],
    ]);
  });
});
