// mergeToTree (contract 1, samples -> tree, one copy per node): on prefix trees built from fresh random
// batches, per-sample values gathered from random tree values merge back to exactly those tree values;
// arbitrary per-sample values (copies that differ) merge as the plain reference says, each node taking
// its FIRST position; nodes no position maps to get zeros; bad input through the TS API and the raw addon.
import { describe, expect, it } from 'vitest';

import { expectError } from './helpers/errors.js';

import { addon } from '../lib/native.js';
import { buildPrefixTree, gatherToSamples, mergeToTree, mergeToTreeAsync, type PrefixTree } from '../lib/prefixTree.js';
import { randomSamples, referenceMergeToTree, seededRandom, testSeed } from './reference/prefixTree.js';

const seed = testSeed();
const rand = seededRandom(seed);
const why = (what: string) => `${what} (seed ${seed}: rerun with FORGE_TEST_SEED=${seed})`;

function randomTree(numSamples: number, maxLength: number, vocabSize = 4): PrefixTree {
  return buildPrefixTree(randomSamples(rand, { vocabSize, numSamples, maxLength }));
}

function randomValues(n: number): Float32Array {
  return Float32Array.from({ length: n }, () => rand() * 2 - 1);
}

// Bitwise equal (the merge is a copy), reporting the first difference.
function expectSame(actual: ArrayLike<number>, expected: ArrayLike<number>, name: string): void {
  expect(actual.length, why(`${name}.length`)).toBe(expected.length);
  for (let i = 0; i < expected.length; i++)
    if (!Object.is(actual[i], expected[i])) expect.fail(why(`${name}[${i}]: got ${actual[i]}, expected ${expected[i]}`));
}

describe(`mergeToTree (seed ${seed}; replay with FORGE_TEST_SEED=${seed})`, () => {
  it('gives the tree values back from per-sample values gathered from them (random trees and channel counts)', () => {
    for (let round = 0; round < 30; round++) {
      const tree = randomTree(1 + Math.floor(rand() * 20), 1 + Math.floor(rand() * 30));
      const C = [1, 2, 3, 17, 128][round % 5];  // 128: a [T, Hkv = 2, D = 64] K cache
      const treeValues = randomValues(tree.numNodes * C);
      const packed = gatherToSamples(tree, treeValues, C);
      expect(packed.length).toBe(tree.nodeOf.length * C);
      expectSame(mergeToTree(tree, packed, C), treeValues, `round ${round} C=${C}`);
    }
  });

  it('takes each node from its first position when the copies differ (against the reference)', () => {
    for (let round = 0; round < 20; round++) {
      const tree = randomTree(2 + Math.floor(rand() * 20), 1 + Math.floor(rand() * 30), 3);
      const C = 1 + Math.floor(rand() * 6);
      const values = randomValues(tree.nodeOf.length * C);  // every position its own value
      const ref = referenceMergeToTree(values, tree.nodeOf, tree.numNodes, C);
      expectSame(mergeToTree(tree, values, C), Float32Array.from(ref), `round ${round} C=${C}`);
    }
  });

  it('the first position, not any: a node shared by three positions takes the lowest', () => {
    const tree = buildPrefixTree([{ tokens: Int32Array.from([5, 6]) }, { tokens: Int32Array.from([5, 6, 7]) }, { tokens: Int32Array.from([5]) }]);
    expect(Array.from(tree.nodeOf)).toEqual([0, 1, 0, 1, 2, 0]);
    const values = Float32Array.from([10, 11, 20, 21, 22, 30]);
    expectSame(mergeToTree(tree, values), [10, 11, 22], 'merged');
    // node_of need not be sorted or come from a tree: node 1's first position is 0 here.
    const raw = addon.mergeToTree(Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]), 2, Int32Array.from([1, 0, 1, 1]), 2, false) as Float32Array;
    expectSame(raw, [3, 4, 1, 2], 'raw');
  });

  it('nodes no position maps to get zero rows (merging only some samples into the whole tree)', () => {
    for (let round = 0; round < 10; round++) {
      const tree = randomTree(4 + Math.floor(rand() * 16), 1 + Math.floor(rand() * 30));
      const C = 1 + Math.floor(rand() * 5);
      // The first k samples only: the nodes only later samples reach have no position.
      const k = 1 + Math.floor(rand() * (tree.numSamples - 1));
      const nodeOf = tree.nodeOf.subarray(0, tree.offsets[k]);
      const values = randomValues(nodeOf.length * C);
      const merged = mergeToTree({ numNodes: tree.numNodes, nodeOf }, values, C);
      expectSame(merged, Float32Array.from(referenceMergeToTree(values, nodeOf, tree.numNodes, C)), `round ${round}`);
      const reached = new Set(nodeOf);
      for (let n = 0; n < tree.numNodes; n++)
        if (!reached.has(n)) for (let c = 0; c < C; c++) expect(merged[n * C + c], why(`node ${n} has no position`)).toBe(0);
    }
    // No positions at all: every row zero.
    expectSame(addon.mergeToTree(new Float32Array(0), 3, new Int32Array(0), 2, false) as Float32Array, [0, 0, 0, 0, 0, 0], 'empty');
  });

  it('large inputs (parallel path) and the async form', async () => {
    const tree = randomTree(400, 1500, 3);
    expect(tree.nodeOf.length).toBeGreaterThan(100_000);
    for (const C of [1, 8]) {
      const treeValues = randomValues(tree.numNodes * C);
      const packed = gatherToSamples(tree, treeValues, C);
      expectSame(mergeToTree(tree, packed, C), treeValues, `large C=${C}`);
      expectSame(await mergeToTreeAsync(tree, packed, C), treeValues, `large async C=${C}`);
    }
  });
});

describe('mergeToTree: bad input', () => {
  const tree = buildPrefixTree([{ tokens: Int32Array.from([1, 2, 3]) }, { tokens: Int32Array.from([1, 4]) }]); // N = 4, T = 5
  const INVALID = 'FORGE_ERR_INVALID_ARGUMENT', RANGE = 'FORGE_ERR_OUT_OF_RANGE';

  it('TS layer names the argument', () => {
    expectError(() => mergeToTree(tree, new Float32Array(4)), RangeError, RANGE, /^sampleValues: expected 5 elements, got 4$/);
    expectError(() => mergeToTree(tree, new Float32Array(5), 2), RangeError, RANGE, /^sampleValues: expected 10 elements, got 5$/);
    expectError(() => mergeToTree(tree, new Float64Array(5) as unknown as Float32Array), TypeError, INVALID, /^sampleValues: expected a Float32Array, got Float64Array$/);
    expectError(() => mergeToTree(tree, new Float32Array(5), 0), RangeError, RANGE, /^channels: expected an integer in \[1, /);
    expectError(() => mergeToTree({ numNodes: 0, nodeOf: tree.nodeOf }, new Float32Array(5)), RangeError, RANGE, /^tree\.numNodes/);
    expectError(() => mergeToTree(null as unknown as PrefixTree, new Float32Array(5)), TypeError, INVALID, /^tree: expected a PrefixTree/);
  });

  it('a node id out of range is an error naming node_of and its first bad position (sync and async)', async () => {
    const bad = { numNodes: 4, nodeOf: Int32Array.from([0, 1, 4, 2, -1]) };
    expectError(() => mergeToTree(bad, new Float32Array(5)), RangeError, RANGE, /^node_of\[2\]: node 4 out of range \[0, 4\)$/);
    await expect(mergeToTreeAsync(bad, new Float32Array(5))).rejects.toMatchObject({ code: RANGE, message: 'node_of[2]: node 4 out of range [0, 4)' });
    expectError(() => addon.mergeToTree(new Float32Array(2), 1, Int32Array.from([0, -3]), 4, false), RangeError, RANGE, /^node_of\[1\]: node -3 out of range \[0, 4\)$/);
    // The first bad position of a large input, whichever thread finds it.
    const big = new Int32Array(1 << 20);
    big[700_000] = 9;
    big[(1 << 20) - 1] = -1;
    expectError(() => addon.mergeToTree(new Float32Array(1 << 20), 1, big, 9, false), RangeError, RANGE, /^node_of\[700000\]: node 9 out of range \[0, 9\)$/);
  });

  it('the raw addon re-checks lengths', () => {
    // mergeToTree(values, channels, nodeOf, numNodes, async)
    expectError(() => addon.mergeToTree(new Float32Array(3), 1, Int32Array.from([0, 1]), 4, false), RangeError, RANGE, /^values: expected length 2, got 3$/);
    expectError(() => addon.mergeToTree(new Float32Array(2), 1, Int32Array.from([0, 1]), 0, false), RangeError, RANGE, /^numNodes: expected an integer/);
    expectError(() => addon.mergeToTree(new Float32Array(2), 0, Int32Array.from([0, 1]), 4, false), RangeError, RANGE, /^channels/);
    expectError(() => addon.mergeToTree(new Float32Array(2), 1, [0, 1], 4, false), TypeError, INVALID, /^nodeOf: expected a Int32Array$/);
  });
});
