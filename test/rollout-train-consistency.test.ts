// The RL invariant the whole system rests on: the log-probability the engine records for a sampled
// token equals the one the training path computes for that token at the same weights, so the CISPO
// ratio of an on-policy sample is 1. A chat conversation is rendered with the template, completed by
// the engine (with a multi-turn prefix-cache hit on the second call), merged into a prefix tree and
// scored by the model's loss path.
import { describe, expect, it } from 'vitest';

import { NanoEngine } from '../lib/engine/index.js';
import { render } from '../lib/model/chatTemplate.js';
import { encode } from '../lib/model/tokenizer.js';
import { NanoPolicy } from '../lib/model/policy.js';
import { buildPrefixTree, type Sample } from '../lib/prefixTree.js';
import { seededRun } from './helpers/random.js';

const { seed, why } = seededRun();

describe('rollout / training consistency', () => {
  it('engine logprobs equal the training logprobs at the same weights (ratio 1), across a cached second turn', async () => {
    const config = { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 128 };
    const policy = new NanoPolicy(config);
    const params = policy.init(seed % 100000);
    const engine = new NanoEngine({ config, params, version: 7, cacheTokens: 4096 });
    try {
      const history = [
        { role: 'system' as const, content: 'You are a calculator.' },
        { role: 'user' as const, content: 'What is 2 + 3?' },
      ];
      const samples: Sample[] = [];
      let prompt = render(history, undefined, { addGenerationPrompt: true });
      let cachedSecond = 0;
      for (let turn = 0; turn < 2; turn++) {
        const result = await engine.generate(prompt, { temperature: 1, maxTokens: 24, seed: seed + turn }).result;
        expect(Array.from(result.versions).every((v) => v === 7)).toBe(true);
        if (turn === 1) cachedSecond = result.cachedPromptTokens;
        const tokens = Int32Array.from([...prompt, ...result.completionIds]);
        const trainable = new Uint8Array(tokens.length).fill(1, prompt.length);
        const oldLogprobs = new Float32Array(tokens.length);
        oldLogprobs.set(Float32Array.from(result.logprobs), prompt.length);
        samples.push({ tokens, trainable, oldLogprobs, advantage: 1 });
        // The agent's next call extends this one token for token: history + completion + new text.
        prompt = Int32Array.from([...tokens, ...encode(' And times 4?')]);
      }
      expect(cachedSecond, why('the second call reuses the first call\'s prompt and completion')).toBeGreaterThan(samples[0].tokens.length - 2);

      const tree = buildPrefixTree(samples, { vocabSize: policy.config.vocabSize });
      const { logprobs, stats } = policy.lossAndGrad(params, tree, { mode: 'cispo' });
      for (let j = 0; j < tree.numTerms; j++) {
        const diff = Math.abs(logprobs[j] - tree.terms.oldLogprob[j]);
        expect(diff, why(`term ${j}: engine ${tree.terms.oldLogprob[j]} vs training ${logprobs[j]}`)).toBeLessThan(2e-4);
      }
      expect(Math.abs(stats.meanRatio - 1), why(`mean ratio ${stats.meanRatio}`)).toBeLessThan(1e-4);
    } finally {
      engine.close();
    }
  });
});
