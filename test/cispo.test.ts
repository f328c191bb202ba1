// forge_cispo_loss against the plain float64 reference (test/reference/cispo.ts) on fresh random
// inputs, finite-difference checks of its gradient, and its argument checking. The seed is printed in
// every failure; rerun one with FORGE_TEST_SEED=<seed>.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { gauss, seededRun } from './helpers/random.js';

import {
  cispoLoss,
  cispoLossAsync,
  type CispoOptions,
  type CispoResult,
  type PolicyLossTerms,
} from '../lib/cispo.js';
import { addon, setNumThreads } from '../lib/native.js';
import {
  cispoSurrogate,
  logSoftmaxRow,
  ppoLoss,
  referencePolicyLoss,
  type ReferenceOptions,
} from './reference/cispo.js';

const { seed, rng: makeRng, fail } = seededRun();
function near(actual: number, expected: number, tol: number, what: string): void {
  if (!(Math.abs(actual - expected) <= tol)) fail(`${what}: got ${actual}, expected ${expected} ± ${tol}`);
}

interface Case {
  logits: Float32Array;
  V: number;
  terms: PolicyLossTerms;
}

interface CaseSpec {
  N: number;
  V: number;
  J: number;
  offset?: number; // rows shifted by about +-offset
  ratios?: () => number; // importance ratio each term should get
  avoid?: number[]; // clip bounds the ratios keep 1e-3 away from (so kernel and reference agree on the side)
}

/** Random logits and terms: rows without terms, several terms per row, duplicate (node, target) pairs. */
function makeCase(rand: () => number, spec: CaseSpec): Case {
  const { N, V, J } = spec;
  const logits = new Float32Array(N * V);
  for (let n = 0; n < N; n++) {
    const shift = spec.offset ? (rand() < 0.5 ? -1 : 1) * spec.offset + gauss(rand) : 0;
    for (let v = 0; v < V; v++) logits[n * V + v] = 3 * gauss(rand) + shift;
  }
  const carrying = Array.from({ length: N }, (_, n) => n).filter((n) => N === 1 || n % 3 !== 1 || rand() < 0.2);
  const node = new Int32Array(J), target = new Int32Array(J);
  const oldLogprob = new Float32Array(J), advantage = new Float32Array(J);
  const ratio = spec.ratios ?? (() => Math.exp(Math.log(0.1) + rand() * Math.log(100)));
  for (let j = 0; j < J; j++) {
    if (j > 0 && rand() < 0.25) {
      const k = Math.floor(rand() * j);
      node[j] = node[k];
      target[j] = target[k];
    } else {
      node[j] = carrying[Math.floor(rand() * carrying.length)];
      target[j] = Math.floor(rand() * V);
    }
    advantage[j] = rand() < 0.1 ? 0 : gauss(rand);
    const logp = logSoftmaxRow(logits, V, node[j])[target[j]];
    let r = ratio();
    while ((spec.avoid ?? []).some((b) => Math.abs(r - b) < 1e-3)) r = ratio();
    oldLogprob[j] = logp - Math.log(r);
  }
  return { logits, V, terms: { node, target, oldLogprob, advantage } };
}

function referenceOptions(options: CispoOptions = {}): ReferenceOptions {
  const ppo = options.mode === 'ppo-clip';
  return {
    mode: options.mode ?? 'cispo',
    epsLow: options.epsLow ?? (ppo ? 0.2 : Infinity),
    epsHigh: options.epsHigh ?? (ppo ? 0.2 : 4),
    normalizer: options.normalizer,
  };
}

/** Loss, logprobs, dlogits and every stat against the reference. */
function checkAgainstReference(result: CispoResult, c: Case, options: CispoOptions, label: string): void {
  const o = referenceOptions(options);
  const ref = referencePolicyLoss(c.logits, c.V, c.terms, o);
  const J = c.terms.node.length;
  const Z = o.normalizer ?? J;
  let lossScale = 0;
  for (let j = 0; j < J; j++) {
    const weight = Math.max(ref.weights[j], ref.ratios[j]);
    lossScale += weight * Math.abs(c.terms.advantage[j]) * (1 + Math.abs(ref.logprobs[j]));
  }
  near(result.loss, ref.loss, (1e-6 * lossScale) / Math.max(Z, 1e-300) + 1e-12, `${label}: loss`);
  for (let j = 0; j < J; j++) {
    const tol = 2e-6 * (1 + Math.abs(ref.logprobs[j]));
    near(result.logprobs[j], ref.logprobs[j], tol, `${label}: logprobs[${j}]`);
  }
  const d = result.dlogits!;
  let maxAbs = 0;
  for (const g of ref.dlogits) maxAbs = Math.max(maxAbs, Math.abs(g));
  for (let i = 0; i < d.length; i++) {
    const tol = 2e-5 * Math.abs(ref.dlogits[i]) + 1e-6 * maxAbs;
    near(d[i], ref.dlogits[i], tol, `${label}: dlogits[row ${Math.floor(i / c.V)}, col ${i % c.V}]`);
  }
  const s = result.stats, rs = ref.stats;
  near(s.meanRatio, rs.meanRatio, 1e-5 * rs.meanRatio + 1e-12, `${label}: meanRatio`);
  near(s.meanEntropy, rs.meanEntropy, 1e-5 * (1 + rs.meanEntropy), `${label}: meanEntropy`);
  near(s.meanLogprob, rs.meanLogprob, 1e-6 * (1 + Math.abs(rs.meanLogprob)), `${label}: meanLogprob`);
  const exact = ['clipFracHigh', 'clipFracLow', 'clipFracPositiveAdv', 'clipFracNegativeAdv', 'numTerms', 'numRows'];
  for (const key of exact as (keyof typeof s)[])
    if (s[key] !== rs[key]) fail(`${label}: stats.${key} ${s[key]}, expected ${rs[key]}`);
}

afterEach(() => {
  setNumThreads(0);
});

describe('cispoLoss against the float64 reference', () => {
  const configs: { name: string; options: CispoOptions; avoid: number[] }[] = [
    { name: 'CISPO defaults', options: {}, avoid: [5] },
    { name: 'CISPO with both bounds', options: { epsLow: 0.2, epsHigh: 0.28 }, avoid: [0.8, 1.28] },
    { name: 'CISPO, custom normaliser', options: { epsLow: 0.5, epsHigh: 1, normalizer: 7.5 }, avoid: [0.5, 2] },
    { name: 'PPO-clip', options: { mode: 'ppo-clip' }, avoid: [0.8, 1.2] },
    {
      name: 'PPO-clip, custom normaliser',
      options: { mode: 'ppo-clip', epsHigh: 0.28, normalizer: 100 },
      avoid: [0.8, 1.28],
    },
  ];
  for (const V of [1, 7, 1000, 4099])
    for (const cfg of configs)
      it(`${cfg.name}, V = ${V}`, () => {
        const rand = makeRng();
        const c = makeCase(rand, { N: V > 1000 ? 9 : 14, V, J: V === 1 ? 5 : 40, avoid: cfg.avoid });
        checkAgainstReference(cispoLoss(c.logits, V, c.terms, cfg.options), c, cfg.options, `${cfg.name}, V=${V}`);
      });

  it('exercises both clip bounds, both advantage signs, duplicates and rows without terms', () => {
    const c = makeCase(makeRng(), { N: 14, V: 50, J: 60, avoid: [0.8, 1.2] });
    const options: CispoOptions = { epsLow: 0.2, epsHigh: 0.2 };
    const { stats } = cispoLoss(c.logits, c.V, c.terms, options);
    // The generator must actually produce what the comparisons above rely on.
    expect(stats.clipFracHigh).toBeGreaterThan(0);
    expect(stats.clipFracLow).toBeGreaterThan(0);
    expect(stats.clipFracPositiveAdv).toBeGreaterThan(0);
    expect(stats.clipFracNegativeAdv).toBeGreaterThan(0);
    expect(stats.numRows).toBeLessThan(14);
    const pairs = new Set<string>();
    for (let j = 0; j < c.terms.node.length; j++) pairs.add(`${c.terms.node[j]}:${c.terms.target[j]}`);
    expect(pairs.size).toBeLessThan(c.terms.node.length);
    checkAgainstReference(cispoLoss(c.logits, c.V, c.terms, options), c, options, 'coverage case');
  });

  it('cross-entropy: weight 1 on every term, nothing clipped, A = 1 gives the token-level mean of -logp', () => {
    for (const V of [7, 1000]) {
      // Ratios far outside any clip range: cross-entropy must ignore them (and the eps options).
      const rand = makeRng();
      const c = makeCase(rand, { N: 12, V, J: 40, ratios: () => [0.01, 1, 50][Math.floor(rand() * 3)] });
      const options: CispoOptions = { mode: 'cross-entropy', epsLow: 0.2, epsHigh: 0.2 };
      const result = cispoLoss(c.logits, V, c.terms, options);
      checkAgainstReference(result, c, options, `cross-entropy, V=${V}`);
      expect(result.stats.clipFracHigh + result.stats.clipFracLow).toBe(0);
      const ones = { ...c.terms, advantage: new Float32Array(40).fill(1) };
      const ce = cispoLoss(c.logits, V, ones, { mode: 'cross-entropy' });
      const ref = referencePolicyLoss(c.logits, V, ones, referenceOptions({ mode: 'cross-entropy' }));
      const meanNll = -ref.logprobs.reduce((a, b) => a + b, 0) / 40;
      near(ce.loss, meanNll, 1e-6 * Math.abs(meanNll), `cross-entropy mean NLL, V=${V}`);
    }
  });

  it('stays accurate with logits offset by +-1e4 (online max)', () => {
    for (const V of [1000, 4099]) {
      const c = makeCase(makeRng(), { N: 8, V, J: 30, offset: 1e4, avoid: [5] });
      checkAgainstReference(cispoLoss(c.logits, V, c.terms), c, {}, `offset 1e4, V=${V}`);
    }
  });

  it('keeps the target column relatively accurate when its probability is close to 1', () => {
    const rand = makeRng();
    const V = 7, N = 4;
    const logits = new Float32Array(N * V);
    for (let i = 0; i < logits.length; i++) logits[i] = 0.1 * gauss(rand);
    for (let n = 0; n < N; n++) logits[n * V + n] += 12; // p(target) = 1 - ~4e-5
    const terms = {
      node: Int32Array.from([0, 1, 2, 3]),
      target: Int32Array.from([0, 1, 2, 3]),
      oldLogprob: Float32Array.from([-0.1, -0.2, -0.05, -0.3]),
      advantage: Float32Array.from([1, -1, 0.5, 2]),
    };
    const { dlogits } = cispoLoss(logits, V, terms);
    const ref = referencePolicyLoss(logits, V, terms, referenceOptions());
    for (let n = 0; n < N; n++) {
      const expected = ref.dlogits[n * V + n];
      near(dlogits![n * V + n], expected, 1e-5 * Math.abs(expected), `target column of row ${n}`);
    }
  });

  it('0 terms: loss 0, zero gradient, zero stats', () => {
    const logits = new Float32Array(3 * 5).fill(1.5);
    const none = {
      node: new Int32Array(0),
      target: new Int32Array(0),
      oldLogprob: new Float32Array(0),
      advantage: new Float32Array(0),
    };
    const r = cispoLoss(logits, 5, none);
    expect(r.loss).toBe(0);
    expect(r.logprobs.length).toBe(0);
    expect(Array.from(r.dlogits!).every((x) => x === 0)).toBe(true);
    expect(Object.values(r.stats).every((x) => x === 0)).toBe(true);
    expect(Object.keys(r.stats).length).toBe(9);
    expect(cispoLoss(new Float32Array(0), 5, none).loss).toBe(0);
  });

  it('in place, async, grad: false and any thread count give the same numbers', async () => {
    const c = makeCase(makeRng(), { N: 64, V: 4099, J: 150, avoid: [5] }); // several row chunks
    const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const same = (r: CispoResult, base: CispoResult, label: string) => {
      expect(r.loss, label).toBe(base.loss);
      expect(r.stats, label).toEqual(base.stats);
      expect(bytes(r.logprobs).equals(bytes(base.logprobs)), `${label}: logprobs`).toBe(true);
      if (r.dlogits) expect(bytes(r.dlogits).equals(bytes(base.dlogits!)), `${label}: dlogits`).toBe(true);
    };
    const base = cispoLoss(c.logits, c.V, c.terms);
    const copy = c.logits.slice();
    const inPlace = cispoLoss(copy, c.V, c.terms, { inPlace: true });
    expect(inPlace.dlogits).toBe(copy);
    same(inPlace, base, 'in place');
    same(await cispoLossAsync(c.logits, c.V, c.terms), base, 'async');
    const lossOnly = cispoLoss(c.logits, c.V, c.terms, { grad: false });
    expect(lossOnly.dlogits).toBeUndefined();
    same(lossOnly, base, 'grad: false');
    setNumThreads(1);
    same(cispoLoss(c.logits, c.V, c.terms), base, 'one thread'); // bitwise: chunking does not depend on threads
  });

  it('the AVX2 and baseline code paths (FORGE_VECTOR_WIDTH = 8, 4) match the reference too', () => {
    // The vector width is fixed per process, so the narrower paths run in child processes.
    const specs = [
      { spec: { N: 9, V: 4099, J: 40, offset: 50, avoid: [0.8, 1.28] }, options: { epsLow: 0.2, epsHigh: 0.28 } },
      { spec: { N: 6, V: 1000, J: 30, avoid: [0.8, 1.2] }, options: { mode: 'ppo-clip' as const } },
      { spec: { N: 5, V: 7, J: 12, avoid: [0.5, 3] }, options: { epsLow: 0.5, epsHigh: 2, normalizer: 4 } },
    ];
    const cases = specs.map(({ spec, options }) => ({ c: makeCase(makeRng(), spec), options }));
    const payload = JSON.stringify(
      cases.map(({ c, options }) => {
        const o = referenceOptions(options);
        const { node, target, oldLogprob, advantage } = c.terms;
        const arrays = [c.logits, c.V, node, target, oldLogprob, advantage];
        const args = arrays.map((x) => (typeof x === 'number' ? x : Array.from(x)));
        return [...args, o.mode === 'ppo-clip' ? 1 : 0, o.epsLow, o.epsHigh, o.normalizer ?? 0];
      }),
    );
    const child = `
      import { createRequire } from 'node:module';
      const root = process.argv[1];
      const addon = createRequire(root + '/')('node-gyp-build')(root);
      let input = '';
      for await (const chunk of process.stdin) input += chunk;
      const types = [Float32Array, null, Int32Array, Int32Array, Float32Array, Float32Array];
      const out = JSON.parse(input).map((c) => {
        const args = c.map((x, i) => (types[i] ? types[i].from(x) : x));
        const r = addon.cispoLoss(...args, true, false, undefined, false);
        return { loss: r.loss, stats: r.stats, logprobs: Array.from(r.logprobs), dlogits: Array.from(r.dlogits) };
      });
      process.stdout.write(JSON.stringify(out));`;
    const root = join(dirname(fileURLToPath(import.meta.url)), '..');
    for (const width of ['8', '4']) {
      const env = { ...process.env, FORGE_VECTOR_WIDTH: width };
      const argv = ['--input-type=module', '-e', child, root];
      const run = spawnSync(process.execPath, argv, { input: payload, encoding: 'utf8', env });
      if (run.status !== 0) fail(`width ${width} child failed: ${run.stderr}`);
      type Plain = Omit<CispoResult, 'logprobs' | 'dlogits'> & { logprobs: number[]; dlogits: number[] };
      (JSON.parse(run.stdout) as Plain[]).forEach((r, k) => {
        const result = { ...r, logprobs: Float32Array.from(r.logprobs), dlogits: Float32Array.from(r.dlogits) };
        checkAgainstReference(result, cases[k].c, cases[k].options, `width ${width}, case ${k}`);
      });
    }
  });

  it('the two-pass benchmark baseline computes the same thing', () => {
    const c = makeCase(makeRng(), { N: 10, V: 1000, J: 40, avoid: [0.8, 1.2] });
    const { node, target, oldLogprob, advantage } = c.terms;
    const args = [c.logits, c.V, node, target, oldLogprob, advantage, 1, 0.2, 0.2, 0, true, false, undefined, false];
    const r = addon.benchCispoTwoPass(...args);
    checkAgainstReference(r, c, { mode: 'ppo-clip' }, 'two-pass baseline');
    expect(r.workspaceBytes).toBeGreaterThanOrEqual(c.logits.length * 4);
    expect(addon.benchCispoFusedWorkspace(10, c.V, 40)).toBeLessThan(r.workspaceBytes / 2);
  });
});

describe('cispoLoss gradient against finite differences', () => {
  const h = 1e-4;
  function finiteDifferences(z: Float32Array, f: (z: Float64Array) => number): Float64Array {
    const x = Float64Array.from(z);
    const out = new Float64Array(z.length);
    for (let i = 0; i < z.length; i++) {
      x[i] = z[i] + h;
      const up = f(x);
      x[i] = z[i] - h;
      out[i] = (up - f(x)) / (2 * h);
      x[i] = z[i];
    }
    return out;
  }
  function compare(analytic: Float32Array, numeric: Float64Array, label: string): void {
    let maxAbs = 0;
    for (const g of numeric) maxAbs = Math.max(maxAbs, Math.abs(g));
    expect(maxAbs).toBeGreaterThan(0);
    for (let i = 0; i < numeric.length; i++)
      near(analytic[i], numeric[i], 1e-4 * Math.abs(numeric[i]) + 1e-5 * maxAbs, `${label}: d/dz[${i}]`);
  }

  it('CISPO: dlogits is the gradient of the surrogate with the clipped weights held fixed', () => {
    for (const V of [7, 40]) {
      const c = makeCase(makeRng(), { N: 5, V, J: 12, avoid: [0.8, 1.28] });
      const options: CispoOptions = { epsLow: 0.2, epsHigh: 0.28, normalizer: 3 };
      const { weights } = referencePolicyLoss(c.logits, V, c.terms, referenceOptions(options));
      const numeric = finiteDifferences(c.logits, (z) => cispoSurrogate(z, V, c.terms, weights, 3));
      compare(cispoLoss(c.logits, V, c.terms, options).dlogits!, numeric, `CISPO V=${V}`);
    }
  });

  it('PPO-clip: dlogits is the gradient of the PPO loss away from the clip kinks', () => {
    for (const V of [7, 40]) {
      const rand = makeRng();
      const ratios = [0.5, 0.9, 1.05, 1.5, 2.5];
      const c = makeCase(rand, { N: 5, V, J: 14, ratios: () => ratios[Math.floor(rand() * ratios.length)] });
      const options: CispoOptions = { mode: 'ppo-clip' };
      const numeric = finiteDifferences(c.logits, (z) => ppoLoss(z, V, c.terms, referenceOptions(options)));
      compare(cispoLoss(c.logits, V, c.terms, options).dlogits!, numeric, `PPO V=${V}`);
    }
  });
});

describe('cispoLoss argument checks', () => {
  const V = 7;
  const logits = () => new Float32Array(3 * V).map((_, i) => Math.sin(i));
  const terms = (): PolicyLossTerms => ({
    node: Int32Array.from([0, 2, 2]),
    target: Int32Array.from([1, 6, 0]),
    oldLogprob: Float32Array.from([-2, -1, -3]),
    advantage: Float32Array.from([1, -1, 0.5]),
  });
  const with_ = (over: Partial<Record<keyof PolicyLossTerms, unknown>>) => ({ ...terms(), ...over }) as PolicyLossTerms;
  /** Calls fn, expects an error of `type` whose message matches (a string must match exactly) and code. */
  function throwsWith(fn: () => unknown, type: ErrorConstructor, message: RegExp | string, code?: string): void {
    let error: unknown;
    try {
      fn();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(type);
    if (typeof message === 'string') expect((error as Error).message).toBe(message);
    else expect((error as Error).message).toMatch(message);
    if (code) expect((error as { code: string }).code).toBe(code);
  }
  const NON_FINITE = 'FORGE_ERR_NON_FINITE';

  it('rejects wrong types with a TypeError naming the argument', () => {
    const cases: [() => unknown, RegExp][] = [
      [() => cispoLoss([1, 2] as never, 2, terms()), /^logits: expected a Float32Array/],
      [() => cispoLoss(logits(), '7' as never, terms()), /^vocabSize/],
      [() => cispoLoss(logits(), V, null as never), /^terms:/],
      [() => cispoLoss(logits(), V, with_({ node: new Float32Array(3) })), /^terms\.node: expected a Int32Array/],
      [() => cispoLoss(logits(), V, with_({ advantage: [1, 2, 3] })), /^terms\.advantage/],
      [() => cispoLoss(logits(), V, terms(), { mode: 3 as never }), /^options\.mode/],
      [() => cispoLoss(logits(), V, terms(), { epsHigh: '0.2' as never }), /^options\.epsHigh/],
      [() => cispoLoss(logits(), V, terms(), { grad: 'yes' as never }), /^options\.grad/],
    ];
    for (const [fn, message] of cases) throwsWith(fn, TypeError, message, 'FORGE_ERR_INVALID_ARGUMENT');
  });

  it('rejects shapes, ids and options out of range with a RangeError naming the argument', () => {
    const big = { ...terms(), node: new Int32Array(8), oldLogprob: new Float32Array(8), advantage: new Float32Array(8) };
    big.target = Int32Array.from([1, 2, 3, 4, 5, 70000, 0, 0]);
    const cases: [() => unknown, RegExp | string, string?][] = [
      [() => cispoLoss(new Float32Array(10), 3, terms()), 'logits: length 10 is not a multiple of vocabSize 3'],
      [() => cispoLoss(logits(), 0, terms()), /^vocabSize/],
      [() => cispoLoss(logits(), V, with_({ target: Int32Array.from([1, 2]) })), 'terms.target: expected 3 elements, got 2'],
      [() => cispoLoss(new Float32Array(50257), 50257, big), 'terms.target[5]: token id 70000 out of the vocabulary [0, 50257)'],
      [() => cispoLoss(logits(), V, with_({ target: Int32Array.from([1, -1, 0]) })), /^terms\.target\[1\]: token id -1/],
      [() => cispoLoss(logits(), V, with_({ node: Int32Array.from([0, 3, 1]) })), 'terms.node[1]: node 3 out of range [0, 3)'],
      [() => cispoLoss(logits(), V, with_({ oldLogprob: Float32Array.from([-1, NaN, 0]) })), /^terms\.oldLogprob\[1\]/, NON_FINITE],
      [() => cispoLoss(logits(), V, with_({ advantage: Float32Array.from([1, 1, -Infinity]) })), /^terms\.advantage\[2\]/, NON_FINITE],
      [() => cispoLoss(logits(), V, terms(), { mode: 'grpo' as never }), /^options\.mode/],
      [() => cispoLoss(logits(), V, terms(), { mode: 'toString' as never }), /^options\.mode/],
      [() => cispoLoss(logits(), V, terms(), { epsLow: -0.1 }), /^options\.epsLow: expected a number >= 0/],
      [() => cispoLoss(logits(), V, terms(), { epsHigh: NaN }), /^options\.epsHigh/, NON_FINITE],
      [() => cispoLoss(logits(), V, terms(), { normalizer: 0 }), /^options\.normalizer: expected a number > 0/],
      [() => cispoLoss(logits(), V, terms(), { normalizer: Infinity }), /^options\.normalizer/, NON_FINITE],
      [() => cispoLoss(logits(), V, terms(), { inPlace: true, grad: false }), /^options\.inPlace/],
    ];
    for (const [fn, message, code] of cases) throwsWith(fn, RangeError, message, code ?? 'FORGE_ERR_OUT_OF_RANGE');
  });

  it('reports the first NaN/Inf logit by row and column (FORGE_ERR_NON_FINITE)', async () => {
    const z = logits();
    z[1 * V + 2] = NaN; // row 1 carries no term
    const nan = 'logits[row 1, column 2]: expected a finite number, got nan';
    throwsWith(() => cispoLoss(z, V, terms()), RangeError, nan, NON_FINITE);
    const w = logits();
    w[2 * V + 4] = -Infinity; // row 2 carries terms
    const inf = 'logits[row 2, column 4]: expected a finite number, got -inf';
    throwsWith(() => cispoLoss(w, V, terms()), RangeError, inf, NON_FINITE);
    await expect(cispoLossAsync(w, V, terms())).rejects.toMatchObject({ code: NON_FINITE, message: /row 2, column 4/ });
    // Across row chunks processed in parallel (15 rows of 4099 each), the first bad row is the one
    // reported, every time: here the last row of one chunk and the first row of the next.
    const c = makeCase(makeRng(), { N: 64, V: 4099, J: 100 });
    c.logits[30 * 4099 + 0] = Infinity;
    c.logits[29 * 4099 + 4098] = NaN;
    for (let k = 0; k < 8; k++)
      throwsWith(() => cispoLoss(c.logits, c.V, c.terms), RangeError, /^logits\[row 29, column 4098\]/);
  });

  it('the raw addon throws, never crashes, on short arrays and bad values', async () => {
    const t = terms();
    const args = (over: Record<number, unknown> = {}) => {
      const a: unknown[] = [logits(), V, t.node, t.target, t.oldLogprob, t.advantage];
      a.push(0, Infinity, 4, 0, true, false, undefined, false); // mode, epsLow, epsHigh, Z, grad, inPlace, out, async
      for (const [i, v] of Object.entries(over)) a[Number(i)] = v;
      return a;
    };
    const binding: [Record<number, unknown>, ErrorConstructor, RegExp][] = [
      [{ 3: Int32Array.from([1, 2]) }, RangeError, /^target: expected length 3, got 2/],
      [{ 5: new Float32Array(1) }, RangeError, /^advantage: expected length 3/],
      [{ 4: new Int32Array(3) }, TypeError, /^oldLogprob: expected a Float32Array/],
      [{ 0: new Float32Array(V + 1) }, RangeError, /not a multiple of vocabSize/],
      [{ 6: 3 }, RangeError, /^mode/],
      [{ 12: new Float32Array(5) }, RangeError, /^out: expected length 21/],
      [{ 13: undefined }, TypeError, /^async: expected a boolean/],
    ];
    expect(() => addon.cispoLoss()).toThrow(TypeError);
    for (const [over, type, message] of binding) throwsWith(() => addon.cispoLoss(...args(over)), type, message);
    // Values only the native checks see when the TypeScript layer is bypassed.
    const native: [Record<number, unknown>, RegExp, string][] = [
      [{ 3: Int32Array.from([1, 99, 0]) }, /^term_target\[1\]: token id 99 out of range \[0, 7\)$/, 'FORGE_ERR_OUT_OF_RANGE'],
      [{ 2: Int32Array.from([-1, 0, 0]) }, /^term_node\[0\]: node -1 out of range \[0, 3\)$/, 'FORGE_ERR_OUT_OF_RANGE'],
      [{ 4: Float32Array.from([0, 0, NaN]) }, /^term_old_logprob\[2\]/, NON_FINITE],
      [{ 5: Float32Array.from([Infinity, 0, 0]) }, /^term_advantage\[0\]/, NON_FINITE],
      [{ 7: -0.5 }, /^options\.eps_low/, 'FORGE_ERR_OUT_OF_RANGE'],
      [{ 8: NaN }, /^options\.eps_high/, NON_FINITE],
      [{ 9: NaN }, /^options\.normalizer/, NON_FINITE],
    ];
    for (const [over, message, code] of native) throwsWith(() => addon.cispoLoss(...args(over)), RangeError, message, code);
    const rejected = addon.cispoLoss(...args({ 3: Int32Array.from([1, 99, 0]), 13: true }));
    await expect(rejected).rejects.toMatchObject({ code: 'FORGE_ERR_OUT_OF_RANGE' });
  });
});
