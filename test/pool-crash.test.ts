// Durability of the SQLite pool under SIGKILL, for real: a child process (test/helpers/pool-writer.ts)
// writes agent-like sessions (calls of up to ~4k tokens) in a loop and reports each one it completed;
// this test kills it with SIGKILL at random moments, several times over the same file, while reading
// the pool concurrently. After each kill it reopens the file (a restart) and checks: the file is
// sound; every session the child reported closed is there, closed, with every call exactly as the
// child generated it; every session visible as closed is complete (to the concurrent reader too); the
// killed session is at most 'open' with a prefix of its calls, and is then marked abandoned; reported
// rewards are there; completion numbers have no gaps. The next child resumes on the same file.
// Failures print the seed; replay with FORGE_TEST_SEED=<seed>.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { seededRun } from './helpers/random.js';
import { sessionPlan } from './helpers/pool-writer.js';
import { type CallRecord, SqliteStore } from '../lib/pool/index.js';

const { seed, rng: makeRng, why, fail } = seededRun();
const here = dirname(fileURLToPath(import.meta.url));
const tmp = mkdtempSync(join(os.tmpdir(), 'forge-pool-crash-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The session's calls are those the writer generated from its seed: all of them, or (open) a prefix. */
function checkCalls(id: string, sessionSeed: number, calls: CallRecord[], complete: boolean): void {
  const plan = sessionPlan(sessionSeed, id, { maxTokens: 2000 });
  if (complete ? calls.length !== plan.length : calls.length > plan.length)
    fail(`session ${id}: ${calls.length} calls stored, the writer made ${plan.length}${complete ? '' : ' (open: at most)'}`);
  calls.forEach((c, k) => {
    const p = plan[k].call;
    const same = (a: ArrayLike<number>, b: readonly number[]) => a.length === b.length && b.every((x, i) => a[i] === x);
    if (c.id !== p.id || c.index !== k || !same(c.promptIds, p.promptIds) || !same(c.completionIds, p.completionIds)
      || !same(c.logprobs, p.logprobs.map(Math.fround)) || !same(c.versions, p.versions) || c.parentId !== (p.parentId ?? null))
      fail(`session ${id} call ${k}: stored data differs from what the writer sent`);
  });
}

interface Report {
  open: string[];
  closed: string[];
  failed: string[];
  rewarded: string[];
  owner: string;
}

/** Starts a writer, kills it after `ms` (reading the pool meanwhile), returns what it reported. */
async function runAndKill(path: string, prefix: string, writerSeed: number, ms: number, reader: SqliteStore): Promise<Report> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'helpers/pool-writer.ts'), path, prefix, String(writerSeed)], {
    cwd: join(here, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Wait for the writer to start (tsx compile), then let it write for `ms`.
  const start = Date.now();
  while (!out.includes('ready') && Date.now() - start < 20_000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 10));
  if (!out.includes('ready')) fail(`the writer did not start: ${err}`);
  const until = Date.now() + ms;
  let cursor = (await reader.listSessions({ status: 'closed' })).length;
  while (Date.now() < until) {
    // A concurrent consumer: whatever it sees as closed is complete.
    for (const s of await reader.listSessions({ afterSeq: cursor })) {
      checkCalls(s.id, (s.metadata as { seed: number }).seed, await reader.getCalls(s.id), true);
      cursor = s.closeSeq!;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  child.kill('SIGKILL');
  await exited;
  if (err.trim()) fail(`the writer failed before it was killed: ${err}`);
  const lines = out.trim().split('\n').map((l) => l.split(' '));
  const ids = (tag: string) => lines.filter((l) => l[0] === tag).map((l) => l[1]);
  return { open: ids('open'), closed: ids('closed'), failed: ids('failed'), rewarded: ids('rewarded'), owner: ids('ready')[0] };
}

describe('SQLite pool: SIGKILL at random moments', () => {
  it('loses no completed session and shows no half-written one', async () => {
    const rand = makeRng();
    const path = join(tmp, 'pool.db');
    const reader = await SqliteStore.open(path, { owner: 'reader' });
    const reported = new Map<string, 'closed' | 'failed'>();
    const rewarded = new Set<string>();
    let kills = 0;
    let openAtKill = 0;
    for (let round = 0; round < 6; round++) {
      const r = await runAndKill(path, `w${round}`, (seed + round) >>> 0, 40 + Math.floor(rand() * 700), reader);
      kills++;
      for (const id of r.closed) reported.set(id, 'closed');
      for (const id of r.failed) reported.set(id, 'failed');
      for (const id of r.rewarded) rewarded.add(id);

      // The restart: a fresh process would open the file like this.
      const store = await SqliteStore.open(path, { owner: `restart-${round}` });
      expect(await store.integrityCheck(), why('integrity after kill')).toEqual(['ok']);
      for (const [id, status] of reported) expect((await store.getSession(id)).status, why(`reported ${id}`)).toBe(status);
      const closed = await store.listSessions({ status: 'closed' });
      expect(closed.map((s) => s.closeSeq), why('completion numbers')).toEqual(closed.map((_, i) => i + 1));
      for (const s of closed) checkCalls(s.id, (s.metadata as { seed: number }).seed, await store.getCalls(s.id), true);
      for (const id of rewarded) expect((await store.getReward(id))?.process.length, why(`reward of ${id}`)).toBe(1);
      // The killed writer's session: never closed unless it reported so (or committed just before
      // the kill), at most a prefix of its calls while open; at most one (the writer is sequential).
      const open = await store.listSessions({ status: 'open' });
      expect(open.length, why('open sessions after a kill')).toBeLessThanOrEqual(1);
      for (const s of open) {
        expect(s.owner).toBe(r.owner);
        expect(s.id).toBe(r.open.at(-1));
        checkCalls(s.id, (s.metadata as { seed: number }).seed, await store.getCalls(s.id), false);
      }
      openAtKill += open.length;
      const abandoned = await store.abandonOpenSessions({ exceptOwner: store.owner });
      expect(abandoned.map((s) => s.id)).toEqual(open.map((s) => s.id));
      for (const t of abandoned) expect((await store.listSessions({ status: 'closed' })).some((s) => s.id === t.id)).toBe(false);
      // Every session the writer started is accounted for: closed, failed, abandoned, or (killed
      // before the open committed) absent.
      for (const id of r.open.slice(0, -1)) expect(['closed', 'failed'], why(id)).toContain((await store.getSession(id)).status);
      await store.close();
    }
    await reader.close();
    expect(kills).toBe(6);
    // The run wrote something worth checking (a writer gets hundreds of ms per round).
    expect(reported.size, why('sessions completed across rounds')).toBeGreaterThanOrEqual(6);
    console.log(`pool crash test: ${kills} kills, ${reported.size} sessions reported, ${openAtKill} open at a kill (seed ${seed})`);
  });
});
