// The data pool's contract, run unchanged against every PoolStore (memory, SQLite): records round
// trip exactly (token arrays, float32 logprobs, JSON), the call tree's shared prefixes against a plain
// longest-common-prefix reference, visibility only after close, rewards never overwritten, groups,
// replay order and filters, re-scoring, JSONL export / import, and argument errors (the same class,
// code and message from every store). test/pool-sqlite.test.ts runs both stores side by side on
// random operation sequences and checks the SQLite file itself; test/pool-crash.test.ts, SIGKILL.
// Failures print the seed; replay with FORGE_TEST_SEED=<seed>.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { seededRun, type Rng } from './helpers/random.js';
import { checkCall, collect, failure, writeSession } from './helpers/pool-checks.js';
import { type PlannedCall, sessionPlan } from './helpers/pool-writer.js';
import {
  exportJsonl, importTrajectories, MemoryStore, PoolErrorCode, type PoolStore, readJsonl, rescore,
  SqliteStore, type Trajectory,
} from '../lib/pool/index.js';

const { rng: makeRng, why } = seededRun();
const int = (rand: Rng, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const tmp = mkdtempSync(join(os.tmpdir(), 'forge-pool-'));
let files = 0;
const dbFile = () => join(tmp, `pool-${files++}.db`);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const kinds: { name: string; make: () => Promise<PoolStore> }[] = [
  { name: 'memory', make: async () => new MemoryStore({ owner: 'me' }) },
  { name: 'sqlite', make: () => SqliteStore.open(dbFile(), { owner: 'me' }) },
];

describe.each(kinds)('pool contract: $name store', ({ make }) => {
  it('stores tasks, groups and policy versions; rejects duplicates and unknown ids', async () => {
    const s = await make();
    const t = await s.addTask({ id: 't', spec: { prompt: 'fix the bug', tests: ['a', 'b'] }, difficulty: 0.7, createdAt: 5 });
    expect(t).toEqual({ id: 't', spec: { prompt: 'fix the bug', tests: ['a', 'b'] }, difficulty: 0.7, createdAt: 5 });
    const anon = await s.addTask({ spec: 'x' });
    expect(anon.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(anon.difficulty).toBeNull();
    expect((await s.listTasks()).map((x) => x.id)).toEqual(['t', anon.id]);
    expect((await failure(s.addTask({ id: 't', spec: 1 })))[1]).toBe(PoolErrorCode.DUPLICATE_ID);
    expect((await failure(s.getTask('nope')))[1]).toBe(PoolErrorCode.UNKNOWN_TASK);
    expect((await failure(s.addGroup({ taskId: 'nope', size: 2 })))[1]).toBe(PoolErrorCode.UNKNOWN_TASK);
    const g = await s.addGroup({ id: 'g', taskId: 't', size: 3, createdAt: 6 });
    expect(await s.getGroup('g')).toEqual(g);
    expect((await failure(s.getGroup('h')))[1]).toBe(PoolErrorCode.UNKNOWN_GROUP);
    expect(await s.latestPolicyVersion()).toBeUndefined();
    await s.addPolicyVersion({ version: 0, metadata: { step: 0 } });
    await s.addPolicyVersion({ version: 3, metadata: { ckpt: 'w3.bin' }, createdAt: 9 });
    expect((await failure(s.addPolicyVersion({ version: 3 })))[1]).toBe(PoolErrorCode.VERSION_NOT_INCREASING);
    expect((await failure(s.addPolicyVersion({ version: 2 })))[1]).toBe(PoolErrorCode.VERSION_NOT_INCREASING);
    expect(await s.latestPolicyVersion()).toEqual({ version: 3, metadata: { ckpt: 'w3.bin' }, createdAt: 9 });
    expect((await s.listPolicyVersions()).map((v) => v.version)).toEqual([0, 3]);
    await s.close();
    expect((await failure(s.listTasks()))[1]).toBe(PoolErrorCode.STORE_CLOSED);
  });

  it('round-trips random call trees exactly; the shared prefix matches the reference', async () => {
    const rand = makeRng();
    const s = await make();
    await s.addTask({ id: 't', spec: null });
    for (let i = 0; i < 12; i++) {
      const id = `s${i}`;
      const plan = await writeSession(s, id, int(rand, 0, 2 ** 31));
      const calls = await s.getCalls(id);
      expect(calls.length).toBe(plan.length);
      calls.forEach((c, k) => checkCall(c, plan, k, id, why));
      const session = await s.getSession(id);
      const versions = plan.flatMap((p) => p.call.versions);
      expect([session.minVersion, session.maxVersion], why('version range')).toEqual(
        versions.length ? [Math.min(...versions), Math.max(...versions)] : [null, null],
      );
    }
  });

  it('keeps its own copies: mutating inputs or outputs changes nothing stored', async () => {
    const s = await make();
    await s.addTask({ id: 't', spec: null });
    await s.openSession({ id: 's', taskId: 't', scaffold: 'x' });
    const prompt = Int32Array.from([1, 2, 3]);
    const lp = Float32Array.from([-1, -2]);
    const meta = { a: [1] };
    await s.appendCall('s', { id: 'c', promptIds: prompt, completionIds: [4, 5], logprobs: lp, versions: 7, timings: { queuedAt: 1, firstTokenAt: 2, doneAt: 3 }, trainable: true, request: meta });
    prompt[0] = 99;
    lp[0] = -9;
    meta.a.push(2);
    const [c] = await s.getCalls('s');
    c.promptIds[1] = 99;
    const [again] = await s.getCalls('s');
    expect([Array.from(again.promptIds), Array.from(again.logprobs), Array.from(again.versions), again.request]).toEqual([[1, 2, 3], [-1, -2], [7, 7], { a: [1] }]);
  });

  it('makes a session visible as completed only when it is closed', async () => {
    const s = await make();
    await s.addTask({ id: 't', spec: null });
    const plan = await writeSession(s, 'a', 1, { close: false });
    expect(await s.listSessions({ status: 'closed' })).toEqual([]);
    expect(await collect(s.trajectories())).toEqual([]);
    expect((await failure(s.getTrajectory('a')))[1]).toBe(PoolErrorCode.SESSION_NOT_CLOSED);
    expect((await failure(s.addReward({ sessionId: 'a', outcome: 1 })))[1]).toBe(PoolErrorCode.SESSION_NOT_CLOSED);
    expect((await s.getSession('a')).status).toBe('open');
    expect((await failure(s.closeSession('a', { expectedCalls: plan.length + 1 })))[1]).toBe(PoolErrorCode.CALL_COUNT_MISMATCH);
    const closed = await s.closeSession('a', { endedAt: 2e12 });
    expect([closed.status, closed.closeSeq, closed.endedAt, closed.calls]).toEqual(['closed', 1, 2e12, plan.length]);
    expect((await s.listSessions({ status: 'closed' })).map((x) => x.id)).toEqual(['a']);
    expect((await failure(s.appendCall('a', plan[0].call)))[1]).toBe(PoolErrorCode.SESSION_CLOSED);
    expect((await failure(s.closeSession('a')))[1]).toBe(PoolErrorCode.SESSION_CLOSED);
    expect((await failure(s.failSession('a')))[1]).toBe(PoolErrorCode.SESSION_CLOSED);
    // Failed and abandoned sessions never become completed.
    await writeSession(s, 'b', 2, { close: false });
    const failed = await s.failSession('b', { reason: 'agent crashed' });
    expect([failed.status, failed.failReason, failed.closeSeq]).toEqual(['failed', 'agent crashed', null]);
    expect((await failure(s.appendCall('b', { ...plan[0].call, id: 'z' })))[1]).toBe(PoolErrorCode.SESSION_FAILED);
    expect((await failure(s.closeSession('b')))[1]).toBe(PoolErrorCode.SESSION_FAILED);
    await writeSession(s, 'c', 3);
    expect((await s.listSessions({ status: 'closed' })).map((x) => [x.id, x.closeSeq])).toEqual([['a', 1], ['c', 2]]);
    expect((await s.stats()).sessions).toEqual({ open: 0, closed: 2, failed: 1, abandoned: 0 });
  });

  it('checks the call tree: parent in the session, claimed prefix equal to the parent tokens', async () => {
    const s = await make();
    await s.addTask({ id: 't', spec: null });
    await s.openSession({ id: 's', taskId: 't', scaffold: 'x' });
    await s.openSession({ id: 'other', taskId: 't', scaffold: 'x' });
    const base = { logprobs: [-1], versions: 0, timings: { queuedAt: 1, firstTokenAt: null, doneAt: 2 }, trainable: true } as const;
    await s.appendCall('s', { ...base, id: 'c0', promptIds: [1, 2, 3], completionIds: [4] });
    await s.appendCall('other', { ...base, id: 'o0', promptIds: [1], completionIds: [4] });
    expect((await s.appendCall('s', { ...base, id: 'c1', parentId: 'c0', promptIds: [1, 2, 3, 4, 5], completionIds: [6] })).relation).toBe('continue');
    const fork = await s.appendCall('s', { ...base, id: 'c2', parentId: 'c0', sharedTokens: 2, promptIds: [1, 2, 9], completionIds: [6] });
    expect([fork.relation, fork.sharedTokens]).toEqual(['fork', 2]);
    expect((await failure(s.appendCall('s', { ...base, id: 'c3', parentId: 'c0', sharedTokens: 3, promptIds: [1, 2, 9], completionIds: [6] })))[1]).toBe(PoolErrorCode.PREFIX_MISMATCH);
    expect((await failure(s.appendCall('s', { ...base, id: 'c3', parentId: 'o0', promptIds: [1], completionIds: [6] })))[1]).toBe(PoolErrorCode.UNKNOWN_CALL);
    expect((await failure(s.appendCall('s', { ...base, id: 'c0', promptIds: [1], completionIds: [6] })))[1]).toBe(PoolErrorCode.DUPLICATE_ID);
    expect((await failure(s.appendCall('nope', { ...base, promptIds: [1], completionIds: [6] })))[1]).toBe(PoolErrorCode.UNKNOWN_SESSION);
    // A rejected call wrote nothing.
    expect((await s.getCalls('s')).map((c) => c.id)).toEqual(['c0', 'c1', 'c2']);
  });

  it('rewards a closed session once per reward version and never overwrites', async () => {
    const s = await make();
    await s.addTask({ id: 't', spec: null });
    const plan = await writeSession(s, 'a', 4);
    expect((await failure(s.addReward({ sessionId: 'ghost', outcome: 1 })))[1]).toBe(PoolErrorCode.UNKNOWN_SESSION);
    // A process reward for a call of another session is refused whole.
    expect((await failure(s.addReward({ sessionId: 'a', outcome: 1, process: [{ callId: plan[0].call.id, value: 1 }, { callId: 'x', value: 1 }] })))[1]).toBe(PoolErrorCode.UNKNOWN_CALL);
    expect(await s.getReward('a')).toBeUndefined();
    const r = await s.addReward({ sessionId: 'a', outcome: 0.75, process: [{ callId: plan[0].call.id, value: -0.25, source: 'gateway' }], details: { tests: 3 }, createdAt: 10 });
    expect(r).toEqual({ sessionId: 'a', rewardVersion: 'default', outcome: 0.75, process: [{ callId: plan[0].call.id, value: -0.25, source: 'gateway' }], details: { tests: 3 }, createdAt: 10 });
    const again = await failure(s.addReward({ sessionId: 'a', outcome: -1 }));
    expect(again[1]).toBe(PoolErrorCode.ALREADY_REWARDED);
    expect(again[2]).toContain('"a"');
    expect(await s.getReward('a')).toEqual(r);
    await s.addReward({ sessionId: 'a', rewardVersion: 'v2', outcome: 0.5, createdAt: 11 });
    expect((await s.listRewards('a')).map((x) => [x.rewardVersion, x.outcome])).toEqual([['default', 0.75], ['v2', 0.5]]);
    expect((await s.getTrajectory('a')).rewards.map((x) => x.rewardVersion)).toEqual(['default', 'v2']);
  });

  it('tracks groups: full, task mismatch, failed members replaced, complete and rewarded', async () => {
    const s = await make();
    await s.addTask({ id: 't', spec: null });
    await s.addTask({ id: 'u', spec: null });
    await s.addGroup({ id: 'g', taskId: 't', size: 2 });
    await s.addGroup({ id: 'h', taskId: 'u', size: 1 });
    expect((await failure(s.openSession({ taskId: 'u', groupId: 'g', scaffold: 'x' })))[1]).toBe(PoolErrorCode.GROUP_TASK_MISMATCH);
    await writeSession(s, 'a', 5, { groupId: 'g' });
    await writeSession(s, 'b', 6, { groupId: 'g', close: false });
    expect((await failure(s.openSession({ taskId: 't', groupId: 'g', scaffold: 'x' })))[1]).toBe(PoolErrorCode.GROUP_FULL);
    expect(await s.groupStatus('g')).toMatchObject({ open: 1, closed: 1, failed: 0, complete: false });
    await s.failSession('b');
    await writeSession(s, 'c', 7, { groupId: 'g' }); // the retry takes the failed one's place
    await writeSession(s, 'd', 8, { taskId: 'u', groupId: 'h' });
    expect(await s.groupStatus('g', { rewardVersion: 'default' })).toMatchObject({ open: 0, closed: 2, failed: 1, complete: true, rewarded: 0 });
    expect((await s.completeGroups()).map((x) => x.group.id)).toEqual(['g', 'h']);
    expect((await s.completeGroups({ taskId: 'u' })).map((x) => x.group.id)).toEqual(['h']);
    expect(await s.completeGroups({ rewardVersion: 'default' })).toEqual([]);
    await s.addReward({ sessionId: 'a', outcome: 1 });
    expect(await s.completeGroups({ rewardVersion: 'default' })).toEqual([]);
    await s.addReward({ sessionId: 'c', outcome: 0 });
    const [done] = await s.completeGroups({ rewardVersion: 'default' });
    expect([done.group.id, done.rewarded]).toEqual(['g', 2]);
    expect((await s.listSessions({ groupId: 'g', status: 'closed' })).map((x) => x.id)).toEqual(['a', 'c']);
  });

  it('replays completed sessions in completion order, with filters and a cursor', async () => {
    const rand = makeRng();
    const s = await make();
    await s.addTask({ id: 't', spec: null });
    await s.addTask({ id: 'u', spec: null });
    const order: string[] = [];
    const plans = new Map<string, PlannedCall[]>();
    const open: string[] = [];
    for (let i = 0; i < 20; i++) {
      const id = `s${i}`;
      plans.set(id, await writeSession(s, id, int(rand, 0, 1e9), { taskId: rand() < 0.5 ? 't' : 'u', close: false }));
      open.push(id);
      // Close in a random order, so completion order differs from creation order.
      while (open.length && rand() < 0.6) {
        const [next] = open.splice(int(rand, 0, open.length - 1), 1);
        await s.closeSession(next);
        order.push(next);
      }
    }
    for (const id of open) {
      await s.closeSession(id);
      order.push(id);
    }
    for (const id of order) if (rand() < 0.5) await s.addReward({ sessionId: id, outcome: 1 });
    const all = await collect(s.trajectories());
    expect(all.map((t) => t.session.id), why('replay order')).toEqual(order);
    expect(all.map((t) => t.session.closeSeq)).toEqual(order.map((_, i) => i + 1));
    for (const t of all) t.calls.forEach((c, k) => checkCall(c, plans.get(t.session.id)!, k, t.session.id, why));
    const ids = async (q: Parameters<PoolStore['trajectories']>[0]) => (await collect(s.trajectories(q))).map((t) => t.session.id);
    const rewarded = new Set((await Promise.all(order.map(async (id) => ((await s.getReward(id)) ? id : '')))).filter(Boolean));
    expect(await ids({ afterSeq: 5, untilSeq: 12 })).toEqual(order.slice(5, 12));
    expect(await ids({ taskId: 'u' })).toEqual(all.filter((t) => t.session.taskId === 'u').map((t) => t.session.id));
    expect(await ids({ rewarded: true })).toEqual(order.filter((id) => rewarded.has(id)));
    expect(await ids({ rewarded: false, rewardVersion: 'default' })).toEqual(order.filter((id) => !rewarded.has(id)));
    expect((await s.listSessions({ afterSeq: 18 })).map((x) => x.id)).toEqual(order.slice(18));
    expect((await s.listSessions({ status: 'closed', limit: 3 })).map((x) => x.id)).toEqual(order.slice(0, 3));
    // A session closed while a replay runs is picked up in order.
    await writeSession(s, 'late', 9, { close: false });
    const seen: string[] = [];
    for await (const t of s.trajectories({ afterSeq: 19 })) {
      seen.push(t.session.id);
      if (seen.length === 1) await s.closeSession('late');
    }
    expect(seen).toEqual([order[19], 'late']);
  });

  it('re-scores a run under a new reward version, or only returns the scores', async () => {
    const s = await make();
    await s.addTask({ id: 't', spec: null });
    for (let i = 0; i < 6; i++) await writeSession(s, `s${i}`, 100 + i);
    for (let i = 0; i < 6; i += 2) await s.addReward({ sessionId: `s${i}`, outcome: 1 });
    // The new function: outcome = completion tokens / 100, a process penalty on untrainable calls.
    const fn = (t: Trajectory) => ({
      outcome: t.calls.reduce((n, c) => n + c.completionIds.length, 0) / 100,
      process: t.calls.filter((c) => !c.trainable).map((c) => ({ callId: c.id, value: -1 })),
    });
    const dry = await rescore(s, fn, { rewardVersion: 'v2', write: false });
    expect(dry.written).toBe(0);
    expect(dry.rewards.map((r) => r.sessionId)).toEqual(['s0', 's1', 's2', 's3', 's4', 's5']);
    for (let i = 0; i < 6; i++) expect(await s.getReward(`s${i}`, 'v2')).toBeUndefined();
    const partial = await rescore(s, fn, { rewardVersion: 'v2', write: true, query: { untilSeq: 2 } });
    expect(partial.written).toBe(2);
    expect((await failure(rescore(s, fn, { rewardVersion: 'v2', write: true })))[1]).toBe(PoolErrorCode.ALREADY_REWARDED);
    const rest = await rescore(s, fn, { rewardVersion: 'v2', write: true, resume: true });
    expect(rest.rewards.map((r) => r.sessionId)).toEqual(['s2', 's3', 's4', 's5']); // the failed full run wrote nothing
    for (let i = 0; i < 6; i++) {
      const t = await s.getTrajectory(`s${i}`);
      const v2 = (await s.getReward(`s${i}`, 'v2'))!;
      expect(v2.outcome).toBe(fn(t).outcome);
      expect(v2.process.map((p) => [p.callId, p.value])).toEqual(fn(t).process.map((p) => [p.callId, p.value]));
      // The original rewards are untouched.
      expect((await s.getReward(`s${i}`))?.outcome).toBe(i % 2 === 0 ? 1 : undefined);
    }
    expect((await failure(rescore(s, () => ({ outcome: NaN }), { rewardVersion: 'v3', write: false })))[0]).toBe('RangeError');
  });

  it('exports JSONL and imports it into another store of either kind, unchanged', async () => {
    const rand = makeRng();
    const s = await make();
    await s.addTask({ id: 't', spec: { p: 'ü' }, difficulty: 2 });
    await s.addGroup({ id: 'g', taskId: 't', size: 3 });
    for (let i = 0; i < 5; i++) await writeSession(s, `s${i}`, int(rand, 0, 1e9), { groupId: i < 3 ? 'g' : undefined });
    await writeSession(s, 'open', 1, { close: false });
    await s.addReward({ sessionId: 's1', outcome: 0.5, process: [{ callId: 's1/c0', value: 0.1 }] });
    const path = join(tmp, `export-${files++}.jsonl`);
    const summary = await exportJsonl(s, path);
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect([summary.sessions, lines.length]).toEqual([5, 5]);
    const first = JSON.parse(lines[0]);
    expect(Array.isArray(first.calls[0].promptIds) && first.task.spec.p === 'ü' && first.group.id === 'g').toBe(true);
    const original = await collect(s.trajectories());
    for (const other of kinds) {
      const dst = await other.make();
      expect(await importTrajectories(dst, readJsonl(path))).toEqual({ imported: 5, skipped: 0 });
      expect(await importTrajectories(dst, readJsonl(path))).toEqual({ imported: 0, skipped: 5 });
      const copy = await collect(dst.trajectories());
      const strip = (t: Trajectory) => ({ ...t, session: { ...t.session, owner: '' } });
      expect(copy.map(strip), why(`import into ${other.name}`)).toEqual(original.map(strip));
      expect(await dst.getTask('t')).toEqual(await s.getTask('t'));
      await dst.close();
    }
    // A bad destination is a rejection, not an unhandled stream error.
    expect((await failure(exportJsonl(s, join(tmp, 'missing-dir', 'x.jsonl'))))[1]).toBe('ENOENT');
    writeFileSync(path, `${lines[0]}\n{not json\n`);
    expect((await failure(collect(readJsonl(path))))[1]).toBe(PoolErrorCode.CORRUPT);
  });

  it('lists and abandons the open sessions of a dead writer', async () => {
    const s = await make();
    await s.addTask({ id: 't', spec: null });
    await writeSession(s, 'a', 1, { close: false });
    await writeSession(s, 'b', 2);
    expect((await s.listSessions({ status: 'open', owner: 'me' })).map((x) => x.id)).toEqual(['a']);
    expect(await s.abandonOpenSessions({ exceptOwner: 'me' })).toEqual([]);
    const [gone] = await s.abandonOpenSessions({ owner: 'me', reason: 'writer died' });
    expect([gone.id, gone.status, gone.failReason]).toEqual(['a', 'abandoned', 'writer died']);
    expect((await s.listSessions({ status: 'closed' })).map((x) => x.id)).toEqual(['b']);
    expect((await failure(s.appendCall('a', sessionPlan(1, 'a')[0].call)))[1]).toBe(PoolErrorCode.SESSION_FAILED);
  });
});

describe('pool contract: every store rejects the same bad input with the same error', () => {
  const call = { promptIds: [1, 2], completionIds: [3, 4], logprobs: [-0.5, -1], versions: 1, timings: { queuedAt: 1, firstTokenAt: 2, doneAt: 3 }, trainable: true };
  const bad: [string, (s: PoolStore) => Promise<unknown>, string][] = [
    ['token id < 0', (s) => s.appendCall('s', { ...call, promptIds: [1, -2] }), 'call.promptIds[1]'],
    ['fractional token', (s) => s.appendCall('s', { ...call, completionIds: [3, 4.5] }), 'call.completionIds[1]'],
    ['Float64Array tokens', (s) => s.appendCall('s', { ...call, promptIds: new Float64Array(2) as never }), 'call.promptIds'],
    ['logprobs length', (s) => s.appendCall('s', { ...call, logprobs: [-1] }), 'call.logprobs'],
    ['NaN logprob', (s) => s.appendCall('s', { ...call, logprobs: [-1, NaN] }), 'call.logprobs[1]'],
    ['positive logprob', (s) => s.appendCall('s', { ...call, logprobs: [0.3, -1] }), 'call.logprobs[0]'],
    ['versions length', (s) => s.appendCall('s', { ...call, versions: [1] }), 'call.versions'],
    ['timings order', (s) => s.appendCall('s', { ...call, timings: { queuedAt: 5, firstTokenAt: 2, doneAt: 6 } }), 'call.timings.firstTokenAt'],
    ['admitted before queued', (s) => s.appendCall('s', { ...call, timings: { queuedAt: 5, admittedAt: 4, firstTokenAt: 6, doneAt: 7 } }), 'call.timings.admittedAt'],
    ['Uint8Array logprobs', (s) => s.appendCall('s', { ...call, logprobs: new Uint8Array(2) as never }), 'call.logprobs'],
    ['NaN in Float64Array logprobs', (s) => s.appendCall('s', { ...call, logprobs: Float64Array.from([-1, NaN]) }), 'call.logprobs[1]'],
    ['no reason', (s) => s.appendCall('s', { ...call, trainable: false }), 'call.untrainableReason'],
    ['reason on trainable', (s) => s.appendCall('s', { ...call, untrainableReason: 'x' }), 'call.untrainableReason'],
    ['sharedTokens without parent', (s) => s.appendCall('s', { ...call, sharedTokens: 1 }), 'call.sharedTokens'],
    ['BigInt in JSON', (s) => s.appendCall('s', { ...call, request: { n: 1n } }), 'call.request'],
    ['empty session id', (s) => s.appendCall('', call), 'sessionId'],
    ['undefined spec', (s) => s.addTask({ spec: undefined }), 'task.spec'],
    ['group size 0', (s) => s.addGroup({ taskId: 't', size: 0 }), 'group.size'],
    ['scaffold missing', (s) => s.openSession({ taskId: 't' } as never), 'session.scaffold'],
    ['Inf outcome', (s) => s.addReward({ sessionId: 's', outcome: Infinity }), 'reward.outcome'],
    ['process value', (s) => s.addReward({ sessionId: 's', outcome: 1, process: [{ callId: 'c', value: NaN }] }), 'reward.process[0].value'],
    ['negative version', (s) => s.addPolicyVersion({ version: -1 }), 'policyVersion.version'],
    ['expectedCalls', (s) => s.closeSession('s', { expectedCalls: -1 }), 'options.expectedCalls'],
    ['fail status', (s) => s.failSession('s', { status: 'closed' as never }), 'options.status'],
    ['query limit', (s) => s.listSessions({ limit: 0 }), 'query.limit'],
  ];
  it.each(bad)('%s', async (_, op, name) => {
    const results = [];
    for (const kind of kinds) {
      const s = await kind.make();
      await s.addTask({ id: 't', spec: null });
      await s.openSession({ id: 's', taskId: 't', scaffold: 'x' });
      results.push(await failure(op(s)));
      expect(await s.getCalls('s')).toEqual([]);
      await s.close();
    }
    expect(['TypeError', 'RangeError']).toContain(results[0][0]);
    expect(results[0][1]).toMatch(/^FORGE_ERR_/);
    expect(results[0][2].startsWith(name), results[0][2]).toBe(true);
    expect(results[1]).toEqual(results[0]);
  });
});

