// Tree attention (contract 2): the native forward and backward against the plain float64 reference in
// test/reference/attention.ts, on fresh random trees and inputs every run (the seed is in every
// failure message; FORGE_TEST_SEED=<seed> replays it), plus a finite-difference check of the gradients
// and the error paths.
//
// Tolerances (float32 kernel vs float64 reference): forward |err| <= 1e-5 + 1e-4 |ref|;
// gradients |err| <= 5e-5 + 5e-4 |ref| (dK and dV sum over every descendant query); observed
// errors are ~1e-7 (forward) and ~1e-5 at |ref| ~ 10 (dV).
import { describe, expect, it } from 'vitest';

import {
  treeAttention,
  treeAttentionAsync,
  treeAttentionBackward,
  treeAttentionBackwardAsync,
  type AttentionOptions,
} from '../lib/attention.js';
import { addon } from '../lib/native.js';
import {
  bushy,
  chain,
  duplicatedBranches,
  expectClose,
  makeRng,
  randomArray,
  runSeed,
  singletons,
  star,
  type Tree,
} from './helpers/trees.js';
import { referenceAttention, referenceGrads, referenceLoss, type RefShape } from './reference/attention.js';

const seed = runSeed();
const rng = makeRng(seed);
const FWD = { atol: 1e-5, rtol: 1e-4 };
const GRAD = { atol: 5e-5, rtol: 5e-4 };

interface Case {
  name: string;
  tree: () => Tree;
  hq: number;
  hkv: number;
  d: number;
  scale?: number;
  amplitude?: number;
}

function inputs(tree: Tree, c: Case) {
  const n = tree.parent.length, amp = c.amplitude ?? 1;
  return {
    q: randomArray(n * c.hq * c.d, rng, amp),
    k: randomArray(n * c.hkv * c.d, rng, amp),
    v: randomArray(n * c.hkv * c.d, rng),
  };
}

const options = (c: Case): AttentionOptions => ({ numHeads: c.hq, numKvHeads: c.hkv, headDim: c.d, scale: c.scale });
const refShape = (c: Case): RefShape => ({ hq: c.hq, hkv: c.hkv, d: c.d, scale: c.scale ?? 1 / Math.sqrt(c.d) });

const forwardCases: Case[] = [
  { name: 'one token', tree: () => chain(1), hq: 2, hkv: 1, d: 8 },
  { name: 'a chain (causal attention), several tiles', tree: () => chain(200), hq: 4, hkv: 4, d: 16 },
  { name: 'a star', tree: () => star(130), hq: 2, hkv: 2, d: 24 },
  { name: 'separate single nodes', tree: () => singletons(70), hq: 2, hkv: 1, d: 7 },
  { name: 'a bushy tree, D = 5, GQA 2', tree: () => bushy(180, rng), hq: 4, hkv: 2, d: 5 },
  { name: 'a forest, D = 24, GQA 4', tree: () => bushy(170, rng, { forest: true }), hq: 4, hkv: 1, d: 24 },
  { name: 'duplicated branches', tree: () => duplicatedBranches(40, 3, 45, rng), hq: 2, hkv: 1, d: 32 },
  { name: 'N = 300, many branches, GQA 4 with 8 heads, D = 64', tree: () => bushy(300, rng, { branch: 0.3 }), hq: 8, hkv: 2, d: 64 },
  { name: 'a deep chain, D = 64', tree: () => chain(300), hq: 2, hkv: 1, d: 64 },
  { name: 'custom scale with peaked scores', tree: () => bushy(150, rng), hq: 3, hkv: 1, d: 40, scale: 0.9, amplitude: 2 },
  { name: 'D = 130 (not a multiple of the vector width)', tree: () => bushy(90, rng), hq: 2, hkv: 2, d: 130 },
  { name: 'D = 1', tree: () => bushy(100, rng), hq: 3, hkv: 3, d: 1 },
  { name: 'D = 1024 (the largest supported)', tree: () => bushy(24, rng), hq: 2, hkv: 1, d: 1024 },
];

describe('treeAttention forward', () => {
  for (const c of forwardCases) {
    it(`matches the float64 reference: ${c.name}`, () => {
      const tree = c.tree();
      const { q, k, v } = inputs(tree, c);
      const out = treeAttention(q, k, v, tree, options(c));
      const ref = referenceAttention(q, k, v, tree.parent, refShape(c));
      expectClose(`${c.name}: o`, out.o, ref.o, seed, FWD.atol, FWD.rtol);
      expectClose(`${c.name}: lse`, out.lse, ref.lse, seed, FWD.atol, FWD.rtol);
    });
  }

  it('gives identical rows to identical branches', () => {
    const tree = duplicatedBranches(30, 3, 50, rng);
    const c: Case = { name: 'dup', tree: () => tree, hq: 4, hkv: 2, d: 16 };
    const { q, k, v } = inputs(tree, c);
    // Copy branch 0's inputs into the other copies: the same tokens under the same prefix.
    const row = c.hq * c.d, kvRow = c.hkv * c.d;
    for (const start of tree.branchStarts.slice(1)) {
      q.copyWithin(start * row, tree.branchStarts[0] * row, (tree.branchStarts[0] + 50) * row);
      k.copyWithin(start * kvRow, tree.branchStarts[0] * kvRow, (tree.branchStarts[0] + 50) * kvRow);
      v.copyWithin(start * kvRow, tree.branchStarts[0] * kvRow, (tree.branchStarts[0] + 50) * kvRow);
    }
    const out = treeAttention(q, k, v, tree, options(c));
    const first = tree.branchStarts[0];
    for (const start of tree.branchStarts.slice(1)) {
      expectClose('duplicate o', out.o.subarray(start * row, (start + 50) * row), out.o.subarray(first * row, (first + 50) * row), seed, 1e-6, 1e-6);
      expectClose('reference', out.o, referenceAttention(q, k, v, tree.parent, refShape(c)).o, seed, FWD.atol, FWD.rtol);
    }
  });

  it('the async form gives the same result', async () => {
    const c = forwardCases[7];
    const tree = c.tree();
    const { q, k, v } = inputs(tree, c);
    const sync = treeAttention(q, k, v, tree, options(c));
    const [a, b] = await Promise.all([treeAttentionAsync(q, k, v, tree, options(c)), treeAttentionAsync(q, k, v, tree, options(c))]);
    expect(a.o).toEqual(sync.o);
    expect(b.lse).toEqual(sync.lse);
  });

  it('defaults scale to 1/sqrt(D) and numKvHeads to numHeads', () => {
    const tree = bushy(40, rng);
    const c: Case = { name: 'defaults', tree: () => tree, hq: 2, hkv: 2, d: 9 };
    const { q, k, v } = inputs(tree, c);
    const out = treeAttention(q, k, v, tree, { numHeads: 2, headDim: 9 });
    expectClose('o', out.o, referenceAttention(q, k, v, tree.parent, refShape(c)).o, seed, FWD.atol, FWD.rtol);
  });
});

const backwardCases: Case[] = [
  { name: 'one token', tree: () => chain(1), hq: 1, hkv: 1, d: 4 },
  { name: 'a chain over several tiles', tree: () => chain(150), hq: 2, hkv: 1, d: 16 },
  { name: 'a star', tree: () => star(90), hq: 2, hkv: 2, d: 8 },
  { name: 'a bushy tree, D = 5, GQA 2', tree: () => bushy(160, rng), hq: 4, hkv: 2, d: 5 },
  { name: 'a forest, D = 24, GQA 4', tree: () => bushy(140, rng, { forest: true }), hq: 4, hkv: 1, d: 24 },
  { name: 'duplicated branches', tree: () => duplicatedBranches(20, 4, 30, rng), hq: 2, hkv: 1, d: 12 },
  { name: 'N = 300, GQA 4 with 8 heads, D = 64', tree: () => bushy(300, rng, { branch: 0.3 }), hq: 8, hkv: 2, d: 64 },
  { name: 'custom scale with peaked scores', tree: () => bushy(120, rng), hq: 2, hkv: 1, d: 20, scale: 0.8, amplitude: 2 },
  { name: 'D = 1, 32 query heads on 2 kv heads (two head chunks each)', tree: () => bushy(80, rng, { forest: true }), hq: 32, hkv: 2, d: 1 },
];

describe('treeAttentionBackward', () => {
  for (const c of backwardCases) {
    it(`matches the float64 reference gradient: ${c.name}`, () => {
      const tree = c.tree();
      const { q, k, v } = inputs(tree, c);
      const dO = randomArray(q.length, rng);
      const fwd = treeAttention(q, k, v, tree, options(c));
      const g = treeAttentionBackward(q, k, v, tree, fwd, dO, options(c));
      const ref = referenceGrads(q, k, v, tree.parent, dO, refShape(c));
      expectClose(`${c.name}: dq`, g.dq, ref.dq, seed, GRAD.atol, GRAD.rtol);
      expectClose(`${c.name}: dk`, g.dk, ref.dk, seed, GRAD.atol, GRAD.rtol);
      expectClose(`${c.name}: dv`, g.dv, ref.dv, seed, GRAD.atol, GRAD.rtol);
    });
  }

  // Central differences of L = sum(o * W) on the float64 reference, at random coordinates of q, k
  // and v, against the kernel's dq, dk, dv for dO = W. Independent of the reference's own gradient.
  const fdCases: Case[] = [
    { name: 'a bushy tree, GQA 2', tree: () => bushy(70, rng), hq: 4, hkv: 2, d: 6 },
    { name: 'a forest, custom scale', tree: () => bushy(60, rng, { forest: true }), hq: 2, hkv: 1, d: 10, scale: 0.7 },
  ];
  for (const c of fdCases) {
    it(`agrees with finite differences of the reference loss: ${c.name}`, () => {
      const tree = c.tree();
      const { q, k, v } = inputs(tree, c);
      const w = randomArray(q.length, rng);
      const g = treeAttentionBackward(q, k, v, tree, treeAttention(q, k, v, tree, options(c)), w, options(c));
      const x = { q: Float64Array.from(q), k: Float64Array.from(k), v: Float64Array.from(v) };
      const eps = 1e-4;
      for (const [name, grad] of [['q', g.dq], ['k', g.dk], ['v', g.dv]] as const) {
        const t = x[name];
        for (let trial = 0; trial < 6; trial++) {
          const i = Math.floor(rng() * t.length);
          const keep = t[i];
          t[i] = keep + eps;
          const up = referenceLoss(x.q, x.k, x.v, tree.parent, w, refShape(c));
          t[i] = keep - eps;
          const down = referenceLoss(x.q, x.k, x.v, tree.parent, w, refShape(c));
          t[i] = keep;
          const fd = (up - down) / (2 * eps);
          expectClose(`${c.name}: d${name}[${i}] vs finite difference`, [grad[i]], [fd], seed, 1e-4, 1e-3);
        }
      }
    });
  }

  it('the async form gives the same result', async () => {
    const c = backwardCases[6];
    const tree = c.tree();
    const { q, k, v } = inputs(tree, c);
    const dO = randomArray(q.length, rng);
    const fwd = await treeAttentionAsync(q, k, v, tree, options(c));
    const sync = treeAttentionBackward(q, k, v, tree, fwd, dO, options(c));
    const got = await treeAttentionBackwardAsync(q, k, v, tree, fwd, dO, options(c));
    expect(got.dq).toEqual(sync.dq);
    expect(got.dk).toEqual(sync.dk);
    expect(got.dv).toEqual(sync.dv);
  });
});

describe('bad input', () => {
  const tree = bushy(64, makeRng(7));
  const opts = { numHeads: 4, numKvHeads: 2, headDim: 32 };
  const q = new Float32Array(64 * 4 * 32), k = new Float32Array(64 * 2 * 32), v = new Float32Array(64 * 2 * 32);

  it('rejects wrong array types with a TypeError naming the argument', () => {
    expect(() => treeAttention(q, new Float64Array(k.length) as never, v, tree, opts)).toThrow(
      /^k: expected a Float32Array, got Float64Array$/,
    );
    expect(() => treeAttention(q, k, v, { parent: Array.from(tree.parent), subtreeEnd: tree.subtreeEnd } as never, opts)).toThrow(TypeError);
    expect(() => treeAttention(q, k, v, tree, null as never)).toThrow(/options: expected an object/);
  });

  it('rejects wrong lengths with a RangeError naming the argument and the shape', () => {
    expect(() => treeAttention(q, k, v.subarray(0, 4000), tree, opts)).toThrow(
      'v: expected 4096 elements ([N=64, Hkv=2, D=32]), got 4000',
    );
    expect(() => treeAttention(q.subarray(1), k, v, tree, opts)).toThrow(RangeError);
    expect(() => treeAttention(q, k, v, { parent: tree.parent, subtreeEnd: tree.subtreeEnd.subarray(1) }, opts)).toThrow(/tree.subtreeEnd/);
    const fwd = treeAttention(q, k, v, tree, opts);
    expect(() => treeAttentionBackward(q, k, v, tree, { o: fwd.o, lse: fwd.lse.subarray(1) }, q, opts)).toThrow(/forward.lse: expected 256 elements/);
    expect(() => treeAttentionBackward(q, k, v, tree, fwd, q.subarray(2), opts)).toThrow(/dO: expected 8192/);
  });

  it('rejects bad shapes and scales', () => {
    expect(() => treeAttention(q, k, v, tree, { numHeads: 4, numKvHeads: 3, headDim: 32 })).toThrow(RangeError);
    expect(() => treeAttention(q, k, v, tree, { numHeads: 6, numKvHeads: 4, headDim: 32 })).toThrow(/multiple of numKvHeads/);
    expect(() => treeAttention(q, k, v, tree, { ...opts, headDim: 0 })).toThrow(RangeError);
    expect(() => treeAttention(q, k, v, tree, { ...opts, headDim: 2048 })).toThrow(/options.headDim/);
    expect(() => treeAttention(q, k, v, tree, { ...opts, numHeads: 2.5 })).toThrow(RangeError);
    expect(() => treeAttention(q, k, v, tree, { ...opts, scale: NaN })).toThrow(/options.scale/);
    expect(() => treeAttention(q, k, v, tree, { ...opts, scale: -1 })).toThrow(/options.scale: expected a number > 0/);
    expect(() => treeAttention(q, k, v, tree, { ...opts, scale: Infinity })).toThrow(RangeError);
  });

  it('reports a malformed tree as a RangeError, never reading out of bounds', () => {
    const cases: [string, (p: Int32Array, e: Int32Array) => void][] = [
      ['parent after the node', (p) => (p[10] = 20)],
      ['parent far out of range', (p) => (p[5] = 1 << 30)],
      ['parent below -1', (p) => (p[3] = -5)],
      ['subtreeEnd too large', (_, e) => (e[0] = 1 << 30)],
      ['subtreeEnd too small', (_, e) => (e[2] = 0)],
      ['a node that is not in pre-order', (p) => (p[63] = p[1] === 0 ? 2 : 1)],
    ];
    for (const [label, spoil] of cases) {
      const bad = { parent: tree.parent.slice(), subtreeEnd: tree.subtreeEnd.slice() };
      spoil(bad.parent, bad.subtreeEnd);
      let error: unknown;
      try {
        treeAttention(q, k, v, bad, opts);
      } catch (e) {
        error = e;
      }
      expect(error, label).toBeInstanceOf(RangeError);
      expect((error as { code: string }).code, label).toMatch(/^FORGE_ERR_(INVALID_ARGUMENT|OUT_OF_RANGE)$/);
      const fwd = { o: new Float32Array(q.length), lse: new Float32Array(64 * 4) };
      expect(() => treeAttentionBackward(q, k, v, bad, fwd, q, opts), label).toThrow(RangeError);
    }
  });

  it('rejects a non-finite lse in the backward', () => {
    const fwd = treeAttention(q, k, v, tree, opts);
    fwd.lse[17] = NaN;
    expect(() => treeAttentionBackward(q, k, v, tree, fwd, q, opts)).toThrow(/lse\[17\]: expected a finite number/);
  });

  it('rejects NaN or Inf in q, k, v (and o, dO in the backward), naming the element', () => {
    const cases: [string, Float32Array, number][] = [['q', q, 4], ['k', k, 2], ['v', v, 2]];
    for (const [name, x, heads] of cases) {
      const bad = x.slice();
      const at = 1 + Math.floor(Math.random() * (bad.length - 1));
      bad[at] = at % 2 ? NaN : -Infinity;
      const args = { q, k, v, [name]: bad } as { q: Float32Array; k: Float32Array; v: Float32Array };
      const where = `${name}\\[${Math.floor(at / (heads * 32))}, ${Math.floor(at / 32) % heads}, ${at % 32}\\]`;
      let error: unknown;
      try {
        treeAttention(args.q, args.k, args.v, tree, opts);
      } catch (e) {
        error = e;
      }
      expect(error, name).toBeInstanceOf(RangeError);
      expect((error as { code: string }).code).toBe('FORGE_ERR_NON_FINITE');
      expect((error as Error).message).toMatch(new RegExp(`^${where}: expected a finite number`));
    }
    const fwd = treeAttention(q, k, v, tree, opts);
    const dO = q.slice();
    dO[5] = Infinity;
    expect(() => treeAttentionBackward(q, k, v, tree, fwd, dO, opts)).toThrow(/d_o\[0, 0, 5\]: expected a finite number/);
  });

  it('async forms reject instead of throwing', async () => {
    await expect(treeAttentionAsync(q, k, v.subarray(1), tree, opts)).rejects.toThrow(RangeError);
    const bad = { parent: tree.parent.slice(), subtreeEnd: tree.subtreeEnd };
    bad.parent[9] = 40;
    await expect(treeAttentionAsync(q, k, v, bad, opts)).rejects.toThrow(RangeError);
    const fwd = treeAttention(q, k, v, tree, opts);
    fwd.lse[0] = Infinity;
    await expect(treeAttentionBackwardAsync(q, k, v, tree, fwd, q, opts)).rejects.toThrow(/lse\[0\]/);
  });

  it('the raw addon throws on short or mistyped arrays and bad shapes instead of crashing', () => {
    const { parent, subtreeEnd } = tree;
    const fwd = (...args: unknown[]) => () => addon.treeAttention(...args);
    expect(fwd(q.subarray(0, 10), k, v, parent, subtreeEnd, 4, 2, 32, 0, false)).toThrow(RangeError);
    expect(fwd(q, k.subarray(0, 10), v, parent, subtreeEnd, 4, 2, 32, 0, false)).toThrow(RangeError);
    expect(fwd(q, k, v, parent, subtreeEnd.subarray(0, 5), 4, 2, 32, 0, false)).toThrow(RangeError);
    expect(fwd(q, k, v, new Int32Array(0), new Int32Array(0), 4, 2, 32, 0, false)).toThrow(RangeError);
    expect(fwd(q, k, v, parent, subtreeEnd, 4, 3, 32, 0, false)).toThrow(RangeError);
    expect(fwd(q, k, v, parent, subtreeEnd, 4, 2, 0, 0, false)).toThrow(RangeError);
    expect(fwd(q, k, v, parent, subtreeEnd, 4, 2, 32, Infinity, false)).toThrow(RangeError);
    expect(fwd(q, k, v, parent, subtreeEnd, 4, 2, 32, 'x', false)).toThrow(TypeError);
    expect(fwd(new Uint8Array(8), k, v, parent, subtreeEnd, 4, 2, 32, 0, false)).toThrow(TypeError);
    expect(fwd(q, k, v, Int32Array.from(parent, (p, i) => (i === 7 ? 1 << 29 : p)), subtreeEnd, 4, 2, 32, 0, false)).toThrow(RangeError);
    expect(fwd()).toThrow(TypeError);
    // A head dim past what the CPU kernels support comes back as FORGE_ERR_UNSUPPORTED.
    const d = 1100, big = new Float32Array(64 * 4 * d), bigKv = new Float32Array(64 * 2 * d);
    expect(fwd(big, bigKv, bigKv, parent, subtreeEnd, 4, 2, d, 0, false)).toThrow(expect.objectContaining({ code: 'FORGE_ERR_UNSUPPORTED' }));
    const o = new Float32Array(q.length), lse = new Float32Array(256);
    const bwd = (...args: unknown[]) => () => addon.treeAttentionBackward(...args);
    expect(bwd(q, k, v, parent, subtreeEnd, o, lse.subarray(1), q, 4, 2, 32, 0, false)).toThrow(RangeError);
    expect(bwd(q, k, v, parent, subtreeEnd, o.subarray(3), lse, q, 4, 2, 32, 0, false)).toThrow(RangeError);
    expect(bwd(q, k, v, parent, subtreeEnd, o, lse, q.subarray(0, 1), 4, 2, 32, 0, false)).toThrow(RangeError);
  });
});
