// The gateway with the real `openai` client on loopback, driven by a scripted FAKE generator (the
// nano model is random, so tool calls are scripted): multi-turn tool loops streaming and not, both
// auth styles, n choices, stop strings, logprobs, a context-truncating agent that forks, concurrent
// sessions. Every check on the records is against values computed here from the template directly.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, EngineUpstream, MemoryRecorder, ScriptedFakeGenerator, type CallRecord, type Gateway } from '../lib/gateway/index.js';
import { assistantIds, render, type ChatMessage, type ToolDefinition } from '../lib/model/chatTemplate.js';
import { decode, encode } from '../lib/model/tokenizer.js';
import { readChatStream } from './helpers/chatStream.js';

const ADMIN = 'admin-secret';
const TOOLS: ToolDefinition[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
];

/** Calls the tool while the last turn is a user turn; answers once a tool result came back. */
function weatherScript(promptIds: Int32Array) {
  const text = decode(promptIds);
  const lastUser = text.lastIndexOf('<|user|>'), lastTool = text.lastIndexOf('<|tool|>');
  if (text.includes('say STOP')) return { role: 'assistant' as const, content: 'Hello STOP world' };
  if (lastTool > lastUser) return { role: 'assistant' as const, content: `Sunny, call ${text.split('<|tool|>').length - 1}.` };
  const city = /city: (\w+)/.exec(text.slice(lastUser))?.[1] ?? 'Paris';
  // Spaces in the JSON on purpose: the agent must get (and send back) this exact text.
  return { role: 'assistant' as const, content: 'Let me check.', tool_calls: [{ function: { name: 'get_weather', arguments: `{"city": "${city}"}` } }] };
}

function lcp(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}
const concat = (a: Int32Array, b: Int32Array) => Int32Array.from([...a, ...b]);

let gw: Gateway;
let base: string;
let recorder: MemoryRecorder;

async function newSession(): Promise<{ id: string; key: string }> {
  const r = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ task_id: 't1', scaffold: 'test' }) });
  expect(r.status).toBe(201);
  return (await r.json()) as { id: string; key: string };
}

function client(s: { id: string; key: string }, style: 'header' | 'path' = 'header'): OpenAI {
  return style === 'header'
    ? new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 })
    : new OpenAI({ apiKey: 'EMPTY', baseURL: `${base}/sessions/${s.id}/v1`, maxRetries: 0 });
}

/** Streams a chat completion and assembles the assistant message the way agent frameworks do. */
async function streamed(c: OpenAI, body: Record<string, unknown>) {
  const stream = await c.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } } as never) as unknown as AsyncIterable<OpenAI.Chat.ChatCompletionChunk>;
  const { content, calls, finish, sawUsage, logprobs } = await readChatStream(stream);
  const message: ChatMessage = { role: 'assistant', content: calls.length > 0 && content === '' ? null : content };
  if (calls.length > 0) message.tool_calls = calls;
  return { message, finish, sawUsage, logprobs };
}

async function nonStreamed(c: OpenAI, body: Record<string, unknown>) {
  const r = await c.chat.completions.create(body as never) as OpenAI.Chat.ChatCompletion;
  const m = r.choices[0].message;
  const message: ChatMessage = { role: 'assistant', content: m.content };
  if (m.tool_calls) message.tool_calls = m.tool_calls as never;
  return { message, finish: r.choices[0].finish_reason, response: r, logprobs: (r.choices[0].logprobs?.content ?? []).map((l) => l.logprob) };
}

/** A two-turn tool loop; returns the messages and the recorded calls of the session. */
async function toolLoop(c: OpenAI, sessionId: string, stream: boolean, city = 'Paris') {
  const messages: ChatMessage[] = [{ role: 'system', content: 'You are a weather bot.' }, { role: 'user', content: `city: ${city}` }];
  const call = stream ? streamed : nonStreamed;
  const first = await call(c, { model: 'forge-nano', messages, tools: TOOLS, logprobs: true });
  expect(first.finish).toBe('tool_calls');
  expect(first.message.tool_calls![0].function).toEqual({ name: 'get_weather', arguments: `{"city": "${city}"}` });
  messages.push(first.message, { role: 'tool', tool_call_id: first.message.tool_calls![0].id!, content: `${city}: 21C, sunny` });
  const second = await call(c, { model: 'forge-nano', messages, tools: TOOLS, logprobs: true });
  expect(second.finish).toBe('stop');
  expect(second.message.content).toBe('Sunny, call 1.');
  messages.push(second.message);
  return { messages, replies: [first, second], calls: recorder.callsOf(sessionId) };
}

/** Invariants of a session's records against the agent's own view of the conversation. */
function checkRecords(messages: ChatMessage[], calls: CallRecord[], tools = TOOLS) {
  const assistantAt = messages.flatMap((m, i) => (m.role === 'assistant' ? [i] : []));
  expect(calls.length).toBe(assistantAt.length);
  calls.forEach((call, k) => {
    const at = assistantAt[k];
    expect(call.status).toBe('ok');
    expect(call.trainable).toBe(true);
    // Prompt ids are the template's rendering of what the agent sent; completion ids are the ids
    // of the message the agent got back: together they re-render the agent's own history.
    expect(Array.from(call.promptIds!)).toEqual(Array.from(render(messages.slice(0, at), tools, { addGenerationPrompt: true })));
    expect(Array.from(call.completionIds!)).toEqual(Array.from(assistantIds(messages[at] as never)));
    expect(call.logprobs!.length).toBe(call.completionIds!.length);
    expect(call.versions!.length).toBe(call.completionIds!.length);
    if (k === 0) expect(call.link).toEqual({ relation: 'root', parent: null, forkTokens: 0 });
    else {
      const prev = calls[k - 1];
      expect(call.link).toEqual({ relation: 'continue', parent: prev.id, forkTokens: prev.promptIds!.length + prev.completionIds!.length });
      expect(lcp(concat(prev.promptIds!, prev.completionIds!), call.promptIds!)).toBe(call.link.forkTokens);
    }
    expect(call.timings.doneAt).toBeGreaterThanOrEqual(call.timings.receivedAt);
  });
}

beforeAll(async () => {
  recorder = new MemoryRecorder();
  gw = createGateway({ upstream: new EngineUpstream({ generator: new ScriptedFakeGenerator(weatherScript), model: 'forge-nano' }), adminToken: ADMIN, recorder });
  base = await gw.listen();
});
afterAll(async () => {
  await gw.close();
});

describe('gateway / OpenAI chat completions (scripted fake generator)', () => {
  it('records a non-streamed tool loop token-exact, each call continuing the last', async () => {
    const s = await newSession();
    const { messages, calls, replies } = await toolLoop(client(s), s.id, false);
    checkRecords(messages, calls);
    expect(calls[0].toolCalls.map((c) => c.argumentsText)).toEqual(['{"city": "Paris"}']);
    expect(replies[0].logprobs).toEqual(Array.from(calls[0].logprobs!));
    expect((replies[0] as unknown as { response: { forge: { call_ids: string[] } } }).response.forge.call_ids).toEqual([calls[0].id]);
  });

  it('streaming records exactly what non-streaming records, and the agent sees the same text', async () => {
    const a = await newSession(), b = await newSession();
    const plain = await toolLoop(client(a), a.id, false, 'Oslo');
    const stream = await toolLoop(client(b, 'path'), b.id, true, 'Oslo');
    checkRecords(stream.messages, stream.calls);
    for (let k = 0; k < 2; k++) {
      expect(Array.from(stream.calls[k].promptIds!)).toEqual(Array.from(plain.calls[k].promptIds!));
      expect(Array.from(stream.calls[k].completionIds!)).toEqual(Array.from(plain.calls[k].completionIds!));
      expect(Array.from(stream.calls[k].logprobs!)).toEqual(Array.from(plain.calls[k].logprobs!));
      expect(stream.replies[k].logprobs).toEqual(plain.replies[k].logprobs);
      expect(stream.messages[2 + 2 * k].content ?? '').toBe(plain.messages[2 + 2 * k].content ?? '');
    }
    expect((stream.replies[0] as { sawUsage: boolean }).sawUsage).toBe(true);
  });

  it('n choices are sibling calls with the same parent', async () => {
    const s = await newSession();
    const c = client(s);
    const messages: ChatMessage[] = [{ role: 'user', content: 'city: Rome' }];
    const r = await c.chat.completions.create({ model: 'x', messages: messages as never, tools: TOOLS as never, n: 3 });
    expect(r.choices.map((ch) => ch.index)).toEqual([0, 1, 2]);
    const calls = recorder.callsOf(s.id);
    expect(calls.map((x) => x.choice)).toEqual([0, 1, 2]);
    for (const call of calls) expect(call.link.relation).toBe('root');
    // A follow-up continues one of them.
    messages.push(r.choices[1].message as never, { role: 'tool', tool_call_id: r.choices[1].message.tool_calls![0].id, content: 'warm' });
    await c.chat.completions.create({ model: 'x', messages: messages as never, tools: TOOLS as never });
    const next = recorder.callsOf(s.id)[3];
    expect(next.link.relation).toBe('continue');
    expect([calls[0].id, calls[1].id, calls[2].id]).toContain(next.link.parent);
  });

  it('stop strings are trimmed from the text (streamed or not) but kept in the recorded ids', async () => {
    const s = await newSession();
    const c = client(s);
    const body = { model: 'x', messages: [{ role: 'user', content: 'say STOP' }], stop: ['STOP'] };
    const plain = await nonStreamed(c, body);
    const stream = await streamed(c, body);
    expect(plain.message.content).toBe('Hello ');
    expect(stream.message.content).toBe('Hello ');
    const [call] = recorder.callsOf(s.id);
    expect(decode(call.completionIds!)).toBe('Hello STOP');
    expect(Array.from(call.completionIds!)).toEqual(Array.from(encode('Hello STOP')));
    expect(call.finishReason).toBe('stop');
  });

  it('max_tokens cuts the completion: finish_reason length, the ids recorded as sampled', async () => {
    const s = await newSession();
    const r = await nonStreamed(client(s), { model: 'x', messages: [{ role: 'user', content: 'city: Lima' }], tools: TOOLS, max_tokens: 5 });
    expect(r.finish).toBe('length');
    const [call] = recorder.callsOf(s.id);
    expect(call.completionIds!.length).toBe(5);
    expect(decode(call.completionIds!)).toBe('Let m');
  });

  it('a context-truncating agent forks, with the fork point recorded', async () => {
    const s = await newSession();
    const c = client(s);
    const { messages } = await toolLoop(c, s.id, false, 'Kyiv');
    // The agent drops the first exchange and keeps going: the new prompt extends no earlier call.
    const truncated: ChatMessage[] = [messages[0], { role: 'user', content: 'city: Kyiv (summary: sunny)' }];
    await c.chat.completions.create({ model: 'x', messages: truncated as never, tools: TOOLS as never });
    const calls = recorder.callsOf(s.id);
    const fork = calls[2];
    expect(fork.link.relation).toBe('fork');
    const shared = calls.slice(0, 2).map((e) => lcp(concat(e.promptIds!, e.completionIds!), fork.promptIds!));
    expect(fork.link.forkTokens).toBe(Math.max(...shared));
    expect(fork.link.parent).toBe(calls[shared.lastIndexOf(Math.max(...shared))].id);
    expect(fork.link.forkTokens).toBeLessThan(fork.promptIds!.length);
  });

  it('serves concurrent sessions, each recording only its own calls', async () => {
    const sessions = await Promise.all(Array.from({ length: 8 }, () => newSession()));
    const cities = ['Paris', 'Oslo', 'Rome', 'Lima', 'Kyiv', 'Cairo', 'Quito', 'Hanoi'];
    const loops = await Promise.all(sessions.map((s, i) => toolLoop(client(s, i % 2 ? 'path' : 'header'), s.id, i % 3 === 0, cities[i])));
    loops.forEach((l, i) => {
      checkRecords(l.messages, l.calls);
      expect(l.calls.every((c) => c.sessionId === sessions[i].id)).toBe(true);
    });
  });

  it('GET /v1/models lists the served model', async () => {
    const s = await newSession();
    const models = await client(s).models.list();
    expect(models.data.map((m) => m.id)).toEqual(['forge-nano']);
  });
});
