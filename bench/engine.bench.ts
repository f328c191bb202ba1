// The nano policy's inference engine (lib/engine), default config, on the CPU:
//   1. prefill and decode tokens/s at 1 and 32 concurrent sessions; baselines in the same run: the
//      32 sessions served one after another, and (decode) generation without a KV cache (a full
//      forge_model_forward over prompt + completion for every token, what a cache-less server does);
//   2. a multi-turn agent trace (sessions resending their growing history each turn) with the prefix
//      cache on and off: hit rate, tokens computed, and the wall-time ratio.
import { type Bench, type BenchSection, fmt, rng } from './harness.js';
import { NanoEngine } from '../lib/engine/engine.js';
import { NanoPolicy } from '../lib/model/policy.js';
import { nativeInfo } from '../lib/native.js';

const policy = new NanoPolicy();
const params = policy.init(1);

function prompts(count: number, length: number, seed: number): Int32Array[] {
  const r = rng(seed);
  return Array.from({ length: count }, () => Int32Array.from({ length }, () => Math.floor(r() * 256)));
}

/** Median of `runs` measurements (these machines are noisy). */
async function median(measure: () => Promise<number> | number, runs = 3): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < runs; i++) xs.push(await measure());
  return xs.sort((a, b) => a - b)[Math.floor(runs / 2)];
}

/** Wall time of serving `ps` (all at once, or one after another), each to `maxTokens`. */
async function serve(ps: Int32Array[], maxTokens: number, concurrent: boolean, maxBatchTokens = 2048): Promise<number> {
  const engine = new NanoEngine({ params, cacheTokens: 65536, maxBatchTokens });
  const t0 = performance.now();
  const go = (p: Int32Array, i: number) => engine.generate(p, { temperature: 0, maxTokens, seed: i }).result;
  if (concurrent) await Promise.all(ps.map(go));
  else for (let i = 0; i < ps.length; i++) await go(ps[i], i);
  const ms = performance.now() - t0;
  engine.close();
  return ms;
}

/** Greedy generation without a KV cache: every token runs the full sequence through the model. */
function noCacheDecode(prompt: Int32Array, tokens: number): number {
  const t0 = performance.now();
  let seq = prompt;
  const V = policy.config.vocabSize;
  for (let t = 0; t < tokens; t++) {
    const L = seq.length;
    const idx = Int32Array.from({ length: L }, (_, i) => i);
    const logits = policy.forward(params, seq, idx, { parent: idx.map((i) => i - 1), subtreeEnd: new Int32Array(L).fill(L) });
    const row = logits.subarray((L - 1) * V, L * V);
    let best = 0;
    for (let i = 1; i < V; i++) if (row[i] > row[best]) best = i;
    seq = Int32Array.from([...seq, best]);
  }
  return performance.now() - t0;
}

/** Sessions x turns; each turn sends the whole history plus `newTokens`, gets `reply` tokens back. */
async function agentTrace(sessions: number, turns: number, newTokens: number, reply: number, caching: boolean) {
  const engine = new NanoEngine({ params, cacheTokens: 65536, maxBatchTokens: 1024, prefixCaching: caching });
  const r = rng(42);
  const system = Int32Array.from({ length: 120 }, () => Math.floor(r() * 256)); // shared by every session
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: sessions }, async (_, s) => {
      let history = system;
      for (let t = 0; t < turns; t++) {
        const fresh = Int32Array.from({ length: newTokens }, () => Math.floor(r() * 256));
        const prompt = Int32Array.from([...history, ...fresh]);
        const out = await engine.generate(prompt, { temperature: 0.8, maxTokens: reply, seed: s * 100 + t }).result;
        history = Int32Array.from([...prompt, ...out.completionIds]);
      }
    }),
  );
  const ms = performance.now() - t0;
  const stats = engine.stats();
  engine.close();
  return { ms, stats };
}

export const bench: Bench = async ({ quick, log }) => {
  const threads = nativeInfo().numThreads;
  const promptLen = quick ? 128 : 256, decodeTokens = quick ? 24 : 64, many = 32;
  const rows: (string | number)[][] = [];

  // Prefill: maxTokens 1, so the time is the prompts' forward (plus one sample).
  for (const n of [1, many]) {
    const ps = prompts(n, promptLen, n);
    const together = await median(() => serve(ps, 1, true));
    const oneByOne = n > 1 ? await median(() => serve(ps, 1, false)) : together;
    const tps = (n * promptLen) / (together / 1000);
    log(`prefill x${n}: ${fmt(together)} ms (${fmt(tps)} tok/s), one by one ${fmt(oneByOne)} ms`);
    rows.push([`prefill ${promptLen}`, n, fmt(together), fmt(tps), n > 1 ? `**${fmt(oneByOne / together)}x**` : '1x', '']);
  }

  // Decode: the difference between maxTokens = decodeTokens and maxTokens = 1 on the same prompts.
  const shortPrompt = 16;
  for (const n of [1, many]) {
    const ps = prompts(n, shortPrompt, 7 + n);
    const full = await median(() => serve(ps, decodeTokens, true));
    const pre = await median(() => serve(ps, 1, true));
    const ms = Math.max(1e-3, full - pre), tokens = n * (decodeTokens - 1);
    let oneByOne = '1x', vsNoCache = '';
    if (n > 1) {
      const seqFull = await median(() => serve(ps, decodeTokens, false));
      const seqPre = await median(() => serve(ps, 1, false));
      oneByOne = `**${fmt((seqFull - seqPre) / ms)}x**`;
    } else {
      const naive = (await median(() => noCacheDecode(ps[0], decodeTokens))) - (await median(() => noCacheDecode(ps[0], 1)));
      vsNoCache = `**${fmt(naive / ms)}x**`;
    }
    log(`decode x${n}: ${fmt(ms)} ms for ${tokens} tokens (${fmt(tokens / (ms / 1000))} tok/s)`);
    rows.push([`decode ${decodeTokens}`, n, fmt(ms), fmt(tokens / (ms / 1000)), oneByOne, vsNoCache]);
  }

  // The agent trace, cache on and off.
  const sessions = quick ? 4 : 8, turns = quick ? 4 : 6;
  const on = await agentTrace(sessions, turns, 48, 32, true);
  const off = await agentTrace(sessions, turns, 48, 32, false);
  log(`agent trace: cache on ${fmt(on.ms)} ms (hit rate ${fmt(on.stats.cacheHitRate)}), off ${fmt(off.ms)} ms`);
  const traceRows = [
    ['prefix cache on', fmt(on.ms), on.stats.promptTokens, on.stats.cachedPromptTokens, fmt(on.stats.cacheHitRate), on.stats.computedTokens, `**${fmt(off.ms / on.ms)}x**`],
    ['prefix cache off', fmt(off.ms), off.stats.promptTokens, off.stats.cachedPromptTokens, fmt(off.stats.cacheHitRate), off.stats.computedTokens, '1x'],
  ];

  const c = policy.config;
  const model = `${c.numLayers} layers, dim ${c.dim}, ${c.numHeads}/${c.numKvHeads} heads x ${c.headDim}, ffn ${c.ffnDim}, vocab ${c.vocabSize}`;
  const sections: BenchSection[] = [
    {
      title: 'Nano engine throughput (prefill / decode, 1 and 32 sessions)',
      description:
        `NanoEngine (${model}; ${threads} kernel threads), greedy, distinct random prompts. Prefill: ` +
        `${promptLen}-token prompts, maxTokens 1. Decode: ${shortPrompt}-token prompts, time(maxTokens ${decodeTokens}) - ` +
        'time(maxTokens 1); each time the median of 3 runs. Baselines in the same run: the same sessions served one after another, and for one ' +
        'session, generation without a KV cache (a full forge_model_forward of the sequence per token).',
      columns: ['phase', 'sessions', 'ms', 'tokens/s', 'speed-up vs one by one', 'speed-up vs no KV cache'],
      rows,
    },
    {
      title: 'Prefix cache on a multi-turn agent trace',
      description:
        `${sessions} concurrent sessions x ${turns} turns; a shared 120-token system prompt; each turn resends the ` +
        'whole history plus 48 new tokens and gets 32 back (temperature 0.8). Same trace with the prefix cache ' +
        'disabled (every prompt recomputed) as the baseline.',
      columns: ['engine', 'wall ms', 'prompt tokens', 'cached prompt tokens', 'hit rate', 'tokens computed', 'speed-up'],
      rows: traceRows,
      notes: [
        'Each turn recomputes only its new tokens (and the last history token is never fed before the next turn), ' +
          'so the computed tokens grow with the turn count instead of with the square of the history.',
      ],
    },
  ];
  return sections;
};
