// Context limits, the extra routes agents call, and request checks (audit B2, M5, N6), with the real
// `openai` and `@anthropic-ai/sdk` clients on loopback and the REAL NanoEngine (random weights, a
// 256-token KV cache):
//  - B2: the engine's cache is the context length the upstream reports and the gateway's prompt
//    limit; a prompt over it, or prompt + max_tokens over it, is CONTEXT_LENGTH_EXCEEDED naming
//    messages / prompt or max_tokens in each protocol's shape, streaming or not, at the exact
//    boundary; an engine that does not report its cache gets the same answer from its own check;
//  - M5: Anthropic count_tokens equals the prompt a call with the same body records (tools, a forced
//    tool call, a resent turn rendered verbatim), under both prefixes; an upstream that cannot count
//    answers 404 in Anthropic's shape; GET /v1/models/{id} (ids with "/") and the Anthropic shapes;
//  - N6: a user message without content, tool parameters that are not an object: 400 naming them.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NanoEngine } from '../lib/engine/engine.js';
import {
  createGateway, EngineUpstream, MemoryRecorder, OpenAICompatibleUpstream, toChatMessages, type Gateway, type TokenGenerator,
} from '../lib/gateway/index.js';
import { render } from '../lib/model/chatTemplate.js';
import { NanoPolicy, type NanoPolicyConfig } from '../lib/model/policy.js';
import { seededRun } from './helpers/random.js';

const run = seededRun();
const SMALL: Partial<NanoPolicyConfig> = { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 96 };
const ADMIN = 'admin';
const CACHE = 256;
const MODEL = 'forge/nano-1';
const CONTEXT = 'FORGE_GW_CONTEXT_LENGTH_EXCEEDED';

let engine: NanoEngine;
/** The engine upstream (reports its cache), one over a generator that does not, one that cannot count. */
let gw: Gateway, silent: Gateway, remote: Gateway;
let base: string, silentBase: string, remoteBase: string;
let recorder: MemoryRecorder;

async function session(at: string) {
  const r = await fetch(`${at}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{}' });
  return (await r.json()) as { id: string; key: string };
}

/** A user text that renders (alone, with the generation prompt) to exactly `tokens` prompt tokens. */
function userText(tokens: number): string {
  const overhead = render([{ role: 'user', content: '' }], undefined, { addGenerationPrompt: true }).length;
  const rng = run.rng();
  return Array.from({ length: tokens - overhead }, () => String.fromCharCode(97 + Math.floor(rng() * 26))).join('');
}

/** The error an SDK call throws (status, and the body the gateway sent). */
async function failure(p: Promise<unknown>): Promise<{ status: number; body: any }> {
  try {
    await p;
  } catch (e) {
    const err = e as { status?: number; error?: unknown };
    return { status: err.status ?? -1, body: err.error };
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  const params = new NanoPolicy(SMALL).init(run.seed % 100_000);
  engine = new NanoEngine({ config: SMALL, params, cacheTokens: CACHE, version: 1 });
  recorder = new MemoryRecorder();
  gw = createGateway({ upstream: new EngineUpstream({ generator: engine, model: MODEL }), adminToken: ADMIN, recorder });
  base = await gw.listen();
  // The same engine behind a generator that does not say how large its cache is.
  const quiet: TokenGenerator = { get version() { return engine.version; }, generate: (p, o) => engine.generate(p, o) };
  silent = createGateway({ upstream: new EngineUpstream({ generator: quiet, model: MODEL }), adminToken: ADMIN, recorder });
  silentBase = await silent.listen();
  // Never contacted: count_tokens and the model routes answer without the server.
  remote = createGateway({ upstream: new OpenAICompatibleUpstream({ baseURL: 'http://127.0.0.1:9/v1', model: 'remote', version: () => 0 }), adminToken: ADMIN });
  remoteBase = await remote.listen();
});
afterAll(async () => {
  await gw.close();
  await silent.close();
  await remote.close();
  engine.close();
});

describe(`B2: the engine's KV cache is the context (seed ${run.seed})`, () => {
  it('is reported as the context length and becomes the gateway\'s prompt limit', async () => {
    expect(gw.limits.maxPromptTokens).toBe(CACHE);
    expect(silent.limits.maxPromptTokens).toBe(32768);
    const s = await session(base);
    const m = await new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 }).models.retrieve(MODEL);
    expect(m).toMatchObject({ id: MODEL, object: 'model', owned_by: 'forge-rl', max_model_len: CACHE });
  });

  for (const at of ['reporting', 'silent'] as const)
    it(`${at} engine: a prompt over the context names messages, prompt + max_tokens over it names max_tokens (OpenAI, streaming too)`, async () => {
      const s = await session(at === 'reporting' ? base : silentBase);
      const client = new OpenAI({ apiKey: s.key, baseURL: `${at === 'reporting' ? base : silentBase}/v1`, maxRetries: 0 });
      for (const stream of [false, true]) {
        const long = await failure(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: userText(3000) }], stream }));
        expect(long.status).toBe(400);
        expect(long.body).toMatchObject({ code: CONTEXT, param: 'messages', type: 'invalid_request_error' });
        expect(long.body.message).toMatch(/3000 tokens/);
        expect(long.body.message).not.toMatch(/cacheTokens|options\./);
        const over = await failure(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: userText(200) }], max_tokens: 57, stream }));
        expect(over.status).toBe(400);
        expect(over.body).toMatchObject({ code: CONTEXT, param: 'max_tokens' });
        expect(over.body.message).toMatch(/prompt \(200 tokens\) \+ max_tokens \(57\).*256 tokens/);
        expect(over.body.message).not.toMatch(/cacheTokens|options\./);
      }
      expect(recorder.callsOf(s.id)).toEqual([]);
    });

  it('the exact boundary: prompt + max_tokens = context runs, one more is refused; a full-context prompt has no room', async () => {
    const s = await session(base);
    const client = new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 });
    const text = userText(200);
    const ok = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: text }], max_tokens: 56, temperature: 0 });
    expect(ok.usage!.prompt_tokens).toBe(200);
    const full = await failure(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: userText(CACHE) }] }));
    expect(full.body).toMatchObject({ code: CONTEXT, param: 'messages' });
    expect(full.body.message).toMatch(/256 tokens.*no completion fits/);
    // Without max_tokens a prompt one short of the context still gets its one token.
    const tight = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: userText(CACHE - 1) }] });
    expect(tight.usage!.completion_tokens).toBe(1);
    expect(recorder.callsOf(s.id).length).toBe(2);
  });

  it('Anthropic: the same checks in Anthropic\'s error shape, streaming too', async () => {
    const s = await session(base);
    const client = new Anthropic({ apiKey: s.key, baseURL: base, maxRetries: 0 });
    for (const stream of [false, true]) {
      const send = (tokens: number, max: number) => stream
        ? client.messages.stream({ model: MODEL, max_tokens: max, messages: [{ role: 'user', content: userText(tokens) }] }).finalMessage()
        : client.messages.create({ model: MODEL, max_tokens: max, messages: [{ role: 'user', content: userText(tokens) }] });
      const long = await failure(send(3000, 8));
      expect(long.status).toBe(400);
      expect(long.body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', code: CONTEXT } });
      expect(long.body.error.message).toMatch(/3000 tokens/);
      const over = await failure(send(200, 57));
      expect(over.body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', code: CONTEXT } });
      expect(over.body.error.message).toMatch(/^max_tokens: the prompt \(200 tokens\) \+ max_tokens \(57\)/);
    }
    expect(recorder.callsOf(s.id)).toEqual([]);
  });

  it('legacy Completions: token ids over the context name prompt, with max_tokens over it max_tokens', async () => {
    const s = await session(base);
    const client = new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 });
    const ids = (n: number) => Array.from({ length: n }, (_, i) => 97 + (i % 26));
    const long = await failure(client.completions.create({ model: MODEL, prompt: ids(CACHE + 1) }));
    expect(long.body).toMatchObject({ code: CONTEXT, param: 'prompt' });
    const over = await failure(client.completions.create({ model: MODEL, prompt: ids(250), max_tokens: 7 }));
    expect(over.body).toMatchObject({ code: CONTEXT, param: 'max_tokens' });
    expect(over.body.message).toMatch(/at most 6 completion tokens fit/);
    expect(recorder.callsOf(s.id)).toEqual([]);
  });
});

describe('M5: count_tokens and the model routes', () => {
  const TOOLS: Anthropic.Tool[] = [{ name: 'read_file', description: 'Reads a file', input_schema: { type: 'object', properties: { path: { type: 'string' } } } }];

  for (const prefixed of [false, true])
    it(`count_tokens equals the prompt a call with the same body records${prefixed ? ' (/sessions/<id> base URL)' : ''}`, async () => {
      const s = await session(base);
      const client = new Anthropic({ apiKey: prefixed ? 'placeholder' : s.key, baseURL: prefixed ? `${base}/sessions/${s.id}` : base, maxRetries: 0 });
      const history: Anthropic.MessageParam[] = [{ role: 'user', content: 'Read a.txt, then say hi.' }];
      const body = { model: MODEL, system: 'You read files.', tools: TOOLS, messages: history };
      const counted = await client.messages.countTokens(body);
      expect(counted.input_tokens).toBe(render(toChatMessages({ ...body, max_tokens: 1 } as never), TOOLS, { addGenerationPrompt: true }).length);
      const first = await client.messages.create({ ...body, max_tokens: 12 });
      expect(recorder.callsOf(s.id)[0].promptIds!.length).toBe(counted.input_tokens);
      // A forced tool call: its opening is part of the prompt, counted too.
      const forced = { ...body, tool_choice: { type: 'any' as const } };
      const countedForced = await client.messages.countTokens(forced);
      await client.messages.create({ ...forced, max_tokens: 4 });
      expect(countedForced.input_tokens).toBeGreaterThan(counted.input_tokens);
      expect(recorder.callsOf(s.id)[1].promptIds!.length).toBe(countedForced.input_tokens);
      // The reply resent: counted as the next call renders it (from the sampled ids, not the text).
      history.push({ role: 'assistant', content: first.content as Anthropic.ContentBlockParam[] }, { role: 'user', content: 'and?' });
      const countedNext = await client.messages.countTokens(body);
      await client.messages.create({ ...body, max_tokens: 4 });
      const next = recorder.callsOf(s.id)[2];
      expect(next.link.relation).toBe('continue');
      expect(next.promptIds!.length).toBe(countedNext.input_tokens);
    });

  it('count_tokens errors in Anthropic\'s shape: a bad body, a bad key, an upstream that cannot count', async () => {
    const s = await session(base);
    const post = (at: string, key: string, body: unknown) => fetch(`${at}/v1/messages/count_tokens`, {
      method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify(body),
    });
    const noMessages = await post(base, s.key, { model: MODEL });
    expect(noMessages.status).toBe(400);
    expect(await noMessages.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    const badKey = await post(base, 'fk-nope', { model: MODEL, messages: [{ role: 'user', content: 'x' }] });
    expect(badKey.status).toBe(401);
    expect(await badKey.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    const r = await session(remoteBase);
    const cannot = await post(remoteBase, r.key, { model: 'remote', messages: [{ role: 'user', content: 'x' }] });
    expect(cannot.status).toBe(404);
    const err = (await cannot.json()) as { type: string; error: { type: string; message: string } };
    expect(err).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    expect(err.error.message).toMatch(/token counting is not available.*openai/);
  });

  it('GET /v1/models/{id}: the model object (ids with "/", encoded or not), 404 in OpenAI\'s shape, both prefixes', async () => {
    const s = await session(base);
    for (const client of [
      new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 }),
      new OpenAI({ apiKey: 'EMPTY', baseURL: `${base}/sessions/${s.id}/v1`, maxRetries: 0 }),
    ]) {
      expect(await client.models.retrieve(MODEL)).toMatchObject({ id: MODEL, object: 'model', owned_by: 'forge-rl' });
      const missing = await failure(client.models.retrieve('gpt-4o'));
      expect(missing.status).toBe(404);
      expect(missing.body).toMatchObject({ type: 'invalid_request_error', param: 'model' });
      expect(missing.body.message).toMatch(/"gpt-4o" does not exist.*"forge\/nano-1"/);
    }
    const raw = await fetch(`${base}/v1/models/${MODEL}`, { headers: { authorization: `Bearer ${s.key}` } });
    expect(await raw.json()).toMatchObject({ id: MODEL, object: 'model' });
    expect((await fetch(`${base}/v1/models/${MODEL}`)).status).toBe(401);
    const r = await session(remoteBase);
    expect(await new OpenAI({ apiKey: r.key, baseURL: `${remoteBase}/v1`, maxRetries: 0 }).models.retrieve('remote')).toMatchObject({ id: 'remote', owned_by: 'vllm' });
  });

  it('the Anthropic SDK gets the models in Anthropic\'s shape', async () => {
    const s = await session(base);
    const client = new Anthropic({ apiKey: s.key, baseURL: base, maxRetries: 0 });
    const page = await client.models.list();
    expect(page.data.map((m) => [m.type, m.id])).toEqual([['model', MODEL]]);
    expect(await client.models.retrieve(MODEL)).toMatchObject({ type: 'model', id: MODEL, display_name: MODEL });
  });
});

describe('N6: requests the gateway used to accept silently', () => {
  it('OpenAI: a message without content and tool parameters that are not an object: 400 naming the field', async () => {
    const s = await session(base);
    const client = new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 });
    const cases: [unknown, string][] = [
      [{ messages: [{ role: 'system', content: 'x' }, { role: 'user' }] }, 'messages[1].content'],
      [{ messages: [{ role: 'user', content: null }] }, 'messages[0].content'],
      [{ messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f', parameters: 'notanobject' } }] }, 'tools[0].function.parameters'],
      [{ messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }, { type: 'function', function: { name: 'g', parameters: [1] } }] }, 'tools[1].function.parameters'],
    ];
    for (const [body, param] of cases) {
      const e = await failure(client.chat.completions.create({ model: MODEL, max_tokens: 2, ...(body as object) } as never));
      expect(e.status, param).toBe(400);
      expect(e.body, param).toMatchObject({ code: 'FORGE_GW_INVALID_REQUEST', param });
      expect(e.body.message.startsWith(`${param}: `), e.body.message).toBe(true);
    }
    // The assistant may leave content out next to tool calls; a tool without parameters is fine.
    await client.chat.completions.create({ model: MODEL, max_tokens: 2, messages: [{ role: 'user', content: 'x' }], tools: [{ type: 'function', function: { name: 'f' } }] });
    expect(recorder.callsOf(s.id).length).toBe(1);
  });

  it('Anthropic: an input_schema that is not an object: 400 in Anthropic\'s shape, naming it', async () => {
    const s = await session(base);
    const client = new Anthropic({ apiKey: s.key, baseURL: base, maxRetries: 0 });
    const e = await failure(client.messages.create({ model: MODEL, max_tokens: 2, messages: [{ role: 'user', content: 'x' }], tools: [{ name: 'f', input_schema: 'notanobject' as never }] }));
    expect(e.status).toBe(400);
    expect(e.body).toMatchObject({ type: 'error', error: { type: 'invalid_request_error', code: 'FORGE_GW_INVALID_REQUEST' } });
    expect(e.body.error.message).toMatch(/^tools\[0\]\.input_schema: expected a JSON Schema object, got string/);
    const noContent = await failure(client.messages.create({ model: MODEL, max_tokens: 2, messages: [{ role: 'user' } as never] }));
    expect(noContent.status).toBe(400);
    expect(recorder.callsOf(s.id)).toEqual([]);
  });
});
