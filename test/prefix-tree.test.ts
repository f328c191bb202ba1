// Prefix-tree build (contract 1) against the plain reference in test/reference/prefixTree.ts, on fresh
// random batches and edge-case shapes; structural invariants checked from their definitions; every
// bad input must throw (TypeError / RangeError with a code and a message naming the argument),
// through the TS API and straight into the raw addon.
import { describe, expect, it } from 'vitest';

import { expectError } from './helpers/errors.js';

import { addon } from '../lib/native.js';
import {
  buildPrefixTree,
  buildPrefixTreeAsync,
  packSamples,
  validateTree,
  type PrefixTree,
  type Sample,
} from '../lib/prefixTree.js';
import { randomSamples, referencePrefixTree, referenceTreeIsValid, seededRandom, testSeed } from './reference/prefixTree.js';

const seed = testSeed();
const rand = seededRandom(seed);

function expectSame(actual: ArrayLike<number>, expected: ArrayLike<number>, name: string): void {
  expect(actual.length, `${name}.length`).toBe(expected.length);
  for (let i = 0; i < expected.length; i++)
    if (actual[i] !== expected[i]) expect.fail(`${name}[${i}]: got ${actual[i]}, expected ${expected[i]}`);
}

// Every array of the tree against the reference built from the same samples.
function expectMatchesReference(tree: PrefixTree, samples: Sample[]): void {
  const ref = referencePrefixTree(samples);
  expect(tree.numNodes).toBe(ref.token.length);
  expect(tree.numSegments).toBe(ref.segStart.length);
  expect(tree.numTerms).toBe(ref.terms.node.length);
  expect(tree.numSamples).toBe(samples.length);
  expect(tree.maxDepth).toBe(ref.maxDepth);
  for (const key of ['token', 'parent', 'position', 'subtreeEnd', 'segmentOf', 'segStart', 'segLen', 'segParent', 'offsets', 'nodeOf'] as const)
    expectSame(tree[key], ref[key], key);
  for (const key of ['node', 'target', 'oldLogprob', 'advantage', 'sample', 'position', 'version'] as const)
    expectSame(tree.terms[key], ref.terms[key], `terms.${key}`);
  expect(tree.stats).toEqual({ inputTokens: ref.nodeOf.length, treeTokens: ref.token.length, ratio: ref.nodeOf.length / ref.token.length });
}

// Invariants straight from the contract, independent of the reference.
function expectInvariants(tree: PrefixTree, samples: Sample[], allPairs = true): void {
  const { parent, subtreeEnd, numNodes: N } = tree;
  const children = new Array<number>(N).fill(0);
  for (let q = 0; q < N; q++) if (parent[q] >= 0) children[parent[q]]++;
  // Pre-order: a is an ancestor-or-self of q iff a <= q < subtreeEnd[a] (walking parents decides).
  if (allPairs) {
    for (let q = 0; q < N; q++) {
      const ancestors = new Set<number>();
      for (let a = q; a !== -1; a = parent[a]) ancestors.add(a);
      for (let a = 0; a < N; a++)
        if (ancestors.has(a) !== (a <= q && q < subtreeEnd[a])) expect.fail(`pre-order property fails for a=${a}, q=${q}`);
    }
  }
  // Segments tile [0, N) in order; inside one, each node is the only child of the previous one.
  let next = 0;
  for (let g = 0; g < tree.numSegments; g++) {
    const start = tree.segStart[g];
    expect(start, `segStart[${g}]`).toBe(next);
    expect(tree.segLen[g]).toBeGreaterThanOrEqual(1);
    const p = parent[start];
    expect(p === -1 || children[p] > 1, `segment ${g} starts at a root or below a branch`).toBe(true);
    expect(tree.segParent[g]).toBe(p === -1 ? -1 : tree.segmentOf[p]);
    for (let k = start; k < start + tree.segLen[g]; k++) {
      if (tree.segmentOf[k] !== g) expect.fail(`segmentOf[${k}]: got ${tree.segmentOf[k]}, expected ${g}`);
      if (k > start && !(parent[k] === k - 1 && children[k - 1] === 1)) expect.fail(`node ${k} does not continue segment ${g}`);
    }
    next = start + tree.segLen[g];
    const last = next - 1;
    expect(children[last] !== 1, `segment ${g} is maximal`).toBe(true);
  }
  expect(next).toBe(N);
  // nodeOf: token and position of each packed position, and consecutive positions are parent-child.
  samples.forEach((sample, s) => {
    const nodes = tree.nodeOfSample(s);
    expect(nodes.length).toBe(sample.tokens.length);
    for (let t = 0; t < nodes.length; t++) {
      const n = nodes[t];
      if (tree.token[n] !== sample.tokens[t] || tree.position[n] !== t || parent[n] !== (t === 0 ? -1 : nodes[t - 1]))
        expect.fail(`nodeOf of sample ${s}, position ${t}: node ${n} does not hold that token at that place`);
    }
  });
  validateTree(parent, subtreeEnd);
}

function sampleOf(tokens: number[], trainable?: number[], extra: Partial<Sample> = {}): Sample {
  return { tokens: Int32Array.from(tokens), trainable: trainable && Uint8Array.from(trainable), ...extra };
}

describe(`prefix tree build (seed ${seed}; replay with FORGE_TEST_SEED=${seed})`, () => {
  it('matches the reference on random batches with branching and duplicates', () => {
    for (let round = 0; round < 60; round++) {
      const vocabSize = [2, 3, 7, 50, 32000][Math.floor(rand() * 5)];
      const samples = randomSamples(rand, { vocabSize, numSamples: 1 + Math.floor(rand() * 24), maxLength: 1 + Math.floor(rand() * 40) });
      const tree = round % 2 ? buildPrefixTree(samples, { vocabSize }) : buildPrefixTree(packSamples(samples));
      expectMatchesReference(tree, samples);
      expectInvariants(tree, samples);
    }
  });

  it('matches the reference on larger batches (parallel paths)', () => {
    for (let round = 0; round < 3; round++) {
      const samples = randomSamples(rand, { vocabSize: 5 + round * 1000, numSamples: 300, maxLength: 800 });
      const tree = buildPrefixTree(samples);
      expectMatchesReference(tree, samples);
      expectInvariants(tree, samples, false);
    }
  });

  it('one sample of one token', () => {
    const samples = [sampleOf([7], [0])];
    const tree = buildPrefixTree(samples);
    expectMatchesReference(tree, samples);
    expect([tree.numNodes, tree.numSegments, tree.numTerms, tree.maxDepth]).toEqual([1, 1, 0, 1]);
    expectSame(tree.subtreeEnd, [1], 'subtreeEnd');
  });

  it('a single long chain (depth 300k, no recursion)', () => {
    const L = 300_000;
    const tokens = Int32Array.from({ length: L }, () => Math.floor(rand() * 1000));
    const trainable = Uint8Array.from({ length: L }, (_, t) => (t > 0 ? 1 : 0));
    const tree = buildPrefixTree([{ tokens, trainable, advantage: 0.5 }]);
    expect([tree.numNodes, tree.numSegments, tree.numTerms, tree.maxDepth]).toEqual([L, 1, L - 1, L]);
    for (let i = 0; i < L; i++)
      if (tree.parent[i] !== i - 1 || tree.subtreeEnd[i] !== L || tree.token[i] !== tokens[i] || tree.nodeOf[i] !== i)
        expect.fail(`chain node ${i}`);
    expect(tree.terms.node[L - 2]).toBe(L - 2);
    validateTree(tree.parent, tree.subtreeEnd);
  });

  it('two deep branches off a 100k shared prefix', () => {
    const prefix = Array.from({ length: 100_000 }, (_, i) => i % 97);
    const samples = [sampleOf([...prefix, 1, 2, 3]), sampleOf([...prefix, 4, 5]), sampleOf([...prefix, 1, 9])];
    const tree = buildPrefixTree(samples);
    expect(tree.numNodes).toBe(100_000 + 3 + 2 + 1);
    expect(tree.numSegments).toBe(5);  // prefix, [1], [2,3], [9], [4,5]
    expectSame(tree.segLen, [100_000, 1, 2, 1, 2], 'segLen');
    expectInvariants(tree, samples, false);
  });

  it('a star: many samples sharing only the first token', () => {
    const S = 200;
    const samples = Array.from({ length: S }, (_, s) => sampleOf([5, 100 + s, s, s + 1], [0, 1, 0, 1]));
    const tree = buildPrefixTree(samples);
    expectMatchesReference(tree, samples);
    expectInvariants(tree, samples);
    expect(tree.numNodes).toBe(1 + 3 * S);
    expect(tree.numSegments).toBe(1 + S);
    expect(tree.subtreeEnd[0]).toBe(tree.numNodes);
    expectSame(tree.terms.node.slice(0, 4), [0, 2, 0, 5], 'terms.node');
  });

  it('fully duplicated samples share every node and keep one term per sample', () => {
    const base = [3, 1, 4, 1, 5, 9, 2, 6];
    const mask = [0, 0, 1, 1, 0, 1, 1, 1];
    const samples = Array.from({ length: 6 }, (_, s) => sampleOf(base, mask, { advantage: s - 2.5, version: s }));
    const tree = buildPrefixTree(samples);
    expectMatchesReference(tree, samples);
    expect(tree.numNodes).toBe(base.length);
    expect(tree.numTerms).toBe(6 * 5);
    expect(tree.stats.ratio).toBe(6);
    for (let s = 1; s < 6; s++) expectSame(tree.nodeOfSample(s), tree.nodeOfSample(0), `nodeOfSample(${s})`);
    expectSame(tree.terms.advantage, samples.flatMap((x) => Array(5).fill(x.advantage)), 'terms.advantage');
  });

  it('empty trainable masks give no terms', () => {
    const samples = [sampleOf([1, 2, 3], [0, 0, 0]), sampleOf([1, 2, 4]), sampleOf([1, 5], [0, 0])];
    const tree = buildPrefixTree(samples);
    expectMatchesReference(tree, samples);
    expect(tree.numTerms).toBe(0);
    expect(tree.terms.node.length).toBe(0);
  });

  it('several roots (samples with different first tokens)', () => {
    const samples = [sampleOf([1, 2, 3], [0, 1, 1]), sampleOf([2, 2, 3], [0, 1, 1]), sampleOf([1, 2, 4], [0, 0, 1]), sampleOf([3])];
    const tree = buildPrefixTree(samples);
    expectMatchesReference(tree, samples);
    expectInvariants(tree, samples);
    expectSame(tree.parent, [-1, 0, 1, 1, -1, 4, 5, -1], 'parent');
    expectSame(tree.segParent, [-1, 0, 0, -1, -1], 'segParent');
  });

  it('the term of position t carries the per-token advantage and old log-prob of position t', () => {
    const advantage = Float32Array.from([10, 11, 12, 13, 14]);
    const oldLogprobs = Float32Array.from([-0, -1, -2, -3, -4]);
    const tree = buildPrefixTree([{ tokens: Int32Array.from([9, 8, 7, 6, 5]), trainable: Uint8Array.from([0, 1, 0, 1, 1]), advantage, oldLogprobs, version: 3 }]);
    expectSame(tree.terms.position, [1, 3, 4], 'terms.position');
    expectSame(tree.terms.node, [0, 2, 3], 'terms.node');
    expectSame(tree.terms.target, [8, 6, 5], 'terms.target');
    expectSame(tree.terms.advantage, [11, 13, 14], 'terms.advantage');
    expectSame(tree.terms.oldLogprob, [-1, -3, -4], 'terms.oldLogprob');
    expectSame(tree.terms.version, [3, 3, 3], 'terms.version');
  });

  it('packed input, Sample[] input and the async build agree', async () => {
    const samples = randomSamples(rand, { vocabSize: 11, numSamples: 40, maxLength: 30 });
    const a = buildPrefixTree(samples);
    const b = buildPrefixTree(packSamples(samples));
    const c = await buildPrefixTreeAsync(samples, { vocabSize: 11 });
    for (const other of [b, c]) {
      for (const key of ['token', 'parent', 'subtreeEnd', 'segStart', 'nodeOf', 'offsets'] as const) expectSame(other[key], a[key], key);
      for (const key of Object.keys(a.terms) as (keyof PrefixTree['terms'])[]) expectSame(other.terms[key], a.terms[key], `terms.${key}`);
    }
  });

  it('is plain data: a structured clone keeps every array', () => {
    const samples = randomSamples(rand, { vocabSize: 4, numSamples: 10, maxLength: 10 });
    const tree = buildPrefixTree(samples);
    const clone = structuredClone(tree) as PrefixTree;
    expectSame(clone.parent, tree.parent, 'parent');
    expectSame(clone.terms.node, tree.terms.node, 'terms.node');
    expect(clone.stats).toEqual(tree.stats);
    expect(tree.nodeOfSample(1).buffer).toBe(tree.nodeOf.buffer); // zero-copy
  });
});

// ---- bad input ---------------------------------------------------------------------------------

const tok = (...xs: number[]) => Int32Array.from(xs);
const INVALID = 'FORGE_ERR_INVALID_ARGUMENT', RANGE = 'FORGE_ERR_OUT_OF_RANGE', NONFINITE = 'FORGE_ERR_NON_FINITE';

describe('prefix tree build: bad input', () => {
  const ok = (): Sample[] => [sampleOf([1, 2, 3], [0, 1, 1]), sampleOf([1, 2, 4], [0, 0, 1])];
  const cases: [string, () => unknown, typeof TypeError, string, RegExp][] = [
    ['tokens as Array', () => buildPrefixTree([{ tokens: [1, 2] as unknown as Int32Array }]), TypeError, INVALID, /^samples\[0\]\.tokens: expected a Int32Array, got Array$/],
    ['tokens as Float32Array', () => buildPrefixTree([...ok(), { tokens: new Float32Array(2) as unknown as Int32Array }]), TypeError, INVALID, /^samples\[2\]\.tokens: expected a Int32Array, got Float32Array/],
    ['trainable as Int32Array', () => buildPrefixTree([{ tokens: tok(1, 2), trainable: new Int32Array(2) as unknown as Uint8Array }]), TypeError, INVALID, /samples\[0\]\.trainable: expected a Uint8Array/],
    ['sample not an object', () => buildPrefixTree([...ok(), null as unknown as Sample]), TypeError, INVALID, /samples\[2\]/],
    ['samples not an array', () => buildPrefixTree(42 as unknown as Sample[]), TypeError, INVALID, /samples/],
    ['no samples', () => buildPrefixTree([]), RangeError, INVALID, /samples: expected at least one sample/],
    ['empty sample', () => buildPrefixTree([...ok(), { tokens: tok() }]), RangeError, INVALID, /samples\[2\]\.tokens: expected at least 1 token/],
    ['trainable length', () => buildPrefixTree([{ tokens: tok(1, 2, 3), trainable: new Uint8Array(2) }]), RangeError, RANGE, /samples\[0\]\.trainable: expected 3 elements, got 2/],
    ['advantage length', () => buildPrefixTree([{ tokens: tok(1, 2, 3), advantage: new Float32Array(4) }]), RangeError, RANGE, /samples\[0\]\.advantage: expected 3 elements/],
    ['token out of vocabulary', () => buildPrefixTree([...ok(), sampleOf([1, 2, 4096])], { vocabSize: 4096 }), RangeError, RANGE, /^samples\[2\]\.tokens\[2\]: token id 4096 out of range \[0, 4096\)$/],
    ['negative token', () => buildPrefixTree([sampleOf([1, -3])]), RangeError, RANGE, /samples\[0\]\.tokens\[1\]: token id -3/],
    ['trainable at position 0', () => buildPrefixTree([...ok(), sampleOf([1, 2], [1, 0])]), RangeError, INVALID, /^samples\[2\]\.trainable\[0\]: must be 0/],
    ['trainable not 0/1', () => buildPrefixTree([sampleOf([1, 2], [0, 2])]), RangeError, INVALID, /samples\[0\]\.trainable\[1\]: expected 0 or 1, got 2/],
    ['NaN old logprob', () => buildPrefixTree([sampleOf([1, 2, 3], [0, 0, 1], { oldLogprobs: Float32Array.from([0, 0, NaN]) })]), RangeError, NONFINITE, /samples\[0\]\.oldLogprobs\[2\]: expected a finite log-probability .* got NaN/],
    ['infinite per-token advantage', () => buildPrefixTree([sampleOf([1, 2], [0, 1], { advantage: Float32Array.from([0, Infinity]) })]), RangeError, NONFINITE, /samples\[0\]\.advantage\[1\]/],
    ['NaN scalar advantage', () => buildPrefixTree([...ok(), sampleOf([1, 2], [0, 1], { advantage: NaN })]), RangeError, NONFINITE, /samples\[2\]\.advantage: expected a finite advantage/],
    ['version not an integer', () => buildPrefixTree([sampleOf([1], undefined, { version: 1.5 })]), RangeError, RANGE, /samples\[0\]\.version/],
    ['vocabSize not an integer', () => buildPrefixTree(ok(), { vocabSize: 0.5 }), RangeError, RANGE, /options\.vocabSize/],
    ['packed: offsets as Array', () => buildPrefixTree({ tokens: tok(1), offsets: [0, 1] as unknown as Int32Array }), TypeError, INVALID, /^offsets: expected a Int32Array, got Array$/],
    ['packed: offsets[0] != 0', () => buildPrefixTree({ tokens: tok(1, 2), offsets: tok(1, 2) }), RangeError, INVALID, /offsets\[0\]: expected 0/],
    ['packed: empty sample', () => buildPrefixTree({ tokens: tok(1, 2), offsets: tok(0, 2, 2) }), RangeError, INVALID, /offsets\[2\]: sample 1 is empty/],
    ['packed: offsets past the end', () => buildPrefixTree({ tokens: tok(1, 2), offsets: tok(0, 1, 5) }), RangeError, RANGE, /offsets\[2\]: expected tokens.length = 2, got 5/],
    ['packed: versions length', () => buildPrefixTree({ tokens: tok(1, 2), offsets: tok(0, 1, 2), versions: tok(1) }), RangeError, RANGE, /versions: expected 2 elements, got 1/],
    ['packed: token out of vocabulary', () => buildPrefixTree({ tokens: tok(1, 2, 3, 9), offsets: tok(0, 2, 4) }, { vocabSize: 5 }), RangeError, RANGE, /^tokens\[3\] \(sample 1, position 1\): token id 9 out of range \[0, 5\)$/],
    ['packed: trainable at position 0', () => buildPrefixTree({ tokens: tok(1, 2, 3, 9), offsets: tok(0, 2, 4), trainable: Uint8Array.from([0, 1, 1, 0]) }), RangeError, INVALID, /^trainable\[2\] \(sample 1, position 0\): must be 0/],
    ['packed: NaN sample advantage', () => buildPrefixTree({ tokens: tok(1, 2, 3, 9), offsets: tok(0, 2, 4), trainable: Uint8Array.from([0, 1, 0, 1]), sampleAdvantages: Float32Array.from([1, NaN]) }), RangeError, NONFINITE, /^sampleAdvantages\[1\]/],
  ];
  for (const [name, fn, type, code, message] of cases) it(name, () => expectError(fn, type, code, message));

  it('async build rejects the same way', async () => {
    await expect(buildPrefixTreeAsync([sampleOf([1, 2], [1, 1])])).rejects.toThrow(/samples\[0\]\.trainable\[0\]/);
  });

  it('a NaN advantage at a non-trainable position is fine', () => {
    const tree = buildPrefixTree([sampleOf([1, 2, 3], [0, 1, 0], { advantage: Float32Array.from([NaN, 1, NaN]), oldLogprobs: Float32Array.from([NaN, -1, 5]) })]);
    expectSame(tree.terms.advantage, [1], 'terms.advantage');
  });

  it('accepts a slightly positive old log-prob (an upstream rounding) and keeps it as given', () => {
    const tree = buildPrefixTree([sampleOf([1, 2, 3], [0, 1, 1], { oldLogprobs: Float32Array.from([0, 1e-6, -0.25]) })]);
    expectSame(tree.terms.oldLogprob, [Math.fround(1e-6), -0.25], 'terms.oldLogprob');
  });
});

describe('prefix tree build: the raw addon re-checks everything', () => {
  // prefixTreeBuild(tokens, offsets, trainable, oldLogprobs, advantages, sampleAdvantages, versions, vocabSize, async)
  const raw = (over: Partial<Record<'tokens' | 'offsets' | 'trainable' | 'old' | 'adv' | 'sadv' | 'versions' | 'vocab', unknown>>) => () =>
    addon.prefixTreeBuild(
      'tokens' in over ? over.tokens : tok(1, 2, 3, 1, 2, 4),
      'offsets' in over ? over.offsets : tok(0, 3, 6),
      over.trainable ?? null, over.old ?? null, over.adv ?? null, over.sadv ?? null, over.versions ?? null,
      over.vocab ?? 0, false);
  const cases: [string, () => unknown, typeof TypeError, string, RegExp][] = [
    ['tokens not a TypedArray', raw({ tokens: [1, 2, 3] }), TypeError, INVALID, /tokens: expected a Int32Array/],
    ['offsets too short', raw({ offsets: tok(0) }), RangeError, RANGE, /offsets: expected S \+ 1 entries/],
    ['offsets end past tokens', raw({ offsets: tok(0, 3, 60) }), RangeError, RANGE, /offsets\[2\]: expected tokens.length = 6/],
    ['offsets decreasing', raw({ offsets: tok(0, 100, 6) }), RangeError, INVALID, /offsets\[2\]: sample 1 is empty or offsets decrease/],
    ['offsets negative', raw({ offsets: tok(0, -5, 6) }), RangeError, INVALID, /offsets\[1\]: sample 0 is empty/],
    ['offsets[0] != 0', raw({ offsets: tok(2, 4, 6) }), RangeError, INVALID, /offsets\[0\]: expected 0, got 2/],
    ['trainable too short', raw({ trainable: new Uint8Array(3) }), RangeError, RANGE, /trainable: expected length 6, got 3/],
    ['old logprobs wrong type', raw({ old: new Float64Array(6) }), TypeError, INVALID, /oldLogprobs: expected a Float32Array/],
    ['sample advantages too long', raw({ sadv: new Float32Array(3) }), RangeError, RANGE, /sampleAdvantages: expected length 2/],
    ['versions too short', raw({ versions: tok(1) }), RangeError, RANGE, /versions: expected length 2/],
    ['vocabSize not a number', raw({ vocab: 'x' }), TypeError, INVALID, /vocabSize: expected an integer/],
    ['token out of vocabulary', raw({ vocab: 4 }), RangeError, RANGE, /^tokens\[5\] \(sample 1, position 2\): token id 4 out of range \[0, 4\)$/],
    ['negative token', raw({ tokens: tok(1, 2, 3, 1, -2, 4) }), RangeError, RANGE, /^tokens\[4\] \(sample 1, position 1\): token id -2/],
    ['trainable at position 0', raw({ trainable: Uint8Array.from([0, 0, 1, 1, 0, 0]) }), RangeError, INVALID, /^trainable\[3\] \(sample 1, position 0\): must be 0/],
    ['trainable value 3', raw({ trainable: Uint8Array.from([0, 3, 0, 0, 0, 0]) }), RangeError, INVALID, /^trainable\[1\] \(sample 0, position 1\): expected 0 or 1, got 3/],
    ['NaN old logprob', raw({ trainable: Uint8Array.from([0, 1, 0, 0, 1, 0]), old: Float32Array.from([0, 0, 0, 0, NaN, 0]) }), RangeError, NONFINITE, /^old_logprobs\[4\] \(sample 1, position 1\)/],
    ['infinite advantage', raw({ trainable: Uint8Array.from([0, 0, 0, 0, 0, 1]), adv: Float32Array.from([0, 0, 0, 0, 0, -Infinity]) }), RangeError, NONFINITE, /^advantages\[5\] \(sample 1, position 2\)/],
    ['NaN sample advantage', raw({ trainable: Uint8Array.from([0, 0, 0, 0, 0, 1]), sadv: Float32Array.from([0, NaN]) }), RangeError, NONFINITE, /^sample_advantages\[1\]/],
  ];
  for (const [name, fn, type, code, message] of cases) it(name, () => expectError(fn, type, code, message));

  it('reports the first bad position of a large input, whatever thread finds it', () => {
    const T = 1 << 20;
    const tokens = new Int32Array(T);
    tokens[T - 10] = 99;
    tokens[700_001] = 50;
    expectError(() => addon.prefixTreeBuild(tokens, tok(0, 500_000, T), null, null, null, null, null, 10, false), RangeError, RANGE, /^tokens\[700001\] \(sample 1, position 200001\): token id 50/);
  });

  it('rejects asynchronously with the native message', async () => {
    const promise = addon.prefixTreeBuild(tok(1, 2, 3), tok(0, 3), null, null, null, null, null, 2, true);
    await expect(promise).rejects.toMatchObject({ code: RANGE, message: expect.stringMatching(/tokens\[1\] \(sample 0, position 1\): token id 2/) });
  });
});

// ---- forge_tree_validate -------------------------------------------------------------------------

describe(`validateTree (seed ${seed})`, () => {
  it('accepts every built tree and agrees with the reference on random corruptions', () => {
    let rejected = 0;
    for (let round = 0; round < 150; round++) {
      const samples = randomSamples(rand, { vocabSize: 3, numSamples: 1 + Math.floor(rand() * 8), maxLength: 12 });
      const tree = buildPrefixTree(samples);
      validateTree(tree.parent, tree.subtreeEnd);
      const parent = tree.parent.slice(), subtreeEnd = tree.subtreeEnd.slice();
      const N = parent.length;
      const i = Math.floor(rand() * N);
      if (rand() < 0.5) parent[i] = Math.floor(rand() * (N + 2)) - 2;
      else subtreeEnd[i] = Math.floor(rand() * (N + 2));
      const valid = referenceTreeIsValid(parent, subtreeEnd);
      let threw = false;
      try {
        validateTree(parent, subtreeEnd);
      } catch (e) {
        threw = true;
        expect(e).toBeInstanceOf(RangeError);
        expect([RANGE, INVALID]).toContain((e as { code: string }).code);
      }
      if (threw === valid) expect.fail(`round ${round}: validateTree ${threw ? 'rejected' : 'accepted'} parent=[${parent}] subtreeEnd=[${subtreeEnd}]`);
      if (threw) rejected++;
    }
    expect(rejected).toBeGreaterThan(50);
  });

  const bad: [string, number[], number[], string, RegExp][] = [
    ['parent not before the node', [-1, 1], [2, 2], RANGE, /^parent\[1\]: 1 out of range \[-1, 1\)$/],
    ['parent below -1', [-1, -2], [1, 2], RANGE, /^parent\[1\]: -2 out of range/],
    ['parent not on the root path (not pre-order)', [-1, 0, 0, 1], [4, 2, 3, 4], INVALID, /^parent\[3\]: node 1 is not on the root path of node 2/],
    ['subtree end too small', [-1, 0, 1], [2, 3, 3], INVALID, /^subtree_end\[0\]: expected 3/],
    ['subtree end too large', [-1, 0, -1], [2, 3, 3], INVALID, /^subtree_end\[1\]: expected 2/],
    ['last subtree open', [-1, 0, 0], [3, 2, 2], INVALID, /^subtree_end\[2\]: expected 3/],
  ];
  for (const [name, parent, subtreeEnd, code, message] of bad)
    it(name, () => expectError(() => validateTree(Int32Array.from(parent), Int32Array.from(subtreeEnd)), RangeError, code, message));

  it('checks types and lengths', () => {
    expectError(() => validateTree([-1] as unknown as Int32Array, tok(1)), TypeError, INVALID, /^parent: expected a Int32Array, got Array$/);
    expectError(() => validateTree(tok(-1, 0), tok(2)), RangeError, RANGE, /^subtreeEnd: expected 2 elements, got 1$/);
    expectError(() => validateTree(tok(), tok()), RangeError, INVALID, /parent: expected at least 1 node/);
    expectError(() => addon.treeValidate(tok(), tok(), false), RangeError, INVALID, /num_nodes/);
    expectError(() => addon.treeValidate(tok(-1, 0), tok(2), false), RangeError, RANGE, /subtreeEnd: expected length 2/);
    expectError(() => addon.treeValidate(tok(-1), new Float32Array(1), false), TypeError, INVALID, /subtreeEnd: expected a Int32Array/);
  });

  it('accepts a forest and runs async', async () => {
    await expect(addon.treeValidate(tok(-1, 0, -1, 2, 2), tok(2, 2, 5, 4, 5), true)).resolves.toBe(true);
    await expect(addon.treeValidate(tok(-1, 0, -1, 2, 2), tok(2, 2, 5, 5, 5), true)).rejects.toThrow(/subtree_end\[3\]: expected 4/);
  });
});
