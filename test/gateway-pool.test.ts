// The gateway writing into a real SQLite pool on disk, driven by the real `openai` and
// `@anthropic-ai/sdk` clients on loopback with a scripted FAKE generator: a tool loop and a
// context-truncating fork stored as a call tree equal to what the gateway recorded (a MemoryRecorder
// beside the pool sees the same records), a failed upstream call stored failed with its reason, the
// admin endpoints (groups, tasks, close / fail, rewards with every error case, trajectory, JSONL
// export) and the pool file reopened after the gateway is gone.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createGateway, EngineUpstream, MemoryRecorder, PoolRecorder, ScriptedFakeGenerator,
  type CallRecord, type CallRecorder, type Gateway, type SessionInfo,
} from '../lib/gateway/index.js';
import type { ChatMessage, ToolDefinition } from '../lib/model/chatTemplate.js';
import { decode } from '../lib/model/tokenizer.js';
import type { GenerateOptions, Generation } from '../lib/engine/types.js';
import { SqliteStore, trajectoryFromJson, type TrajectoryJson } from '../lib/pool/index.js';

const ADMIN = 'admin-secret';
const TOOLS: ToolDefinition[] = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
];

/** 'boom' makes the fake fail; a tool result gets an answer; otherwise the tool is called. */
function script(promptIds: Int32Array) {
  const text = decode(promptIds);
  if (text.includes('boom')) throw new Error('engine exploded');
  const lastUser = text.lastIndexOf('<|user|>'), lastTool = text.lastIndexOf('<|tool|>');
  if (lastTool > lastUser) return { role: 'assistant' as const, content: 'Sunny.' };
  const city = /city: (\w+)/.exec(text.slice(lastUser))?.[1] ?? 'Paris';
  return { role: 'assistant' as const, content: 'Let me check.', tool_calls: [{ function: { name: 'get_weather', arguments: `{"city": "${city}"}` } }] };
}

/** The scripted fake, except that a prompt saying 'hold' waits for release() before its tokens. */
class HeldGenerator extends ScriptedFakeGenerator {
  release: (() => void) | undefined;
  override generate(promptIds: Int32Array, options?: GenerateOptions): Generation {
    const g = super.generate(promptIds, options);
    if (!decode(promptIds).includes('hold')) return g;
    const gate = new Promise<void>((r) => (this.release = r));
    return {
      result: gate.then(() => g.result),
      async *[Symbol.asyncIterator]() {
        await gate;
        yield* g;
      },
    };
  }
}

/** Hands every event to the pool recorder and keeps a memory copy of what the gateway recorded. */
class TeeRecorder implements CallRecorder {
  readonly memory = new MemoryRecorder();
  constructor(readonly pool: PoolRecorder) {}
  async sessionCreated(s: SessionInfo) {
    await this.pool.sessionCreated(s);
    this.memory.sessionCreated(s);
  }
  async callRecorded(c: CallRecord) {
    this.memory.callRecorded(c);
    await this.pool.callRecorded(c);
  }
  async sessionClosed(s: SessionInfo) {
    await this.pool.sessionClosed(s);
    this.memory.sessionClosed(s);
  }
  async sessionFailed(s: SessionInfo) {
    await this.pool.sessionFailed(s);
    this.memory.sessionFailed(s);
  }
}

const tmp = mkdtempSync(join(os.tmpdir(), 'forge-gateway-pool-'));
const dbPath = join(tmp, 'pool.db');
let store: SqliteStore, tee: TeeRecorder, gw: Gateway, base: string, generator: HeldGenerator;
let stopped = false;

beforeAll(async () => {
  store = await SqliteStore.open(dbPath);
  tee = new TeeRecorder(new PoolRecorder(store));
  generator = new HeldGenerator(script);
  gw = createGateway({ upstream: new EngineUpstream({ generator, model: 'forge-nano' }), adminToken: ADMIN, pool: store, recorder: tee });
  base = await gw.listen();
});
afterAll(async () => {
  if (!stopped) {
    await gw.close();
    await store.close();
  }
  rmSync(tmp, { recursive: true, force: true });
});

async function admin(method: string, path: string, body?: unknown, token: string | null = ADMIN): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function newSession(body: Record<string, unknown> = {}): Promise<{ id: string; key: string; task_id: string }> {
  const r = await admin('POST', '/v1/sessions', { scaffold: 'test', ...body });
  expect(r.status, JSON.stringify(r.json)).toBe(201);
  return r.json;
}

const oai = (key: string) => new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0 });
const chat = (c: OpenAI, messages: ChatMessage[]) => c.chat.completions.create({ model: 'forge-nano', messages: messages as never, tools: TOOLS as never });

/** Two-turn tool loop, then a truncated history (a fork). Returns the agent's messages. */
async function loopAndFork(c: OpenAI, city: string) {
  const messages: ChatMessage[] = [{ role: 'system', content: 'Weather bot.' }, { role: 'user', content: `city: ${city}` }];
  const first = (await chat(c, messages)).choices[0].message;
  messages.push(first as never, { role: 'tool', tool_call_id: first.tool_calls![0].id, content: `${city}: 21C` });
  messages.push((await chat(c, messages)).choices[0].message as never);
  await chat(c, [messages[0], { role: 'user', content: `city: ${city} (summary: sunny)` }]);
  return messages;
}

const lcp = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};

function expectError(r: { status: number; json: any }, status: number, code: string, param?: string | null) {
  expect([r.status, r.json?.error?.code], JSON.stringify(r.json)).toEqual([status, code]);
  expect(r.json.error.message).toEqual(expect.any(String));
  if (param !== undefined) expect(r.json.error.param).toBe(param);
}

/** What trajectory JSON a pool read gives (the reference the endpoints are checked against). */
async function fromPool(id: string): Promise<TrajectoryJson> {
  const t = await store.getTrajectory(id);
  const task = await store.getTask(t.session.taskId);
  const group = t.session.groupId === null ? null : await store.getGroup(t.session.groupId);
  return JSON.parse(JSON.stringify({ task, group, session: t.session, calls: t.calls.map((c) => ({ ...c, promptIds: [...c.promptIds], completionIds: [...c.completionIds], logprobs: [...c.logprobs], versions: [...c.versions] })), rewards: t.rewards }));
}

let loopSession: { id: string; key: string };
let loopTrajectory: TrajectoryJson;

describe('gateway -> data pool (SQLite on disk, real SDK clients)', () => {
  it('stores a tool loop and a fork as the call tree the gateway recorded', async () => {
    expect((await admin('POST', '/v1/groups', { id: 'g-weather', task_id: 'weather', size: 2 })).status).toBe(201);
    loopSession = await newSession({ task_id: 'weather', group_id: 'g-weather', metadata: { seed: 7 } });
    const messages = await loopAndFork(oai(loopSession.key), 'Oslo');
    const closed = await admin('POST', `/v1/sessions/${loopSession.id}/close`);
    expect(closed.json).toMatchObject({ status: 'closed', calls: 3 });

    const recorded = tee.memory.callsOf(loopSession.id);
    const r = await admin('GET', `/v1/sessions/${loopSession.id}/trajectory`);
    expect(r.status).toBe(200);
    loopTrajectory = r.json;
    const t = loopTrajectory;
    expect(t.session).toMatchObject({ id: loopSession.id, taskId: 'weather', groupId: 'g-weather', scaffold: 'test', metadata: { seed: 7 }, status: 'closed', calls: 3 });
    expect(t.group).toMatchObject({ id: 'g-weather', taskId: 'weather', size: 2 });
    expect(t.task).toMatchObject({ id: 'weather', spec: null });
    expect(t.calls.map((c) => c.id)).toEqual(recorded.map((c) => c.id));
    t.calls.forEach((c, k) => {
      const g = recorded[k];
      expect(c.promptIds).toEqual(Array.from(g.promptIds!));
      expect(c.completionIds).toEqual(Array.from(g.completionIds!));
      expect(c.logprobs).toEqual(Array.from(g.logprobs!, Math.fround));
      expect(c.versions).toEqual(Array.from(g.versions!));
      expect(c.timings).toEqual({ queuedAt: g.timings.receivedAt, admittedAt: g.timings.admittedAt, firstTokenAt: g.timings.firstTokenAt, doneAt: g.timings.doneAt });
      expect([c.trainable, c.untrainableReason, c.finishReason]).toEqual([true, null, g.finishReason]);
      expect(c.request).toEqual(JSON.parse(JSON.stringify(g.request)));
      expect(c.response).toMatchObject({ protocol: 'openai', status: 'ok', content: g.content, toolCalls: JSON.parse(JSON.stringify(g.toolCalls)) });
    });
    // The agent's history: the first answer's tool call and the second answer's text.
    expect(t.calls[0].toolCalls).toMatchObject([{ id: (messages[2] as unknown as { tool_calls: { id: string }[] }).tool_calls[0].id, name: 'get_weather', argumentsText: '{"city": "Oslo"}' }]);
    expect((t.calls[1].response as { content: string }).content).toBe('Sunny.');
    // Tree: root; continue (its prompt starts with all of call 0); fork at the longest common prefix.
    const [c0, c1, c2] = t.calls;
    const ctx0 = [...c0.promptIds, ...c0.completionIds], ctx1 = [...c1.promptIds, ...c1.completionIds];
    expect([c0.parentId, c0.relation, c0.sharedTokens]).toEqual([null, 'root', 0]);
    expect(c1.promptIds.slice(0, ctx0.length)).toEqual(ctx0);
    expect([c1.parentId, c1.relation, c1.sharedTokens]).toEqual([c0.id, 'continue', ctx0.length]);
    const shared = Math.max(lcp(c2.promptIds, ctx0), lcp(c2.promptIds, ctx1));
    expect([c2.relation, c2.sharedTokens]).toEqual(['fork', shared]);
    expect(shared).toBeGreaterThan(0);
    expect(shared).toBeLessThan(c2.promptIds.length);
    expect(c2.parentId).toBe(recorded[2].link.parent);
    // The endpoint is the pool's own read, nothing lost or added on the way.
    expect(t).toEqual(await fromPool(loopSession.id));
  });

  it('a failed upstream call is stored failed with its reason; the session still closes', async () => {
    const s = await newSession();
    const c = oai(s.key);
    const err = await chat(c, [{ role: 'user', content: 'boom' }]).then(() => null, (e) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err.status).toBe(502);
    await chat(c, [{ role: 'user', content: 'city: Rome' }]);
    expect((await admin('POST', `/v1/sessions/${s.id}/close`)).status).toBe(200);
    const t = (await admin('GET', `/v1/sessions/${s.id}/trajectory`)).json as TrajectoryJson;
    expect(t.calls.length).toBe(2);
    const [failed, ok] = t.calls;
    expect(failed).toMatchObject({ trainable: false, untrainableReason: 'the call failed', promptIds: [], completionIds: [], parentId: null });
    expect(failed.response).toMatchObject({ status: 'failed', error: expect.stringMatching(/FORGE_GW_UPSTREAM_ERROR: .*engine exploded/) });
    expect(ok).toMatchObject({ trainable: true, relation: 'root' });
    expect(ok.promptIds.length).toBeGreaterThan(0);
    // Without task_id the session runs its own task, described by the session.
    expect(t.task).toMatchObject({ id: s.id, spec: { scaffold: 'test', metadata: {} } });
  });

  it('rewards: 201 with the record, never an overwrite, each bad case a clear error', async () => {
    const id = loopSession.id;
    const callId = loopTrajectory.calls[0].id;
    const open = await newSession();
    await chat(oai(open.key), [{ role: 'user', content: 'city: Lima' }]);
    const path = (sid: string) => `/v1/sessions/${sid}/reward`;
    expectError(await admin('POST', path(id), { outcome: 1 }, null), 403, 'FORGE_GW_FORBIDDEN');
    expectError(await admin('POST', path(id), { outcome: 1 }, loopSession.key), 403, 'FORGE_GW_FORBIDDEN');
    expectError(await admin('POST', path('sess_nope'), { outcome: 1 }), 404, 'FORGE_GW_SESSION_NOT_FOUND');
    expectError(await admin('POST', path(open.id), { outcome: 1 }), 409, 'FORGE_GW_SESSION_NOT_CLOSED');
    expectError(await admin('POST', path(id), {}), 400, 'FORGE_GW_INVALID_REQUEST', 'outcome');
    expectError(await admin('POST', path(id), { outcome: 'high' }), 400, 'FORGE_GW_INVALID_REQUEST', 'outcome');
    expectError(await admin('POST', path(id), { outcome: 1, bonus: 2 }), 400, 'FORGE_GW_INVALID_REQUEST', 'bonus');
    expectError(await admin('POST', path(id), { outcome: 1, process: [{ call_id: callId }] }), 400, 'FORGE_GW_INVALID_REQUEST', 'process.0.value');
    expectError(await admin('POST', path(id), { outcome: 1, process: [{ call_id: 'call_nope', value: 1 }] }), 404, 'FORGE_GW_CALL_NOT_FOUND');
    // JSON can spell a number that is not finite.
    const inf = await fetch(`${base}${path(id)}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{"outcome": 1e999}' });
    expectError({ status: inf.status, json: await inf.json() }, 400, 'FORGE_GW_INVALID_REQUEST', 'outcome');
    expect(await store.listRewards(id)).toEqual([]); // no failed attempt wrote anything

    const body = { outcome: 0.75, process: [{ call_id: callId, value: -0.5, source: 'verifier' }], details: { tests: '3/4' } };
    const first = await admin('POST', path(id), body);
    expect(first.status).toBe(201);
    expect(first.json).toMatchObject({ session_id: id, reward_version: 'default', outcome: 0.75, process: [{ call_id: callId, value: -0.5, source: 'verifier' }], details: { tests: '3/4' } });
    expectError(await admin('POST', path(id), { outcome: -1 }), 409, 'FORGE_GW_ALREADY_REWARDED');
    // A re-score goes under another reward version.
    expect((await admin('POST', path(id), { outcome: 0.5, reward_version: 'v2' })).status).toBe(201);
    const rewards = await store.listRewards(id);
    expect(rewards.map((r) => [r.rewardVersion, r.outcome])).toEqual([['default', 0.75], ['v2', 0.5]]);
    const t = (await admin('GET', `/v1/sessions/${id}/trajectory`)).json as TrajectoryJson;
    expect(t.rewards.map((r) => r.outcome)).toEqual([0.75, 0.5]);
    expect(t.rewards[0].process).toEqual([{ callId, value: -0.5, source: 'verifier' }]);
    // The open session's trajectory is a live view.
    expect((await admin('GET', `/v1/sessions/${open.id}/trajectory`)).json.session.status).toBe('open');
  });

  it('close waits for the call in flight, refusing new ones meanwhile, then closes with its count', async () => {
    const s = await newSession();
    const held = chat(oai(s.key), [{ role: 'user', content: 'hold: city: Oslo' }]);
    while (generator.release === undefined) await new Promise((r) => setTimeout(r, 2));
    let closedYet = false;
    const closing = admin('POST', `/v1/sessions/${s.id}/close`).then((r) => ((closedYet = true), r));
    while ((await admin('GET', `/v1/sessions/${s.id}`)).json.status !== 'closing') await new Promise((r) => setTimeout(r, 2));
    const refused = await chat(oai(s.key), [{ role: 'user', content: 'city: Oslo' }]).then(() => null, (e) => e);
    expect(refused.status).toBe(404);
    expect(closedYet).toBe(false); // it cannot end before the held call does
    generator.release!();
    generator.release = undefined;
    expect((await held).choices[0].message.tool_calls?.length).toBe(1);
    expect((await closing).json).toMatchObject({ status: 'closed', calls: 1 });
    expect(await store.getSession(s.id)).toMatchObject({ status: 'closed', calls: 1 });
  });

  it('fail: the pool session is failed with the reason; it cannot be closed or rewarded', async () => {
    const s = await newSession();
    await chat(oai(s.key), [{ role: 'user', content: 'city: Bern' }]);
    expectError(await admin('POST', `/v1/sessions/${s.id}/fail`, {}), 400, 'FORGE_GW_INVALID_REQUEST', 'reason');
    const r = await admin('POST', `/v1/sessions/${s.id}/fail`, { reason: 'agent crashed' });
    expect(r.json).toMatchObject({ status: 'failed', fail_reason: 'agent crashed', calls: 1 });
    expect(await store.getSession(s.id)).toMatchObject({ status: 'failed', failReason: 'agent crashed', calls: 1 });
    expectError(await admin('POST', `/v1/sessions/${s.id}/close`), 409, 'FORGE_GW_CONFLICT');
    expectError(await admin('POST', `/v1/sessions/${s.id}/reward`, { outcome: 1 }), 409, 'FORGE_GW_SESSION_NOT_CLOSED');
    const err = await chat(oai(s.key), [{ role: 'user', content: 'city: Bern' }]).then(() => null, (e) => e);
    expect(err.status).toBe(404);
  });

  it('groups: explicit, or created by group_size; a full group refuses the session', async () => {
    expectError(await admin('POST', '/v1/sessions', { group_id: 'g-new' }), 404, 'FORGE_GW_GROUP_NOT_FOUND', 'group_id');
    expectError(await admin('POST', '/v1/sessions', { group_size: 2 }), 400, 'FORGE_GW_INVALID_REQUEST', 'group_size');
    const a = await newSession({ task_id: 'math-1', group_id: 'g-new', group_size: 1 });
    expect(a.task_id).toBe('math-1');
    const before = (await store.stats()).sessions.open;
    expectError(await admin('POST', '/v1/sessions', { task_id: 'math-1', group_id: 'g-new', group_size: 1 }), 409, 'FORGE_GW_GROUP_FULL');
    expect((await store.stats()).sessions.open).toBe(before);
    expectError(await admin('POST', '/v1/sessions', { task_id: 'other', group_id: 'g-weather' }), 400, 'FORGE_GW_INVALID_REQUEST', 'group_id');
    // Without task_id, a session of an existing group runs the group's task.
    const b = await newSession({ group_id: 'g-weather' });
    expect(b.task_id).toBe('weather');
    expect((await admin('GET', '/v1/groups/g-weather')).json).toMatchObject({ id: 'g-weather', task_id: 'weather', size: 2, open: 1, closed: 1, complete: false });
    expect((await admin('GET', '/v1/groups/g-weather?reward_version=default')).json.rewarded).toBe(1);
    expectError(await admin('GET', '/v1/groups/g-none'), 404, 'FORGE_GW_GROUP_NOT_FOUND');
    expectError(await admin('POST', '/v1/groups', { id: 'g-new', task_id: 'math-1', size: 3 }), 409, 'FORGE_GW_CONFLICT');
    expectError(await admin('POST', '/v1/groups', { task_id: 'math-1', size: 0 }), 400, 'FORGE_GW_INVALID_REQUEST', 'size');
    const task = await admin('POST', '/v1/tasks', { id: 'spec-task', spec: { prompt: 'add 2+2' }, difficulty: 0.3 });
    expect(task.json).toMatchObject({ id: 'spec-task', spec: { prompt: 'add 2+2' }, difficulty: 0.3 });
    expect((await admin('GET', '/v1/tasks/spec-task')).json).toEqual(task.json);
    expectError(await admin('POST', '/v1/tasks', { id: 'spec-task', spec: 1 }), 409, 'FORGE_GW_CONFLICT');
  });

  it('the Anthropic SDK: a tool_use loop stored with the second call continuing the first', async () => {
    const s = await newSession();
    const c = new Anthropic({ apiKey: s.key, baseURL: base, maxRetries: 0 });
    const tools = [{ name: 'get_weather', description: 'Weather of a city', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } } } }];
    const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'city: Kyiv' }];
    const first = await c.messages.create({ model: 'forge-nano', max_tokens: 200, tools, messages });
    const use = first.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock;
    messages.push({ role: 'assistant', content: first.content as never }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '21C' }] });
    await c.messages.create({ model: 'forge-nano', max_tokens: 200, tools, messages });
    expect((await admin('POST', `/v1/sessions/${s.id}/close`)).status).toBe(200);
    const t = (await admin('GET', `/v1/sessions/${s.id}/trajectory`)).json as TrajectoryJson;
    expect(t.calls.map((x) => [x.relation, (x.response as { protocol: string }).protocol])).toEqual([['root', 'anthropic'], ['continue', 'anthropic']]);
    expect(t.calls[0].toolCalls).toMatchObject([{ id: use.id, arguments: { city: 'Kyiv' } }]);
    expect(t.calls[1].sharedTokens).toBe(t.calls[0].promptIds.length + t.calls[0].completionIds.length);
  });

  it('export: JSONL of the completed sessions equals the pool replay; filters and bad queries', async () => {
    const r = await fetch(`${base}/v1/export`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(r.headers.get('content-type')).toMatch(/application\/x-ndjson/);
    const lines = (await r.text()).split('\n').filter((l) => l !== '');
    const exported = lines.map((l, i) => trajectoryFromJson(JSON.parse(l), `line ${i}`));
    const replay = [];
    for await (const t of store.trajectories()) replay.push(t);
    expect(replay.length).toBeGreaterThanOrEqual(3);
    expect(exported.map(({ task, group, ...rest }) => rest)).toEqual(replay);
    for (const e of exported) expect(e.task).toEqual(await store.getTask(e.session.taskId));
    // A trajectory read is exactly its export line.
    expect(JSON.parse(lines[0])).toEqual((await admin('GET', `/v1/sessions/${loopSession.id}/trajectory`)).json);

    const text = async (q: string) => (await (await fetch(`${base}/v1/export?${q}`, { headers: { authorization: `Bearer ${ADMIN}` } })).text()).split('\n').filter(Boolean).map((l) => JSON.parse(l).session.id);
    expect(await text('after_seq=1')).toEqual(replay.slice(1).map((t) => t.session.id));
    expect(await text('reward_version=default&rewarded=true')).toEqual([loopSession.id]);
    expect(await text('task_id=weather')).toEqual([loopSession.id]);
    expect(await text('after_seq=1&until_seq=2')).toEqual([replay[1].session.id]);
    expectError(await admin('GET', '/v1/export?after_seq=abc'), 400, 'FORGE_GW_INVALID_REQUEST', 'after_seq');
    expectError(await admin('GET', '/v1/export?rewarded=yes'), 400, 'FORGE_GW_INVALID_REQUEST', 'rewarded');
    expectError(await admin('GET', '/v1/export', undefined, null), 403, 'FORGE_GW_FORBIDDEN');
  });

  it('policy versions: increasing only', async () => {
    expect((await admin('POST', '/v1/policy-versions', { version: 1, metadata: { step: 10 } })).status).toBe(201);
    expectError(await admin('POST', '/v1/policy-versions', { version: 1 }), 409, 'FORGE_GW_CONFLICT');
    expect((await admin('GET', '/v1/policy-versions')).json.data).toMatchObject([{ version: 1, metadata: { step: 10 } }]);
  });

  it('after the gateway is gone, the reopened pool file holds everything; open sessions stay open', async () => {
    const live = await newSession();
    await chat(oai(live.key), [{ role: 'user', content: 'city: Pune' }]);
    const before = { stats: await store.stats(), loop: await fromPool(loopSession.id) };
    await gw.close();
    await store.close();
    stopped = true;
    const reopened = await SqliteStore.open(dbPath);
    try {
      expect(await reopened.stats()).toEqual(before.stats);
      const t = await reopened.getTrajectory(loopSession.id);
      expect(JSON.parse(JSON.stringify({ ...t, calls: t.calls.map((c) => ({ ...c, promptIds: [...c.promptIds], completionIds: [...c.completionIds], logprobs: [...c.logprobs], versions: [...c.versions] })) })))
        .toEqual({ session: before.loop.session, calls: before.loop.calls, rewards: before.loop.rewards });
      expect(await reopened.getSession(live.id)).toMatchObject({ status: 'open', calls: 1 });
      // The pool's owner, knowing the old writer is gone, marks its sessions abandoned.
      const abandoned = await reopened.abandonOpenSessions({ exceptOwner: reopened.owner });
      expect(abandoned.map((s) => s.id)).toContain(live.id);
    } finally {
      await reopened.close();
    }
  });
});

describe('a gateway without a pool', () => {
  it('answers the pool routes with 501 and a clear message', async () => {
    const plain = createGateway({ upstream: new EngineUpstream({ generator: new ScriptedFakeGenerator(script) }), adminToken: ADMIN });
    const url = await plain.listen();
    try {
      const r = await fetch(`${url}/v1/sessions/x/reward`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{"outcome":1}' });
      const json = (await r.json()) as { error: { code: string; message: string } };
      expect([r.status, json.error.code]).toEqual([501, 'FORGE_GW_POOL_NOT_CONFIGURED']);
      expect(json.error.message).toMatch(/no data pool/);
      expect((await fetch(`${url}/v1/export`)).status).toBe(403);
    } finally {
      await plain.close();
    }
  });
});
