// Contract 1's promise: merging samples into a prefix tree changes nothing but the cost. A toy one-layer
// model (embeddings -> tree attention -> linear head -> CISPO) is run once on the merged tree and once
// per sample on the unmerged sequences; loss, dlogits and dQ/dK/dV must agree to 1e-5 relative.
import { describe, expect, it } from 'vitest';
import { gauss, seededRun } from './helpers/random.js';

import { treeAttention, treeAttentionBackward } from '../lib/attention.js';
import { cispoLoss } from '../lib/cispo.js';
import { buildPrefixTree, gatherToSamples, scatterFromSamples, type Sample } from '../lib/prefixTree.js';

const { seed, rng } = seededRun();
const rand = rng();
const randn = () => gauss(rand);
const randInt = (n: number) => Math.floor(rand() * n);

const VOCAB = 37;
const HQ = 4;
const HKV = 2;
const D = 8;
const MAX_POS = 256;

/** Agent-like samples: a shared system prompt, rollouts whose calls extend each other, a duplicate. */
function agentSamples(): Sample[] {
  const system = Array.from({ length: 12 + randInt(8) }, () => randInt(VOCAB));
  const samples: Sample[] = [];
  for (let rollout = 0; rollout < 3; rollout++) {
    let history = [...system];
    let mask: number[] = history.map(() => 0);
    for (let turn = 0; turn < 3; turn++) {
      const user = Array.from({ length: 2 + randInt(4) }, () => randInt(VOCAB));
      const completion = Array.from({ length: 1 + randInt(5) }, () => randInt(VOCAB));
      history = [...history, ...user, ...completion];
      mask = [...mask.map(() => 0), ...user.map(() => 0), ...completion.map(() => 1)];
      samples.push({
        tokens: Int32Array.from(history),
        trainable: Uint8Array.from(mask),
        oldLogprobs: Float32Array.from(history, () => -0.5 - 3 * rand()),
        advantage: randn(),
        version: turn,
      });
    }
  }
  samples.push({ ...samples[1], advantage: randn() }); // an exact duplicate with its own advantage
  return samples;
}

/** A one-layer toy model whose per-token inputs depend only on (token, position), like a real layer. */
function model() {
  const table = (rows: number, cols: number) => Float32Array.from({ length: rows * cols }, () => randn() * 0.7);
  const tokQ = table(VOCAB, HQ * D), tokK = table(VOCAB, HKV * D), tokV = table(VOCAB, HKV * D);
  const posQ = table(MAX_POS, HQ * D), posK = table(MAX_POS, HKV * D);
  const head = table(HQ * D, VOCAB); // logits = O · head
  const embed = (tokens: ArrayLike<number>, positions: ArrayLike<number>) => {
    const n = tokens.length;
    const q = new Float32Array(n * HQ * D), k = new Float32Array(n * HKV * D), v = new Float32Array(n * HKV * D);
    for (let i = 0; i < n; i++) {
      const t = tokens[i], p = positions[i];
      for (let c = 0; c < HQ * D; c++) q[i * HQ * D + c] = tokQ[t * HQ * D + c] + posQ[p * HQ * D + c];
      for (let c = 0; c < HKV * D; c++) {
        k[i * HKV * D + c] = tokK[t * HKV * D + c] + posK[p * HKV * D + c];
        v[i * HKV * D + c] = tokV[t * HKV * D + c];
      }
    }
    return { q, k, v };
  };
  const logits = (o: Float32Array, n: number) => {
    const z = new Float32Array(n * VOCAB);
    for (let i = 0; i < n; i++)
      for (let c = 0; c < HQ * D; c++) {
        const x = o[i * HQ * D + c];
        for (let y = 0; y < VOCAB; y++) z[i * VOCAB + y] += x * head[c * VOCAB + y];
      }
    return z;
  };
  const dOutput = (dz: Float32Array, n: number) => {
    const dO = new Float32Array(n * HQ * D);
    for (let i = 0; i < n; i++)
      for (let c = 0; c < HQ * D; c++) {
        let s = 0;
        for (let y = 0; y < VOCAB; y++) s += dz[i * VOCAB + y] * head[c * VOCAB + y];
        dO[i * HQ * D + c] = s;
      }
    return dO;
  };
  return { embed, logits, dOutput };
}

function expectClose(actual: Float32Array, expected: Float32Array, what: string) {
  expect(actual.length, what).toBe(expected.length);
  let maxRef = 0, maxErr = 0;
  for (let i = 0; i < actual.length; i++) {
    maxRef = Math.max(maxRef, Math.abs(expected[i]));
    maxErr = Math.max(maxErr, Math.abs(actual[i] - expected[i]));
  }
  // Relative to the tensor's scale: summation order differs between the merged and unmerged runs.
  expect(maxErr, `${what}: max error ${maxErr} vs scale ${maxRef} (seed ${seed})`).toBeLessThanOrEqual(1e-5 * Math.max(maxRef, 1e-6));
}

describe('merged tree equals sample-by-sample', () => {
  it('loss, dlogits and dQ/dK/dV agree to 1e-5 relative', () => {
    const samples = agentSamples();
    const { embed, logits, dOutput } = model();
    const opts = { numHeads: HQ, numKvHeads: HKV, headDim: D };
    const tree = buildPrefixTree(samples, { vocabSize: VOCAB });
    expect(tree.stats.ratio).toBeGreaterThan(2);
    const Z = tree.numTerms;

    // Merged: one pass over the tree.
    const t = embed(tree.token, tree.position);
    const fwd = treeAttention(t.q, t.k, t.v, tree, opts);
    const zTree = logits(fwd.o, tree.numNodes);
    const lossTree = cispoLoss(zTree, VOCAB, tree.terms, { normalizer: Z });
    const gTree = treeAttentionBackward(t.q, t.k, t.v, tree, fwd, dOutput(lossTree.dlogits!, tree.numNodes), opts);

    // Unmerged: each sample alone, as a chain.
    const total = tree.offsets[tree.numSamples];
    const dzSamples = new Float32Array(total * VOCAB), oSamples = new Float32Array(total * HQ * D);
    const dq = new Float32Array(total * HQ * D), dk = new Float32Array(total * HKV * D), dv = new Float32Array(total * HKV * D);
    let lossSum = 0, lossScale = 0;
    samples.forEach((sample, s) => {
      const L = sample.tokens.length, at = tree.offsets[s];
      const chain = { parent: Int32Array.from({ length: L }, (_, i) => i - 1), subtreeEnd: new Int32Array(L).fill(L) };
      const x = embed(sample.tokens, Int32Array.from({ length: L }, (_, i) => i));
      const f = treeAttention(x.q, x.k, x.v, chain, opts);
      const z = logits(f.o, L);
      const one = buildPrefixTree([sample], { vocabSize: VOCAB }); // a single sample: its terms, nodes = positions
      const l = cispoLoss(z, VOCAB, one.terms, { normalizer: Z });
      lossSum += l.loss;
      lossScale += Math.abs(l.loss);
      const g = treeAttentionBackward(x.q, x.k, x.v, chain, f, dOutput(l.dlogits!, L), opts);
      oSamples.set(f.o, at * HQ * D);
      dzSamples.set(l.dlogits!, at * VOCAB);
      dq.set(g.dq, at * HQ * D);
      dk.set(g.dk, at * HKV * D);
      dv.set(g.dv, at * HKV * D);
    });

    // Advantages of both signs can make the sum nearly cancel: the bound is relative to the per-sample
    // losses' magnitudes (float32 rounding of the terms), not to their possibly tiny total.
    expect(Math.abs(lossTree.loss - lossSum), `loss ${lossTree.loss} vs ${lossSum}, sum of |loss_s| ${lossScale} (seed ${seed})`)
      .toBeLessThanOrEqual(1e-5 * lossScale + 1e-9);
    expectClose(gatherToSamples(tree, fwd.o, HQ * D), oSamples, 'O');
    expectClose(lossTree.dlogits!, scatterFromSamples(tree, dzSamples, VOCAB), 'dlogits');
    expectClose(gTree.dq, scatterFromSamples(tree, dq, HQ * D), 'dQ');
    expectClose(gTree.dk, scatterFromSamples(tree, dk, HKV * D), 'dK');
    expectClose(gTree.dv, scatterFromSamples(tree, dv, HKV * D), 'dV');
  });
});
