// The policy version a gateway reports for an external upstream (vLLM, SGLang: neither says which
// weights it serves). The trainer pushes weights to the server, then tells the gateway through
// POST /v1/policy-versions: every token after that is recorded with the new version, with or
// without a data pool (SQLite on disk here), and `forge-rl gateway --upstream-version` sets the
// first one. The server is the FAKE vLLM server of the tests (no GPU server runs here); the agent
// is the real `openai` client on loopback.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatewayOptionsFrom, startGatewayServer } from '../lib/cli/gateway.js';
import { CliUsageError } from '../lib/cli/args.js';
import { createGateway, GatewayErrorCode, MemoryRecorder, OpenAICompatibleUpstream, type Gateway } from '../lib/gateway/index.js';
import { ServedVersion } from '../lib/gateway/servedVersion.js';
import { SqliteStore } from '../lib/pool/index.js';
import { FakeVllmServer } from './fakes/fakeVllmServer.js';
import { seededRun } from './helpers/random.js';

const run = seededRun();
const ADMIN = 'admin-secret';
const tmp = mkdtempSync(join(os.tmpdir(), 'forge-served-version-'));
let fake: FakeVllmServer;

beforeAll(async () => {
  fake = new FakeVllmServer({ script: () => ({ role: 'assistant', content: 'Fine, thanks for asking.' }), seed: run.seed });
  await fake.start();
});
afterAll(async () => {
  await fake.close();
  rmSync(tmp, { recursive: true, force: true });
});

const admin = (base: string, method: 'GET' | 'POST', path: string, body?: unknown, token = ADMIN) => fetch(`${base}${path}`, {
  method, headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
  body: body === undefined ? undefined : JSON.stringify(body),
});

async function session(base: string): Promise<{ id: string; key: string }> {
  const r = await admin(base, 'POST', '/v1/sessions', {});
  expect(r.status).toBe(201);
  return (await r.json()) as { id: string; key: string };
}

/** One chat call of a fresh agent; the number of tokens the fake generated for it. */
async function ask(base: string, id: string, key: string, stream: boolean): Promise<number> {
  const c = new OpenAI({ apiKey: key, baseURL: `${base}/sessions/${id}/v1`, maxRetries: 0 });
  const before = fake.calls.length;
  if (stream) for await (const _ of await c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true }));
  else await c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
  expect(fake.calls.length).toBe(before + 1);
  return fake.calls[before].generated!.ids.length;
}

function gatewayOver(served: ServedVersion, extra: { pool?: SqliteStore } = {}): Gateway {
  const upstream = new OpenAICompatibleUpstream({ baseURL: fake.url, model: fake.model, version: served.read });
  return createGateway({ upstream, adminToken: ADMIN, servedVersion: served, ...extra });
}

describe(`served policy version of an external upstream (fake vLLM, seed ${run.seed})`, () => {
  it('without a pool: a push changes the version of every later token; a push that does not advance is a 409', async () => {
    const served = new ServedVersion(3);
    const gw = gatewayOver(served);
    const base = await gw.listen();
    try {
      expect(gw.servedVersion).toBe(served);
      const s = await session(base);
      const n0 = await ask(base, s.id, s.key, false);
      const pushed = await admin(base, 'POST', '/v1/policy-versions', { version: 4, metadata: { step: 1 } });
      expect(pushed.status).toBe(201);
      expect(await pushed.json()).toMatchObject({ version: 4, metadata: { step: 1 } });
      const n1 = await ask(base, s.id, s.key, true);
      const [before, after] = (gw.recorder as MemoryRecorder).callsOf(s.id);
      expect(Array.from(before.versions!)).toEqual(new Array(n0).fill(3));
      expect(Array.from(after.versions!)).toEqual(new Array(n1).fill(4));

      // Not above the served version: refused in the OpenAI error shape, nothing changes.
      for (const version of [4, 2]) {
        const r = await admin(base, 'POST', '/v1/policy-versions', { version });
        expect(r.status).toBe(409);
        expect(await r.json()).toMatchObject({ error: { code: GatewayErrorCode.CONFLICT, param: 'version', message: expect.stringMatching(/not above the version served now \(4\)/) } });
      }
      const bad = await admin(base, 'POST', '/v1/policy-versions', { version: -1 });
      expect(bad.status).toBe(400);
      expect((await admin(base, 'POST', '/v1/policy-versions', { version: 9 }, 'not-the-admin')).status).toBe(403);
      expect(served.current).toBe(4);
      // Without a pool there is no history to list.
      expect((await admin(base, 'GET', '/v1/policy-versions')).status).toBe(501);
    } finally {
      await gw.close();
    }
  });

  it('with a SQLite pool: the push is recorded in the pool and served; the pool is not written when the push is refused', async () => {
    const store = await SqliteStore.open(join(tmp, 'pool.db'));
    const served = new ServedVersion(0);
    const gw = gatewayOver(served, { pool: store });
    const base = await gw.listen();
    try {
      const s = await session(base);
      const n0 = await ask(base, s.id, s.key, true);
      expect((await admin(base, 'POST', '/v1/policy-versions', { version: 7 })).status).toBe(201);
      const n1 = await ask(base, s.id, s.key, false);
      const calls = await store.getCalls(s.id);
      expect(calls.map((c) => Array.from(c.versions))).toEqual([new Array(n0).fill(0), new Array(n1).fill(7)]);
      expect((await store.listPolicyVersions()).map((p) => p.version)).toEqual([7]);

      // A higher served version than the pool's latest (e.g. --upstream-version after a restart):
      // a push between the two is refused before the pool is touched.
      served.advance(12);
      const r = await admin(base, 'POST', '/v1/policy-versions', { version: 9 });
      expect(r.status).toBe(409);
      expect((await store.listPolicyVersions()).map((p) => p.version)).toEqual([7]);
      const list = await admin(base, 'GET', '/v1/policy-versions');
      expect(await list.json()).toMatchObject({ data: [{ version: 7 }], served_version: 12 });
    } finally {
      await gw.close();
      await store.close();
    }
  });

  it('forge-rl gateway --upstream-version sets the first version; the admin route advances it', async () => {
    expect(() => gatewayOptionsFrom({ 'upstream-version': '3' }, {}, 0)).toThrow(/--upstream-version: only meaningful with --upstream-url/);
    expect(() => gatewayOptionsFrom({ 'upstream-url': fake.url, 'upstream-model': fake.model, 'upstream-version': '-2' }, {}, 0))
      .toThrow(CliUsageError);
    expect(() => gatewayOptionsFrom({ 'upstream-url': fake.url, 'upstream-model': fake.model, 'upstream-connections': '0' }, {}, 0))
      .toThrow(/--upstream-connections: expected an integer in \[1, 65535\]/);
    const options = gatewayOptionsFrom(
      { 'upstream-url': fake.url, 'upstream-model': fake.model, 'upstream-version': '5', 'upstream-connections': '4', 'admin-token': ADMIN }, {}, 0);
    expect(options).toMatchObject({ upstreamVersion: 5, upstreamConnections: 4 });
    const recorder = new MemoryRecorder();
    const running = await startGatewayServer(options, { recorder });
    try {
      expect(running.upstreamDescription).toMatch(/version 5\)$/);
      const s = await session(running.baseUrl);
      const n0 = await ask(running.baseUrl, s.id, s.key, true);
      expect((await admin(running.baseUrl, 'POST', '/v1/policy-versions', { version: 6 })).status).toBe(201);
      const n1 = await ask(running.baseUrl, s.id, s.key, true);
      expect(recorder.callsOf(s.id).map((c) => Array.from(c.versions!))).toEqual([new Array(n0).fill(5), new Array(n1).fill(6)]);
    } finally {
      await running.close(0);
    }
  });

  it('ServedVersion checks its arguments', () => {
    expect(() => new ServedVersion(-1)).toThrow(RangeError);
    expect(() => new ServedVersion(1.5)).toThrow(/initial: expected an integer/);
    const v = new ServedVersion();
    expect(v.read()).toBe(0);
    expect(() => v.advance(2 ** 31)).toThrow(/version: expected an integer/);
    v.advance(1);
    expect(v.read()).toBe(1);
    expect(() => v.advance(1)).toThrow(expect.objectContaining({ code: GatewayErrorCode.CONFLICT, status: 409 }));
  });
});
