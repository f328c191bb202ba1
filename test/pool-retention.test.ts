// Retention of the data pool: PoolStore.prune on both stores, on a pool of agent-like sessions
// (test/helpers/pool-writer.ts plans, fresh seeded contents) laid out to hit every rule: groups
// pruned whole, a group with an open session and one that only partly matches left whole, ungrouped
// sessions, failed and abandoned ones, a task and a group that become empty, an empty group and task
// that must stay. Expected outcomes are written out by hand from that layout; payload bytes are
// recomputed from the plans. Both stores must give the same result. SQLite only: the space comes back
// (file sizes measured, new files by auto-vacuum, older files by VACUUM), and completion numbers are
// never handed out twice, and another connection writes between a prune's batches. Killing a prune
// (SIGKILL) and a writer process running during a prune: test/cli-pool.test.ts, on the CLI.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { checkCall, collect, failure, writeSession } from './helpers/pool-checks.js';
import { type PlannedCall, sessionPlan } from './helpers/pool-writer.js';
import { seededRun } from './helpers/random.js';
import { exportJsonl, importTrajectories, isPrunedCall, MemoryStore, type PoolStore, type PruneResult, readJsonl, SqliteStore } from '../lib/pool/index.js';
import { SCHEMA } from '../lib/pool/sqliteSchema.js';

const { rng, why } = seededRun();
const tmp = mkdtempSync(join(os.tmpdir(), 'forge-retention-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let files = 0;

interface Clocked {
  store: PoolStore;
  clock: { t: number };
}

const kinds: { name: string; make: () => Promise<Clocked> }[] = [
  { name: 'memory', make: async () => { const clock = { t: 1 }; return { clock, store: new MemoryStore({ now: () => clock.t }) }; } },
  { name: 'sqlite', make: async () => { const clock = { t: 1 }; return { clock, store: await SqliteStore.open(join(tmp, `p${files++}.db`), { now: () => clock.t }) }; } },
];

/** Payload bytes of planned calls, counted array by array and JSON text by JSON text. */
function planBytes(plan: PlannedCall[]): { arrays: number; json: number } {
  let arrays = 0;
  let json = 0;
  for (const { call } of plan) {
    arrays += 4 * (call.promptIds.length + call.completionIds.length + call.logprobs.length + call.versions.length);
    for (const v of [call.request ?? null, call.response ?? null, call.toolCalls ?? null]) json += Buffer.byteLength(JSON.stringify(v), 'utf8');
  }
  return { arrays, json };
}

/**
 * Tasks A B C D; groups gA1 (2, complete, rewarded), gA2 (4, a slot free: s3 s4-failed s5 s6, s6 ends late,
 * unrewarded), gB1 (2: s7 closed, s8 open), gC1 (1: s12, the last one closed), gD (empty); ungrouped
 * s9 (closed), s10 (abandoned), s11 (open). End times in the store's clock.
 */
async function scenario(c: Clocked): Promise<Map<string, PlannedCall[]>> {
  const { store } = c;
  const rand = rng();
  const plans = new Map<string, PlannedCall[]>();
  for (const t of ['A', 'B', 'C', 'D']) await store.addTask({ id: t, spec: { t } });
  for (const [id, taskId, size] of [['gA1', 'A', 2], ['gA2', 'A', 4], ['gB1', 'B', 2], ['gC1', 'C', 1], ['gD', 'D', 2]] as const)
    await store.addGroup({ id, taskId, size });
  const session = async (id: string, taskId: string, groupId: string | null, end: number | 'open', how: 'close' | 'failed' | 'abandoned', reward: boolean) => {
    const plan = await writeSession(store, id, Math.floor(rand() * 2 ** 31), { taskId, groupId: groupId ?? undefined, close: false });
    plans.set(id, plan);
    if (end === 'open') return;
    c.clock.t = end;
    if (how === 'close') await store.closeSession(id, { expectedCalls: plan.length });
    else await store.failSession(id, { status: how, reason: 'agent crashed' });
    if (reward) await store.addReward({ sessionId: id, outcome: rand(), process: [{ callId: plan[0].call.id, value: -0.25, source: 'gateway' }] });
  };
  await session('s1', 'A', 'gA1', 100, 'close', true);
  await session('s2', 'A', 'gA1', 200, 'close', true);
  await session('s3', 'A', 'gA2', 150, 'close', true);
  await session('s4', 'A', 'gA2', 160, 'failed', false);
  await session('s5', 'A', 'gA2', 170, 'close', true);
  await session('s6', 'A', 'gA2', 900, 'close', false);
  await session('s7', 'B', 'gB1', 120, 'close', true);
  await session('s8', 'B', 'gB1', 'open', 'close', false);
  await session('s9', 'B', null, 130, 'close', true);
  await session('s10', 'B', null, 140, 'abandoned', false);
  await session('s11', 'B', null, 'open', 'close', false);
  await session('s12', 'C', 'gC1', 110, 'close', true);
  c.clock.t = 1000;
  return plans;
}

const ALL = ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 's10', 's11', 's12'];

/** Every remaining session's calls are exactly as planned (or, listed in `stripped`, without arrays). */
async function checkIntact(store: PoolStore, plans: Map<string, PlannedCall[]>, present: string[], stripped: string[] = []): Promise<void> {
  for (const id of present) {
    const plan = plans.get(id)!;
    const calls = await store.getCalls(id);
    expect(calls.length, why(`${id} calls`)).toBe(plan.length);
    calls.forEach((got, k) => {
      if (!stripped.includes(id)) return checkCall(got, plan, k, id, why);
      const p = plan[k].call;
      expect([got.id, got.index, got.parentId, got.relation, got.timings, got.request, got.response, got.toolCalls], why(`${id} call ${k} kept`)).toEqual(
        [p.id, k, p.parentId ?? null, got.relation, p.timings, p.request, p.response, p.toolCalls]);
      expect([got.promptIds.length, got.completionIds.length, got.logprobs.length, got.versions.length, got.sharedTokens, got.trainable], why(`${id} call ${k} stripped`)).toEqual([0, 0, 0, 0, 0, false]);
      expect(got.untrainableReason).toBe(p.trainable ? 'pruned by pool retention (was trainable)' : `pruned by pool retention (was not trainable: ${p.untrainableReason})`);
      expect(isPrunedCall(got)).toBe(true);
    });
  }
}

const withoutFile = (r: PruneResult) => ({ ...r, file: undefined });

describe.each(kinds)('prune on the $name store', ({ name, make }) => {
  it("keep 'nothing' with endedBefore: whole groups only, open ones untouched, empty groups and tasks removed", async () => {
    const c = await make();
    const { store } = c;
    const plans = await scenario(c);
    const gone = ['s1', 's2', 's9', 's10', 's12'];
    const before = await store.stats({ storage: true });
    const bytes = gone.map((id) => planBytes(plans.get(id)!)).reduce((n, b) => n + b.arrays + b.json, 0);
    const expected = {
      keep: 'nothing', sessions: 5, calls: gone.reduce((n, id) => n + plans.get(id)!.length, 0), rewards: 4, groups: 2, tasks: 1, payloadBytes: bytes,
      skipped: [{ groupId: 'gA2', reason: 'partial', matched: 3, open: 0 }, { groupId: 'gB1', reason: 'open-session', matched: 1, open: 1 }],
    };
    // A dry run counts exactly that and changes nothing.
    const dry = await store.prune({ endedBefore: 500, keep: 'nothing', dryRun: true });
    expect(dry, why('dry run')).toMatchObject({ ...expected, dryRun: true });
    expect(dry.file).toBeUndefined();
    expect(await store.stats({ storage: true }), why('stats after a dry run')).toEqual(before);

    const progress: number[] = [];
    const r = await store.prune({ endedBefore: 500, keep: 'nothing', batchSize: 1, onBatch: (p) => progress.push(p.sessions) });
    expect(r, why('prune')).toMatchObject({ ...expected, dryRun: false, batches: 4 });
    expect(progress, why('progress: units gA1, s9, s10, gC1, a group never split')).toEqual([2, 3, 4, 5]);
    for (const id of gone) expect((await failure(store.getSession(id)))[1]).toBe('FORGE_POOL_UNKNOWN_SESSION');
    expect((await failure(store.getGroup('gA1')))[1]).toBe('FORGE_POOL_UNKNOWN_GROUP');
    expect((await failure(store.getGroup('gC1')))[1]).toBe('FORGE_POOL_UNKNOWN_GROUP');
    expect((await failure(store.getTask('C')))[1]).toBe('FORGE_POOL_UNKNOWN_TASK');
    // What was never a candidate stays: the empty group and its task, A and B.
    expect((await store.listTasks()).map((t) => t.id)).toEqual(['A', 'B', 'D']);
    expect((await store.getGroup('gD')).size).toBe(2);
    await checkIntact(store, plans, ALL.filter((id) => !gone.includes(id)));
    expect(await store.groupStatus('gA2', { rewardVersion: 'default' })).toMatchObject({ open: 0, closed: 3, failed: 1, complete: false, rewarded: 2 });
    expect(await store.groupStatus('gB1')).toMatchObject({ open: 1, closed: 1 });
    expect((await store.getReward('s7'))?.process).toEqual([{ callId: plans.get('s7')![0].call.id, value: -0.25, source: 'gateway' }]);
    const after = await store.stats({ storage: true });
    expect(after, why('stats after')).toMatchObject({
      tasks: 3, groups: 3, sessions: { open: 2, closed: 4, failed: 1, abandoned: 0 }, rewards: before.rewards - 4,
      calls: before.calls - r.calls, callPayloadBytes: before.callPayloadBytes! - bytes, oldestEndedAt: 120, newestEndedAt: 900,
    });
    // Completion numbers: s12 held the highest; the next close must not get it again.
    const top = Math.max(...(await store.listSessions({ status: 'closed' })).map((s) => s.closeSeq!), 0);
    expect(top, 'the last closed session was pruned').toBeLessThan(8);
    const s8 = await store.closeSession('s8');
    expect(s8.closeSeq, why('closeSeq after pruning the newest')).toBe(9);
    expect((await store.listSessions({ afterSeq: 8 })).map((s) => s.id)).toEqual(['s8']);
    expect((await collect(store.trajectories())).map((t) => t.session.id)).toEqual(['s3', 's5', 's6', 's7', 's8']);
    await store.close();
  });

  it("keep 'summary' drops only token arrays, is idempotent, and 'nothing' can follow", async () => {
    const c = await make();
    const { store } = c;
    const plans = await scenario(c);
    const hit = ['s1', 's2', 's9', 's10', 's12'];
    const r = await store.prune({ endedBefore: 500 });
    expect(r).toMatchObject({
      keep: 'summary', sessions: 5, calls: hit.reduce((n, id) => n + plans.get(id)!.length, 0), rewards: 0, groups: 0, tasks: 0,
      payloadBytes: hit.reduce((n, id) => n + planBytes(plans.get(id)!).arrays, 0),
    });
    await checkIntact(store, plans, ALL, hit);
    for (const id of ['s1', 's2', 's9', 's12']) expect((await store.getReward(id))?.process.length, why(`${id} reward kept`)).toBe(1);
    expect((await store.getSession('s12')).status).toBe('closed');
    expect(await store.groupStatus('gA1', { rewardVersion: 'default' })).toMatchObject({ closed: 2, complete: true, rewarded: 2 });
    expect((await store.listTasks()).map((t) => t.id)).toEqual(['A', 'B', 'C', 'D']);
    const stats = await store.stats({ storage: true });
    expect(stats.prunedCalls).toBe(r.calls);
    expect(stats.tokenArrayBytes).toBe(ALL.filter((id) => !hit.includes(id)).reduce((n, id) => n + planBytes(plans.get(id)!).arrays, 0));

    // A pruned trajectory still exports and imports (its calls are untrainable, with the reason).
    const file = join(tmp, `export-${name}-${files++}.jsonl`);
    await exportJsonl(store, file);
    const copy = new MemoryStore();
    await importTrajectories(copy, readJsonl(file));
    expect((await copy.getCalls('s1')).map((x) => [x.id, x.parentId, x.untrainableReason])).toEqual((await store.getCalls('s1')).map((x) => [x.id, x.parentId, x.untrainableReason]));

    expect(await store.prune({ endedBefore: 500 }), 'a second summary prune has nothing left to drop').toMatchObject({ sessions: 0, calls: 0, payloadBytes: 0 });
    const n = await store.prune({ endedBefore: 500, keep: 'nothing' });
    expect(n).toMatchObject({ sessions: 5, payloadBytes: hit.reduce((b, id) => b + planBytes(plans.get(id)!).json, 0), groups: 2, tasks: 1 });
    await store.close();
  });

  it('criteria narrow each other; groups by id or complete-and-rewarded; a group opened meanwhile is left whole', async () => {
    const c = await make();
    const { store } = c;
    await scenario(c);
    expect(await store.prune({ rewardedGroups: true, dryRun: true, keep: 'nothing' })).toMatchObject({ sessions: 3, groups: 2, skipped: [] });
    expect(await store.prune({ rewardedGroups: true, endedBefore: 150, dryRun: true })).toMatchObject({
      sessions: 1, skipped: [{ groupId: 'gA1', reason: 'partial', matched: 1, open: 0 }],
    });
    expect(await store.prune({ groupIds: ['gB1'], keep: 'nothing' })).toMatchObject({ sessions: 0, skipped: [{ groupId: 'gB1', reason: 'open-session', matched: 1, open: 1 }] });
    // gA2 has a free slot (s4 failed): a retry opened between batches (after gA1's) must stop its removal.
    const r = await store.prune({
      endedBefore: 1000, keep: 'nothing', batchSize: 1,
      onBatch: (p) => { if (p.batches === 1) void store.openSession({ id: 'retry', taskId: 'A', groupId: 'gA2', scaffold: 'test' }); },
    });
    expect(r).toMatchObject({
      sessions: 5, groups: 2, tasks: 1,
      skipped: [{ groupId: 'gB1', reason: 'open-session', matched: 1, open: 1 }, { groupId: 'gA2', reason: 'open-session', matched: 4, open: 1 }],
    });
    expect((await store.listSessions({ groupId: 'gA2' })).map((s) => s.id)).toEqual(['s3', 's4', 's5', 's6', 'retry']);
    await store.close();
  });

  it('names what is wrong in a query, the same way on every store', async () => {
    const { store } = await make();
    await store.addTask({ id: 't', spec: null });
    await store.addGroup({ id: 'g', taskId: 't', size: 1 });
    const cases: [unknown, string, RegExp][] = [
      [{}, 'FORGE_ERR_OUT_OF_RANGE', /at least one of endedBefore, groupIds, rewardedGroups/],
      [{ endedBefore: 1, keep: 'all' }, 'FORGE_ERR_OUT_OF_RANGE', /query\.keep: expected summary or nothing/],
      [{ endedBefore: Number.NaN }, 'FORGE_ERR_NON_FINITE', /query\.endedBefore/],
      [{ groupIds: 'g' }, 'FORGE_ERR_INVALID_ARGUMENT', /query\.groupIds: expected an array/],
      [{ groupIds: ['g', 'nope'] }, 'FORGE_POOL_UNKNOWN_GROUP', /query\.groupIds\[1\]: unknown group "nope"/],
      [{ groupIds: ['g'], batchSize: 0 }, 'FORGE_ERR_OUT_OF_RANGE', /query\.batchSize/],
      [{ groupIds: ['g'], rewardVersion: 'v2' }, 'FORGE_ERR_OUT_OF_RANGE', /query\.rewardVersion: only meaningful with rewardedGroups/],
      [{ groupIds: ['g'], dryRun: 'yes' }, 'FORGE_ERR_INVALID_ARGUMENT', /query\.dryRun: expected a boolean/],
    ];
    for (const [query, code, message] of cases) {
      const [, gotCode, gotMessage] = await failure(store.prune(query as never));
      expect(gotCode, JSON.stringify(query)).toBe(code);
      expect(gotMessage).toMatch(message);
    }
    await store.close();
    expect((await failure(store.prune({ groupIds: ['g'] })))[1]).toBe('FORGE_POOL_STORE_CLOSED');
  });
});

it('both stores give the same results on the same pool', async () => {
  const results: unknown[][] = [];
  for (const { make } of kinds) {
    const c = await make();
    await scenario(c);
    results.push([
      withoutFile(await c.store.prune({ endedBefore: 160 })),
      withoutFile(await c.store.prune({ rewardedGroups: true, keep: 'nothing', batchSize: 2 })),
      withoutFile(await c.store.prune({ endedBefore: 950, keep: 'nothing' })),
      await c.store.stats({ storage: true }),
    ]);
    await c.store.close();
  }
  // The data differs between the two runs (fresh draws); the counts and layout must not.
  const shape = (r: unknown[]) => JSON.stringify(r, (k, v) => (k === 'payloadBytes' || k === 'callPayloadBytes' || k === 'tokenArrayBytes' || k === 'calls' ? typeof v : k === 'fileBytes' || k === 'freeBytes' || k === 'autoVacuum' ? undefined : v));
  expect(shape(results[1]), why('memory vs sqlite')).toBe(shape(results[0]));
});

// ---- SQLite: the disk space comes back, on new files and on files written before retention ----

const Sqlite = createRequire(import.meta.url)('better-sqlite3') as new (path: string, o?: { readonly: boolean }) => {
  pragma(s: string, o?: { simple: boolean }): unknown; exec(s: string): void; close(): void;
  prepare(s: string): { run(...a: unknown[]): unknown; all(...a: unknown[]): unknown[] };
};

/** The database's logical size, pages in the WAL included (what the file holds once checkpointed). */
function logicalBytes(path: string): number {
  const db = new Sqlite(path, { readonly: true });
  try {
    return (db.pragma('page_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number);
  } finally {
    db.close();
  }
}

/** A pool file as forge-rl wrote them before retention: WAL, the schema, no auto-vacuum. */
function legacyPoolFile(path: string): void {
  const db = new Sqlite(path);
  db.pragma('journal_mode = WAL');
  db.exec(SCHEMA);
  db.prepare("INSERT INTO pool_meta (key, value) VALUES ('schema', '1')").run();
  expect(db.pragma('auto_vacuum', { simple: true })).toBe(0);
  db.close();
}

/** ~`sessions` agent-like sessions of up to 2000-token contexts, in groups of 2, closed and rewarded. */
async function fill(store: SqliteStore, sessions: number, seed0: number): Promise<Map<string, PlannedCall[]>> {
  const plans = new Map<string, PlannedCall[]>();
  await store.addTask({ id: 'big', spec: { big: true } }).catch(() => {});
  for (let i = 0; i < sessions; i++) {
    const id = `b${seed0}-${i}`;
    if (i % 2 === 0) await store.addGroup({ id: `g${seed0}-${i / 2}`, taskId: 'big', size: 2 });
    plans.set(id, await writeSession(store, id, seed0 + i, { taskId: 'big', groupId: `g${seed0}-${i >> 1}` }));
    await store.addReward({ sessionId: id, outcome: 1 });
  }
  return plans;
}

const diskBytes = (path: string) => statSync(path).size + (() => { try { return statSync(`${path}-wal`).size; } catch { return 0; } })();

describe('SQLite: space comes back', () => {
  it('a new file uses incremental auto-vacuum: pruning shrinks it without a VACUUM', async () => {
    const path = join(tmp, 'new.db');
    const store = await SqliteStore.open(path, { syncOnClose: false });
    const plans = await fill(store, 120, 1000);
    const big = logicalBytes(path);
    const stats = await store.stats({ storage: true });
    expect(stats.autoVacuum).toBe('incremental');
    const ids = [...plans.keys()];
    const keepGroups = new Set(ids.slice(-20).map((id) => `g1000-${Number(id.split('-')[1]) >> 1}`));
    const groupIds = [...new Set(ids.map((id) => `g1000-${Number(id.split('-')[1]) >> 1}`))].filter((g) => !keepGroups.has(g));
    const r = await store.prune({ groupIds, keep: 'nothing' });
    expect(r.sessions).toBe(100);
    expect(r.file?.reclaim).toBe('auto-vacuum');
    expect(r.file?.bytesAfter, 'file + WAL after, as measured by stat').toBe(diskBytes(path));
    // 100 of 120 sessions gone: the file must come down in proportion (indexes and pages, not exactly).
    expect(diskBytes(path), why(`${big} -> ${diskBytes(path)} bytes`)).toBeLessThan(big * 0.4);
    expect((await store.stats({ storage: true })).freeBytes).toBe(0);
    await checkIntact(store, plans, ids.slice(-20));
    expect(await store.integrityCheck()).toEqual(['ok']);
    console.log(`retention, new file: ${(big / 1e6).toFixed(2)} MB -> ${(diskBytes(path) / 1e6).toFixed(2)} MB after pruning 100 of 120 sessions`);
    await store.close();
  });

  it('a file written before retention opens, keeps working, reuses freed pages, and shrinks with vacuum', async () => {
    const path = join(tmp, 'legacy.db');
    legacyPoolFile(path);
    const store = await SqliteStore.open(path, { syncOnClose: false });
    const plans = await fill(store, 80, 2000);
    expect((await store.stats({ storage: true })).autoVacuum).toBe('none');
    const big = logicalBytes(path);
    const r = await store.prune({ endedBefore: Date.now() + 1000 });
    expect(r.sessions).toBe(80);
    expect(r.file?.reclaim).toBe('none');
    expect(logicalBytes(path), 'without vacuum the file keeps its size').toBeGreaterThanOrEqual(big);
    const free = (await store.stats({ storage: true })).freeBytes!;
    expect(free, 'the dropped arrays became free pages').toBeGreaterThan(0);
    // Freed pages are reused: new sessions need no more file.
    const more = await fill(store, 10, 3000);
    expect(logicalBytes(path)).toBeLessThanOrEqual(big);
    const beforeVacuum = logicalBytes(path);
    const v = await store.prune({ groupIds: ['g3000-0'], vacuum: true });
    expect(v.file?.reclaim).toBe('vacuum');
    // The rebuild gives back the dropped arrays (at least half of their bytes: pages are not packed full).
    expect(diskBytes(path), why(`${beforeVacuum} -> ${diskBytes(path)}`)).toBeLessThan(beforeVacuum - 0.5 * r.payloadBytes);
    const after = await store.stats({ storage: true });
    expect([after.autoVacuum, after.freeBytes]).toEqual(['incremental', 0]);
    await checkIntact(store, more, [...more.keys()].slice(2));
    await checkIntact(store, plans, [...plans.keys()], [...plans.keys()]);
    expect(await store.integrityCheck()).toEqual(['ok']);
    console.log(`retention, pre-retention file: ${(big / 1e6).toFixed(2)} MB, summary prune keeps the size, vacuum -> ${(diskBytes(path) / 1e6).toFixed(2)} MB`);
    await store.close();
  });

  it('another connection (a gateway) writes between the batches of a prune', async () => {
    const path = join(tmp, 'shared.db');
    const pruner = await SqliteStore.open(path, { syncOnClose: false });
    await fill(pruner, 12, 4000);
    const gateway = await SqliteStore.open(path, { owner: 'gateway' });
    await gateway.openSession({ id: 'live', taskId: 'big', scaffold: 'test' });
    const written: number[] = [];
    const plan = sessionPlan(77, 'live');
    const r = await pruner.prune({
      rewardedGroups: true, keep: 'nothing', batchSize: 2,
      onBatch: (p) => {
        // Each batch has committed: the other connection's write goes through at once.
        const call = plan[Math.min(p.batches - 1, plan.length - 1)].call;
        void gateway.appendCall('live', { ...call, id: `live-${p.batches}`, parentId: null }).then(() => written.push(p.batches));
      },
    });
    expect(r).toMatchObject({ sessions: 12, groups: 6, batches: 6 });
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(written, 'a write after every batch').toEqual([1, 2, 3, 4, 5, 6]);
    expect((await pruner.getCalls('live')).map((c) => c.id)).toEqual(written.map((b) => `live-${b}`));
    expect((await pruner.getSession('live')).status).toBe('open');
    await Promise.all([pruner.close(), gateway.close()]);
  });

  it('open with create: false refuses a missing file and a database that is not a pool, changing nothing', async () => {
    const missing = join(tmp, 'missing.db');
    expect((await failure(SqliteStore.open(missing, { create: false })))[1]).toBe('FORGE_POOL_STORAGE');
    expect(() => statSync(missing)).toThrow();
    const other = join(tmp, 'other.db');
    const db = new Sqlite(other);
    db.exec('CREATE TABLE notes (x TEXT)');
    db.close();
    expect(await failure(SqliteStore.open(other, { create: false }))).toEqual(['PoolError', 'FORGE_POOL_CORRUPT', `${other} is not a forge-rl pool (no pool_meta table)`]);
    const check = new Sqlite(other, { readonly: true });
    expect(check.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all(), 'no pool tables were created').toEqual([{ name: 'notes' }]);
    check.close();
  });
});
