// Session memory on a long-running gateway: once a session is closed or failed its call tree and
// tool-argument map are dropped and it moves to a bounded record of ended sessions (least recently
// used out), so its key still gets "session closed" (404 in each protocol's shape, with the real
// `openai` and `@anthropic-ai/sdk` clients) and the admin routes still show it; past the bound it is
// forgotten. counts() is kept by counters: checked against a recount of the sessions' own states
// after random operations, a recorder failing a close included.
import Anthropic from '@anthropic-ai/sdk';
import type { FastifyRequest } from 'fastify';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createGateway, DEFAULT_LIMITS, EngineUpstream, GatewayError, MemoryRecorder, runChat, ScriptedFakeGenerator, SessionStore,
  type Gateway, type Session, type SessionInfo,
} from '../lib/gateway/index.js';
import { seededRun } from './helpers/random.js';

const run = seededRun();
const ADMIN = 'admin';
const TOOLS = [{ type: 'function' as const, function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }];
const USER = [{ role: 'user' as const, content: 'hi' }];

let gw: Gateway, base: string;

beforeAll(async () => {
  const fake = new ScriptedFakeGenerator(() => ({ role: 'assistant', content: null, tool_calls: [{ function: { name: 'lookup', arguments: '{"q": 1}' } }] }));
  gw = createGateway({ upstream: new EngineUpstream({ generator: fake }), adminToken: ADMIN });
  base = await gw.listen();
});
afterAll(async () => {
  await gw.close();
});

const admin = (path: string, init: RequestInit = {}) =>
  fetch(`${base}${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN}`, ...(init.body ? { 'content-type': 'application/json' } : {}) } });

/** The gateway error `p` rejects with (code), as the SDK reports it. */
async function codeOf(p: Promise<unknown>): Promise<{ status?: number; code?: string; type?: string }> {
  const e = await p.then(() => undefined, (x: unknown) => x);
  if (e instanceof OpenAI.APIError) return { status: e.status, code: (e.error as { code?: string }).code };
  if (e instanceof Anthropic.APIError) return { status: e.status, type: (e.error as { error: { type: string } }).error.type };
  throw new Error(`expected an SDK error, got ${String(e)}`);
}

/** A request as SessionStore.resolve reads it. */
const request = (key: string | undefined, sessionId?: string) =>
  ({ headers: key ? { authorization: `Bearer ${key}` } : {}, params: sessionId ? { sessionId } : {} }) as unknown as FastifyRequest;

function resolveCode(store: SessionStore, req: FastifyRequest): string {
  try {
    store.resolve(req);
    return 'ok';
  } catch (e) {
    return (e as GatewayError).code;
  }
}

describe(`gateway / session eviction and counts (seed ${run.seed})`, () => {
  it('many sessions closed and failed: their calls are dropped, their keys get "session closed", counts agree', async () => {
    const rng = run.rng();
    const sessions: { id: string; key: string; end: 'open' | 'closed' | 'failed' }[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await admin('/v1/sessions', { method: 'POST', body: '{}' });
      const s = (await r.json()) as { id: string; key: string };
      await new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'x', messages: USER, tools: TOOLS });
      const live = gw.sessions.get(s.id)!;
      expect([live.tree?.size, live.toolArguments?.size]).toEqual([1, 1]);
      const u = rng();
      sessions.push({ ...s, end: u < 0.5 ? 'closed' : u < 0.75 ? 'failed' : 'open' });
    }
    for (const s of sessions) {
      if (s.end === 'closed') expect((await admin(`/v1/sessions/${s.id}/close`, { method: 'POST' })).status).toBe(200);
      if (s.end === 'failed') expect((await admin(`/v1/sessions/${s.id}/fail`, { method: 'POST', body: JSON.stringify({ reason: 'crashed' }) })).status).toBe(200);
    }
    const n = (end: string) => sessions.filter((s) => s.end === end).length;
    expect(gw.sessions.held()).toEqual({ live: n('open'), ended: n('closed') + n('failed') });
    expect(gw.sessions.counts()).toEqual({ open: n('open'), closing: 0, closed: n('closed'), failed: n('failed'), inFlight: 0 });
    for (const s of sessions) {
      const held = gw.sessions.get(s.id)!;
      if (s.end === 'open') {
        expect(held.tree).not.toBeNull();
        continue;
      }
      // The memory-heavy state is gone; what the admin routes show is kept.
      expect([held.tree, held.toolArguments, held.ended, held.calls]).toEqual([null, null, s.end, 1]);
      expect(await (await admin(`/v1/sessions/${s.id}`)).json()).toMatchObject({ id: s.id, status: s.end, calls: 1, closed: true });
      expect(await codeOf(new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'x', messages: USER })))
        .toEqual({ status: 404, code: 'FORGE_GW_SESSION_CLOSED' });
      expect(await codeOf(new OpenAI({ apiKey: 'EMPTY', baseURL: `${base}/sessions/${s.id}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'x', messages: USER })))
        .toEqual({ status: 404, code: 'FORGE_GW_SESSION_CLOSED' });
      expect(await codeOf(new Anthropic({ apiKey: s.key, baseURL: base, maxRetries: 0 }).messages.create({ model: 'x', max_tokens: 4, messages: USER })))
        .toEqual({ status: 404, type: 'not_found_error' });
    }
    // Ending again: closing a closed session is a no-op, failing it a conflict (as before eviction).
    const closed = sessions.find((s) => s.end === 'closed')!, failed = sessions.find((s) => s.end === 'failed')!;
    expect((await admin(`/v1/sessions/${closed.id}/close`, { method: 'POST' })).status).toBe(200);
    expect((await admin(`/v1/sessions/${closed.id}/fail`, { method: 'POST', body: JSON.stringify({ reason: 'x' }) })).status).toBe(409);
    expect((await admin(`/v1/sessions/${failed.id}/close`, { method: 'POST' })).status).toBe(409);
    // A closed session's key on another session's base URL is still refused as another session's.
    const open = sessions.find((s) => s.end === 'open')!;
    expect(await codeOf(new OpenAI({ apiKey: closed.key, baseURL: `${base}/sessions/${open.id}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'x', messages: USER })))
      .toEqual({ status: 401, code: 'FORGE_GW_UNAUTHORIZED' });
    // Open sessions are untouched.
    await new OpenAI({ apiKey: open.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'x', messages: USER });
    expect(gw.sessions.get(open.id)!.tree!.size).toBe(2);
    expect(gw.sessions.counts()).toEqual({ open: n('open'), closing: 0, closed: n('closed'), failed: n('failed'), inFlight: 0 });
  });

  it('the record of ended sessions is bounded, least recently used out; forgotten keys are unknown', async () => {
    const store = new SessionStore(new MemoryRecorder(), { endedSessionsKept: 5 });
    const made: Session[] = [];
    for (let i = 0; i < 12; i++) made.push(await store.create({}));
    for (const s of made) await store.close(s);
    expect(store.held()).toEqual({ live: 0, ended: 5 });
    expect(made.map((s) => store.get(s.info.id) !== undefined)).toEqual([...new Array(7).fill(false), ...new Array(5).fill(true)]);
    expect(resolveCode(store, request(made[0].key))).toBe('FORGE_GW_UNAUTHORIZED');
    expect(resolveCode(store, request(undefined, made[0].info.id))).toBe('FORGE_GW_SESSION_NOT_FOUND');
    expect(resolveCode(store, request(made[11].key))).toBe('FORGE_GW_SESSION_CLOSED');
    expect(resolveCode(store, request(undefined, made[11].info.id))).toBe('FORGE_GW_SESSION_CLOSED');
    // Using session 7's key makes it the most recent: the next two ended sessions push out 8 and 9.
    expect(resolveCode(store, request(made[7].key))).toBe('FORGE_GW_SESSION_CLOSED');
    for (let i = 0; i < 2; i++) await store.fail(await store.create({}), 'x');
    expect([7, 8, 9, 10, 11].map((i) => store.get(made[i].info.id) !== undefined)).toEqual([true, false, false, true, true]);
    expect(store.counts()).toEqual({ open: 0, closing: 0, closed: 12, failed: 2, inFlight: 0 });

    const none = new SessionStore(new MemoryRecorder(), { endedSessionsKept: 0 });
    const s = await none.create({});
    await none.close(s);
    expect([none.held(), resolveCode(none, request(s.key))]).toEqual([{ live: 0, ended: 0 }, 'FORGE_GW_UNAUTHORIZED']);
    expect(() => new SessionStore(new MemoryRecorder(), { endedSessionsKept: -1 })).toThrow(/endedSessionsKept/);
  });

  it('counts() equals a recount of the sessions\' states after random operations (a failing close included)', async () => {
    const rng = run.rng();
    let refuseClose: string | undefined;
    const recorder = new MemoryRecorder();
    recorder.sessionClosed = (info: SessionInfo) => {
      if (info.id === refuseClose) throw new Error('storage down');
      recorder.sessions.set(info.id, { ...info });
    };
    const store = new SessionStore(recorder, { endedSessionsKept: 3 });
    const all: Session[] = [];
    const recount = () => {
      const c = { open: 0, closing: 0, closed: 0, failed: 0, inFlight: 0 };
      for (const s of all) {
        c.inFlight += s.inFlight;
        if (s.ended !== undefined) c[s.ended]++;
        else if (s.closed) c.closing++;
        else c.open++;
      }
      return c;
    };
    for (let step = 0; step < 300; step++) {
      const u = rng();
      const open = all.filter((s) => !s.closed);
      const pick = <T>(xs: T[]) => xs[Math.floor(rng() * xs.length)];
      if (u < 0.25 || open.length === 0) all.push(await store.create({}));
      else if (u < 0.5) pick(open).inFlight++;
      else if (u < 0.65) {
        const busy = all.filter((s) => s.inFlight > 0);
        if (busy.length > 0) pick(busy).inFlight--;
      } else {
        const idle = all.filter((s) => s.inFlight === 0 && s.ended === undefined);
        if (idle.length === 0) continue;
        const s = pick(idle);
        if (u < 0.8) {
          // One close in five is refused by the recorder: the session stays closing until a retry.
          refuseClose = rng() < 0.2 ? s.info.id : undefined;
          const refused = await store.close(s).then(() => false, () => true);
          expect(refused).toBe(refuseClose === s.info.id);
        } else await store.fail(s, 'gave up');
      }
      expect(store.counts(), run.why(`step ${step}`)).toEqual(recount());
    }
    refuseClose = undefined;
    for (const s of all.filter((x) => x.closed && x.ended === undefined)) await store.close(s);
    expect(store.counts()).toEqual(recount());
    expect(store.counts().closing).toBe(0);
  });

  it('runChat refuses an ended session (its tree is gone) with "session closed"', async () => {
    const store = new SessionStore(new MemoryRecorder());
    const s = await store.create({});
    await store.close(s);
    const ctx = { upstream: new EngineUpstream({ generator: new ScriptedFakeGenerator(() => ({ role: 'assistant', content: 'x' })) }), recorder: new MemoryRecorder(), limits: DEFAULT_LIMITS };
    const req = { protocol: 'openai' as const, model: 'x', messages: USER, toolChoice: 'auto' as const, sampling: {}, n: 1, raw: {} };
    const e = await runChat(ctx, s, req, () => {}, new AbortController().signal).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(GatewayError);
    expect((e as GatewayError).code).toBe('FORGE_GW_SESSION_CLOSED');
  });
});

describe('admin routes without a body', () => {
  it('take an empty body (with or without a JSON content type) as {}, while agent routes still need one', async () => {
    const engine = new ScriptedFakeGenerator(() => ({ role: 'assistant', content: 'ok' }));
    const gateway = createGateway({ upstream: new EngineUpstream({ generator: engine }), adminToken: 'admin' });
    const base = await gateway.listen({ port: 0 });
    try {
      const admin = { authorization: 'Bearer admin' };
      const created = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: admin });
      expect(created.status).toBe(201);
      const session = (await created.json()) as { id: string; key: string };
      const closed = await fetch(`${base}/v1/sessions/${session.id}/close`, {
        method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: '',
      });
      expect(closed.status).toBe(200);
      expect(((await closed.json()) as { closed: boolean }).closed).toBe(true);
      const other = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: '' });
      const key = ((await other.json()) as { key: string }).key;
      const chat = await fetch(`${base}/v1/chat/completions`, {
        method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '',
      });
      expect(chat.status).toBe(400);
      expect(((await chat.json()) as { error: { code: string } }).error.code).toBe('FORGE_GW_INVALID_REQUEST');
      const bad = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { ...admin, 'content-type': 'application/json' }, body: '{"task_id": ' });
      expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('FORGE_GW_INVALID_JSON');
    } finally {
      await gateway.close();
    }
  });
});
