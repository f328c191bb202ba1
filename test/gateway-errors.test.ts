// Error paths, each in the protocol's own shape, with the real SDKs where they can send the request:
// auth (no key, bad key, another session's key, unknown / closed session), admin token, malformed
// JSON, schema violations, body size, a forced tool_choice without tools and an unsupported one, per-session concurrency, an upstream
// failure (recorded as failed), an upstream without token ids (recorded as not trainable), and a
// client that disconnects mid-stream (the upstream call is cancelled).
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, EngineUpstream, MemoryRecorder, ScriptedFakeGenerator, type Gateway, type Upstream } from '../lib/gateway/index.js';
import type { GenerateOptions, Generation } from '../lib/engine/types.js';

const ADMIN = 'admin-secret';
const USER = [{ role: 'user' as const, content: 'hi' }];

/** Behaviour per prompt text: 'slow' waits for the abort signal, 'boom' throws, else a scripted reply. */
class ControlledFake extends ScriptedFakeGenerator {
  aborted = 0;
  release: (() => void)[] = [];
  constructor() {
    super(() => ({ role: 'assistant', content: 'ok' }));
  }
  override generate(promptIds: Int32Array, options: GenerateOptions = {}): Generation {
    const text = Buffer.from(Uint8Array.from(promptIds.filter((t) => t < 256))).toString();
    if (text.includes('boom')) throw new Error('engine exploded');
    if (!text.includes('slow') && !text.includes('hold')) return super.generate(promptIds, options);
    const self = this;
    let resolve!: (v: Awaited<Generation['result']>) => void;
    const result = new Promise<Awaited<Generation['result']>>((r) => (resolve = r));
    const done = (finishReason: 'abort' | 'stop', n: number) => resolve({
      completionIds: new Int32Array(n).fill(120), logprobs: new Float64Array(n).fill(-1), versions: new Int32Array(n),
      finishReason, promptTokens: promptIds.length, cachedPromptTokens: 0, seed: 0, timings: { queueMs: 0, prefillMs: 0, decodeMs: 0, totalMs: 0 },
    });
    return {
      result,
      async *[Symbol.asyncIterator]() {
        if (text.includes('hold')) {
          await new Promise<void>((r) => self.release.push(r));
          yield { token: 120, logprob: -1, version: 0 };
          done('stop', 1);
          return;
        }
        // 'slow': one token, then wait until aborted.
        yield { token: 120, logprob: -1, version: 0 };
        await new Promise<void>((r) => options.signal!.addEventListener('abort', () => r(), { once: true }));
        self.aborted++;
        done('abort', 1);
      },
    };
  }
}

/** An upstream that cannot return token ids (a text-only server): its calls are not trainable. */
const textOnly: Upstream = {
  name: 'text-only',
  models: () => [{ id: 'text', ownedBy: 'test' }],
  async complete() {
    return {
      trainable: false, notTrainableReason: 'the server returned no token ids', finishReason: 'stop', content: 'plain text',
      toolCalls: [], parseErrors: [], finishedTurn: true, promptTokens: 3, completionTokens: 2, cachedPromptTokens: 0,
      timings: { queueMs: 0, firstTokenMs: 1, totalMs: 2 },
    };
  },
};

let gw: Gateway, base: string, recorder: MemoryRecorder, fake: ControlledFake;
let gw2: Gateway, base2: string;

async function session(b = base): Promise<{ id: string; key: string }> {
  const r = await fetch(`${b}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{}' });
  return (await r.json()) as { id: string; key: string };
}
const oai = (key: string, url = `${base}/v1`) => new OpenAI({ apiKey: key, baseURL: url, maxRetries: 0 });
const ant = (key: string, url = base) => new Anthropic({ apiKey: key, baseURL: url, maxRetries: 0 });

async function openaiError(p: Promise<unknown>) {
  const e = (await p.then(() => { throw new Error('expected an error'); }, (x) => x)) as InstanceType<typeof OpenAI.APIError>;
  expect(e).toBeInstanceOf(OpenAI.APIError);
  expect(e.error).toMatchObject({ message: expect.any(String), type: expect.any(String), code: expect.stringMatching(/^FORGE_GW_/) });
  return { status: e.status, code: (e.error as { code: string }).code };
}
async function anthropicError(p: Promise<unknown>) {
  const e = (await p.then(() => { throw new Error('expected an error'); }, (x) => x)) as InstanceType<typeof Anthropic.APIError>;
  expect(e).toBeInstanceOf(Anthropic.APIError);
  expect(e.error).toMatchObject({ type: 'error', error: { type: expect.any(String), message: expect.any(String) } });
  return { status: e.status, type: (e.error as { error: { type: string } }).error.type };
}
const chat = (c: OpenAI, extra: Record<string, unknown> = {}) => c.chat.completions.create({ model: 'x', messages: USER, ...extra } as never);
const msg = (c: Anthropic, extra: Record<string, unknown> = {}) => c.messages.create({ model: 'x', max_tokens: 10, messages: USER, ...extra } as never);

beforeAll(async () => {
  recorder = new MemoryRecorder();
  fake = new ControlledFake();
  gw = createGateway({ upstream: new EngineUpstream({ generator: fake }), adminToken: ADMIN, recorder, limits: { bodyBytes: 4096, maxConcurrentCalls: 1 } });
  base = await gw.listen();
  gw2 = createGateway({ upstream: textOnly, adminToken: ADMIN });
  base2 = await gw2.listen();
});
afterAll(async () => {
  await gw.close();
  await gw2.close();
});

describe('gateway / errors in the protocol shape', () => {
  it('auth: missing, invalid, another session\'s key, unknown and closed sessions', async () => {
    const a = await session(), b = await session();
    expect(await openaiError(chat(oai('nope')))).toEqual({ status: 401, code: 'FORGE_GW_UNAUTHORIZED' });
    expect(await anthropicError(msg(ant('nope')))).toEqual({ status: 401, type: 'authentication_error' });
    // b's key on a's base URL.
    expect(await openaiError(chat(oai(b.key, `${base}/sessions/${a.id}/v1`)))).toEqual({ status: 401, code: 'FORGE_GW_UNAUTHORIZED' });
    expect(await anthropicError(msg(ant(b.key, `${base}/sessions/${a.id}`)))).toEqual({ status: 401, type: 'authentication_error' });
    expect(await openaiError(chat(oai('x', `${base}/sessions/sess_unknown/v1`)))).toEqual({ status: 404, code: 'FORGE_GW_SESSION_NOT_FOUND' });
    expect(await anthropicError(msg(ant('x', `${base}/sessions/sess_unknown`)))).toEqual({ status: 404, type: 'not_found_error' });
    const closed = await fetch(`${base}/v1/sessions/${a.id}/close`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(closed.status).toBe(200);
    expect(await openaiError(chat(oai(a.key)))).toEqual({ status: 404, code: 'FORGE_GW_SESSION_CLOSED' });
    expect(await anthropicError(msg(ant(a.key)))).toEqual({ status: 404, type: 'not_found_error' });
    // b still works; no call was recorded for a.
    await chat(oai(b.key));
    expect(recorder.callsOf(a.id)).toEqual([]);
    expect(recorder.callsOf(b.id).length).toBe(1);
  });

  it('admin endpoints need the admin token; a session key is not enough', async () => {
    const a = await session();
    for (const auth of [undefined, `Bearer ${a.key}`]) {
      const r = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) }, body: '{}' });
      expect(r.status).toBe(403);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('FORGE_GW_FORBIDDEN');
    }
    const info = await fetch(`${base}/v1/sessions/${a.id}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(await info.json()).toMatchObject({ id: a.id, closed: false, calls: 0 });
  });

  it('malformed JSON, schema violations, body size and unknown routes are 4xx in each shape', async () => {
    const a = await session();
    const post = (path: string, body: string) => fetch(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${a.key}`, 'content-type': 'application/json' }, body });
    const cases: [string, string, number, string][] = [
      ['/v1/chat/completions', '{"messages": [', 400, 'FORGE_GW_INVALID_JSON'],
      ['/v1/chat/completions', JSON.stringify({ messages: USER, n: '2' }), 400, 'FORGE_GW_INVALID_REQUEST'],
      ['/v1/chat/completions', JSON.stringify({ messages: [] }), 400, 'FORGE_GW_INVALID_REQUEST'],
      ['/v1/chat/completions', JSON.stringify({ messages: USER, tool_choice: 'required' }), 400, 'FORGE_GW_INVALID_REQUEST'],
      ['/v1/chat/completions', JSON.stringify({ messages: USER, tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [] } } }), 400, 'FORGE_GW_UNSUPPORTED_PARAMETER'],
      ['/v1/chat/completions', JSON.stringify({ messages: [{ role: 'tool', tool_call_id: 'zz', content: 'x' }] }), 400, 'FORGE_GW_INVALID_REQUEST'],
      ['/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(5000) }] }), 413, 'FORGE_GW_BODY_TOO_LARGE'],
      ['/v1/messages', '{"max_tokens": 5, "messages": [', 400, 'FORGE_GW_INVALID_JSON'],
      ['/v1/messages', JSON.stringify({ messages: USER }), 400, 'FORGE_GW_INVALID_REQUEST'],
      ['/v1/messages', JSON.stringify({ max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'image' }] }] }), 400, 'FORGE_GW_INVALID_REQUEST'],
      ['/v1/messages', JSON.stringify({ max_tokens: 5, messages: [{ role: 'user', content: 'x'.repeat(5000) }] }), 413, 'FORGE_GW_BODY_TOO_LARGE'],
      ['/v1/nowhere', '{}', 404, 'FORGE_GW_ROUTE_NOT_FOUND'],
    ];
    for (const [path, body, status, code] of cases) {
      const r = await post(path, body);
      const json = (await r.json()) as Record<string, any>;
      expect([path, body.slice(0, 40), r.status]).toEqual([path, body.slice(0, 40), status]);
      if (path === '/v1/messages') {
        expect(json.type).toBe('error');
        expect(json.error).toMatchObject({ type: expect.any(String), message: expect.any(String), code });
      } else expect(json.error).toMatchObject({ message: expect.any(String), type: expect.any(String), code });
    }
    expect(recorder.callsOf(a.id)).toEqual([]);
  });

  it('per-session concurrency limit: 429 while a call is in flight, other sessions unaffected', async () => {
    const a = await session(), b = await session();
    const first = chat(oai(a.key), { messages: [{ role: 'user', content: 'hold' }] });
    while (fake.release.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(await openaiError(chat(oai(a.key)))).toEqual({ status: 429, code: 'FORGE_GW_TOO_MANY_CONCURRENT' });
    expect(await anthropicError(msg(ant(a.key)))).toEqual({ status: 429, type: 'rate_limit_error' });
    await chat(oai(b.key));
    fake.release.shift()!();
    await first;
    await chat(oai(a.key)); // free again
  });

  it('an upstream failure is a 5xx in shape and the call is recorded as failed', async () => {
    const a = await session();
    expect(await openaiError(chat(oai(a.key), { messages: [{ role: 'user', content: 'boom' }] }))).toEqual({ status: 502, code: 'FORGE_GW_UPSTREAM_ERROR' });
    expect(await anthropicError(msg(ant(a.key), { messages: [{ role: 'user', content: 'boom' }] }))).toEqual({ status: 502, type: 'api_error' });
    const calls = recorder.callsOf(a.id);
    expect(calls.map((c) => [c.status, c.trainable])).toEqual([['failed', false], ['failed', false]]);
    expect(calls[0].error).toMatch(/engine exploded/);
  });

  it('an upstream without token ids: the agent gets its answer, the call is recorded not trainable', async () => {
    const a = await session(base2);
    const r = await oai(a.key, `${base2}/v1`).chat.completions.create({ model: 'text', messages: USER });
    expect(r.choices[0].message.content).toBe('plain text');
    const [call] = (gw2.recorder as MemoryRecorder).callsOf(a.id);
    expect(call).toMatchObject({ status: 'ok', trainable: false, notTrainableReason: 'the server returned no token ids', link: { relation: 'unknown' } });
    expect(call.promptIds).toBeUndefined();
  });

  it('a client that disconnects mid-stream cancels the upstream call; it is recorded as aborted', async () => {
    const a = await session();
    const controller = new AbortController();
    const stream = await oai(a.key).chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'slow' }], stream: true }, { signal: controller.signal });
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) break; // got the first token's text: hang up
    }
    controller.abort();
    for (let i = 0; i < 200 && recorder.callsOf(a.id).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fake.aborted).toBe(1);
    const [call] = recorder.callsOf(a.id);
    expect(call).toMatchObject({ status: 'aborted', trainable: false });
    expect(Array.from(call.completionIds!)).toEqual([120]);
    // The session is consistent and usable afterwards.
    expect((await chat(oai(a.key))).choices[0].message.content).toBe('ok');
  });
});
