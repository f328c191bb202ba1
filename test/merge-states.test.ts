// Attention-state merging (contract 2): split each query's keys of a random tree-attention problem
// into parts, compute each part's state with the float64 reference, merge them with the kernel, and
// compare with the reference attention over all the keys. Fresh random inputs each run; the seed is in
// every failure message (FORGE_TEST_SEED=<seed> replays it). Tolerance |err| <= 1e-5 + 1e-4 |ref|.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { mergeStates, mergeStatesAsync, mergeStatesCsr, mergeStatesCsrAsync, type AttentionState } from '../lib/attention.js';
import { addon } from '../lib/native.js';
import { bushy, expectClose, makeRng, randomArray, runSeed } from './helpers/trees.js';
import { ancestors, referenceAttention, type RefShape } from './reference/attention.js';

const seed = runSeed();
const rng = makeRng(seed);
const TOL = { atol: 1e-5, rtol: 1e-4 };

/** A random problem, the full reference, and per-part reference states over a random key partition. */
function problem(n: number, h: number, d: number, parts: number) {
  const tree = bushy(n, rng, { forest: true });
  const shape: RefShape = { hq: h, hkv: h, d, scale: 1 / Math.sqrt(d) };
  const q = randomArray(n * h * d, rng, 1.5), k = randomArray(n * h * d, rng, 1.5), v = randomArray(n * h * d, rng);
  const partOf = Array.from({ length: n }, () => Math.floor(rng() * parts));
  partOf[0] = 1; // node 0 (a root) sees only itself: every other part's state of row 0 is empty
  const full = referenceAttention(q, k, v, tree.parent, shape);
  const states = Array.from({ length: parts }, (_, part) => {
    const s = referenceAttention(q, k, v, tree.parent, shape, (x) => ancestors(tree.parent, x).filter((a) => partOf[a] === part));
    return { o: Float32Array.from(s.o), lse: Float32Array.from(s.lse) };
  });
  return { full, states };
}

describe('mergeStates (pairwise)', () => {
  it('merging the states of two disjoint key sets gives attention over their union', () => {
    const { full, states } = problem(150, 4, 24, 2);
    expect(states[0].lse[0]).toBe(-Infinity); // row 0 saw no key of part 0
    const out = mergeStates(states[0], states[1], { numHeads: 4, headDim: 24 });
    expectClose('o', out.o, full.o, seed, TOL.atol, TOL.rtol);
    expectClose('lse', out.lse, full.lse, seed, TOL.atol, TOL.rtol);
    const swapped = mergeStates(states[1], states[0], { numHeads: 4, headDim: 24 });
    expectClose('o (b, a)', swapped.o, full.o, seed, TOL.atol, TOL.rtol);
  });

  it('treats lse = -Infinity as empty and never reads its o', () => {
    const h = 2, d = 5;
    const a: AttentionState = { o: randomArray(3 * h * d, rng), lse: Float32Array.from([0.5, -Infinity, -Infinity, 2, -Infinity, 1.25]) };
    const b: AttentionState = { o: randomArray(3 * h * d, rng), lse: Float32Array.from([-Infinity, 3, -Infinity, -1, -Infinity, 1.25]) };
    // Garbage where the state is empty: it must not leak into the result.
    for (const [s, unit] of [[a, 1], [a, 2], [b, 0], [b, 2], [a, 4], [b, 4]] as const) s.o.fill(NaN, unit * d, (unit + 1) * d);
    const out = mergeStates(a, b, { numHeads: h, headDim: d });
    const unit = (x: Float32Array, u: number) => Array.from(x.subarray(u * d, (u + 1) * d));
    expect(unit(out.o, 0)).toEqual(unit(a.o, 0));
    expect(unit(out.o, 1)).toEqual(unit(b.o, 1));
    expect(unit(out.o, 2)).toEqual([0, 0, 0, 0, 0]);
    expect(unit(out.o, 4)).toEqual([0, 0, 0, 0, 0]);
    expect(out.lse[0]).toBe(0.5);
    expect(out.lse[1]).toBe(3);
    expect(out.lse[2]).toBe(-Infinity);
    expect(out.lse[4]).toBe(-Infinity);
    // Equal lse: the mean of the two, and lse + log 2.
    expectClose('equal weights', unit(out.o, 5), unit(a.o, 5).map((x, c) => (x + b.o[5 * d + c]) / 2), seed, 1e-6, 1e-6);
    expectClose('lse + log 2', [out.lse[5]], [1.25 + Math.LN2], seed, 1e-6, 1e-6);
    // Very different magnitudes: no overflow, the larger dominates.
    const big = mergeStates({ o: Float32Array.from([1]), lse: Float32Array.from([80]) }, { o: Float32Array.from([-1]), lse: Float32Array.from([-80]) }, { numHeads: 1, headDim: 1 });
    expect(big.o[0]).toBeCloseTo(1, 6);
    expect(big.lse[0]).toBeCloseTo(80, 5);
  });

  it('handles zero rows and the async form', async () => {
    const empty = { o: new Float32Array(0), lse: new Float32Array(0) };
    expect(mergeStates(empty, empty, { numHeads: 3, headDim: 4 }).o.length).toBe(0);
    const { full, states } = problem(90, 2, 16, 2);
    const out = await mergeStatesAsync(states[0], states[1], { numHeads: 2, headDim: 16 });
    expectClose('o', out.o, full.o, seed, TOL.atol, TOL.rtol);
  });
});

describe('mergeStatesCsr (N-way)', () => {
  it('merging k parts per row gives attention over all keys; an empty range gives the empty state', () => {
    const parts = 4, n = 120, h = 3, d = 20;
    const { full, states } = problem(n, h, d, parts);
    // Output row r merges its parts in a random order; one extra output row has an empty range.
    const offsets = new Int32Array(n + 2);
    const o: number[] = [], lse: number[] = [];
    for (let r = 0; r <= n; r++) {
      const row = r < n ? r : -1; // one extra output row with an empty range
      const order = row < 0 ? [] : [...Array(parts).keys()].sort(() => rng() - 0.5);
      for (const part of order) {
        for (let x = 0; x < h; x++) {
          lse.push(states[part].lse[row * h + x]);
          for (let c = 0; c < d; c++) o.push(states[part].o[(row * h + x) * d + c]);
        }
      }
      offsets[r + 1] = offsets[r] + order.length;
    }
    const out = mergeStatesCsr({ o: Float32Array.from(o), lse: Float32Array.from(lse) }, offsets, { numHeads: h, headDim: d });
    expectClose('o', out.o.subarray(0, n * h * d), full.o, seed, TOL.atol, TOL.rtol);
    expectClose('lse', out.lse.subarray(0, n * h), full.lse, seed, TOL.atol, TOL.rtol);
    expect(Array.from(out.lse.subarray(n * h))).toEqual([-Infinity, -Infinity, -Infinity]);
    expect(Array.from(out.o.subarray(n * h * d)).every((x) => x === 0)).toBe(true);
  });

  it('agrees with pairwise merging and has an async form', async () => {
    const { states } = problem(80, 2, 8, 2);
    const pair = mergeStates(states[0], states[1], { numHeads: 2, headDim: 8 });
    // Interleave: output row r merges input rows 2r (part 0) and 2r + 1 (part 1).
    const o = new Float32Array(2 * states[0].o.length), lse = new Float32Array(2 * states[0].lse.length);
    for (let r = 0; r < 80; r++)
      for (let part = 0; part < 2; part++) {
        o.set(states[part].o.subarray(r * 16, (r + 1) * 16), (2 * r + part) * 16);
        lse.set(states[part].lse.subarray(r * 2, (r + 1) * 2), (2 * r + part) * 2);
      }
    const offsets = Int32Array.from({ length: 81 }, (_, r) => 2 * r);
    const csr = await mergeStatesCsrAsync({ o, lse }, offsets, { numHeads: 2, headDim: 8 });
    expectClose('o', csr.o, pair.o, seed, 1e-6, 1e-5);
    expectClose('lse', csr.lse, pair.lse, seed, 1e-6, 1e-5);
    expect(mergeStatesCsr({ o: new Float32Array(0), lse: new Float32Array(0) }, new Int32Array(1), { numHeads: 1, headDim: 1 }).o.length).toBe(0);
  });
});

describe('bad input', () => {
  const opts = { numHeads: 2, headDim: 4 };
  const state = (rows: number): AttentionState => ({ o: new Float32Array(rows * 8), lse: new Float32Array(rows * 2) });

  it('rejects wrong types and lengths naming the argument', () => {
    expect(() => mergeStates({ o: new Float64Array(8), lse: new Float32Array(2) } as never, state(1), opts)).toThrow(/^a.o: expected a Float32Array, got Float64Array$/);
    expect(() => mergeStates(state(2), state(3), opts)).toThrow('b.lse: expected 4 elements ([rows=2, H=2]), got 6');
    expect(() => mergeStates({ o: new Float32Array(7), lse: new Float32Array(2) }, state(1), opts)).toThrow('a.o: expected 8 elements ([rows=1, H=2, D=4]), got 7');
    expect(() => mergeStates({ o: new Float32Array(8), lse: new Float32Array(3) }, state(1), opts)).toThrow(/a.lse: expected a multiple of numHeads/);
    expect(() => mergeStates(state(1), state(1), { numHeads: 0, headDim: 4 })).toThrow(RangeError);
    expect(() => mergeStates(state(1), null as never, opts)).toThrow(TypeError);
  });

  it('rejects NaN and +Infinity lse', async () => {
    const a = state(2);
    a.lse[3] = NaN;
    expect(() => mergeStates(a, state(2), opts)).toThrow(/a.lse\[3\]: expected a finite number or -Infinity/);
    const b = state(2);
    b.lse[1] = Infinity;
    expect(() => mergeStates(state(2), b, opts)).toThrow(RangeError);
    await expect(mergeStatesAsync(state(2), b, opts)).rejects.toThrow(/b.lse\[1\]/);
    expect(() => mergeStatesCsr(a, Int32Array.from([0, 2]), opts)).toThrow(/states.lse\[3\]/);
  });

  it('rejects malformed offsets', () => {
    const s = state(3);
    expect(() => mergeStatesCsr(s, Int32Array.from([1, 3]), opts)).toThrow(/offsets\[0\]: expected 0/);
    expect(() => mergeStatesCsr(s, Int32Array.from([0, 2, 1, 3]), opts)).toThrow(/offsets\[2\]/);
    expect(() => mergeStatesCsr(s, Int32Array.from([0, 2]), opts)).toThrow(/offsets\[1\]: expected the number of input states \(3\)/);
    expect(() => mergeStatesCsr(s, new Int32Array(0), opts)).toThrow(RangeError);
    expect(() => mergeStatesCsr(s, [0, 3] as never, opts)).toThrow(TypeError);
  });

  it('the raw addon checks lengths, lse values and offsets itself', () => {
    const o = new Float32Array(8), lse = new Float32Array(2);
    expect(() => addon.mergeStates(o.subarray(1), lse, o, lse, 2, 4, false)).toThrow(RangeError);
    expect(() => addon.mergeStates(o, lse, o, lse.subarray(1), 2, 4, false)).toThrow(RangeError);
    expect(() => addon.mergeStates(o, lse, o, lse, 2, 0, false)).toThrow(RangeError);
    expect(() => addon.mergeStates(o, lse, o, Float32Array.from([0, NaN]), 2, 4, false)).toThrow(
      expect.objectContaining({ code: 'FORGE_ERR_NON_FINITE' }),
    );
    expect(() => addon.mergeStatesCsr(o, lse, Int32Array.from([0, 5]), 2, 4, false)).toThrow(RangeError);
    expect(() => addon.mergeStatesCsr(o, lse, Int32Array.from([0, -1, 1]), 2, 4, false)).toThrow(RangeError);
    expect(() => addon.mergeStatesCsr(o, lse, Int32Array.from([3, 1]), 2, 4, false)).toThrow(RangeError);
    expect(() => addon.mergeStatesCsr(o, lse, new Int32Array(0), 2, 4, false)).toThrow(RangeError);
    expect(() => addon.mergeStatesCsr(o.subarray(2), lse, Int32Array.from([0, 1]), 2, 4, false)).toThrow(RangeError);
  });
});

// In-place merging (o_out = o_a) is only reachable through the C ABI: a small C program checks it
// against the out-of-place result, and that overlapping but different buffers are refused.
describe('C ABI in-place merge', () => {
  it('out may alias a; a partial overlap is an error', () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), '..');
    const libDir = join(root, 'build', 'Release');
    const dir = mkdtempSync(join(tmpdir(), 'forge-merge-'));
    const source = join(dir, 'alias.c'), exe = join(dir, 'alias');
    writeFileSync(
      source,
      `#include <forge/forge.h>
#include <stdio.h>
#include <string.h>
int main(void) {
  enum { ROWS = 5, H = 2, D = 3, U = ROWS * H };
  float oa[U * D], la[U], ob[U * D], lb[U], o[U * D], l[U];
  for (int i = 0; i < U * D; i++) { oa[i] = (float)(i % 7) - 3.0f; ob[i] = (float)(i % 5) * 0.5f; }
  for (int i = 0; i < U; i++) { la[i] = (float)i * 0.3f - 1.0f; lb[i] = i % 3 == 0 ? -1.0f / 0.0f : (float)(U - i) * 0.2f; }
  if (forge_merge_states(ROWS, H, D, oa, la, ob, lb, o, l) != FORGE_OK) { printf("out-of-place failed: %s\\n", forge_last_error()); return 1; }
  if (forge_merge_states(ROWS, H, D, oa, la, ob, lb, oa, la) != FORGE_OK) { printf("in-place failed: %s\\n", forge_last_error()); return 1; }
  if (memcmp(o, oa, sizeof o) != 0 || memcmp(l, la, sizeof l) != 0) { printf("in-place differs\\n"); return 1; }
  if (forge_merge_states(ROWS, H, D, oa, la, ob, lb, oa + 1, l) != FORGE_ERR_INVALID_ARGUMENT) { printf("partial overlap accepted\\n"); return 1; }
  if (forge_merge_states(ROWS, H, D, oa, la, ob, lb, NULL, l) != FORGE_ERR_INVALID_ARGUMENT) { printf("null accepted\\n"); return 1; }
  int64_t off[3] = {0, 2, 5};
  if (forge_merge_states_csr(2, H, D, off, ROWS, oa, la, oa, la) != FORGE_ERR_INVALID_ARGUMENT) { printf("csr alias accepted\\n"); return 1; }
  printf("ok\\n");
  return 0;
}
`,
    );
    execFileSync('cc', ['-std=c99', '-Wall', '-I', join(root, 'native', 'include'), source, '-L', libDir, '-lforge_kernels', `-Wl,-rpath,${libDir}`, '-o', exe]);
    expect(execFileSync(exe).toString()).toContain('ok');
  });
});
