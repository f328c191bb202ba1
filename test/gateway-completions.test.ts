// Legacy OpenAI Completions (POST /v1/completions) through the real `openai` client's
// completions.create, streamed and not, against three upstreams: the REAL embedded NanoEngine (a
// small random model: the checks are recording invariants), the engine upstream driven by a scripted
// FAKE generator (deterministic text for stop strings, lengths and the call tree), and the
// OpenAI-compatible upstream in front of the FAKE vLLM server (records equal what it produced).
// Refusals (several prompts, echo, bad ids, prompts over the limit) are 400s and record nothing.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NanoEngine } from '../lib/engine/engine.js';
import {
  createGateway, EngineUpstream, GatewayErrorCode, MemoryRecorder, OpenAICompatibleUpstream, ScriptedFakeGenerator, type Gateway,
} from '../lib/gateway/index.js';
import { render, stopTokens } from '../lib/model/chatTemplate.js';
import { NanoPolicy, type NanoPolicyConfig } from '../lib/model/policy.js';
import { decode, encode, SpecialToken } from '../lib/model/tokenizer.js';
import { FakeVllmServer } from './fakes/fakeVllmServer.js';
import { seededRun } from './helpers/random.js';

const run = seededRun();
const SMALL: Partial<NanoPolicyConfig> = { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 96 };
const ADMIN = 'admin';
const SCRIPTED = Int32Array.from([...encode('Hello STOP world'), SpecialToken.EOS]);

let engine: NanoEngine, scripted: ScriptedFakeGenerator, fake: FakeVllmServer;
const gws: Gateway[] = [];
const bases: Record<'engine' | 'scripted' | 'vllm', string> = { engine: '', scripted: '', vllm: '' };

async function session(b: string) {
  const r = await fetch(`${b}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{}' });
  return (await r.json()) as { id: string; key: string };
}
const client = (key: string, b: string) => new OpenAI({ apiKey: key, baseURL: `${b}/v1`, maxRetries: 0 });
const recorderOf = (k: number) => gws[k].recorder as MemoryRecorder;

/** Streams a completion; returns the text, the per-token logprobs and tokens, the finish reason. */
async function streamed(c: OpenAI, body: Record<string, unknown>) {
  const stream = await c.completions.create({ ...body, stream: true } as never) as unknown as AsyncIterable<OpenAI.Completions.Completion>;
  let text = '', finish: string | null = null;
  const logprobs: number[] = [], tokens: string[] = [];
  for await (const chunk of stream)
    for (const ch of chunk.choices) {
      text += ch.text;
      logprobs.push(...(ch.logprobs?.token_logprobs ?? []));
      tokens.push(...(ch.logprobs?.tokens ?? []));
      finish = ch.finish_reason ?? finish;
    }
  return { text, logprobs, tokens, finish };
}

async function openaiError(p: Promise<unknown>) {
  const e = (await p.then(() => { throw new Error('expected an error'); }, (x) => x)) as InstanceType<typeof OpenAI.APIError>;
  expect(e).toBeInstanceOf(OpenAI.APIError);
  const body = e.error as { code: string; param: string | null; type: string };
  expect(body.type).toBe('invalid_request_error');
  return { status: e.status, code: body.code, param: body.param };
}

beforeAll(async () => {
  const params = new NanoPolicy(SMALL).init(run.seed % 1000);
  engine = new NanoEngine({ config: SMALL, params, cacheTokens: 4096, version: 4 });
  scripted = new ScriptedFakeGenerator(() => SCRIPTED);
  fake = new FakeVllmServer({ script: () => SCRIPTED, seed: run.seed });
  await fake.start();
  gws.push(
    createGateway({ upstream: new EngineUpstream({ generator: engine, model: 'nano' }), adminToken: ADMIN }),
    createGateway({ upstream: new EngineUpstream({ generator: scripted, model: 'nano' }), adminToken: ADMIN, limits: { maxPromptTokens: 64 } }),
    createGateway({ upstream: new OpenAICompatibleUpstream({ baseURL: fake.url, model: fake.model, version: () => 2 }), adminToken: ADMIN }),
  );
  [bases.engine, bases.scripted, bases.vllm] = await Promise.all(gws.map((g) => g.listen()));
});
afterAll(async () => {
  for (const g of gws) await g.close();
  engine.close();
  await fake.close();
});

describe(`gateway / legacy Completions (seed ${run.seed})`, () => {
  it('the real engine: text and token-id prompts recorded token-exact, the agent\'s text and logprobs are the record\'s, stream == non-stream', async () => {
    const a = await session(bases.engine), b = await session(bases.engine);
    const body = { model: 'nano', prompt: 'Once upon a time', max_tokens: 24, temperature: 1, seed: run.seed % 100000, logprobs: 1 };
    const plain = await client(a.key, bases.engine).completions.create(body);
    const stream = await streamed(new OpenAI({ apiKey: 'EMPTY', baseURL: `${bases.engine}/sessions/${b.id}/v1`, maxRetries: 0 }), body);
    const [ra] = recorderOf(0).callsOf(a.id), [rb] = recorderOf(0).callsOf(b.id);
    for (const rec of [ra, rb]) {
      expect(rec).toMatchObject({ status: 'ok', trainable: true, link: { relation: 'root' } });
      expect(Array.from(rec.promptIds!)).toEqual([SpecialToken.BOS, ...encode('Once upon a time')]);
      const n = rec.completionIds!.length;
      expect(n).toBeGreaterThan(0);
      expect(n).toBeLessThanOrEqual(24);
      expect(Array.from(rec.versions!)).toEqual(new Array(n).fill(4));
    }
    expect(Array.from(rb.completionIds!)).toEqual(Array.from(ra.completionIds!));
    expect(Array.from(rb.logprobs!)).toEqual(Array.from(ra.logprobs!));
    // The text is the ids decoded, without the stop token that ended them.
    const ids = Array.from(ra.completionIds!);
    const ended = ids.length > 0 && stopTokens.includes(ids[ids.length - 1]);
    const text = decode(ended ? ids.slice(0, -1) : ids);
    expect(plain.choices[0].text).toBe(text);
    expect(stream.text).toBe(text);
    expect(plain.choices[0].finish_reason).toBe(ended ? 'stop' : 'length');
    expect(stream.finish).toBe(plain.choices[0].finish_reason);
    expect(plain.choices[0].logprobs!.token_logprobs).toEqual(Array.from(ra.logprobs!));
    expect(stream.logprobs).toEqual(Array.from(ra.logprobs!));
    expect(stream.tokens).toEqual(plain.choices[0].logprobs!.tokens);
    expect(plain.usage).toMatchObject({ prompt_tokens: 17, completion_tokens: ids.length });

    // A prompt of token ids (a chat the agent rendered itself) is used exactly as given.
    const rendered = Array.from(render([{ role: 'user', content: 'hi' }], undefined, { addGenerationPrompt: true }));
    await client(a.key, bases.engine).completions.create({ model: 'nano', prompt: rendered, max_tokens: 8 });
    expect(Array.from(recorderOf(0).callsOf(a.id)[1].promptIds!)).toEqual(rendered);
  });

  it('scripted engine: stop strings trimmed from the text (not the ids), max_tokens, n, and the call tree by token ids', async () => {
    const s = await session(bases.scripted);
    const c = client(s.key, bases.scripted);
    const prompt = [SpecialToken.BOS, ...encode('Say it:')];
    const r1 = await c.completions.create({ model: 'nano', prompt, stop: 'STOP', max_tokens: 30 });
    expect(r1.choices[0]).toMatchObject({ text: 'Hello ', finish_reason: 'stop' });
    const s1 = await streamed(c, { model: 'nano', prompt: 'x', max_tokens: 3 });
    expect(s1).toMatchObject({ text: 'Hel', finish: 'length' });
    const s2 = await streamed(c, { model: 'nano', prompt: 'x', max_tokens: 30 });
    expect(s2).toMatchObject({ text: 'Hello STOP world', finish: 'stop' });
    const [c1, c2, c3] = recorderOf(1).callsOf(s.id);
    expect(Array.from(c1.completionIds!)).toEqual(Array.from(encode('Hello STOP')));
    expect(Array.from(c2.completionIds!)).toEqual(Array.from(encode('Hel')));
    expect(Array.from(c3.completionIds!)).toEqual(Array.from(SCRIPTED));
    expect(c3.finishReason).toBe('stop');

    // A prompt extending the first call's prompt + completion continues it; one that rewrites it forks.
    const next = [...prompt, ...c1.completionIds!, ...encode(' again')];
    await c.completions.create({ model: 'nano', prompt: next, max_tokens: 2 });
    const forked = [...prompt.slice(0, 4), ...encode('different')];
    const r5 = await c.completions.create({ model: 'nano', prompt: [forked], max_tokens: 2, n: 2 });
    expect(r5.choices.map((ch) => ch.text)).toEqual(['He', 'He']);
    const calls = recorderOf(1).callsOf(s.id);
    expect(calls[3].link).toEqual({ relation: 'continue', parent: c1.id, forkTokens: prompt.length + c1.completionIds!.length });
    expect(calls.slice(4).map((rec) => rec.link.relation)).toEqual(['fork', 'fork']);
    expect(calls.slice(4).map((rec) => rec.link.forkTokens)).toEqual([4, 4]);
  });

  it('refusals are 400s in OpenAI shape and record nothing: several prompts, echo, bad ids, prompt and max_tokens over the limits', async () => {
    const s = await session(bases.scripted);
    const c = client(s.key, bases.scripted);
    const before = scripted.calls;
    const cases: [Record<string, unknown>, string, string | null][] = [
      [{ prompt: ['one', 'two'] }, GatewayErrorCode.UNSUPPORTED_PARAMETER, 'prompt'],
      [{ prompt: 'x', echo: true }, GatewayErrorCode.UNSUPPORTED_PARAMETER, 'echo'],
      [{ prompt: [1, 99999] }, GatewayErrorCode.INVALID_REQUEST, 'prompt[1]'],
      [{ prompt: new Array(65).fill(65) }, GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED, 'prompt'],
      [{ prompt: 'y'.repeat(64) }, GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED, 'prompt'], // 65 ids with the BOS
      [{ prompt: 'x', max_tokens: 5000 }, GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED, 'max_tokens'],
      [{ prompt: [] }, GatewayErrorCode.INVALID_REQUEST, null],
    ];
    for (const [body, code, param] of cases) {
      const e = await openaiError(c.completions.create({ model: 'nano', ...body } as never));
      expect([JSON.stringify(body).slice(0, 40), e]).toEqual([JSON.stringify(body).slice(0, 40), { status: 400, code, param: param ?? e.param }]);
    }
    expect(scripted.calls).toBe(before);
    expect(recorderOf(1).callsOf(s.id)).toEqual([]);
    // The limit is inclusive; a one-element array of ids is one prompt.
    const ok = await c.completions.create({ model: 'nano', prompt: [new Array(64).fill(65)], max_tokens: 1 });
    expect(ok.choices[0].text).toBe('H');
  });

  it('through the fake vLLM server: the server\'s ids and logprobs recorded, streamed and not, tokens named token_id:<id>', async () => {
    const s = await session(bases.vllm);
    const c = client(s.key, bases.vllm);
    const plain = await c.completions.create({ model: 'any', prompt: 'Tell me', stop: ['STOP'], logprobs: 0, max_tokens: 40 });
    const stream = await streamed(c, { model: 'any', prompt: [SpecialToken.BOS, 65, 66], logprobs: 0, max_tokens: 40 });
    const [served1, served2] = fake.calls.slice(-2);
    expect(served1.body).toMatchObject({ prompt: 'Tell me', stream: true, return_token_ids: true, return_tokens_as_token_ids: true, logprobs: 1, stop: ['STOP'] });
    expect(served2.body.prompt).toEqual([SpecialToken.BOS, 65, 66]);
    expect(plain.choices[0]).toMatchObject({ text: 'Hello ', finish_reason: 'stop' });
    expect(stream).toMatchObject({ text: 'Hello STOP world', finish: 'stop' });
    const [r1, r2] = recorderOf(2).callsOf(s.id);
    for (const [rec, served] of [[r1, served1], [r2, served2]] as const) {
      expect(rec).toMatchObject({ status: 'ok', trainable: true });
      expect(Array.from(rec.promptIds!)).toEqual(Array.from(served.promptIds));
      expect(Array.from(rec.completionIds!)).toEqual(Array.from(served.generated!.ids));
      expect(Array.from(rec.logprobs!)).toEqual(Array.from(served.generated!.logprobs));
      expect(Array.from(rec.versions!)).toEqual(new Array(served.generated!.ids.length).fill(2));
    }
    expect(Array.from(r1.promptIds!)).toEqual([SpecialToken.BOS, ...encode('Tell me')]);
    expect(plain.choices[0].logprobs!.token_logprobs).toEqual(Array.from(served1.generated!.logprobs));
    expect(plain.choices[0].logprobs!.tokens).toEqual(Array.from(served1.generated!.ids, (t) => `token_id:${t}`));
    expect(stream.logprobs).toEqual(Array.from(served2.generated!.logprobs));
    // Missing ids: answered, recorded not trainable with the reason.
    fake.nextFaults.push({ omitTokenIds: true });
    const r3 = await c.completions.create({ model: 'any', prompt: 'Tell me', max_tokens: 40 });
    expect(r3.choices[0].text).toBe('Hello STOP world');
    expect(recorderOf(2).callsOf(s.id)[2]).toMatchObject({
      status: 'ok', trainable: false, notTrainableReason: 'upstream returned no prompt token ids; upstream returned no completion token ids',
    });
  });
});
