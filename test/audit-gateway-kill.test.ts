// Audit (issues 4 and 5, as a new user would try it): the `forge-rl gateway --pool` PROCESS is killed
// with SIGKILL while a stream is in flight, and a second gateway process is started on the same SQLite
// file. Nothing completed may be lost or changed, nothing half-written may look completed, and the
// admin routes of the new process serve what the old one wrote (a reward posted after the restart).
// The upstream is the FAKE vLLM server of the tests (a GPU inference server cannot run here): it
// sends one token every few ms, so the kill surely lands mid-stream, and it keeps every call it served,
// so the stored calls are compared token for token with what it produced.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteStore } from '../lib/pool/sqliteStore.js';
import { FakeVllmServer } from './fakes/fakeVllmServer.js';
import { seededRun } from './helpers/random.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'forge-rl.js');
const ADMIN = 'audit-admin';
const run = seededRun();
const tmp = mkdtempSync(join(tmpdir(), 'forge-audit-kill-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function gatewayProcess(args: string[]) {
  const child = spawn(process.execPath, [BIN, 'gateway', ...args], { env: { ...process.env, FORGE_CLI_SOURCE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const started = (async () => {
    const t0 = Date.now();
    while (!/create a session: curl/.test(stdout)) {
      if (child.exitCode !== null || Date.now() - t0 > 30_000) throw new Error(`the gateway did not start:\n${stdout}\n${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return /forge-rl gateway: (http:\/\/127\.0\.0\.1:\d+) /.exec(stdout)![1];
  })();
  return { child, exited, started, err: () => stderr };
}

async function admin(base: string, method: string, path: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${ADMIN}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : undefined, text };
}

/** Random words (fresh per run): the scripted completions and the agents' prompts. */
function words(rand: () => number, n: number): string {
  const letters = 'abcdefghijklmnopqrstuvwxyz';
  return Array.from({ length: n }, () => Array.from({ length: 2 + Math.floor(rand() * 6) }, () => letters[Math.floor(rand() * 26)]).join('')).join(' ');
}

describe('audit: SIGKILL of the gateway process mid-stream, restart on the same pool', () => {
  it('completed sessions and calls survive token-exact, the killed session stays unfinished, rewards work after the restart', async () => {
    const rand = run.rng();
    const answers = Array.from({ length: 4 }, () => words(rand, 40));
    const fake = new FakeVllmServer({ script: (_ids, call) => ({ role: 'assistant', content: answers[call % answers.length] }), seed: run.seed });
    const apiRoot = await fake.start();
    const poolPath = join(tmp, 'pool.sqlite');
    const flags = ['--port', '0', '--admin-token', ADMIN, '--pool', poolPath, '--upstream-url', apiRoot, '--upstream-model', fake.model];
    const first = gatewayProcess(flags);
    let second: ReturnType<typeof gatewayProcess> | undefined;
    try {
      const base1 = await first.started;
      const open = async (group: string) => {
        const r = await admin(base1, 'POST', '/v1/sessions', { task_id: 'audit-task', scaffold: 'audit', group_id: group, group_size: 1 });
        expect(r.status, r.text).toBe(201);
        return r.json as { id: string; key: string };
      };
      const client = (key: string) => new OpenAI({ baseURL: `${base1}/v1`, apiKey: key, maxRetries: 0 });

      // A finished session: one call, closed, not yet rewarded.
      const done = await open('g-done');
      const doneReply = await client(done.key).chat.completions.create({ model: 'm', messages: [{ role: 'user', content: words(rand, 5) }], max_tokens: 64 });
      expect((await admin(base1, 'POST', `/v1/sessions/${done.id}/close`)).status).toBe(200);

      // The victim: one completed call, then a stream cut by the SIGKILL of the gateway.
      const victim = await open('g-victim');
      const victimClient = client(victim.key);
      await victimClient.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: words(rand, 5) }], max_tokens: 64 });
      fake.faults = { tokenDelayMs: 20 };
      const stream = await victimClient.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: words(rand, 5) }], max_tokens: 64, stream: true });
      const chunks = stream[Symbol.asyncIterator]();
      let received = 0;
      while (received < 3) {
        const r = await chunks.next();
        if (r.done) throw new Error('the stream ended before the kill');
        if (r.value.choices[0]?.delta?.content) received++;
      }
      first.child.kill('SIGKILL');
      await expect((async () => {
        for (let r = await chunks.next(); !r.done; r = await chunks.next());
      })()).rejects.toThrow();
      expect((await first.exited).signal).toBe('SIGKILL');
      fake.faults = {};
      expect(fake.calls.map((c) => c.done)).toEqual([true, true, false]);

      second = gatewayProcess(flags);
      const base2 = await second.started;

      // The finished session, read through the new process: its one call, token-exact as served.
      const t = (await admin(base2, 'GET', `/v1/sessions/${done.id}/trajectory`)).json;
      expect(t.session).toMatchObject({ id: done.id, status: 'closed', calls: 1, groupId: 'g-done' });
      expect(t.calls).toHaveLength(1);
      expect(t.calls[0].id).toBe((doneReply as unknown as { forge: { call_ids: string[] } }).forge.call_ids[0]);
      expect(t.calls[0].promptIds).toEqual(Array.from(fake.calls[0].promptIds));
      expect(t.calls[0].completionIds).toEqual(Array.from(fake.calls[0].generated!.ids));
      expect(t.calls[0].logprobs).toEqual(Array.from(Float32Array.from(fake.calls[0].generated!.logprobs)));
      expect(t.calls[0].trainable).toBe(true);

      // A reward posted after the restart lands, once.
      const reward = await admin(base2, 'POST', `/v1/sessions/${done.id}/reward`, { outcome: 1, process: [{ call_id: t.calls[0].id, value: -0.25 }] });
      expect(reward.status, reward.text).toBe(201);
      const again = await admin(base2, 'POST', `/v1/sessions/${done.id}/reward`, { outcome: 0 });
      expect([again.status, again.json?.error?.code]).toEqual([409, 'FORGE_GW_ALREADY_REWARDED']);

      // The killed session: only its completed call is stored; it is not completed, not rewardable,
      // its group is not complete, and the export holds only the finished session.
      const v = (await admin(base2, 'GET', `/v1/sessions/${victim.id}/trajectory`)).json;
      expect(v.session.status).not.toBe('closed');
      expect(v.calls).toHaveLength(1);
      expect(v.calls[0].promptIds).toEqual(Array.from(fake.calls[1].promptIds));
      expect(v.calls[0].completionIds).toEqual(Array.from(fake.calls[1].generated!.ids));
      const refused = await admin(base2, 'POST', `/v1/sessions/${victim.id}/reward`, { outcome: 1 });
      expect([refused.status, refused.json?.error?.code]).toEqual([409, 'FORGE_GW_SESSION_NOT_CLOSED']);
      expect((await admin(base2, 'GET', '/v1/groups/g-victim')).json).toMatchObject({ closed: 0, complete: false });
      expect((await admin(base2, 'GET', '/v1/groups/g-done')).json).toMatchObject({ closed: 1, complete: true, rewarded: 0 });
      expect((await admin(base2, 'GET', '/v1/groups/g-done?reward_version=default')).json).toMatchObject({ rewarded: 1 });
      const exported = (await admin(base2, 'GET', '/v1/export')).text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      expect(exported.map((e) => e.session.id)).toEqual([done.id]);
      expect(exported[0].rewards.map((r: { outcome: number }) => r.outcome)).toEqual([1]);

      second.child.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
      second = undefined;

      // The pool file afterwards: the pool's owner can mark the dead writer's session abandoned (or
      // it already is), and it then counts as failed in its group; the finished session is intact.
      const store = await SqliteStore.open(poolPath);
      try {
        await store.abandonOpenSessions({ exceptOwner: store.owner });
        expect((await store.getSession(victim.id)).status).toBe('abandoned');
        expect(await store.groupStatus('g-victim')).toMatchObject({ open: 0, closed: 0, failed: 1, complete: false });
        expect((await store.getTrajectory(done.id)).rewards.map((r) => r.outcome)).toEqual([1]);
        expect((await store.stats()).sessions).toMatchObject({ closed: 1, open: 0 });
      } finally {
        await store.close();
      }
    } finally {
      first.child.kill('SIGKILL');
      second?.child.kill('SIGKILL');
      await fake.close();
    }
  }, 60_000);
});
