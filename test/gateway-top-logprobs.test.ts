// Real top-k alternatives (top_logprobs): the sampler's top-k against a brute-force float64 reference
// on fresh random rows (ties included); the NanoEngine's per-token alternatives against an
// independent reference — the logits of NanoPolicy.forward over prompt + completion, log-softmaxed
// in float64 here — (k entries, most likely first, <= 0, the right set, the sampled token's entry
// equal to its recorded logprob, the entries being the full distribution's: with the reference's
// other tokens they log-sum-exp to 0); then through the gateway with the real `openai` client (chat
// logprobs.content[].top_logprobs, streamed == not; legacy completions' top_logprobs dicts) and the
// vLLM upstream passing a server's alternatives on (a FAKE vLLM stream, as no GPU server runs here).
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NanoEngine } from '../lib/engine/engine.js';
import { sampleToken, seededRandom, topLogprobs } from '../lib/engine/sampler.js';
import type { TopLogprob } from '../lib/engine/types.js';
import { createGateway, EngineUpstream, MemoryRecorder, OpenAICompatibleUpstream, type Gateway } from '../lib/gateway/index.js';
import { NanoPolicy, type NanoPolicyConfig } from '../lib/model/policy.js';
import { encode } from '../lib/model/tokenizer.js';
import { gauss, seededRun, type Rng } from './helpers/random.js';

const run = seededRun();
const SMALL: Partial<NanoPolicyConfig> = { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 96 };
const ADMIN = 'admin';
const TOL = 1e-4; // engine float32 logits vs a fresh forward (as test/engine.test.ts)
const range = (n: number, from = 0) => Int32Array.from({ length: n }, (_, i) => from + i);

/** float64 log_softmax of a row, straight from the definition. */
function logSoftmax(row: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) m = Math.max(m, row[i]);
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - m);
  return Float64Array.from(row, (z) => z - m - Math.log(s));
}

const logSumExp = (xs: ArrayLike<number>) => {
  const m = Math.max(...Array.from(xs));
  return m + Math.log(Array.from(xs).reduce((s, x) => s + Math.exp(x - m), 0));
};

/** Reference log-softmax rows of each completion position, from a fresh forward of prompt + completion. */
function referenceRows(policy: NanoPolicy, params: Float32Array, prompt: ArrayLike<number>, completion: ArrayLike<number>): Float64Array[] {
  const full = Int32Array.from([...Array.from(prompt), ...Array.from(completion)]), L = full.length, V = policy.config.vocabSize;
  const logits = policy.forward(params, full, range(L), { parent: range(L, -1), subtreeEnd: new Int32Array(L).fill(L) });
  return Array.from({ length: completion.length }, (_, j) => logSoftmax(logits.subarray((prompt.length - 1 + j) * V, (prompt.length + j) * V)));
}

/** One step's alternatives against the reference distribution `ref` (log-softmax, float64). */
function checkTop(top: readonly TopLogprob[], ref: Float64Array, k: number, sampled: number, logprob: number, where: string) {
  const why = run.why(where);
  expect(top.length, why).toBe(k);
  top.forEach((t, i) => {
    expect(t.logprob, why).toBeLessThanOrEqual(0);
    if (i > 0) expect(t.logprob, why).toBeLessThanOrEqual(top[i - 1].logprob);
    expect(Math.abs(t.logprob - ref[t.token]), why).toBeLessThan(TOL);
  });
  expect(new Set(top.map((t) => t.token)).size, why).toBe(k);
  // The right set: nothing left out is clearly more likely than the least likely entry.
  const chosen = new Set(top.map((t) => t.token));
  const floor = Math.min(...top.map((t) => ref[t.token]));
  ref.forEach((lp, v) => {
    if (!chosen.has(v)) expect(lp, why).toBeLessThan(floor + 2 * TOL);
  });
  const own = top.find((t) => t.token === sampled);
  if (own) expect(own.logprob, why).toBe(logprob);
  // The entries are the full distribution's (not renormalised over the k): with the others, lse = 0.
  const full = Float64Array.from(ref);
  for (const t of top) full[t.token] = t.logprob;
  expect(Math.abs(logSumExp(full)), why).toBeLessThan(TOL);
  expect(top.reduce((s, t) => s + Math.exp(t.logprob), 0), why).toBeLessThanOrEqual(1 + 1e-12);
}

let policy: NanoPolicy, params: Float32Array, engine: NanoEngine, gw: Gateway, base: string, recorder: MemoryRecorder;
let upstream: EngineUpstream;

async function session(b = base) {
  const r = await fetch(`${b}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{}' });
  return (await r.json()) as { id: string; key: string };
}

beforeAll(async () => {
  policy = new NanoPolicy(SMALL);
  params = policy.init(run.seed % 100000);
  engine = new NanoEngine({ config: SMALL, params, cacheTokens: 8192, version: 2 });
  upstream = new EngineUpstream({ generator: engine, model: 'nano' });
  recorder = new MemoryRecorder();
  gw = createGateway({ upstream, adminToken: ADMIN, recorder });
  base = await gw.listen();
});
afterAll(async () => {
  await gw.close();
  engine.close();
});

describe(`top-k alternatives (seed ${run.seed})`, () => {
  it('sampler: topLogprobs is the brute-force top k of log_softmax (ties: lower id first); sampleToken reports it only when asked', () => {
    const rng = run.rng();
    for (let trial = 0; trial < 40; trial++) {
      const V = 1 + Math.floor(rng() * 300);
      // Rounded logits make ties common.
      const row = Float32Array.from({ length: V }, () => Math.round(gauss(rng) * 4) / 2);
      const ref = logSoftmax(row);
      for (const k of [1, 3, 20, V + 5]) {
        const want = Array.from(range(V)).sort((a, b) => row[b] - row[a] || a - b).slice(0, k);
        const got = topLogprobs(row, k);
        expect(got.map((t) => t.token), run.why(`V ${V} k ${k}`)).toEqual(want);
        got.forEach((t) => expect(Math.abs(t.logprob - ref[t.token])).toBeLessThan(1e-12));
      }
      const random = seededRandom(run.seed + trial);
      for (const options of [{ temperature: 0, topP: 1 }, { temperature: 0.7, topP: 0.9 }, { temperature: 1.5, topP: 1 }]) {
        const s = sampleToken(row, options, random, 5);
        expect(s.top).toEqual(topLogprobs(row, 5));
        const own = s.top!.find((t) => t.token === s.token);
        if (own) expect(own.logprob).toBe(s.logprob);
        if (options.temperature === 0) expect(s.top![0]).toEqual({ token: s.token, logprob: s.logprob });
        expect('top' in sampleToken(row, options, random)).toBe(false);
      }
    }
  });

  it('NanoEngine: per-token alternatives match a fresh forward; none (and no key) when not asked; k is checked', async () => {
    const prompt = Int32Array.from([256, ...encode('The alternatives of a random model:')]);
    for (const [temperature, k] of [[0, 20], [1, 5]] as const) {
      const g = engine.generate(prompt, { temperature, maxTokens: 16, seed: run.seed % 100000, topLogprobs: k });
      const events = [];
      for await (const e of g) events.push(e);
      const r = await g.result;
      expect(r.topLogprobs!.length).toBe(r.completionIds.length);
      expect(events.map((e) => e.top)).toEqual(r.topLogprobs);
      const rows = referenceRows(policy, params, prompt, r.completionIds);
      r.completionIds.forEach((tok, j) => checkTop(r.topLogprobs![j], rows[j], k, tok, r.logprobs[j], `T ${temperature} token ${j}`));
      // Greedy: the sampled token is the first alternative, with its own logprob exactly.
      if (temperature === 0) r.topLogprobs!.forEach((t, j) => expect(t[0]).toEqual({ token: r.completionIds[j], logprob: r.logprobs[j] }));
    }
    const plain = engine.generate(prompt, { maxTokens: 4, seed: 1 });
    for await (const e of plain) expect('top' in e).toBe(false);
    expect('topLogprobs' in (await plain.result)).toBe(false);
    expect(() => engine.generate(prompt, { topLogprobs: 21 })).toThrow(/options.topLogprobs/);
  });

  it('chat completions: logprobs.content[].top_logprobs are the engine\'s alternatives, streamed == not', async () => {
    const textToId = new Map(Array.from(range(policy.config.vocabSize), (id) => [upstream.tokenText(id), id] as const));
    expect(textToId.size).toBe(policy.config.vocabSize);
    const a = await session(), b = await session();
    const body = { model: 'nano', messages: [{ role: 'user' as const, content: 'Say something.' }], max_tokens: 20, temperature: 1, seed: run.seed % 100000, logprobs: true, top_logprobs: 5 };
    const plain = await new OpenAI({ apiKey: a.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create(body);
    const stream = await new OpenAI({ apiKey: b.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create({ ...body, stream: true });
    const streamed: OpenAI.Chat.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) for (const ch of chunk.choices) streamed.push(...(ch.logprobs?.content ?? []));
    const content = plain.choices[0].logprobs!.content!;
    expect(streamed).toEqual(content);
    const [rec] = recorder.callsOf(a.id);
    expect(content.map((c) => textToId.get(c.token))).toEqual(Array.from(rec.completionIds!));
    const rows = referenceRows(policy, params, rec.promptIds!, rec.completionIds!);
    content.forEach((c, j) => {
      const top = c.top_logprobs.map((t) => ({ token: textToId.get(t.token)!, logprob: t.logprob }));
      checkTop(top, rows[j], 5, rec.completionIds![j], rec.logprobs![j], `chat token ${j}`);
      c.top_logprobs.forEach((t) => expect(t.bytes).toEqual(/^\\x[0-9a-f]{2}$/.test(t.token) ? [parseInt(t.token.slice(2), 16)] : Array.from(Buffer.from(t.token))));
    });
    // logprobs without top_logprobs: empty lists; top_logprobs without logprobs: refused.
    const c = await session();
    const none = await new OpenAI({ apiKey: c.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create({ ...body, top_logprobs: undefined, max_tokens: 4 });
    expect(none.choices[0].logprobs!.content!.every((t) => t.top_logprobs.length === 0)).toBe(true);
    const e = await new OpenAI({ apiKey: c.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create({ ...body, logprobs: false }).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect((e as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({ code: 'FORGE_GW_INVALID_REQUEST', param: 'top_logprobs' });
  });

  it('legacy completions: top_logprobs dicts hold the k most likely tokens plus the sampled one', async () => {
    const textToId = new Map(Array.from(range(policy.config.vocabSize), (id) => [upstream.tokenText(id), id] as const));
    const s = await session();
    const r = await new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 }).completions.create({ model: 'nano', prompt: 'Once upon', max_tokens: 12, temperature: 1, seed: run.seed % 1000, logprobs: 3 });
    const lp = r.choices[0].logprobs!;
    const [rec] = recorder.callsOf(s.id);
    const rows = referenceRows(policy, params, rec.promptIds!, rec.completionIds!);
    lp.top_logprobs!.forEach((dict, j) => {
      const sampled = rec.completionIds![j];
      const entries = Object.entries(dict).map(([t, v]) => ({ token: textToId.get(t)!, logprob: v }));
      expect(dict[lp.tokens![j]]).toBe(lp.token_logprobs![j]);
      const top = entries.sort((x, y) => y.logprob - x.logprob || x.token - y.token);
      // The sampled token rides along when it is not among the three.
      const inTop = top.slice(0, 3).some((t) => t.token === sampled);
      expect(top.length).toBe(inTop ? 3 : 4);
      checkTop(inTop ? top : top.filter((t) => t.token !== sampled), rows[j], 3, sampled, rec.logprobs![j], `completion token ${j}`);
    });
  });

  it('vLLM upstream: asks the server for top_logprobs and passes its alternatives on (chat and completions)', async () => {
    const rng = run.rng();
    const served: { body: Record<string, unknown>; steps: FakeStep[] }[] = [];
    const gwV = createGateway({
      upstream: new OpenAICompatibleUpstream({ baseURL: 'http://fake-vllm.invalid/v1', model: 'm', version: () => 1, fetch: fakeVllmStream(rng, served) }),
      adminToken: ADMIN,
    });
    const baseV = await gwV.listen();
    try {
      const s = await session(baseV);
      const c = new OpenAI({ apiKey: s.key, baseURL: `${baseV}/v1`, maxRetries: 0 });
      const chat = await c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], logprobs: true, top_logprobs: 4 });
      expect(served[0].body).toMatchObject({ logprobs: true, top_logprobs: 4, return_tokens_as_token_ids: true });
      expect(chat.choices[0].logprobs!.content!.length).toBe(served[0].steps.length);
      for (const [j, entry] of chat.choices[0].logprobs!.content!.entries()) {
        const step = served[0].steps[j];
        expect(entry.token).toBe(`token_id:${step.token}`);
        expect(entry.top_logprobs.map((t) => [t.token, t.logprob])).toEqual(step.top.slice(0, 4).map((t) => [`token_id:${t.token}`, t.logprob]));
      }
      const legacy = await c.completions.create({ model: 'm', prompt: 'x', logprobs: 2, max_tokens: 5 });
      expect(served[1].body).toMatchObject({ logprobs: 2 });
      expect(legacy.choices[0].logprobs!.top_logprobs!.length).toBe(served[1].steps.length);
      legacy.choices[0].logprobs!.top_logprobs!.forEach((dict, j) => {
        const step = served[1].steps[j];
        const want: Record<string, number> = {};
        for (const t of step.top.slice(0, 2)) want[`token_id:${t.token}`] = t.logprob;
        want[`token_id:${step.token}`] = step.logprob;
        expect(dict).toEqual(want);
      });
      // Not asked: the server is asked for none.
      await c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }] });
      expect(served[2].body).toMatchObject({ top_logprobs: 0 });
    } finally {
      await gwV.close();
    }
  });
});

interface FakeStep { token: number; logprob: number; top: TopLogprob[] }

/** Made-up steps of a FAKE server: a random distribution over 40 tokens each, a sampled token, its top 6. */
function fakeSteps(rng: Rng): FakeStep[] {
  return Array.from({ length: 5 }, () => {
    const lp = logSoftmax(Float64Array.from({ length: 40 }, () => 2 * gauss(rng)));
    const order = Array.from(range(40)).sort((a, b) => lp[b] - lp[a] || a - b);
    const token = Math.floor(rng() * 40);
    return { token, logprob: lp[token], top: order.slice(0, 6).map((t) => ({ token: t, logprob: lp[t] })) };
  });
}

/**
 * A FAKE vLLM server as a fetch function (no GPU server runs here): it streams made-up steps in
 * vLLM's chunk shapes with return_token_ids / return_tokens_as_token_ids, and the alternatives the
 * request asked for (chat: top_logprobs entries; completions: a dict of the top k plus the sampled).
 */
function fakeVllmStream(rng: Rng, served: { body: Record<string, unknown>; steps: FakeStep[] }[]): typeof fetch {
  return async (url, init) => {
    const body = JSON.parse(String(init!.body)) as Record<string, any>;
    const chat = String(url).endsWith('/chat/completions');
    const steps = fakeSteps(rng);
    served.push({ body, steps });
    const k = chat ? body.top_logprobs : body.logprobs;
    const name = (t: number) => `token_id:${t}`;
    const chunks: unknown[] = [];
    steps.forEach((s, i) => {
      const finish = i === steps.length - 1 ? 'length' : null;
      const choice: Record<string, unknown> = { index: 0, token_ids: [s.token], finish_reason: finish };
      if (chat) {
        choice.delta = { content: 'a' };
        choice.logprobs = { content: [{ token: name(s.token), logprob: s.logprob, top_logprobs: s.top.slice(0, k).map((t) => ({ token: name(t.token), logprob: t.logprob })) }] };
      } else {
        const dict: Record<string, number> = Object.fromEntries(s.top.slice(0, k).map((t) => [name(t.token), t.logprob]));
        dict[name(s.token)] = s.logprob;
        choice.text = 'a';
        choice.logprobs = { tokens: [name(s.token)], token_logprobs: [s.logprob], top_logprobs: [dict] };
        if (i === 0) choice.prompt_token_ids = [1, 2, 3];
      }
      chunks.push({ id: 'x', choices: [choice], ...(chat && i === 0 ? { prompt_token_ids: [1, 2, 3] } : {}) });
    });
    chunks.push({ id: 'x', choices: [], usage: { prompt_tokens: 3, completion_tokens: steps.length } });
    const text = chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n';
    return new Response(text, { status: 200, headers: { 'content-type': 'text/event-stream' } });
  };
}
