// forge_gemm (the SGEMM under the nano policy) against a plain float64 triple loop on fresh random
// inputs: every transpose combination, shapes off the register-tile and cache-block sizes, alpha /
// beta, leading dimensions wider than the rows, the narrower ISA paths, thread-count independence and
// argument checks. The seed is printed in every failure; rerun one with FORGE_TEST_SEED=<seed>.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

import { addon, setNumThreads } from '../lib/native.js';
import { gauss, seededRun } from './helpers/random.js';

const { rng: makeRng, fail } = seededRun();

interface Problem {
  ta: number;
  tb: number;
  m: number;
  n: number;
  k: number;
  alpha: number;
  beta: number;
  a: Float32Array;
  lda: number;
  b: Float32Array;
  ldb: number;
  c: Float32Array;
  ldc: number;
}

/** Random operands stored as the transposes say, with `pad` extra elements per stored row. */
function problem(rand: () => number, ta: number, tb: number, m: number, n: number, k: number, pad = 0, alpha = 1, beta = 0): Problem {
  const [aRows, aCols] = ta ? [k, m] : [m, k];
  const [bRows, bCols] = tb ? [n, k] : [k, n];
  const lda = Math.max(1, aCols + pad), ldb = Math.max(1, bCols + pad), ldc = Math.max(1, n + pad);
  const fill = (len: number) => Float32Array.from({ length: len }, () => gauss(rand));
  return {
    ta, tb, m, n, k, alpha, beta,
    a: fill(Math.max(0, (aRows - 1) * lda + aCols)), lda,
    b: fill(Math.max(0, (bRows - 1) * ldb + bCols)), ldb,
    c: fill(Math.max(0, (m - 1) * ldc + n)), ldc,
  };
}

const opA = (p: Problem, i: number, q: number) => (p.ta ? p.a[q * p.lda + i] : p.a[i * p.lda + q]);
const opB = (p: Problem, q: number, j: number) => (p.tb ? p.b[j * p.ldb + q] : p.b[q * p.ldb + j]);

/** Expected C in float64 and an error scale per element: sum_q |a b| (float32 rounding is relative to it). */
function reference(p: Problem): { c: Float64Array; scale: Float64Array } {
  const c = new Float64Array(p.c.length), scale = new Float64Array(p.c.length);
  for (let i = 0; i < p.m; i++)
    for (let j = 0; j < p.n; j++) {
      let s = 0, abs = 0;
      for (let q = 0; q < p.k; q++) {
        const x = opA(p, i, q) * opB(p, q, j);
        s += x;
        abs += Math.abs(x);
      }
      const at = i * p.ldc + j;
      c[at] = p.alpha * s + (p.beta === 0 ? 0 : p.beta * p.c[at]);
      scale[at] = Math.abs(p.alpha) * abs + (p.beta === 0 ? 0 : Math.abs(p.beta * p.c[at]));
    }
  return { c, scale };
}

function run(p: Problem, fn: 'gemm' | 'benchGemmNaive' = 'gemm', async = false): Float32Array | Promise<Float32Array> {
  return addon[fn](p.ta, p.tb, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, p.c, p.ldc, async);
}

/** The product in c (a copy of the problem's C) against the reference; padding columns untouched. */
function check(p: Problem, c: ArrayLike<number>, label: string): void {
  const ref = reference(p);
  for (let i = 0; i < p.m; i++)
    for (let j = 0; j < p.ldc && i * p.ldc + j < c.length; j++) {
      const at = i * p.ldc + j;
      if (j >= p.n) {
        if (c[at] !== p.c[at]) fail(`${label}: padding C[${i}, ${j}] was written`);
        continue;
      }
      const tol = 2e-6 * ref.scale[at] + 1e-30;
      if (!(Math.abs(c[at] - ref.c[at]) <= tol))
        fail(`${label}: C[${i}, ${j}] = ${c[at]}, expected ${ref.c[at]} ± ${tol}`);
    }
}

function solve(p: Problem): Float32Array {
  const copy = { ...p, c: p.c.slice() };
  run(copy);
  return copy.c;
}

afterEach(() => {
  setNumThreads(0);
});

describe('gemm against a float64 reference', () => {
  // Sizes around the register tiles (6 / 12 rows x 8 / 16 / 32 columns), the k block (256) and the
  // serial threshold (2^17 multiply-adds), so edge tiles, several k blocks and the pool all run.
  const shapes: [number, number, number][] = [
    [1, 1, 1], [7, 5, 3], [13, 37, 300], [150, 70, 40], [64, 130, 129], [97, 33, 513], [25, 1, 700],
  ];
  for (const [ta, tb] of [[0, 0], [0, 1], [1, 0], [1, 1]])
    it(`op(A) ${ta ? 'T' : 'N'}, op(B) ${tb ? 'T' : 'N'}`, () => {
      const rand = makeRng();
      for (const [m, n, k] of shapes) {
        const p = problem(rand, ta, tb, m, n, k);
        check(p, solve(p), `${ta}${tb} ${m}x${n}x${k}`);
      }
    });

  it('alpha, beta and leading dimensions wider than the rows', () => {
    const rand = makeRng();
    for (const [alpha, beta] of [[0.5, 1], [-2, 0.25], [1, -1], [0, 3]]) {
      const p = problem(rand, 1, 0, 45, 77, 290, 5, alpha, beta);
      check(p, solve(p), `alpha ${alpha} beta ${beta}`);
    }
  });

  it('beta = 0 never reads C (NaN there is overwritten); k = 0 gives beta C', () => {
    const rand = makeRng();
    const p = problem(rand, 0, 0, 30, 40, 50);
    p.c.fill(NaN);
    check(p, solve(p), 'beta 0 over NaN');
    const q = problem(rand, 0, 1, 9, 11, 0, 0, 1, 0.5);
    const expected = q.c.map((x) => 0.5 * x);
    expect(Array.from(solve(q))).toEqual(Array.from(expected));
  });

  it('any thread count and async give the same bits', async () => {
    const p = problem(makeRng(), 1, 0, 130, 352, 600);
    const base = solve(p);
    setNumThreads(1);
    expect(Buffer.from(solve(p).buffer).equals(Buffer.from(base.buffer))).toBe(true);
    setNumThreads(0);
    const copy = { ...p, c: p.c.slice() };
    await run(copy, 'gemm', true);
    expect(Buffer.from(copy.c.buffer).equals(Buffer.from(base.buffer))).toBe(true);
  });

  it('the naive benchmark baseline computes the same product', () => {
    const p = problem(makeRng(), 1, 1, 33, 21, 70, 2, 1.5, 0.5);
    const copy = { ...p, c: p.c.slice() };
    run(copy, 'benchGemmNaive');
    check(p, copy.c, 'naive');
  });

  it('the AVX2 and baseline paths (FORGE_VECTOR_WIDTH = 8, 4) match the reference too', () => {
    const rand = makeRng();
    const problems = [problem(rand, 0, 0, 50, 70, 300, 3, 1, 0.5), problem(rand, 1, 1, 19, 45, 33), problem(rand, 0, 1, 200, 100, 20)];
    const payload = JSON.stringify(problems.map((p) => ({ ...p, a: Array.from(p.a), b: Array.from(p.b), c: Array.from(p.c) })));
    const child = `
      import { createRequire } from 'node:module';
      const root = process.argv[1];
      const addon = createRequire(root + '/')('node-gyp-build')(root);
      let input = '';
      for await (const chunk of process.stdin) input += chunk;
      const out = JSON.parse(input).map((p) => {
        const c = Float32Array.from(p.c);
        addon.gemm(p.ta, p.tb, p.m, p.n, p.k, p.alpha, Float32Array.from(p.a), p.lda, Float32Array.from(p.b), p.ldb, p.beta, c, p.ldc, false);
        return Array.from(c);
      });
      process.stdout.write(JSON.stringify(out));`;
    const root = join(dirname(fileURLToPath(import.meta.url)), '..');
    for (const width of ['8', '4']) {
      const env = { ...process.env, FORGE_VECTOR_WIDTH: width };
      const result = spawnSync(process.execPath, ['--input-type=module', '-e', child, root], { input: payload, encoding: 'utf8', env });
      if (result.status !== 0) fail(`width ${width} child failed: ${result.stderr}`);
      (JSON.parse(result.stdout) as number[][]).forEach((c, i) => check(problems[i], c, `width ${width}, problem ${i}`));
    }
  });
});

describe('gemm argument checks', () => {
  const a = new Float32Array(12), b = new Float32Array(12), c = new Float32Array(9);
  const args = (over: Record<number, unknown> = {}) => {
    const x: unknown[] = [0, 0, 3, 3, 4, 1, a, 4, b, 3, 0, c, 3, false];
    for (const [i, v] of Object.entries(over)) x[Number(i)] = v;
    return x;
  };
  function throws(fn: () => unknown, type: ErrorConstructor, message: RegExp, code?: string): void {
    let error: unknown;
    try {
      fn();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(type);
    expect((error as Error).message).toMatch(message);
    if (code) expect((error as { code: string }).code).toBe(code);
  }

  it('rejects what would read or write outside the arrays, in the binding', () => {
    throws(() => addon.gemm(...args({ 6: new Float32Array(11) })), RangeError, /^a: expected at least 12 elements/);
    throws(() => addon.gemm(...args({ 11: new Float32Array(8) })), RangeError, /^c: expected at least 9 elements/);
    throws(() => addon.gemm(...args({ 0: 2 })), RangeError, /^transA/);
    throws(() => addon.gemm(...args({ 8: [1, 2] })), TypeError, /^b: expected a Float32Array/);
  });

  it('the C ABI names the argument: leading dimensions, non-finite scalars, overlap', () => {
    throws(() => addon.gemm(...args({ 7: 3 })), RangeError, /^lda: expected >= 4 \(the stored row length of a\), got 3$/, 'FORGE_ERR_INVALID_ARGUMENT');
    throws(() => addon.gemm(...args({ 12: 2 })), RangeError, /^ldc: expected >= 3/, 'FORGE_ERR_INVALID_ARGUMENT');
    throws(() => addon.gemm(...args({ 5: NaN })), RangeError, /^alpha: expected a finite number/, 'FORGE_ERR_NON_FINITE');
    throws(() => addon.gemm(...args({ 10: Infinity })), RangeError, /^beta/, 'FORGE_ERR_NON_FINITE');
    const shared = new Float32Array(24);
    throws(() => addon.gemm(...args({ 6: shared, 11: shared.subarray(10) })), RangeError, /^c: overlaps a/, 'FORGE_ERR_INVALID_ARGUMENT');
    throws(() => addon.gemm(...args({ 8: shared, 11: shared.subarray(2, 11) })), RangeError, /^c: overlaps b/, 'FORGE_ERR_INVALID_ARGUMENT');
  });
});
