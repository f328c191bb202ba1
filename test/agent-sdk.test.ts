// forge-rl's agent SDK (lib/agents/sdk.ts) against a real gateway on loopback HTTP with a data pool.
// The model is a FAKE (ScriptedFakeGenerator: scripted replies, so the agent's path is known); the
// SDK, the gateway, the context-step route and the pool are real. Checked: a tool loop with a
// registered summarize step records the next call as an intended fork (notes in the call record and
// in the pool), an unannounced rewrite is noted as such, an announced step whose call still extends
// the history is noted as not forking, and bad input fails with a coded error at the SDK and at the
// route (in the OpenAI error shape).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AgentErrorCode, AgentSdkError, ForgeAgent } from '../lib/agents/sdk.js';
import { UNANNOUNCED_FORK_NOTE } from '../lib/gateway/contextSteps.js';
import { createGateway, EngineUpstream, ScriptedFakeGenerator, type Gateway } from '../lib/gateway/index.js';
import type { AssistantMessage } from '../lib/model/chatTemplate.js';
import { decode } from '../lib/model/tokenizer.js';
import { MemoryStore } from '../lib/pool/memoryStore.js';
import { seededRun } from './helpers/random.js';

const { rng, why } = seededRun();
const ADMIN = 'admin-token';
const GET = { type: 'function' as const, function: { name: 'get', parameters: { type: 'object', properties: { k: { type: 'string' } } } } };
const call = (k: string): AssistantMessage => ({ role: 'assistant', content: null, tool_calls: [{ function: { name: 'get', arguments: JSON.stringify({ k }) } }] });

let gw: Gateway, base: string, pool: MemoryStore;
/** The calls the gateway stored in the pool for a session: relation and notes. */
async function recorded(sessionId: string): Promise<{ relation: string; notes: string[] }[]> {
  return (await pool.getCalls(sessionId)).map((c) => ({ relation: c.relation, notes: (c.response as { notes: string[] }).notes }));
}

/** The key-value store the agent's tool reads. */
let store: Record<string, string> = {};

beforeAll(async () => {
  // The fake answers like a lookup policy would: look the asked key up, answer a plain value.
  const fake = new ScriptedFakeGenerator((prompt) => {
    const text = decode(prompt);
    const result = /<\|tool\|>get\n([^<]*)<\|end\|><\|assistant\|>$/.exec(text);
    if (result && !result[1].startsWith('@')) return { role: 'assistant', content: result[1] };
    if (result) return call(result[1].slice(1));
    const asked = /Get the value of (\w+)\./g;
    let key = '', m: RegExpExecArray | null;
    while ((m = asked.exec(text))) key = m[1];
    return call(key);
  });
  pool = new MemoryStore();
  gw = createGateway({ upstream: new EngineUpstream({ generator: fake }), adminToken: ADMIN, pool });
  base = await gw.listen();
});
afterAll(async () => {
  await gw.close();
});

async function openSession(): Promise<{ id: string; baseURL: string; key: string }> {
  const res = await fetch(`${base}/v1/sessions`, {
    method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ scaffold: 'sdk-test' }),
  });
  const s = (await res.json()) as { id: string; key: string; base_url: string };
  return { id: s.id, baseURL: `${base}${s.base_url}`, key: s.key };
}

function agent(): ForgeAgent {
  return new ForgeAgent({ maxTokens: 48 }).tool(GET, (args) => {
    const k = String(args.k);
    return Object.prototype.hasOwnProperty.call(store, k) ? store[k] : 'none';
  });
}

async function expectSdkError(p: Promise<unknown>, code: string, pattern: RegExp): Promise<AgentSdkError> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  expect(e).toBeInstanceOf(AgentSdkError);
  expect((e as AgentSdkError).code).toBe(code);
  expect((e as Error).message).toMatch(pattern);
  return e as AgentSdkError;
}

describe('agent SDK', () => {
  it('a lookup chain with summarize steps: every summarised call is recorded as an intended fork', async () => {
    const rand = rng();
    const keys = Array.from({ length: 4 }, (_, i) => `${'abcdefgh'[Math.floor(rand() * 8)]}${i}`);
    const answer = String(10 + Math.floor(rand() * 90));
    store = Object.fromEntries(keys.map((k, i) => [k, i + 1 < keys.length ? `@${keys[i + 1]}` : answer]));
    const s = await openSession();
    const session = agent().session({ baseURL: s.baseURL, apiKey: s.key }, [{ role: 'user', content: `Get the value of ${keys[0]}.` }]);
    let final = '';
    while (session.turns < 12) {
      const reply = await session.chat();
      if (reply.toolCalls.length === 0) {
        final = reply.content;
        break;
      }
      const [result] = await session.runTools(reply);
      if (result.startsWith('@'))
        await session.contextStep({ kind: 'summarize', messages: [{ role: 'user', content: `Get the value of ${result.slice(1)}.` }] });
    }
    expect(final, why(JSON.stringify(store))).toBe(answer);
    expect(session.toolCalls).toBe(keys.length);
    expect(session.steps.map((x) => x.kind)).toEqual(Array(keys.length - 1).fill('summarize'));

    const calls = await recorded(s.id);
    // Per key: a lookup call; then the answer call continues the last lookup.
    expect(calls).toHaveLength(keys.length + 1);
    expect(calls[0]).toEqual({ relation: 'root', notes: [] });
    calls.slice(1, keys.length).forEach((c, i) => {
      expect(c.relation, why(`call ${i + 1}`)).toBe('fork');
      expect(c.notes).toEqual([expect.stringMatching(/^fork intended: context step summarize \(3 messages summarised into 1\)$/)]);
    });
    expect(calls[keys.length]).toEqual({ relation: 'continue', notes: [] });
  });

  it('a rewrite nobody announced is noted as such; an announced step that does not fork is noted too', async () => {
    store = { a1: '@b2', b2: '77' };
    const s = await openSession();
    const session = agent().session({ baseURL: s.baseURL, apiKey: s.key }, [{ role: 'user', content: 'Get the value of a1.' }]);
    await session.runTools(await session.chat());
    // The agent rewrites its context behind the gateway's back.
    session.messages = [{ role: 'user', content: 'Get the value of b2.' }];
    await session.runTools(await session.chat());
    // Announced, but keeping everything: the next call extends the history.
    await session.contextStep({ kind: 'truncate', keepFirst: 1, keepLast: 10 });
    const last = await session.chat();
    expect(last.content).toBe('77');
    const calls = await recorded(s.id);
    expect(calls.map((c) => c.relation)).toEqual(['root', 'fork', 'continue']);
    expect(calls[1].notes).toEqual([UNANNOUNCED_FORK_NOTE]);
    expect(calls[2].notes).toEqual(['context step truncate announced, but this call did not fork']);
  });

  it('truncate keeps the first and last messages, and refuses to cut a tool result from its call', async () => {
    store = { a1: '@b2', b2: '@c3', c3: '5' };
    const s = await openSession();
    const session = agent().session({ baseURL: s.baseURL, apiKey: s.key }, [{ role: 'user', content: 'Get the value of a1.' }]);
    await session.runTools(await session.chat());
    await session.runTools(await session.chat());
    expect(session.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool', 'assistant', 'tool']);
    await expectSdkError(session.contextStep({ kind: 'truncate', keepLast: 1 }), AgentErrorCode.BAD_CONTEXT, /tool result \(message 1\) without the call/);
    expect(session.messages).toHaveLength(5); // unchanged, nothing announced
    await session.contextStep({ kind: 'truncate', keepLast: 2 });
    expect(session.messages.map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    expect(await session.runTools(await session.chat())).toEqual(['5']);
    expect((await session.chat()).content).toBe('5');
    const calls = await recorded(s.id);
    expect(calls.map((c) => c.relation)).toEqual(['root', 'continue', 'fork', 'continue']);
    expect(calls[2].notes[0]).toMatch(/^fork intended: context step truncate \(kept 3 of 5 messages\)$/);
  });

  it('bad input: coded SDK errors, and the route answers in the OpenAI error shape', async () => {
    const s = await openSession();
    expect(() => agent().session({ baseURL: 'not a url', apiKey: 'k' })).toThrow(/connection.baseURL/);
    expect(() => new ForgeAgent().tool(GET, () => '').tool(GET, () => '')).toThrow(/already registered/);
    const wrongKey = agent().session({ baseURL: `${base}/v1`, apiKey: 'fk-nobody' }, [{ role: 'user', content: 'x' }]);
    const e = await expectSdkError(wrongKey.chat(), AgentErrorCode.GATEWAY, /401/);
    expect(e.gatewayCode).toBe('FORGE_GW_UNAUTHORIZED');
    const session = agent().session({ baseURL: s.baseURL, apiKey: s.key }, [{ role: 'user', content: 'x' }]);
    await expectSdkError(session.contextStep({ kind: 'rewrite' } as never), AgentErrorCode.INVALID_ARGUMENT, /step.kind/);
    await expectSdkError(session.contextStep({ kind: 'summarize', messages: [] }), AgentErrorCode.INVALID_ARGUMENT, /step.messages/);
    const noTools = new ForgeAgent().session({ baseURL: s.baseURL, apiKey: s.key });
    await expectSdkError(noTools.runTools({ message: call('a1'), content: '', toolCalls: call('a1').tool_calls!.map((c) => ({ ...c, id: 'x' })), finishReason: 'tool_calls' }),
      AgentErrorCode.UNKNOWN_TOOL, /"get"/);

    const post = (body: unknown, key?: string) => fetch(`${s.baseURL}/forge/context-steps`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: JSON.stringify(body),
    });
    const bad = await post({ kind: 'delete' }, s.key);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('FORGE_GW_INVALID_REQUEST');
    const extra = await post({ kind: 'truncate', detail: 'x', what: 1 }, s.key);
    expect(extra.status).toBe(400);
    const other = await openSession();
    const foreign = await post({ kind: 'truncate' }, other.key);
    expect(foreign.status).toBe(401);
    const ok = await post({ kind: 'truncate', detail: 'dropped 2' }, s.key);
    expect(ok.status).toBe(201);
    expect(await ok.json()).toEqual({ session_id: s.id, kind: 'truncate', detail: 'dropped 2', pending: 1 });
  });
});
