// gatherToSamples / scatterFromSamples (contract 1) against float64 references on trees built from
// fresh random batches; scatter checked as the gradient of gather (adjoint identity and central
// differences); bad input through the TS API and the raw addon.
import { describe, expect, it } from 'vitest';

import { expectError } from './helpers/errors.js';

import { addon } from '../lib/native.js';
import {
  buildPrefixTree,
  gatherToSamples,
  gatherToSamplesAsync,
  scatterFromSamples,
  scatterFromSamplesAsync,
  type PrefixTree,
} from '../lib/prefixTree.js';
import { randomSamples, referenceGather, referenceScatter, seededRandom, testSeed } from './reference/prefixTree.js';

const seed = testSeed();
const rand = seededRandom(seed);

function randomTree(numSamples: number, maxLength: number, vocabSize = 4): PrefixTree {
  return buildPrefixTree(randomSamples(rand, { vocabSize, numSamples, maxLength }));
}

function randomValues(n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
}

// |actual - expected| <= tol * (1 + |expected|) elementwise.
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, name: string): void {
  expect(actual.length, `${name}.length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++)
    if (!(Math.abs(actual[i] - expected[i]) <= tol * (1 + Math.abs(expected[i]))))
      expect.fail(`${name}[${i}]: got ${actual[i]}, expected ${expected[i]}`);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

describe(`gather / scatter between tree and samples (seed ${seed}; replay with FORGE_TEST_SEED=${seed})`, () => {
  it('match the float64 reference on random trees and channel counts', () => {
    for (let round = 0; round < 30; round++) {
      const tree = randomTree(1 + Math.floor(rand() * 20), 1 + Math.floor(rand() * 30));
      const C = [1, 2, 3, 17, 64][round % 5];
      const T = tree.nodeOf.length, N = tree.numNodes;
      const nodeValues = randomValues(N * C);
      // Gather is a copy: exact.
      expectClose(gatherToSamples(tree, nodeValues, C), referenceGather(nodeValues, tree.nodeOf, C), 0, 'gather');
      // Scatter sums in float64, then rounds once.
      const sampleValues = randomValues(T * C);
      expectClose(scatterFromSamples(tree, sampleValues, C), referenceScatter(sampleValues, tree.nodeOf, N, C), 1e-6, 'scatter');
    }
  });

  it('match the reference on large inputs (parallel paths)', () => {
    const tree = randomTree(400, 1500, 3);
    const T = tree.nodeOf.length, N = tree.numNodes;
    expect(T).toBeGreaterThan(100_000);
    for (const C of [1, 8]) {
      const nodeValues = randomValues(N * C), sampleValues = randomValues(T * C);
      expectClose(gatherToSamples(tree, nodeValues, C), referenceGather(nodeValues, tree.nodeOf, C), 0, `gather C=${C}`);
      expectClose(scatterFromSamples(tree, sampleValues, C), referenceScatter(sampleValues, tree.nodeOf, N, C), 1e-6, `scatter C=${C}`);
    }
  });

  it('heavy sharing: 64 duplicates of one sample sum exactly in float64', () => {
    const tokens = Int32Array.from({ length: 50 }, (_, i) => i);
    const tree = buildPrefixTree(Array.from({ length: 64 }, () => ({ tokens })));
    expect(tree.numNodes).toBe(50);
    // Values whose float32 running sum would lose bits: 1 followed by many tiny ones.
    const values = Float32Array.from({ length: 64 * 50 }, (_, i) => (i < 50 ? 1 : 2 ** -26));
    const out = scatterFromSamples(tree, values);
    expectClose(out, referenceScatter(values, tree.nodeOf, 50, 1).map(Math.fround), 0, 'scatter');
    expect(out[0]).toBeGreaterThan(1);
  });

  it('scatter is the gradient of gather (adjoint identity and central differences)', () => {
    for (let round = 0; round < 5; round++) {
      const tree = randomTree(12, 20);
      const C = 1 + Math.floor(rand() * 4);
      const T = tree.nodeOf.length, N = tree.numNodes;
      const x = randomValues(N * C), w = randomValues(T * C);
      // <gather(x), w> = <x, scatter(w)>
      const lhs = dot(gatherToSamples(tree, x, C), w);
      const rhs = dot(x, scatterFromSamples(tree, w, C));
      expect(Math.abs(lhs - rhs)).toBeLessThan(1e-5 * (1 + Math.abs(lhs)));
      // loss(x) = 1/2 sum_i w_i gather(x)_i^2, d loss / dx = scatter(w * gather(x)); central differences
      // of the float64 loss evaluated on gather's (exact) output.
      const loss = (v: Float32Array) => {
        const g = gatherToSamples(tree, v, C);
        let s = 0;
        for (let i = 0; i < g.length; i++) s += 0.5 * w[i] * g[i] * g[i];
        return s;
      };
      const gx = gatherToSamples(tree, x, C);
      const grad = scatterFromSamples(tree, Float32Array.from(gx, (g, i) => w[i] * g), C);
      for (let k = 0; k < 8; k++) {
        const j = Math.floor(rand() * N * C);
        const h = 2 ** -6;  // exact in float32 around values in [-1, 1]
        const plus = x.slice(), minus = x.slice();
        plus[j] += h;
        minus[j] -= h;
        const fd = (loss(plus) - loss(minus)) / (2 * h);
        expect(Math.abs(grad[j] - fd), `d loss / d x[${j}]`).toBeLessThan(1e-4 * (1 + Math.abs(fd)));
      }
    }
  });

  it('async forms give the same result', async () => {
    const tree = randomTree(30, 40);
    const C = 5;
    const x = randomValues(tree.numNodes * C), y = randomValues(tree.nodeOf.length * C);
    expectClose(await gatherToSamplesAsync(tree, x, C), gatherToSamples(tree, x, C), 0, 'gather async');
    expectClose(await scatterFromSamplesAsync(tree, y, C), scatterFromSamples(tree, y, C), 0, 'scatter async');
  });

  it('a node no position maps to gets a zero row; node_of need not come from a tree', () => {
    const out = addon.scatterFromSamples(Float32Array.from([1, 2, 3, 4, 5, 6]), 2, Int32Array.from([3, 0, 3]), 5, false) as Float32Array;
    expectClose(out, [3, 4, 0, 0, 0, 0, 6, 8, 0, 0], 0, 'scatter');
    const gathered = addon.gatherToSamples(Float32Array.from([1, 2, 3]), 3, 1, new Int32Array(0), false) as Float32Array;
    expect(gathered.length).toBe(0);
    const empty = addon.scatterFromSamples(new Float32Array(0), 3, new Int32Array(0), 2, false) as Float32Array;
    expectClose(empty, [0, 0, 0, 0, 0, 0], 0, 'empty scatter');
  });
});

describe('gather / scatter: bad input', () => {
  const tree = buildPrefixTree([{ tokens: Int32Array.from([1, 2, 3]) }, { tokens: Int32Array.from([1, 4]) }]); // N = 4, T = 5
  const INVALID = 'FORGE_ERR_INVALID_ARGUMENT', RANGE = 'FORGE_ERR_OUT_OF_RANGE';

  it('TS layer names the argument', () => {
    expectError(() => gatherToSamples(tree, [1, 2, 3, 4] as unknown as Float32Array), TypeError, INVALID, /^nodeValues: expected a Float32Array, got Array$/);
    expectError(() => gatherToSamples(tree, new Float32Array(5)), RangeError, RANGE, /^nodeValues: expected 4 elements, got 5$/);
    expectError(() => gatherToSamples(tree, new Float32Array(8), 3), RangeError, RANGE, /^nodeValues: expected 12 elements, got 8$/);
    expectError(() => gatherToSamples(tree, new Float32Array(4), 0), RangeError, RANGE, /^channels: expected an integer in \[1, /);
    expectError(() => gatherToSamples(tree, new Float32Array(4), 1.5), RangeError, RANGE, /^channels/);
    expectError(() => scatterFromSamples(tree, new Float32Array(4)), RangeError, RANGE, /^sampleValues: expected 5 elements, got 4$/);
    expectError(() => scatterFromSamples(tree, new Float64Array(5) as unknown as Float32Array), TypeError, INVALID, /^sampleValues: expected a Float32Array, got Float64Array$/);
    expectError(() => scatterFromSamples(tree, new Float32Array(10), '2' as unknown as number), TypeError, INVALID, /^channels: expected an integer, got string$/);
    expectError(() => gatherToSamples({ numNodes: 4 } as PrefixTree, new Float32Array(4)), TypeError, INVALID, /^tree\.nodeOf: expected a Int32Array/);
    expectError(() => gatherToSamples(null as unknown as PrefixTree, new Float32Array(4)), TypeError, INVALID, /^tree: expected a PrefixTree/);
  });

  it('async forms reject the same way', async () => {
    await expect(gatherToSamplesAsync(tree, new Float32Array(3))).rejects.toThrow(/nodeValues: expected 4 elements/);
    await expect(addon.scatterFromSamples(new Float32Array(2), 1, Int32Array.from([0, 9]), 4, true)).rejects.toMatchObject({ code: RANGE, message: 'node_of[1]: node 9 out of range [0, 4)' });
  });

  it('the raw addon re-checks lengths and node ids', () => {
    // gatherToSamples(nodeValues, numNodes, channels, nodeOf, async); scatterFromSamples(sampleValues, channels, nodeOf, numNodes, async)
    expectError(() => addon.gatherToSamples(new Float32Array(4), 4, 1, Int32Array.from([0, 4]), false), RangeError, RANGE, /^node_of\[1\]: node 4 out of range \[0, 4\)$/);
    expectError(() => addon.gatherToSamples(new Float32Array(4), 4, 1, Int32Array.from([-1]), false), RangeError, RANGE, /^node_of\[0\]: node -1 out of range/);
    expectError(() => addon.gatherToSamples(new Float32Array(3), 4, 1, Int32Array.from([0]), false), RangeError, RANGE, /^nodeValues: expected length 4, got 3$/);
    expectError(() => addon.gatherToSamples(new Float32Array(4), 0, 1, Int32Array.from([0]), false), RangeError, RANGE, /^numNodes: expected an integer/);
    expectError(() => addon.gatherToSamples(new Float32Array(4), 4, -1, Int32Array.from([0]), false), RangeError, RANGE, /^channels/);
    expectError(() => addon.gatherToSamples(new Float32Array(4), 4, 1, [0], false), TypeError, INVALID, /^nodeOf: expected a Int32Array$/);
    expectError(() => addon.scatterFromSamples(new Float32Array(3), 1, Int32Array.from([0, 1]), 4, false), RangeError, RANGE, /^sampleValues: expected length 2, got 3$/);
    expectError(() => addon.scatterFromSamples(new Float32Array(2), 1, Int32Array.from([0, 2 ** 31 - 1]), 4, false), RangeError, RANGE, /^node_of\[1\]: node 2147483647 out of range \[0, 4\)$/);
    const big = new Int32Array(1 << 20);
    big[900_000] = 7;
    big[(1 << 20) - 1] = -3;
    expectError(() => addon.scatterFromSamples(new Float32Array(1 << 20), 1, big, 7, false), RangeError, RANGE, /^node_of\[900000\]: node 7 out of range \[0, 7\)$/);
  });
});
