// Path attention (forge_path_attention, the engine's attention step) against the plain float64
// reference of test/reference/attention.ts (attention over an explicit key list per query), and against
// forge_tree_attention_forward on the same tree (pool slots = tree nodes, each query's path = its root
// path). Fresh random inputs every run; failures print the seed (FORGE_TEST_SEED=<seed> replays).
//
// Tolerance (float32 kernel vs float64 reference): |err| <= 1e-5 + 1e-4 |ref|, as tree attention.
import { describe, expect, it } from 'vitest';

import { treeAttention } from '../lib/attention.js';
import { pathAttention, pathAttentionAsync, type PathAttentionInput } from '../lib/engine/kernels.js';
import { seededRun } from './helpers/random.js';
import { bushy, chain, expectClose, randomArray } from './helpers/trees.js';
import { ancestors, referenceAttention } from './reference/attention.js';

const run = seededRun();
const TOL = { atol: 1e-5, rtol: 1e-4 };

interface Shape {
  hq: number;
  hkv: number;
  d: number;
}

/** Random paths: `groups` sequences, each a random slot list whose queries take prefixes of it. */
function randomPaths(rng: () => number, slots: number, groups: number, maxLen: number, queriesPer: number) {
  const paths: number[] = [], offset: number[] = [], len: number[] = [];
  for (let g = 0; g < groups; g++) {
    const L = 1 + Math.floor(rng() * maxLen);
    const start = paths.length;
    for (let i = 0; i < L; i++) paths.push(Math.floor(rng() * slots)); // duplicates allowed
    const nq = Math.min(L, 1 + Math.floor(rng() * queriesPer));
    for (let j = 0; j < nq; j++) {
      offset.push(start);
      len.push(L - nq + 1 + j); // the last queries of the list (a prefill chunk at the end of a context)
    }
  }
  return { paths: Int32Array.from(paths), pathOffset: Int32Array.from(offset), pathLen: Int32Array.from(len) };
}

function reference(input: PathAttentionInput, s: Shape, scale: number) {
  const m = input.pathLen.length;
  const keysOf = (i: number) => Array.from(input.paths.subarray(input.pathOffset[i], input.pathOffset[i] + input.pathLen[i]));
  return referenceAttention(input.q, input.k, input.v, new Int32Array(m), { ...s, scale }, keysOf);
}

describe('path attention vs the float64 reference', () => {
  const cases: (Shape & { name: string; slots: number; groups: number; maxLen: number; per: number; amp?: number })[] = [
    { name: 'decode: one query per path', hq: 4, hkv: 2, d: 32, slots: 300, groups: 12, maxLen: 150, per: 1 },
    { name: 'prefill chunks sharing a path', hq: 4, hkv: 4, d: 16, slots: 200, groups: 3, maxLen: 120, per: 40 },
    { name: 'odd head dim, MQA', hq: 6, hkv: 1, d: 7, slots: 50, groups: 5, maxLen: 70, per: 20 },
    { name: 'head dim 1', hq: 2, hkv: 2, d: 1, slots: 10, groups: 4, maxLen: 9, per: 3 },
    { name: 'head dim 33, long paths', hq: 2, hkv: 1, d: 33, slots: 400, groups: 2, maxLen: 260, per: 5 },
    { name: 'large scores', hq: 2, hkv: 1, d: 16, slots: 64, groups: 4, maxLen: 64, per: 8, amp: 6 },
  ];
  for (const c of cases)
    it(c.name, () => {
      const rng = run.rng();
      const p = randomPaths(rng, c.slots, c.groups, c.maxLen, c.per);
      const m = p.pathLen.length, amp = c.amp ?? 1;
      const input: PathAttentionInput = {
        q: randomArray(m * c.hq * c.d, rng, amp),
        k: randomArray(c.slots * c.hkv * c.d, rng, amp),
        v: randomArray(c.slots * c.hkv * c.d, rng),
        numSlots: c.slots,
        ...p,
      };
      const opts = { numHeads: c.hq, numKvHeads: c.hkv, headDim: c.d };
      const got = pathAttention(input, opts);
      const ref = reference(input, c, 1 / Math.sqrt(c.d));
      expectClose(`${c.name} o`, got.o, ref.o, run.seed, TOL.atol, TOL.rtol);
      expectClose(`${c.name} lse`, got.lse, ref.lse, run.seed, TOL.atol, TOL.rtol);
    });

  it('an empty path gives o = 0, lse = -inf; an explicit scale is used', () => {
    const rng = run.rng();
    const s = { hq: 2, hkv: 1, d: 8 };
    const input: PathAttentionInput = {
      q: randomArray(2 * 2 * 8, rng),
      k: randomArray(5 * 8, rng),
      v: randomArray(5 * 8, rng),
      numSlots: 5,
      paths: Int32Array.from([4, 0, 2]),
      pathOffset: Int32Array.from([0, 1]),
      pathLen: Int32Array.from([0, 2]),
    };
    const got = pathAttention(input, { numHeads: 2, numKvHeads: 1, headDim: 8, scale: 0.7 });
    expect(Array.from(got.o.subarray(0, 16))).toEqual(new Array(16).fill(0));
    expect(got.lse[0]).toBe(-Infinity);
    expect(got.lse[1]).toBe(-Infinity);
    const ref = reference(input, s, 0.7);
    expectClose('o', got.o.subarray(16), ref.o.subarray(16), run.seed, TOL.atol, TOL.rtol);
    expectClose('lse', got.lse.subarray(2), ref.lse.subarray(2), run.seed, TOL.atol, TOL.rtol);
  });
});

describe('path attention vs tree attention on the same tree', () => {
  for (const [name, make] of [
    ['a chain (causal attention)', (n: number) => chain(n)],
    ['a bushy tree', (n: number, rng: () => number) => bushy(n, rng, { branch: 0.2 })],
  ] as const)
    it(name, () => {
      const rng = run.rng();
      const n = 180, hq = 4, hkv = 2, d = 32;
      const tree = make(n, rng);
      const q = randomArray(n * hq * d, rng), k = randomArray(n * hkv * d, rng), v = randomArray(n * hkv * d, rng);
      const tree_out = treeAttention(q, k, v, tree, { numHeads: hq, numKvHeads: hkv, headDim: d });
      // One path array per leaf (root first); each node's query takes the prefix of a path through it.
      const paths: number[] = [], offset = new Int32Array(n), len = new Int32Array(n);
      for (let leaf = n - 1; leaf >= 0; leaf--) {
        if (len[leaf] !== 0) continue; // already covered by a deeper path
        const root = ancestors(tree.parent, leaf).reverse();
        const start = paths.length;
        paths.push(...root);
        root.forEach((node, depth) => {
          if (len[node] === 0) {
            offset[node] = start;
            len[node] = depth + 1;
          }
        });
      }
      const got = pathAttention(
        { q, k, v, numSlots: n, paths: Int32Array.from(paths), pathOffset: offset, pathLen: len },
        { numHeads: hq, numKvHeads: hkv, headDim: d },
      );
      expectClose('o', got.o, tree_out.o, run.seed, TOL.atol, TOL.rtol);
      expectClose('lse', got.lse, tree_out.lse, run.seed, TOL.atol, TOL.rtol);
    });
});

describe('path attention rows are independent of the batch', () => {
  it('a query alone gives bitwise the same row as inside a large batch; async equals sync', async () => {
    const rng = run.rng();
    const hq = 4, hkv = 2, d = 32, slots = 500;
    const p = randomPaths(rng, slots, 30, 400, 16);
    const m = p.pathLen.length;
    const input: PathAttentionInput = {
      q: randomArray(m * hq * d, rng),
      k: randomArray(slots * hkv * d, rng),
      v: randomArray(slots * hkv * d, rng),
      numSlots: slots,
      ...p,
    };
    const opts = { numHeads: hq, numKvHeads: hkv, headDim: d };
    const all = pathAttention(input, opts);
    const asyncOut = await pathAttentionAsync(input, opts);
    expect(asyncOut.o).toEqual(all.o);
    expect(asyncOut.lse).toEqual(all.lse);
    for (const i of [0, Math.floor(m / 2), m - 1]) {
      const alone = pathAttention(
        {
          ...input,
          q: input.q.slice(i * hq * d, (i + 1) * hq * d),
          pathOffset: Int32Array.of(input.pathOffset[i]),
          pathLen: Int32Array.of(input.pathLen[i]),
        },
        opts,
      );
      expect(alone.o).toEqual(all.o.subarray(i * hq * d, (i + 1) * hq * d));
      expect(alone.lse).toEqual(all.lse.subarray(i * hq, (i + 1) * hq));
    }
  });
});

describe('path attention rejects bad input with a named error', () => {
  const base = (): PathAttentionInput => ({
    q: new Float32Array(2 * 2 * 4),
    k: new Float32Array(3 * 1 * 4),
    v: new Float32Array(3 * 1 * 4),
    numSlots: 3,
    paths: Int32Array.from([0, 1, 2]),
    pathOffset: Int32Array.from([0, 0]),
    pathLen: Int32Array.from([2, 3]),
  });
  const opts = { numHeads: 2, numKvHeads: 1, headDim: 4 };
  const bad: [string, (i: PathAttentionInput) => void, RegExp, string][] = [
    ['slot out of range', (i) => (i.paths[1] = 3), /paths\[1\]: slot 3 out of range \[0, 3\)/, 'FORGE_ERR_OUT_OF_RANGE'],
    ['negative slot', (i) => (i.paths[2] = -1), /paths\[2\]: slot -1/, 'FORGE_ERR_OUT_OF_RANGE'],
    ['path past the end', (i) => (i.pathLen[1] = 4), /path_len\[1\]: 4 runs past the 3 path entries/, 'FORGE_ERR_OUT_OF_RANGE'],
    ['negative offset', (i) => (i.pathOffset[0] = -1), /path_offset\[0\]: -1 out of range/, 'FORGE_ERR_OUT_OF_RANGE'],
    ['negative length', (i) => (i.pathLen[0] = -2), /path_len\[0\]: -2/, 'FORGE_ERR_OUT_OF_RANGE'],
    ['short q', (i) => (i.q = new Float32Array(3)), /input.q: expected 16 elements, got 3/, 'FORGE_ERR_OUT_OF_RANGE'],
    ['k of the wrong type', (i) => ((i as { k: unknown }).k = new Float64Array(12)), /input.k: expected a Float32Array/, 'FORGE_ERR_INVALID_ARGUMENT'],
  ];
  for (const [name, edit, message, code] of bad)
    it(name, () => {
      const input = base();
      edit(input);
      let caught: unknown;
      try {
        pathAttention(input, opts);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(Error);
      expect((caught as Error).message).toMatch(message);
      expect((caught as { code: string }).code).toBe(code);
    });

  it('the native layer checks what the wrapper leaves to it (no crash on raw calls)', async () => {
    const { addon } = await import('../lib/native.js');
    const i = base();
    i.paths[0] = 1 << 30;
    expect(() =>
      addon.pathAttention(i.q, i.k, i.v, 3, 2, 1, 4, 0, i.paths, i.pathOffset, i.pathLen, false),
    ).toThrow(/paths\[0\]/);
    await expect(addon.pathAttention(i.q, i.k, i.v, 3, 2, 1, 4, 0, i.paths, i.pathOffset, i.pathLen, true)).rejects.toThrow(
      /paths\[0\]/,
    );
    expect(() => addon.pathAttention(i.q, i.k, i.v, 3, 2, 2, 4, 0, base().paths, i.pathOffset, i.pathLen, false)).toThrow(
      /k: expected length 24/,
    );
  });
});
