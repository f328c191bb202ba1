// The gateway in front of an OpenAI-compatible inference server: the real `openai` client talks to
// the gateway on loopback, whose upstream is OpenAICompatibleUpstream talking to a FAKE vLLM server
// (test/fakes/fakeVllmServer.ts, a real HTTP server speaking vLLM's protocol with our template and
// made-up logprobs). Every record is compared with what the fake produced: prompt ids, completion
// ids, logprobs, versions. Faults: missing ids / logprobs (answered, recorded not trainable with the
// reason), 5xx, hangs past the timeout, a stream cut mid-way, a client hanging up, prompt limits.
import { createServer, type AddressInfo } from 'node:net';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createGateway, GatewayErrorCode, MemoryRecorder, OpenAICompatibleUpstream, type CallRecord, type Gateway,
} from '../lib/gateway/index.js';
import type { ChatMessage } from '../lib/model/chatTemplate.js';
import { decode } from '../lib/model/tokenizer.js';
import { FakeVllmServer, type FakeCall, type FakeFaults } from './fakes/fakeVllmServer.js';
import { seededRun } from './helpers/random.js';

const run = seededRun();
const ADMIN = 'admin-secret';
const TOOLS: OpenAI.Chat.ChatCompletionTool[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
];

/** Calls the tool while the last turn is a user turn; answers once a tool result came back. */
function weatherScript(promptIds: Int32Array) {
  const text = decode(promptIds);
  const lastUser = text.lastIndexOf('<|user|>'), lastTool = text.lastIndexOf('<|tool|>');
  if (text.includes('long answer')) return { role: 'assistant' as const, content: 'word '.repeat(60) };
  if (lastTool > lastUser) return { role: 'assistant' as const, content: `Sunny, after ${text.split('<|tool|>').length - 1} lookups.` };
  const city = /city: (\w+)/.exec(text.slice(lastUser))?.[1] ?? 'Paris';
  return { role: 'assistant' as const, reasoning_content: 'I should look it up.', content: 'Let me check.', tool_calls: [{ function: { name: 'get_weather', arguments: `{"city": "${city}"}` } }] };
}

let fake: FakeVllmServer, sglangFake: FakeVllmServer;
let gw: Gateway, base: string, recorder: MemoryRecorder;
let version = 3;

async function session(b = base): Promise<{ id: string; key: string }> {
  const r = await fetch(`${b}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{}' });
  return (await r.json()) as { id: string; key: string };
}
const client = (key: string, b = base) => new OpenAI({ apiKey: key, baseURL: `${b}/v1`, maxRetries: 0 });

/** The record matches what the fake produced for that request, token for token. */
function expectExact(rec: CallRecord, served: FakeCall, v: number) {
  const g = served.generated!;
  expect(rec).toMatchObject({ status: 'ok', trainable: true });
  expect(Array.from(rec.promptIds!)).toEqual(Array.from(served.promptIds));
  expect(Array.from(rec.completionIds!)).toEqual(Array.from(g.ids));
  expect(Array.from(rec.logprobs!)).toEqual(Array.from(g.logprobs));
  expect(Array.from(rec.versions!)).toEqual(new Array(g.ids.length).fill(v));
  expect(rec.usage).toMatchObject({ promptTokens: served.promptIds.length, completionTokens: g.ids.length });
}

async function openaiError(p: Promise<unknown>) {
  const e = (await p.then(() => { throw new Error('expected an error'); }, (x) => x)) as InstanceType<typeof OpenAI.APIError>;
  expect(e).toBeInstanceOf(OpenAI.APIError);
  return { status: e.status, code: (e.error as { code?: string })?.code, message: e.message };
}

async function waitFor(cond: () => boolean, what: string) {
  for (let i = 0; i < 400 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond(), what).toBe(true);
}

beforeAll(async () => {
  fake = new FakeVllmServer({ script: weatherScript, seed: run.seed });
  sglangFake = new FakeVllmServer({ script: weatherScript, seed: run.seed + 1, dialect: 'sglang' });
  const url = await fake.start();
  await sglangFake.start();
  recorder = new MemoryRecorder();
  const upstream = new OpenAICompatibleUpstream({ baseURL: url, model: fake.model, modelMap: { 'gpt-4o': fake.model }, version: () => version, contextLength: fake.maxModelLen });
  gw = createGateway({ upstream, adminToken: ADMIN, recorder });
  base = await gw.listen();
});
afterAll(async () => {
  await gw.close();
  await fake.close();
  await sglangFake.close();
});

describe(`gateway / OpenAI-compatible upstream (fake vLLM, seed ${run.seed})`, () => {
  it('a tool-calling loop, streamed and not: records are token-exact copies of what the server produced', async () => {
    for (const stream of [false, true]) {
      const s = await session();
      const c = client(s.key);
      const messages: ChatMessage[] = [{ role: 'user', content: 'Weather? city: Oslo' }];
      const served0 = fake.calls.length;
      for (let turn = 0; turn < 2; turn++) {
        version = 3 + turn;
        const body = { model: 'gpt-4o', messages, tools: TOOLS, logprobs: true, seed: 11 };
        let message: ChatMessage;
        let logprobs: number[] = [];
        if (stream) {
          const chunks = await c.chat.completions.create({ ...body, stream: true } as never) as unknown as AsyncIterable<OpenAI.Chat.ChatCompletionChunk>;
          let content = '', reasoning = '';
          const calls: { id: string; type: 'function'; function: { name: string; arguments: string } }[] = [];
          for await (const chunk of chunks)
            for (const ch of chunk.choices) {
              content += ch.delta.content ?? '';
              reasoning += (ch.delta as { reasoning_content?: string }).reasoning_content ?? '';
              for (const t of ch.delta.tool_calls ?? []) calls[t.index] = { id: t.id!, type: 'function', function: { name: t.function!.name!, arguments: t.function!.arguments! } };
              for (const l of ch.logprobs?.content ?? []) logprobs.push(l.logprob);
            }
          message = { role: 'assistant', content, ...(reasoning ? { reasoning_content: reasoning } : {}), ...(calls.length ? { tool_calls: calls } : {}) };
        } else {
          const r = await c.chat.completions.create(body as never) as OpenAI.Chat.ChatCompletion;
          const m = r.choices[0].message as OpenAI.Chat.ChatCompletionMessage & { reasoning_content?: string };
          message = { role: 'assistant', content: m.content, ...(m.reasoning_content ? { reasoning_content: m.reasoning_content } : {}), ...(m.tool_calls ? { tool_calls: m.tool_calls as never } : {}) };
          logprobs = r.choices[0].logprobs!.content!.map((l) => l.logprob);
          expect(r.choices[0].finish_reason).toBe(turn === 0 ? 'tool_calls' : 'stop');
        }
        const served = fake.calls[served0 + turn];
        const rec = recorder.callsOf(s.id)[turn];
        expectExact(rec, served, 3 + turn);
        expect(logprobs).toEqual(Array.from(served.generated!.logprobs));
        // The server got the model it serves and the vLLM extensions that return ids and logprobs.
        expect(served.body).toMatchObject({ model: fake.model, stream: true, return_token_ids: true, return_tokens_as_token_ids: true, logprobs: true, tool_choice: 'auto' });
        if (turn === 0) {
          expect(message.tool_calls?.map((t) => t.function)).toEqual([{ name: 'get_weather', arguments: '{"city": "Oslo"}' }]);
          expect((message as { reasoning_content?: string }).reasoning_content).toBe('I should look it up.');
          expect(rec.toolCalls.map((t) => [t.name, t.argumentsText])).toEqual([['get_weather', '{"city": "Oslo"}']]);
          expect(rec.link.relation).toBe('root');
          messages.push(message, { role: 'tool', tool_call_id: message.tool_calls![0].id!, content: '21 C, clear' });
        } else {
          expect(message.content).toBe('Sunny, after 1 lookups.');
          // The second prompt (rendered by the server) extends the first call's prompt + completion.
          expect(rec.link).toMatchObject({ relation: 'continue', parent: recorder.callsOf(s.id)[0].id });
        }
      }
    }
  });

  it('versions are read as tokens arrive: new weights pushed mid-call show from that token on', async () => {
    const s = await session();
    version = 20;
    fake.nextFaults.push({ tokenDelayMs: 10 }); // slow enough that tokens are still coming after the switch
    const stream = await client(s.key).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'long answer' }], max_tokens: 40, stream: true });
    let chunks = 0;
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content && ++chunks === 10) version = 21;
    const [rec] = recorder.callsOf(s.id);
    const v = Array.from(rec.versions!);
    const switchAt = v.indexOf(21);
    expect(switchAt).toBeGreaterThanOrEqual(10);
    expect(switchAt).toBeLessThan(40);
    expect(v).toEqual([...new Array(switchAt).fill(20), ...new Array(40 - switchAt).fill(21)]);
  });

  it('the Anthropic protocol in front of the server: tool_use input objects go back as the exact argument text, the branch continues', async () => {
    const s = await session();
    const ant = new Anthropic({ apiKey: s.key, baseURL: base, maxRetries: 0 });
    const tools = [{ name: 'get_weather', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } } } }];
    const first = await ant.messages.create({ model: 'gpt-4o', max_tokens: 100, tools, messages: [{ role: 'user', content: 'Weather? city: Kyiv' }] });
    const use = first.content.find((b) => b.type === 'tool_use')!;
    expect(use).toMatchObject({ name: 'get_weather', input: { city: 'Kyiv' } });
    expect(fake.calls[fake.calls.length - 1].body.tools).toEqual([{ type: 'function', function: { name: 'get_weather', parameters: tools[0].input_schema } }]);
    await ant.messages.create({
      model: 'gpt-4o', max_tokens: 100, tools,
      messages: [
        { role: 'user', content: 'Weather? city: Kyiv' },
        { role: 'assistant', content: first.content as never },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'cold' }] },
      ],
    });
    const [a, b] = recorder.callsOf(s.id);
    // The server rendered the model's own argument text ({"city": "Kyiv"}, with its space), not the re-serialised object.
    expect(decode(fake.calls[fake.calls.length - 1].promptIds)).toContain('get_weather\n{"city": "Kyiv"}');
    expect(b.link).toMatchObject({ relation: 'continue', parent: a.id });
  });

  it('n choices are separate server requests, each recorded with its own ids', async () => {
    const s = await session();
    const before = fake.calls.length;
    const r = await client(s.key).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'long answer please' }], n: 2, max_tokens: 10 });
    expect(r.choices.map((c) => c.finish_reason)).toEqual(['length', 'length']);
    const recs = recorder.callsOf(s.id).sort((a, b) => a.choice - b.choice);
    expect(recs.length).toBe(2);
    // Which server request served which choice is not fixed: match them by their logprobs.
    const served = fake.calls.slice(before);
    for (const rec of recs) {
      const match = served.find((c) => Array.from(c.generated!.logprobs).join() === Array.from(rec.logprobs!).join());
      expect(match, 'a served request with this record\'s logprobs').toBeDefined();
      expectExact(rec, match!, version);
      expect(rec.completionIds!.length).toBe(10);
    }
  });

  it('missing or inconsistent ids and logprobs: the agent gets its answer, the call is recorded not trainable with the reason', async () => {
    const s = await session();
    const c = client(s.key);
    const ask = () => c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi, city: Rome' }], tools: TOOLS });
    // Each fault with the exact reason expected, given the ids the fake generated.
    const cases: [FakeFaults, (ids: Int32Array) => string][] = [
      [{ omitTokenIds: true }, () => 'upstream returned no prompt token ids; upstream returned no completion token ids'],
      [{ omitPromptIds: true }, () => 'upstream returned no prompt token ids'],
      [{ dropLogprobsAt: [1, 4, 6] }, (ids) => `3 of ${ids.length} completion tokens have no logprob`],
      [{ wrongIdAt: 2 }, (ids) => `1 logprob entries name another token than the ids (first: logprob 2 is for token ${ids[2] + 1} but completion token 2 is ${ids[2]})`],
    ];
    for (const [k, [fault, reason]] of cases.entries()) {
      fake.nextFaults.push(fault);
      const r = await ask();
      expect((r.choices[0].message.tool_calls?.[0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall).function.arguments).toBe('{"city": "Rome"}');
      const served = fake.calls[fake.calls.length - 1].generated!;
      const rec = recorder.callsOf(s.id)[k];
      expect(rec).toMatchObject({ status: 'ok', trainable: false, notTrainableReason: reason(served.ids) });
      // A call without trusted ids never joins the call tree.
      expect(rec.link.relation).toBe('unknown');
      if (fault.omitTokenIds) expect(rec.completionIds).toBeUndefined();
      else expect(Array.from(rec.completionIds!)).toEqual(Array.from(served.ids)); // what came is the server's own
      if (fault.dropLogprobsAt) expect(rec.logprobs).toBeUndefined(); // never a partial array
    }
  });

  it('a 5xx from the server: the agent gets a 502 in OpenAI shape, the call is recorded failed, the session goes on', async () => {
    const s = await session();
    const c = client(s.key);
    fake.nextFaults.push({ status: 500 });
    const e = await openaiError(c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }));
    expect(e).toMatchObject({ status: 502, code: GatewayErrorCode.UPSTREAM_ERROR });
    expect(e.message).toMatch(/HTTP 500: fake vLLM: injected failure/);
    const r = await c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    expect((r.choices[0].message.tool_calls?.[0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall).function.name).toBe('get_weather');
    const [failed, ok] = recorder.callsOf(s.id);
    expect(failed).toMatchObject({ status: 'failed', trainable: false, link: { relation: 'unknown' } });
    expect(failed.error).toMatch(/^FORGE_GW_UPSTREAM_ERROR: upstream answered HTTP 500/);
    expect(ok).toMatchObject({ status: 'ok', trainable: true, link: { relation: 'root' } });
  });

  it('a server that hangs past the call timeout: 504, recorded failed, the server request cancelled', async () => {
    const gw2 = createGateway({ upstream: new OpenAICompatibleUpstream({ baseURL: fake.url, model: fake.model, version: () => version }), adminToken: ADMIN, limits: { callTimeoutMs: 300 } });
    const base2 = await gw2.listen();
    try {
      const s = await session(base2);
      fake.nextFaults.push({ hang: true });
      const e = await openaiError(client(s.key, base2).chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }));
      expect(e).toMatchObject({ status: 504, code: GatewayErrorCode.UPSTREAM_TIMEOUT });
      const [rec] = (gw2.recorder as MemoryRecorder).callsOf(s.id);
      expect(rec).toMatchObject({ status: 'failed', error: 'timed out', trainable: false });
      await waitFor(() => fake.calls[fake.calls.length - 1].aborted, 'the server saw its request cancelled');
    } finally {
      await gw2.close();
    }
    // The upstream's own request timeout gives the same error code.
    const slow = new OpenAICompatibleUpstream({ baseURL: fake.url, model: fake.model, version: () => 0, timeoutMs: 150 });
    fake.nextFaults.push({ hang: true });
    await expect(slow.complete({ model: 'm', messages: [{ role: 'user', content: 'x' }], sampling: {}, signal: new AbortController().signal }, () => {}))
      .rejects.toMatchObject({ code: GatewayErrorCode.UPSTREAM_TIMEOUT, status: 504, message: expect.stringMatching(/within 150 ms/) });
  });

  it('a stream cut mid-way: the agent\'s stream errors, the call is recorded failed, the session goes on', async () => {
    const s = await session();
    const c = client(s.key);
    fake.nextFaults.push({ cutAfterTokens: 8, tokenDelayMs: 2 });
    const got = await (async () => {
      let text = '';
      try {
        const stream = await c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'long answer' }], stream: true });
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      } catch (e) {
        return { text, error: e as InstanceType<typeof OpenAI.APIError> };
      }
      return { text, error: undefined };
    })();
    expect(got.error).toBeInstanceOf(OpenAI.APIError);
    expect((got.error!.error as { code: string }).code).toBe(GatewayErrorCode.UPSTREAM_ERROR);
    expect(got.text.length).toBeLessThan('word '.repeat(60).length);
    const [rec] = recorder.callsOf(s.id);
    expect(rec).toMatchObject({ status: 'failed', trainable: false });
    expect(rec.error).toMatch(/after 8 tokens/);
    const r = await c.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'long answer' }], max_tokens: 5 });
    expect(r.choices[0].message.content).toBe('word ');
    expect(recorder.callsOf(s.id)[1]).toMatchObject({ status: 'ok', trainable: true });
  });

  it('a client that hangs up mid-stream cancels the server request; the call is recorded aborted', async () => {
    const s = await session();
    const controller = new AbortController();
    fake.nextFaults.push({ tokenDelayMs: 20 });
    const stream = await client(s.key).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'long answer' }], stream: true }, { signal: controller.signal });
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content) break;
    controller.abort();
    const served = fake.calls[fake.calls.length - 1];
    await waitFor(() => served.aborted, 'the fake server saw its request aborted');
    await waitFor(() => recorder.callsOf(s.id).length === 1, 'the call was recorded');
    const [rec] = recorder.callsOf(s.id);
    expect(rec).toMatchObject({ status: 'aborted', trainable: false });
    expect(rec.completionIds!.length).toBeLessThan(served.generated!.ids.length);
    expect(Array.from(rec.completionIds!)).toEqual(Array.from(served.generated!.ids.subarray(0, rec.completionIds!.length)));
  });

  it('prompt limits: over the gateway\'s limit or the server\'s context length is a 400, not recorded; an unreachable server is a 502', async () => {
    const gw3 = createGateway({ upstream: new OpenAICompatibleUpstream({ baseURL: fake.url, model: fake.model, version: () => 0 }), adminToken: ADMIN, limits: { maxPromptTokens: 40 } });
    const base3 = await gw3.listen();
    try {
      const s = await session(base3);
      const before = fake.calls.length;
      fake.nextFaults.push({ tokenDelayMs: 20 }); // still streaming when the gateway sees the prompt ids
      const e = await openaiError(client(s.key, base3).chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(60) }] }));
      expect(e).toMatchObject({ status: 400, code: GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED });
      expect(e.message).toMatch(/the prompt has 6\d tokens, more than the limit of 40/);
      expect((gw3.recorder as MemoryRecorder).callsOf(s.id)).toEqual([]);
      await waitFor(() => fake.calls.length === before + 1 && fake.calls[before].aborted, 'the server request was cancelled');
    } finally {
      await gw3.close();
    }
    // The gateway's default limit came from the upstream's context length.
    expect(gw.limits.maxPromptTokens).toBe(fake.maxModelLen);
    const s = await session();
    const e = await openaiError(client(s.key).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'y'.repeat(4200) }], max_tokens: 4000 }));
    expect(e).toMatchObject({ status: 400, code: GatewayErrorCode.CONTEXT_LENGTH_EXCEEDED });
    expect(e.message).toMatch(/maximum context length is 8192/);
    expect(recorder.callsOf(s.id)).toEqual([]);
    // A port nothing listens on: one just freed.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((r) => probe.close(r));
    const dead = new OpenAICompatibleUpstream({ baseURL: `http://127.0.0.1:${port}/v1`, model: 'm', version: () => 0 });
    await expect(dead.complete({ model: 'm', messages: [{ role: 'user', content: 'x' }], sampling: {}, signal: new AbortController().signal }, () => {}))
      .rejects.toMatchObject({ code: GatewayErrorCode.UPSTREAM_ERROR, message: expect.stringMatching(/unreachable: ECONNREFUSED/) });
  });

  it('the sglang dialect: ids from the whole (non-streamed) response, token-exact, a streaming agent still served', async () => {
    const gw4 = createGateway({ upstream: new OpenAICompatibleUpstream({ baseURL: sglangFake.url, model: sglangFake.model, dialect: 'sglang', version: () => 9 }), adminToken: ADMIN });
    const base4 = await gw4.listen();
    try {
      const s = await session(base4);
      const stream = await client(s.key, base4).chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'Weather? city: Lima' }], tools: TOOLS, stream: true });
      const args: string[] = [];
      for await (const chunk of stream) for (const t of chunk.choices[0]?.delta.tool_calls ?? []) args.push(t.function?.arguments ?? '');
      expect(args.join('')).toBe('{"city": "Lima"}');
      const served = sglangFake.calls[0];
      expect(served.body).toMatchObject({ stream: false, return_prompt_token_ids: true, return_token_ids: true, logprobs: true });
      expectExact((gw4.recorder as MemoryRecorder).callsOf(s.id)[0], served, 9);
    } finally {
      await gw4.close();
    }
  });
});

