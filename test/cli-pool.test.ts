// `forge-rl pool stats` and `forge-rl pool prune` on real SQLite pool files in a temp dir. In-process
// (main() with captured output) for the help, the flag errors (exit 2, the flag named) and what each
// flag selects, checked against the pool's state afterwards; spawned (bin/forge-rl.js) for what only
// a process shows: a prune killed with SIGKILL at random moments, several times over, after which the
// pool is consistent (every session intact or fully pruned, groups whole, no orphan rows, SQLite's
// own checks clean) and a rerun finishes the job; and a prune running while another process (the
// pool writer of test/helpers/pool-writer.ts, standing in for a gateway) keeps writing sessions.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { CliUsageError } from '../lib/cli/args.js';
import { main } from '../lib/cli/main.js';
import { parseEndedBefore } from '../lib/cli/pool.js';
import { SqliteStore } from '../lib/pool/sqliteStore.js';
import { checkCall, writeSession } from './helpers/pool-checks.js';
import { type PlannedCall, sessionPlan } from './helpers/pool-writer.js';
import { seededRun } from './helpers/random.js';

const { seed, rng, why } = seededRun();
const BIN = join(import.meta.dirname, '..', 'bin', 'forge-rl.js');
const tmp = mkdtempSync(join(tmpdir(), 'forge-cli-pool-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let files = 0;
const DAY = 86_400_000;

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** Groups of 2 sessions of task "t", closed and rewarded; group i's sessions ended `endedDaysAgo(i)` days ago. */
async function buildPool(groups: number, endedDaysAgo: (i: number) => number): Promise<{ path: string; plans: Map<string, PlannedCall[]> }> {
  const path = join(tmp, `pool-${files++}.sqlite`);
  const store = await SqliteStore.open(path, { syncOnClose: false });
  const rand = rng();
  const plans = new Map<string, PlannedCall[]>();
  await store.addTask({ id: 't', spec: { prompt: 'x' } });
  for (let g = 0; g < groups; g++) {
    await store.addGroup({ id: `g${g}`, taskId: 't', size: 2 });
    for (let k = 0; k < 2; k++) {
      const id = `g${g}s${k}`;
      const plan = await writeSession(store, id, Math.floor(rand() * 2 ** 31), { taskId: 't', groupId: `g${g}`, close: false });
      plans.set(id, plan);
      await store.closeSession(id, { endedAt: Date.now() - endedDaysAgo(g) * DAY });
      await store.addReward({ sessionId: id, outcome: rand(), process: [{ callId: plan[0].call.id, value: -1, source: 'gateway' }] });
    }
  }
  await store.close();
  return { path, plans };
}

describe('forge-rl pool: help and flag errors', () => {
  it('documents both subcommands and every prune flag', async () => {
    const help = await run('help', 'pool');
    expect(help.code).toBe(0);
    for (const text of ['pool stats', 'pool prune', '--ended-before', '--group', '--rewarded', '--keep', '--vacuum', '--dry-run', '--json', 'live gateway'])
      expect(help.out).toContain(text);
    expect((await run('pool', '--help')).out).toBe(help.out);
    expect((await run('pool', 'prune', '--help')).out).toMatch(/usage: forge-rl pool prune/);
    expect((await run('help')).out).toMatch(/\n {2}pool {7}inspect a data pool file/);
  });

  it('exits 2 naming the flag or subcommand that is wrong, and never creates a pool', async () => {
    const { path } = await buildPool(1, () => 1);
    const cases: [string[], RegExp][] = [
      [['pool'], /pool: expected a subcommand, stats or prune/],
      [['pool', 'shrink'], /pool: unknown subcommand "shrink"/],
      [['pool', 'stats'], /--pool: required/],
      [['pool', 'prune', '--pool', path], /give at least one of --ended-before, --group, --rewarded/],
      [['pool', 'prune', '--pool', path, '--ended-before', 'yesterday'], /--ended-before: expected an ISO 8601 time .* got "yesterday"/],
      [['pool', 'prune', '--pool', path, '--ended-before', '7y'], /--ended-before: .* got "7y"/],
      [['pool', 'prune', '--pool', path, '--rewarded', '--keep', 'all'], /--keep: expected summary or nothing, got "all"/],
      [['pool', 'prune', '--pool', path, '--group', 'g0', '--reward-version', 'v2'], /--reward-version: only meaningful with --rewarded/],
      [['pool', 'prune', '--pool', path, '--group', 'g0', '--batch-size', '0'], /--batch-size: expected an integer in \[1, /],
      [['pool', 'prune', '--pool', path, '--group', 'g0', '--group', 'nope'], /--group: no group "nope" in /],
      [['pool', 'prune', '--pool', path, '--older-than', '7d'], /pool prune: unknown flag --older-than/],
    ];
    for (const [argv, message] of cases) {
      const r = await run(...argv);
      expect([r.code, r.err], argv.join(' ')).toEqual([2, expect.stringMatching(message)]);
    }
    const missing = join(tmp, 'missing.sqlite');
    const r = await run('pool', 'stats', '--pool', missing);
    expect([r.code, r.err]).toEqual([1, `forge-rl pool: FORGE_POOL_STORAGE: no pool file at ${missing}`]);
    expect(existsSync(missing)).toBe(false);
  });

  it('reads --ended-before as an ISO time or a duration ago', () => {
    const now = Date.UTC(2025, 5, 10, 12);
    expect(parseEndedBefore('2025-06-01', now)).toBe(Date.UTC(2025, 5, 1));
    expect(parseEndedBefore('2025-06-01T08:30:00Z', now)).toBe(Date.UTC(2025, 5, 1, 8, 30));
    expect(parseEndedBefore('7d', now)).toBe(now - 7 * DAY);
    expect(parseEndedBefore('1.5h', now)).toBe(now - 5_400_000);
    expect(parseEndedBefore('2w', now)).toBe(now - 14 * DAY);
    expect(parseEndedBefore('90s', now)).toBe(now - 90_000);
    for (const bad of ['7', 'd', '-7d', '2025-13-45', '']) expect(() => parseEndedBefore(bad, now), bad).toThrow(CliUsageError);
  });
});

describe('forge-rl pool: stats and prune on a pool file', () => {
  it('stats reports the counts and payload; prune --ended-before, --dry-run, --group, --keep nothing do what they say', async () => {
    // Groups 0-3 ended 10 days ago, 4-5 ended 1 day ago.
    const { path, plans } = await buildPool(6, (g) => (g < 4 ? 10 : 1));
    const payload = [...plans.values()].flat().reduce((n, { call }) => n + 4 * (call.promptIds.length + 3 * call.completionIds.length)
      + [call.request, call.response, call.toolCalls ?? null].reduce((b: number, v) => b + Buffer.byteLength(JSON.stringify(v)), 0), 0);
    const calls = [...plans.values()].reduce((n, p) => n + p.length, 0);
    const stats = JSON.parse((await run('pool', 'stats', '--pool', path, '--json')).out);
    expect(stats, why('stats --json')).toMatchObject({
      pool: path, tasks: 1, groups: 6, sessions: { open: 0, closed: 12, failed: 0, abandoned: 0 }, calls, rewards: 12, callPayloadBytes: payload, prunedCalls: 0, autoVacuum: 'incremental',
    });
    const table = (await run('pool', 'stats', '--pool', path)).out;
    expect(table).toMatch(/sessions +12 \(open 0, closed 12, failed 0, abandoned 0\)/);
    expect(table).toMatch(new RegExp(`calls +${calls} \\(token arrays pruned: 0\\)`));

    const dry = await run('pool', 'prune', '--pool', path, '--ended-before', '7d', '--keep', 'nothing', '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.out).toMatch(/^would prune 8 sessions \(keep nothing\): \d+ calls, .*; 8 rewards, 4 groups, 0 tasks$/);
    expect(JSON.parse((await run('pool', 'stats', '--pool', path, '--json')).out)).toEqual(stats);

    const summary = JSON.parse((await run('pool', 'prune', '--pool', path, '--ended-before', '7d', '--json')).out);
    const old = [...plans.keys()].filter((id) => Number(id.slice(1, id.indexOf('s'))) < 4);
    expect(summary).toMatchObject({ keep: 'summary', sessions: 8, calls: old.reduce((n, id) => n + plans.get(id)!.length, 0), skipped: [] });
    const store = await SqliteStore.open(path);
    for (const id of old) expect((await store.getCalls(id)).every((c) => c.completionIds.length === 0 && !c.trainable), id).toBe(true);
    for (const id of [...plans.keys()].filter((x) => !old.includes(x))) (await store.getCalls(id)).forEach((c, k) => checkCall(c, plans.get(id)!, k, id, why));

    const gone = await run('pool', 'prune', '--pool', path, '--group', 'g0', '--group', 'g5', '--keep', 'nothing');
    expect(gone.out).toMatch(/^pruned 4 sessions \(keep nothing\): \d+ calls, .*; 4 rewards, 2 groups, 0 tasks\nfile .* -> .* \(auto-vacuum\)$/);
    expect((await store.listSessions()).map((s) => s.id)).toEqual(['g1s0', 'g1s1', 'g2s0', 'g2s1', 'g3s0', 'g3s1', 'g4s0', 'g4s1']);
    expect((await store.stats()).groups).toBe(4);
    await store.close();
  });
});

// ---- spawned: SIGKILL mid-prune, and a writer process during a prune ----

function spawnCli(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, FORGE_CLI_SOURCE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const io = { out: '', err: '' };
  child.stdout.on('data', (d) => (io.out += d));
  child.stderr.on('data', (d) => (io.err += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, io, exited };
}

const Sqlite = createRequire(import.meta.url)('better-sqlite3') as new (path: string, o?: { readonly: boolean }) => {
  prepare(s: string): { get(): unknown; all(): unknown[] }; pragma(s: string): unknown; close(): void;
};

/** Rows that would be orphans after a half-done prune, counted with plain SQL on the file. */
function orphanRows(path: string): Record<string, number> {
  const db = new Sqlite(path, { readonly: true });
  const n = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
  const out = {
    calls: n('SELECT COUNT(*) AS n FROM calls WHERE session_id NOT IN (SELECT id FROM sessions)'),
    rewards: n('SELECT COUNT(*) AS n FROM rewards WHERE session_id NOT IN (SELECT id FROM sessions)'),
    processRewards: n('SELECT COUNT(*) AS n FROM process_rewards p WHERE NOT EXISTS (SELECT 1 FROM rewards r WHERE r.session_id = p.session_id AND r.reward_version = p.reward_version)'),
    callCounts: n('SELECT COUNT(*) AS n FROM sessions s WHERE n_calls != (SELECT COUNT(*) FROM calls c WHERE c.session_id = s.id)'),
    foreignKeys: (db.pragma('foreign_key_check') as unknown[]).length,
  };
  db.close();
  return out;
}

/** After a kill: every planned session is gone with its group, or whole (calls as planned, or all stripped), with its reward. */
async function checkConsistent(path: string, plans: Map<string, PlannedCall[]>): Promise<{ gone: number; stripped: number; intact: number }> {
  expect(orphanRows(path), why('orphan rows')).toEqual({ calls: 0, rewards: 0, processRewards: 0, callCounts: 0, foreignKeys: 0 });
  const store = await SqliteStore.open(path);
  expect(await store.integrityCheck()).toEqual(['ok']);
  const tally = { gone: 0, stripped: 0, intact: 0 };
  const present = new Set((await store.listSessions()).map((s) => s.id));
  for (const [id, plan] of plans) {
    const groupId = id.slice(0, id.indexOf('s'));
    const sibling = id.endsWith('s0') ? id.replace(/s0$/, 's1') : id.replace(/s1$/, 's0');
    expect(present.has(sibling), why(`${id}: its group is pruned whole`)).toBe(present.has(id));
    if (!present.has(id)) {
      expect((await store.listSessions({ groupId })).length).toBe(0);
      tally.gone++;
      continue;
    }
    const calls = await store.getCalls(id);
    const stripped = calls.filter((c) => c.untrainableReason?.startsWith('pruned by pool retention')).length;
    expect([0, plan.length], why(`${id}: all calls stripped or none`)).toContain(stripped);
    if (stripped === 0) calls.forEach((c, k) => checkCall(c, plan, k, id, why));
    else expect(calls.map((c) => c.id)).toEqual(plan.map((p) => p.call.id));
    expect((await store.getReward(id))?.process.length, why(`${id} reward`)).toBe(1);
    tally[stripped ? 'stripped' : 'intact']++;
  }
  await store.close();
  return tally;
}

describe('forge-rl pool prune as a process', () => {
  it('killed with SIGKILL mid-prune leaves the pool consistent; a rerun finishes', async () => {
    const { path, plans } = await buildPool(80, () => 2);
    const rand = rng();
    let midway = 0;
    for (const [round, keep] of ['summary', 'nothing', 'nothing'].entries()) {
      const p = spawnCli(['pool', 'prune', '--pool', path, '--ended-before', '1d', '--keep', keep, '--batch-size', '2']);
      // Killed a few ms after its first batch committed (the whole prune takes tens of ms).
      const delay = Math.floor(rand() * (round === 2 ? 15 : 3));
      p.child.stderr.on('data', () => setTimeout(() => p.child.kill('SIGKILL'), delay));
      await p.exited;
      const t = await checkConsistent(path, plans);
      const done = keep === 'summary' ? t.stripped : t.gone;
      if (done > 0 && done < plans.size) midway++;
      console.log(`pool prune kill round ${round} (${keep}): ${t.gone} gone, ${t.stripped} stripped, ${t.intact} intact (seed ${seed})`);
    }
    expect(midway, why('at least one kill landed in the middle of a prune')).toBeGreaterThan(0);
    const last = spawnCli(['pool', 'prune', '--pool', path, '--ended-before', '1d', '--keep', 'nothing', '--json']);
    expect(await last.exited, last.io.err).toBe(0);
    expect(await checkConsistent(path, plans)).toEqual({ gone: plans.size, stripped: 0, intact: 0 });
    const store = await SqliteStore.open(path);
    expect(await store.stats()).toMatchObject({ tasks: 0, groups: 0, calls: 0, rewards: 0 });
    await store.close();
  });

  it('runs while another process writes the pool: both finish, nothing the writer stored is lost', async () => {
    const { path, plans } = await buildPool(40, () => 2);
    const writer = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'helpers', 'pool-writer.ts'), path, 'w', String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let wout = '';
    let werr = '';
    writer.stdout.on('data', (d) => (wout += d));
    writer.stderr.on('data', (d) => (werr += d));
    const t0 = Date.now();
    while (!wout.includes('closed') && writer.exitCode === null && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 5));
    const prune = spawnCli(['pool', 'prune', '--pool', path, '--rewarded', '--keep', 'nothing', '--batch-size', '1', '--json']);
    // From its first committed batch to its exit, as this process sees them.
    let firstBatch = 0;
    while (prune.child.exitCode === null) {
      if (!firstBatch && prune.io.err.includes('batch 1,')) firstBatch = Date.now();
      await new Promise((r) => setTimeout(r, 1));
    }
    const code = await prune.exited;
    const pruneEnded = Date.now();
    expect(firstBatch, 'the prune was seen running').toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 50));
    writer.kill('SIGKILL');
    await new Promise((r) => writer.once('exit', r));
    expect(werr, 'the writer never failed (no lock timeouts)').toBe('');
    expect(code, prune.io.err).toBe(0);
    // The writer's sessions are ungrouped: --rewarded never matches them, whatever they ended.
    expect(JSON.parse(prune.io.out)).toMatchObject({ sessions: plans.size, groups: 40, tasks: 1, skipped: [] });
    const store = await SqliteStore.open(path);
    const closed = wout.split('\n').filter((l) => l.startsWith('closed ')).map((l) => l.slice(7));
    let during = 0;
    for (const id of closed) {
      const s = await store.getSession(id);
      const plan = sessionPlan((s.metadata as { seed: number }).seed, id, { maxTokens: 2000 });
      (await store.getCalls(id)).forEach((c, k) => checkCall(c, plan, k, id, why));
      if (s.createdAt > firstBatch && s.createdAt < pruneEnded) during++;
    }
    console.log(`pool prune beside a writer: ${during} of the writer's ${closed.length} sessions opened while the prune ran`);
    expect(during, why('the writer opened sessions while the prune ran')).toBeGreaterThan(0);
    expect((await store.listSessions({ taskId: 't' })).length).toBe(0);
    expect(await store.integrityCheck()).toEqual(['ok']);
    await store.close();
  });
});
