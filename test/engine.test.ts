// The inference engine: forge_model_extend over a KV pool against forge_model_forward on the full
// sequences (and the float64 reference of test/reference/model.ts), the prefix cache's bookkeeping,
// and NanoEngine end to end: logprobs equal log_softmax of a fresh forward (with prefix-cache hits),
// batching does not change results, greedy determinism, stop rules, abort, eviction under a small
// budget, and weight swaps. Fresh random weights and prompts every run; failures print the seed.
//
// Tolerance: extend logits vs forward logits |err| <= 1e-5 + 1e-4 |ref| (float32 both ways, different
// summation order in attention); logprobs vs float64 log_softmax of a fresh forward 1e-4 absolute.
import { describe, expect, it } from 'vitest';

import { NanoEngine } from '../lib/engine/engine.js';
import { KvPool, ModelRunner, type ExtendBatch } from '../lib/engine/kernels.js';
import { PrefixCache } from '../lib/engine/prefixCache.js';
import { sampleToken, seededRandom } from '../lib/engine/sampler.js';
import type { GenerateResult } from '../lib/engine/types.js';
import { NanoPolicy, type NanoPolicyConfig } from '../lib/model/policy.js';
import { encode } from '../lib/model/tokenizer.js';
import { seededRun, type Rng } from './helpers/random.js';
import { expectClose } from './helpers/trees.js';
import { referenceForward } from './reference/model.js';

const run = seededRun();
const SMALL: Partial<NanoPolicyConfig> = { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 96 };
const LOGITS = { atol: 1e-5, rtol: 1e-4 };

const randomTokens = (rng: Rng, n: number, vocab = 288) => Int32Array.from({ length: n }, () => Math.floor(rng() * vocab));
const range = (n: number, from = 0) => Int32Array.from({ length: n }, (_, i) => from + i);

/** Logits [L, V] of every position of one sequence by forge_model_forward on a chain. */
function chainLogits(policy: NanoPolicy, params: Float32Array, tokens: Int32Array): Float32Array {
  const L = tokens.length;
  return policy.forward(params, tokens, range(L), { parent: range(L, -1), subtreeEnd: new Int32Array(L).fill(L) });
}

/** float64 log_softmax(row)[t], straight from the definition. */
function logSoftmax(row: ArrayLike<number>, t: number): number {
  const m = Math.max(...Array.from(row));
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - m);
  return row[t] - m - Math.log(s);
}

/** Checks every sampled token's logprob against a fresh forward of prompt + completion. */
function expectLogprobsMatchForward(policy: NanoPolicy, params: Float32Array, prompt: Int32Array, r: GenerateResult, greedy: boolean) {
  const full = Int32Array.from([...prompt, ...r.completionIds]);
  const logits = chainLogits(policy, params, full), V = policy.config.vocabSize;
  r.completionIds.forEach((tok, j) => {
    const row = logits.subarray((prompt.length - 1 + j) * V, (prompt.length + j) * V);
    const want = logSoftmax(row, tok);
    if (Math.abs(r.logprobs[j] - want) > 1e-4) run.fail(`logprob[${j}] ${r.logprobs[j]} != fresh forward ${want}`);
    if (greedy && row[tok] < Math.max(...Array.from(row)) - 1e-5) run.fail(`greedy token ${j} is not the argmax of the fresh forward`);
  });
}

describe('forge_model_extend equals forge_model_forward on the full sequences', () => {
  for (const [name, cfg] of [
    ['small untied model', SMALL],
    ['tied embeddings, MQA', { ...SMALL, tiedEmbeddings: true, numKvHeads: 1 }],
    ['default config', {}],
  ] as const)
    it(`fresh, chunked and prefix-cached sequences in shared calls (${name})`, () => {
      const rng = run.rng();
      const policy = new NanoPolicy(cfg), runner = new ModelRunner(cfg), V = policy.config.vocabSize;
      const params = policy.init(Math.floor(rng() * 1e9));
      const pool = new KvPool(cfg, 300);
      // Slots in a random order, so K/V rows are scattered over the pool.
      const free = Array.from(range(300)).sort(() => rng() - 0.5);
      const A = randomTokens(rng, 40), C = randomTokens(rng, 30);
      const B = Int32Array.from([...A.subarray(0, 25), ...randomTokens(rng, 20)]);
      const slotsA = Int32Array.from(free.splice(0, 40)), slotsC = Int32Array.from(free.splice(0, 30));
      const slotsB = Int32Array.from([...slotsA.subarray(0, 25), ...free.splice(0, 20)]);
      // One call: all of A (fresh prefill) and the first 15 tokens of C (a chunk).
      const step1: ExtendBatch = {
        tokens: Int32Array.from([...A, ...C.subarray(0, 15)]),
        positions: Int32Array.from([...range(40), ...range(15)]),
        slots: Int32Array.from([...slotsA, ...slotsC.subarray(0, 15)]),
        paths: Int32Array.from([...slotsA, ...slotsC.subarray(0, 15)]),
        pathOffset: Int32Array.from([...new Array(40).fill(0), ...new Array(15).fill(40)]),
        pathLen: Int32Array.from([...range(40, 1), ...range(15, 1)]),
        logitRows: range(55),
      };
      const out1 = runner.extend(params, pool, step1);
      // Second call: the rest of C (it reads its first chunk from the pool) and B's suffix, whose first
      // 25 tokens are A's cached slots.
      const step2: ExtendBatch = {
        tokens: Int32Array.from([...C.subarray(15), ...B.subarray(25)]),
        positions: Int32Array.from([...range(15, 15), ...range(20, 25)]),
        slots: Int32Array.from([...slotsC.subarray(15), ...slotsB.subarray(25)]),
        paths: Int32Array.from([...slotsC, ...slotsB]),
        pathOffset: Int32Array.from([...new Array(15).fill(0), ...new Array(20).fill(30)]),
        pathLen: Int32Array.from([...range(15, 16), ...range(20, 26)]),
        logitRows: Int32Array.from([34, 0, 14, 20]).map((x) => x), // any order, any subset
      };
      const out2 = runner.extend(params, pool, step2);
      const fa = chainLogits(policy, params, A), fb = chainLogits(policy, params, B), fc = chainLogits(policy, params, C);
      const row = (x: Float32Array, i: number) => x.subarray(i * V, (i + 1) * V);
      expectClose('A', out1.subarray(0, 40 * V), fa, run.seed, LOGITS.atol, LOGITS.rtol);
      expectClose('C chunk 1', out1.subarray(40 * V), fc.subarray(0, 15 * V), run.seed, LOGITS.atol, LOGITS.rtol);
      expectClose('B last', row(out2, 0), row(fb, 44), run.seed, LOGITS.atol, LOGITS.rtol);
      expectClose('C first of chunk 2', row(out2, 1), row(fc, 15), run.seed, LOGITS.atol, LOGITS.rtol);
      expectClose('C last', row(out2, 2), row(fc, 29), run.seed, LOGITS.atol, LOGITS.rtol);
      expectClose('B first computed', row(out2, 3), row(fb, 30), run.seed, LOGITS.atol, LOGITS.rtol);
      pool.free();
    });

  it('token-by-token decode equals the float64 reference model', async () => {
    const rng = run.rng();
    const cfg = { ...SMALL, dim: 32, ffnDim: 40 };
    const policy = new NanoPolicy(cfg), runner = new ModelRunner(cfg), V = policy.config.vocabSize;
    const params = policy.init(Math.floor(rng() * 1e9));
    const pool = new KvPool(cfg, 16);
    const tokens = randomTokens(rng, 12);
    const slots = Int32Array.from(Array.from(range(16)).sort(() => rng() - 0.5).slice(0, 12));
    const ref = referenceForward(policy.config, params, tokens, range(12), range(12, -1));
    for (let t = 0; t < 12; t++) {
      const logits = await runner.extendAsync(params, pool, {
        tokens: tokens.subarray(t, t + 1), positions: Int32Array.of(t), slots: slots.subarray(t, t + 1),
        paths: slots.subarray(0, t + 1), pathOffset: Int32Array.of(0), pathLen: Int32Array.of(t + 1), logitRows: Int32Array.of(0),
      });
      expectClose(`decode ${t}`, logits, ref[t], run.seed, LOGITS.atol, LOGITS.rtol);
      expect(logits.length).toBe(V);
    }
  });
});

describe('forge_model_extend rejects bad input with a named error', () => {
  const cfg = SMALL;
  const policy = new NanoPolicy(cfg), runner = new ModelRunner(cfg);
  const params = policy.init(1);
  const good = (): ExtendBatch => ({
    tokens: Int32Array.of(5, 6), positions: Int32Array.of(0, 1), slots: Int32Array.of(3, 7),
    paths: Int32Array.of(3, 7), pathOffset: Int32Array.of(0, 0), pathLen: Int32Array.of(1, 2), logitRows: Int32Array.of(1),
  });
  const cases: [string, (b: ExtendBatch) => void, RegExp][] = [
    ['slot out of range', (b) => (b.slots[1] = 8), /batch.slots\[1\]: slot 8 out of range \[0, 8\)/],
    ['path entry out of range', (b) => (b.paths[0] = -1), /batch.paths\[0\]: slot -1/],
    ['duplicate slots', (b) => ((b.slots[1] = 3), (b.paths[1] = 3)), /batch.slots\[1\]: slot 3 is also written by batch.slots\[0\]/],
    ['path not ending with the own slot', (b) => (b.pathLen[1] = 1), /batch.path_len\[1\]: the path must end with the token's own slot 7/],
    ['path past the end', (b) => (b.pathLen[1] = 3), /batch.path_len\[1\]: expected an integer in \[1, 2\]/],
    ['token id', (b) => (b.tokens[0] = 288), /batch.tokens\[0\]: token id 288 out of range \[0, 288\)/],
    ['negative position', (b) => (b.positions[1] = -4), /batch.positions\[1\]: expected >= 0/],
    ['logit row', (b) => (b.logitRows[0] = 2), /batch.logit_rows\[0\]: token 2 out of range \[0, 2\)/],
    ['length mismatch', (b) => (b.slots = Int32Array.of(1)), /batch.slots: expected 2 elements, got 1/],
  ];
  for (const [name, edit, message] of cases)
    it(name, async () => {
      const pool = new KvPool(cfg, 8);
      const b = good();
      edit(b);
      expect(() => runner.extend(params, pool, b)).toThrow(message);
      await expect(runner.extendAsync(params, pool, b)).rejects.toThrow(message);
      // The pool is still usable after a refused call.
      expect(runner.extend(params, pool, good()).length).toBe(288);
    });

  it('refuses a freed pool, a pool of another shape, and non-pools', () => {
    const pool = new KvPool(cfg, 8);
    pool.free();
    pool.free();
    expect(pool.freed).toBe(true);
    expect(() => runner.extend(params, pool, good())).toThrow(/freed/);
    expect(() => runner.extend(params, new KvPool({ ...cfg, numLayers: 3 }, 8), good())).toThrow(/another model shape/);
    expect(() => runner.extend(params, {} as KvPool, good())).toThrow(TypeError);
    expect(() => new KvPool(cfg, 0)).toThrow(/capacity/);
    expect(new KvPool(cfg, 10).info()).toEqual({ capacity: 10, numLayers: 2, numKvHeads: 2, headDim: 16, bytes: 2 * 10 * 2 * 2 * 16 * 4 });
  });
});

describe('PrefixCache', () => {
  it('matches, references, and evicts least-recently-used unreferenced leaves only', () => {
    const cache = new PrefixCache(6);
    const grow = (tokens: number[]) => {
      const nodes = [];
      let at = cache.rootNode;
      for (const t of tokens) {
        const existing = cache.child(at, t);
        if (existing) cache.acquire(existing);
        at = existing ?? cache.insert(at, t)!;
        nodes.push(at);
      }
      return nodes;
    };
    const a = grow([1, 2, 3]);
    const b = grow([1, 2, 4]);
    expect(b[0]).toBe(a[0]);
    expect(new Set([...a, ...b].map((n) => n.slot)).size).toBe(4);
    expect(cache.stats()).toMatchObject({ free: 2, cachedTokens: 4, evictable: 0 });
    cache.release(a); // [3] is an unreferenced leaf now; 1, 2 still held by b
    expect(cache.stats().evictable).toBe(1);
    cache.release(b);
    expect(cache.stats().evictable).toBe(4);
    expect(cache.match([1, 2, 4, 9]).map((n) => n.token)).toEqual([1, 2, 4]);
    // Fill the free slots, then two more: the oldest leaf (3, released first) goes, then 4.
    const c = grow([7, 8]);
    expect(cache.stats().free).toBe(0);
    const d = grow([7, 8, 9, 10]);
    expect(d.slice(0, 2)).toEqual(c);
    expect(cache.stats().evictions).toBe(2);
    expect(cache.match([1, 2, 3]).length).toBe(2);
    expect(cache.match([1, 2, 4]).length).toBe(2);
    // Everything left is referenced or an inner node of a referenced path: 1 -> 2 go next (2 first).
    const e = grow([5]);
    expect(cache.match([1, 2]).length).toBe(1);
    // Now only c/d/e are held: nothing can be evicted, insert says so instead of stealing.
    const one = grow([6]);
    expect(cache.stats()).toMatchObject({ evictions: 4, cachedTokens: 6, evictable: 0, free: 0 });
    expect(cache.insert(cache.rootNode, 11)).toBeUndefined();
    cache.release([...c, ...d, ...e, ...one]);
    expect(cache.stats()).toMatchObject({ cachedTokens: 6, evictable: 6 });
  });

  it('a new epoch detaches the trie: free now if unreferenced, on release otherwise', () => {
    const cache = new PrefixCache(4);
    const x = cache.insert(cache.rootNode, 1)!;
    const y = cache.insert(x, 2)!;
    cache.release([y]); // y unreferenced, x held
    expect(cache.newEpoch()).toBe(1);
    expect(cache.stats()).toMatchObject({ free: 3, cachedTokens: 0, evictable: 0 });
    expect(cache.match([1])).toEqual([]);
    // A sequence holding x may still grow under it; those nodes are detached too.
    const z = cache.insert(x, 3)!;
    expect(z.attached).toBe(false);
    cache.release([x, z]);
    expect(cache.stats()).toMatchObject({ free: 4, cachedTokens: 0 });
  });
});

describe('sampler', () => {
  it('draws from the temperature-scaled top-p nucleus; logprob is log_softmax of the raw logits', () => {
    const rng = run.rng();
    const V = 12, T = 0.7, P = 0.8;
    const logits = Float32Array.from({ length: V }, () => 3 * (rng() - 0.5));
    // Expected distribution, from the definition: softmax(z / T), keep the most likely tokens until their
    // mass reaches P, renormalise.
    const w = Array.from(logits, (z) => Math.exp(z / T));
    const total = w.reduce((a, b) => a + b, 0);
    const order = w.map((x, i) => [x / total, i]).sort((a, b) => b[0] - a[0]);
    const want = new Array(V).fill(0);
    let mass = 0;
    for (const [p, i] of order) {
      if (mass >= P) break;
      want[i] = p;
      mass += p;
    }
    const random = seededRandom(run.seed), draws = 40000, count = new Array(V).fill(0);
    for (let k = 0; k < draws; k++) {
      const { token, logprob } = sampleToken(logits, { temperature: T, topP: P }, random);
      count[token]++;
      if (k < 50 && Math.abs(logprob - logSoftmax(logits, token)) > 1e-12) run.fail('logprob is not log_softmax');
    }
    for (let i = 0; i < V; i++) {
      const p = want[i] / mass, sd = Math.sqrt((p * (1 - p)) / draws);
      if (Math.abs(count[i] / draws - p) > 5 * sd + 1e-9) run.fail(`token ${i}: frequency ${count[i] / draws}, expected ${p}`);
    }
    const greedy = sampleToken(logits, { temperature: 0, topP: 1 }, random);
    expect(greedy.token).toBe(Array.from(logits).indexOf(Math.max(...logits)));
    // The same seed gives the same stream.
    const a = seededRandom(12345), b = seededRandom(12345);
    expect(Array.from({ length: 5 }, a)).toEqual(Array.from({ length: 5 }, b));
    expect(() => sampleToken(Float32Array.of(0, NaN), { temperature: 1, topP: 1 }, random)).toThrow(/logits\[1\]/);
  });
});

/** A 0-layer "bigram" model: after token c it always says next(c) (rows of the head pick it). */
function bigramEngine(text: string, extra: Partial<ConstructorParameters<typeof NanoEngine>[0]> = {}) {
  const config = { ...SMALL, numLayers: 0, dim: 128 };
  const policy = new NanoPolicy(config);
  const params = new Float32Array(policy.numParams);
  const at = (name: string) => policy.paramInfo().find((t) => t.name === name)!.offset;
  for (let t = 0; t < 288; t++) params[at('tok_embeddings') + t * 128 + (t % 128)] = 1;
  params.fill(1, at('norm'), at('norm') + 128);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i), next = text.charCodeAt((i + 1) % text.length);
    params[at('output') + c * 288 + next] = 1;
  }
  return new NanoEngine({ config, params, cacheTokens: 256, ...extra });
}

describe('NanoEngine', () => {
  const policy = new NanoPolicy(SMALL);
  const params = policy.init((run.seed * 7) % 1e9);

  it('logprobs equal log_softmax of a fresh forward; a resent history is served from the cache', async () => {
    const rng = run.rng();
    const engine = new NanoEngine({ config: SMALL, params, cacheTokens: 2048 });
    const prompt = randomTokens(rng, 37);
    const r1 = await engine.generate(prompt, { temperature: 0, maxTokens: 24 }).result;
    expect(r1.completionIds.length).toBe(24);
    expect(r1.finishReason).toBe('length');
    expect(r1.cachedPromptTokens).toBe(0);
    expect(Array.from(r1.versions)).toEqual(new Array(24).fill(0));
    expectLogprobsMatchForward(policy, params, prompt, r1, true);
    // Turn 2: history + new user tokens. All of it but the unfed last sampled token is cached.
    const before = engine.stats().computedTokens;
    const prompt2 = Int32Array.from([...prompt, ...r1.completionIds, ...randomTokens(rng, 9)]);
    const r2 = await engine.generate(prompt2, { temperature: 0.9, topP: 0.95, maxTokens: 12, seed: 3 }).result;
    expect(r2.cachedPromptTokens).toBe(37 + 24 - 1);
    // Computed: 10 new prompt tokens, then 11 fed samples (the 12th is never fed).
    expect(engine.stats().computedTokens - before).toBe(10 + 11);
    expectLogprobsMatchForward(policy, params, prompt2, r2, false);
    // The same prompt again: fully cached; its last token runs once more only for its logits.
    const r3 = await engine.generate(prompt2, { temperature: 0.9, topP: 0.95, maxTokens: 12, seed: 3 }).result;
    expect(r3.cachedPromptTokens).toBe(prompt2.length - 1);
    expect(r3.completionIds).toEqual(r2.completionIds);
    expect(engine.stats().cacheHitRate).toBeGreaterThan(0.5);
    engine.close();
  });

  it('prefixCaching: false recomputes every prompt, caches nothing, and gives the same results', async () => {
    const rng = run.rng();
    const on = new NanoEngine({ config: SMALL, params }), off = new NanoEngine({ config: SMALL, params, prefixCaching: false });
    const prompt = randomTokens(rng, 30);
    const opts = { temperature: 1, maxTokens: 10, seed: 77 };
    const a1 = await on.generate(prompt, opts).result, a2 = await on.generate(prompt, opts).result;
    const [b1, b2] = await Promise.all([off.generate(prompt, opts).result, off.generate(prompt, opts).result]);
    expect(a2.cachedPromptTokens).toBe(29);
    expect([b1.cachedPromptTokens, b2.cachedPromptTokens]).toEqual([0, 0]);
    for (const r of [a2, b1, b2]) expect(r.completionIds).toEqual(a1.completionIds);
    expect(off.stats().cache).toMatchObject({ cachedTokens: 0, free: off.cacheTokens });
    on.close();
    off.close();
  });

  it('concurrent requests batched together give the same tokens as each alone, at the same seeds', async () => {
    const rng = run.rng();
    const prompts = Array.from({ length: 6 }, (_, i) => randomTokens(rng, 5 + Math.floor(rng() * 60) + (i === 0 ? 100 : 0)));
    const opts = (i: number) => ({ temperature: 1, topP: 0.9, maxTokens: 15 + i, seed: 1000 + i });
    const alone: GenerateResult[] = [];
    const solo = new NanoEngine({ config: SMALL, params });
    for (let i = 0; i < prompts.length; i++) alone.push(await solo.generate(prompts[i], opts(i)).result);
    solo.close();
    // Small steps: long prefills are chunked and share steps with other requests' decode tokens.
    const batched = new NanoEngine({ config: SMALL, params, maxBatchTokens: 24 });
    const together = await Promise.all(prompts.map((p, i) => batched.generate(p, opts(i)).result));
    together.forEach((r, i) => {
      expect(r.completionIds, run.why(`request ${i}`)).toEqual(alone[i].completionIds);
      expectClose(`logprobs ${i}`, r.logprobs, alone[i].logprobs, run.seed, 1e-6, 0);
    });
    const s = batched.stats();
    expect(s.meanBatchSequences).toBeGreaterThan(1.5);
    expect(s.maxBatchTokens).toBeLessThanOrEqual(24);
    batched.close();
  });

  it('greedy decoding is deterministic, and streamed events equal the result', async () => {
    const rng = run.rng();
    const prompt = randomTokens(rng, 20);
    const a = new NanoEngine({ config: SMALL, params }), b = new NanoEngine({ config: SMALL, params });
    const g = a.generate(prompt, { temperature: 0, maxTokens: 30, seed: 1 });
    const events = [];
    for await (const e of g) events.push(e);
    const ra = await g.result;
    const rb = await b.generate(prompt, { temperature: 0, maxTokens: 30, seed: 99 }).result;
    expect(rb.completionIds).toEqual(ra.completionIds);
    expect(events.map((e) => e.token)).toEqual(Array.from(ra.completionIds));
    expect(events.map((e) => e.logprob)).toEqual(Array.from(ra.logprobs));
    a.close();
    b.close();
  });

  it('stops on stop tokens, stop strings (tokenized), and maxTokens', async () => {
    const engine = bigramEngine('abcdefg ');
    const a = encode('a');
    const plain = await engine.generate(a, { temperature: 0, maxTokens: 10 }).result;
    expect(new TextDecoder().decode(Uint8Array.from(plain.completionIds))).toBe('bcdefg abc');
    const byToken = await engine.generate(a, { temperature: 0, stop: ['e'.charCodeAt(0)] }).result;
    expect(byToken).toMatchObject({ finishReason: 'stop', stoppedBy: 101 });
    expect(Array.from(byToken.completionIds)).toEqual(Array.from(encode('bcde')));
    const byString = await engine.generate(a, { temperature: 0, stop: ['xyz', 'g a'] }).result;
    expect(byString).toMatchObject({ finishReason: 'stop', stoppedBy: 'g a' });
    expect(Array.from(byString.completionIds)).toEqual(Array.from(encode('bcdefg a')));
    const byLength = await engine.generate(a, { temperature: 0, maxTokens: 3, stop: ['zz'] }).result;
    expect(byLength.finishReason).toBe('length');
    expect(byLength.completionIds.length).toBe(3);
    engine.close();
  });

  it('abort: mid-generation ends the request and frees its sequence; pre-aborted and queued requests too', async () => {
    const rng = run.rng();
    const engine = new NanoEngine({ config: SMALL, params, cacheTokens: 200 });
    const ctrl = new AbortController();
    const g = engine.generate(randomTokens(rng, 30), { maxTokens: 100, signal: ctrl.signal, seed: 4 });
    // A second request needs more room than is left while the first runs: it waits in the queue.
    const waitCtrl = new AbortController();
    const queued = engine.generate(randomTokens(rng, 40), { maxTokens: 60, signal: waitCtrl.signal });
    let seen = 0;
    for await (const _ of g) if (++seen === 3) ctrl.abort();
    const r = await g.result;
    expect(r.finishReason).toBe('abort');
    expect(r.completionIds.length).toBeGreaterThanOrEqual(3);
    expect(r.completionIds.length).toBeLessThan(100);
    waitCtrl.abort();
    const q = await queued.result;
    expect(q.finishReason).toBe('abort');
    const pre = AbortSignal.abort();
    expect((await engine.generate(randomTokens(rng, 5), { signal: pre }).result)).toMatchObject({ finishReason: 'abort', completionIds: new Int32Array(0) });
    await new Promise((res) => setTimeout(res, 20));
    const s = engine.stats();
    expect(s).toMatchObject({ running: 0, queued: 0 });
    // No references leak: every cached token is evictable, and cached + free = all slots.
    expect(s.cache.evictable).toBe(s.cache.cachedTokens);
    expect(s.cache.free + s.cache.cachedTokens).toBe(200);
    engine.close();
  });

  it('eviction under a small budget keeps results correct', async () => {
    const rng = run.rng();
    const shared = randomTokens(rng, 20);
    const prompts = Array.from({ length: 8 }, () => Int32Array.from([...shared, ...randomTokens(rng, 15 + Math.floor(rng() * 20))]));
    const big = new NanoEngine({ config: SMALL, params, cacheTokens: 4096 });
    const small = new NanoEngine({ config: SMALL, params, cacheTokens: 120, maxBatchTokens: 32 });
    const want = await Promise.all(prompts.map((p, i) => big.generate(p, { temperature: 0.7, maxTokens: 16, seed: i }).result));
    const got = await Promise.all(prompts.map((p, i) => small.generate(p, { temperature: 0.7, maxTokens: 16, seed: i }).result));
    got.forEach((r, i) => expect(r.completionIds, run.why(`request ${i}`)).toEqual(want[i].completionIds));
    expectLogprobsMatchForward(policy, params, prompts[7], got[7], false);
    const s = small.stats();
    expect(s.cache.evictions).toBeGreaterThan(0);
    expect(s.cachedPromptTokens).toBeGreaterThan(0); // the shared prefix was reused while it stayed
    expect(s.cache.evictable).toBe(s.cache.cachedTokens);
    big.close();
    small.close();
  });

  it('a weight swap mid-generation stamps the new version on later tokens and detaches the cache', async () => {
    const rng = run.rng();
    const params2 = policy.init(((run.seed * 13) % 1e9) + 1);
    const engine = new NanoEngine({ config: SMALL, params, version: 4 });
    const prompt = randomTokens(rng, 25);
    const g = engine.generate(prompt, { temperature: 1, maxTokens: 30, seed: 8 });
    let swap: Promise<void> | undefined, n = 0;
    for await (const e of g) {
      expect(e.version).toBe(swap ? e.version : 4);
      if (++n === 6) swap = engine.setWeights(params2, 5);
    }
    await swap;
    const r = await g.result;
    const versions = Array.from(r.versions);
    const firstNew = versions.indexOf(5);
    expect(firstNew).toBeGreaterThanOrEqual(6);
    expect(versions.slice(0, firstNew).every((v) => v === 4)).toBe(true);
    expect(versions.slice(firstNew).every((v) => v === 5)).toBe(true);
    expect(engine.version).toBe(5);
    // Nothing computed with the old weights serves a new request: the same prompt is a full miss,
    // and its logprobs are those of a fresh forward with the new weights.
    const r2 = await engine.generate(prompt, { temperature: 0, maxTokens: 8 }).result;
    expect(r2.cachedPromptTokens).toBe(0);
    expect(Array.from(r2.versions)).toEqual(new Array(8).fill(5));
    expectLogprobsMatchForward(policy, params2, prompt, r2, true);
    // Weights given to the engine are copied: changing the caller's array later changes nothing.
    params2.fill(0);
    const r3 = await engine.generate(prompt, { temperature: 0, maxTokens: 8 }).result;
    expect(r3.completionIds).toEqual(r2.completionIds);
    engine.close();
  });

  it('rejects bad requests with named errors', () => {
    const engine = new NanoEngine({ config: SMALL, params, cacheTokens: 64 });
    const p = Int32Array.of(1, 2, 3);
    expect(() => engine.generate([1, 2] as unknown as Int32Array)).toThrow(/promptIds: expected a Int32Array/);
    expect(() => engine.generate(new Int32Array(0))).toThrow(/promptIds: expected at least 1 token/);
    expect(() => engine.generate(Int32Array.of(1, 300))).toThrow(/promptIds\[1\]: token id 300/);
    expect(() => engine.generate(p, { temperature: -1 })).toThrow(/options.temperature/);
    expect(() => engine.generate(p, { topP: 0 })).toThrow(/options.topP/);
    expect(() => engine.generate(p, { maxTokens: 62 })).toThrow(/exceed cacheTokens \(64\)/);
    expect(() => engine.generate(p, { stop: [''] })).toThrow(/options.stop\[0\]: an empty stop string/);
    expect(() => engine.generate(p, { stop: [1.5] })).toThrow(/options.stop\[0\]/);
    expect(() => engine.setWeights(new Float32Array(3), 1)).toThrow(/params: expected/);
    const bad = params.slice();
    bad[17] = NaN;
    expect(() => engine.setWeights(bad, 1)).toThrow(/params\[17\]: expected a finite number/);
    expect(() => new NanoEngine({ config: SMALL, params, maxBatchTokens: 0 })).toThrow(/maxBatchTokens/);
    engine.close();
    expect(() => engine.generate(p)).toThrow(/closed/);
  });
});
