// The training path end to end: samples -> prefix tree -> model forward/backward -> AdamW, in
// cross-entropy mode (supervised warm start) and CISPO, and a checkpoint that resumes bit for bit.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { PolicyTrainer } from '../lib/model/trainer.js';
import { buildPrefixTree, type Sample } from '../lib/prefixTree.js';
import { seededRun } from './helpers/random.js';

const { seed, rng, why } = seededRun();
const SMALL = { vocabSize: 16, dim: 32, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8, ffnDim: 64 };

/** A toy language: BOS, a step token s, a start a, then a+s, a+2s, ... (mod 10). Predicting the
 * continuation needs the step token (attention) and the previous token. */
function toyBatch(rand: () => number, size = 24): Sample[] {
  const samples: Sample[] = [];
  for (let k = 0; k < size; k++) {
    const step = 1 + Math.floor(rand() * 4);
    const seq = [15, 10 + step, Math.floor(rand() * 10)];
    while (seq.length < 14) seq.push((seq[seq.length - 1] + step) % 10);
    samples.push({ tokens: Int32Array.from(seq), trainable: new Uint8Array(seq.length).fill(1, 3), advantage: 1 });
  }
  return samples;
}

describe('PolicyTrainer', () => {
  it('a few hundred supervised steps through AdamW drive the loss down; versions count the steps', async () => {
    const rand = rng();
    const trainer = new PolicyTrainer({ config: SMALL, seed: seed % 1000, optimizer: { lr: 3e-3 }, loss: { mode: 'cross-entropy' } });
    const losses: number[] = [];
    for (let step = 1; step <= 250; step++) {
      const r = await trainer.step(toyBatch(rand));
      expect(r.version).toBe(step);
      expect(r.treeTokens).toBeLessThan(r.inputTokens); // samples share BOS + step token prefixes
      losses.push(r.loss);
    }
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(losses.slice(0, 5)), last = mean(losses.slice(-20));
    expect(first, why('initial loss near uniform')).toBeGreaterThan(Math.log(16) - 0.4);
    expect(last, why(`loss ${first} -> ${last}`)).toBeLessThan(first / 10);
  });

  it('CISPO steps raise the log-probability of positively rewarded completions', async () => {
    const rand = rng();
    const trainer = new PolicyTrainer({ config: SMALL, seed: 3, optimizer: { lr: 2e-3 } });
    // Two completions of one prompt: the rewarded one (A = +1) must become more likely, the other less.
    const prompt = [15, 11, 4];
    const good = Int32Array.from([...prompt, 5, 6, 7]), bad = Int32Array.from([...prompt, 9, 9, 9]);
    const mask = Uint8Array.from([0, 0, 0, 1, 1, 1]);
    // Mean log-probability of a completion's tokens under the trainer's current weights.
    const measure = async (tokens: Int32Array) => {
      const tree = buildPrefixTree([{ tokens, trainable: mask, advantage: 1 }], { vocabSize: SMALL.vocabSize });
      return trainer.policy.lossAndGrad(trainer.params, tree, { mode: 'cross-entropy' }).stats.meanLogprob;
    };
    const before = [await measure(good), await measure(bad)];
    for (let i = 0; i < 30; i++) {
      const old = -Math.log(16) + 0.01 * rand(); // behaviour log-probs near the initial policy's
      await trainer.step([
        { tokens: good, trainable: mask, advantage: 1, oldLogprobs: new Float32Array(6).fill(old) },
        { tokens: bad, trainable: mask, advantage: -1, oldLogprobs: new Float32Array(6).fill(old) },
      ]);
    }
    const after = [await measure(good), await measure(bad)];
    expect(after[0], why('rewarded completion')).toBeGreaterThan(before[0] + 0.5);
    expect(after[1], why('penalised completion')).toBeLessThan(before[1] - 0.5);
  });

  it('save and load resume exactly: the next step is bitwise the same', async () => {
    const rand = rng();
    const dir = mkdtempSync(join(tmpdir(), 'forge-trainer-'));
    const a = new PolicyTrainer({ config: SMALL, seed: 11, optimizer: { lr: 1e-3, schedule: { kind: 'warmup-cosine', warmupSteps: 3, totalSteps: 20 } } });
    for (let i = 0; i < 4; i++) await a.step(toyBatch(rand, 8), { mode: 'cross-entropy' });
    await a.save(join(dir, 'run.safetensors'));
    const b = await PolicyTrainer.load(join(dir, 'run.safetensors'));
    expect(b.version).toBe(a.version);
    expect(b.policy.config).toEqual(a.policy.config);
    const batch = toyBatch(rand, 8);
    const ra = await a.step(batch, { mode: 'cross-entropy' });
    const rb = await b.step(batch, { mode: 'cross-entropy' });
    expect(rb.loss).toBe(ra.loss);
    expect(rb.lr).toBe(ra.lr);
    expect(Buffer.from(b.params.buffer).equals(Buffer.from(a.params.buffer))).toBe(true);
    expect(Buffer.from(b.optimizer.v.buffer).equals(Buffer.from(a.optimizer.v.buffer))).toBe(true);
  });

  it('refuses a second step while one runs, and bad batches with the argument named', async () => {
    const trainer = new PolicyTrainer({ config: SMALL });
    const batch = toyBatch(rng(), 4);
    const first = trainer.step(batch);
    await expect(trainer.step(batch)).rejects.toThrow(/previous step/);
    await first;
    await expect(trainer.step([{ tokens: Int32Array.of(1, 99) }])).rejects.toThrow(/token id 99/);
    expect(trainer.version).toBe(1);
  });
});
