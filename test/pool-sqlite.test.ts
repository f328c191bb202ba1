// The SQLite store beside the memory store, and the file itself: both stores run the same random
// sequence of operations (valid and invalid) and must answer each with the same result or the same
// error, ending in the same state; a pool file reopens intact and a restarted writer carries on;
// another schema version or a file that is not a database is refused; two stores on one file write
// interleaved with one completion order. Failures print the seed; replay with FORGE_TEST_SEED=<seed>.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { checkCall, collect, failure, writeSession } from './helpers/pool-checks.js';
import { type PlannedCall, sessionPlan } from './helpers/pool-writer.js';
import { seededRun, type Rng } from './helpers/random.js';
import { MemoryStore, PoolErrorCode, type PoolStore, SqliteStore } from '../lib/pool/index.js';

const { rng: makeRng, why } = seededRun();
const int = (rand: Rng, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const tmp = mkdtempSync(join(os.tmpdir(), 'forge-pool-sqlite-'));
let files = 0;
const dbFile = () => join(tmp, `pool-${files++}.db`);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// One fixed clock for both stores: default timestamps (an abandoned session's end) must not differ by
// the millisecond that passes between the two stores' calls.
const fixedNow = () => 1_795_000_000_000;
const kinds: { name: string; make: () => Promise<PoolStore> }[] = [
  { name: 'memory', make: async () => new MemoryStore({ owner: 'me', now: fixedNow }) },
  { name: 'sqlite', make: () => SqliteStore.open(dbFile(), { owner: 'me', now: fixedNow }) },
];

describe('pool contract: memory and SQLite agree on random operation sequences', () => {
  it('same results and errors, op by op, and the same final state', async () => {
    const rand = makeRng();
    const stores = await Promise.all(kinds.map((k) => k.make()));
    const tasks = ['t0', 't1', 't2'];
    const groups: string[] = [];
    const sessions: string[] = [];
    const callsOf = new Map<string, string[]>();
    const outcomes = [0, 0];
    const live = new Set<string>();
    const pick = <T>(xs: T[]): T | undefined => (xs.length ? xs[int(rand, 0, xs.length - 1)] : undefined);
    const both = async (op: (s: PoolStore) => Promise<unknown>) => {
      const out: unknown[][] = [];
      for (const s of stores) out.push(await op(s).then((v) => ['ok', v], (e) => ['error', e.constructor.name, e.code, e.message]));
      expect(out[1], why('sqlite vs memory')).toEqual(out[0]);
      outcomes[out[0][0] === 'ok' ? 0 : 1]++;
      return out[0][0] === 'ok';
    };
    for (const t of tasks) await both((s) => s.addTask({ id: t, spec: { t }, createdAt: 1 }));
    let seq = 0;
    for (let step = 0; step < 300; step++) {
      const r = rand();
      const id = `x${seq++}`;
      // Mostly a live session, sometimes any (closed, failed) to exercise the state errors.
      const sid = (rand() < 0.7 ? pick([...live]) : pick(sessions)) ?? 'none';
      if (r < 0.08) {
        const group = { id, taskId: pick([...tasks, 'ghost'])!, size: int(rand, 1, 3), createdAt: 2 };
        if (await both((s) => s.addGroup(group))) groups.push(id);
      } else if (r < 0.25) {
        const groupId = rand() < 0.7 ? pick(groups) : undefined;
        const session = { id, taskId: pick(tasks)!, groupId, scaffold: 'x', metadata: { step }, createdAt: step };
        if (await both((s) => s.openSession(session))) {
          sessions.push(id);
          live.add(id);
          callsOf.set(id, []);
        }
      } else if (r < 0.6) {
        const calls = callsOf.get(sid) ?? [];
        const parentId = rand() < 0.8 ? pick(calls) : pick([...callsOf.values()].flat());
        const n = int(rand, 0, 4);
        const call = {
          id: rand() < 0.05 ? pick(calls) ?? id : id,
          parentId,
          sharedTokens: parentId !== undefined && rand() < 0.3 ? int(rand, 0, 3) : undefined,
          promptIds: Array.from({ length: int(rand, 0, 6) }, () => int(rand, 0, 3)),
          completionIds: Array.from({ length: n }, () => int(rand, 0, 3)),
          logprobs: Array.from({ length: n }, () => -rand()),
          versions: int(rand, 0, 3),
          timings: { queuedAt: step, firstTokenAt: null, doneAt: step + 1 },
          trainable: true,
        };
        if (await both((s) => s.appendCall(sid, call))) calls.push(call.id);
      } else if (r < 0.75) {
        const expectedCalls = rand() < 0.8 ? (callsOf.get(sid)?.length ?? 0) : int(rand, 0, 5);
        if (await both((s) => s.closeSession(sid, { expectedCalls, endedAt: step }))) live.delete(sid);
      } else if (r < 0.8) {
        if (await both((s) => s.failSession(sid, { reason: 'r', endedAt: step }))) live.delete(sid);
      } else if (r < 0.97) {
        const process = rand() < 0.5 ? [] : [{ callId: pick([...(callsOf.get(sid) ?? []), 'ghost'])!, value: rand() }];
        const reward = { sessionId: sid, rewardVersion: pick(['default', 'v2']), outcome: rand(), process, createdAt: step };
        await both((s) => s.addReward(reward));
      } else {
        await both((s) => s.abandonOpenSessions({ createdBefore: step - 20 }));
        for (const x of await stores[0].listSessions({ status: 'abandoned' })) live.delete(x.id);
      }
    }
    await both((s) => s.stats());
    // The sequence exercised both paths.
    expect(outcomes[0]).toBeGreaterThan(50);
    expect(outcomes[1]).toBeGreaterThan(20);
    await both((s) => s.listSessions());
    await both((s) => s.completeGroups());
    await both((s) => s.completeGroups({ rewardVersion: 'v2' }));
    for (const g of groups) await both((s) => s.groupStatus(g, { rewardVersion: 'default' }));
    await both(async (s) => collect(s.trajectories()));
    // Invariants, from this test's own view: a group never holds more than `size` live sessions, and
    // completion sequence numbers are 1..n without gaps.
    for (const g of groups) {
      const st = await stores[1].groupStatus(g);
      expect(st.open + st.closed).toBeLessThanOrEqual(st.group.size);
    }
    const closed = await stores[1].listSessions({ status: 'closed' });
    expect(closed.map((x) => x.closeSeq)).toEqual(closed.map((_, i) => i + 1));
    for (const s of stores) await s.close();
  });
});

describe('SQLite store: the file', () => {
  it('reopens with everything intact and keeps numbering', async () => {
    const path = dbFile();
    const a = await SqliteStore.open(path, { owner: 'w1', synchronous: 'full' });
    await a.addTask({ id: 't', spec: { deep: [1, { x: 2 }] } });
    const plan = await writeSession(a, 's1', 11);
    await writeSession(a, 's2', 12, { close: false });
    await a.addReward({ sessionId: 's1', outcome: 1 });
    await a.addPolicyVersion({ version: 4 });
    await a.close();
    const b = await SqliteStore.open(path, { owner: 'w2' });
    (await b.getCalls('s1')).forEach((c, k) => checkCall(c, plan, k, 's1', why));
    expect((await b.getReward('s1'))?.outcome).toBe(1);
    expect((await b.latestPolicyVersion())?.version).toBe(4);
    // The restarted writer finds the dead one's open session, marks it, and carries on.
    expect((await b.abandonOpenSessions({ exceptOwner: b.owner })).map((x) => [x.id, x.owner])).toEqual([['s2', 'w1']]);
    await writeSession(b, 's3', 13);
    expect((await b.listSessions({ status: 'closed' })).map((x) => [x.id, x.closeSeq])).toEqual([['s1', 1], ['s3', 2]]);
    expect(await b.integrityCheck()).toEqual(['ok']);
    await b.close();
  });

  it('refuses a database of another schema version and a file that is not a database', async () => {
    const path = dbFile();
    const a = await SqliteStore.open(path);
    await a.close();
    const Database = createRequire(import.meta.url)('better-sqlite3') as new (p: string) => { exec(s: string): void; close(): void };
    const raw = new Database(path);
    raw.exec("UPDATE pool_meta SET value = '99' WHERE key = 'schema'");
    raw.close();
    const e = await failure(SqliteStore.open(path));
    expect([e[1], e[2]]).toEqual([PoolErrorCode.CORRUPT, expect.stringContaining('schema version 99')]);
    const junk = join(tmp, 'junk.db');
    writeFileSync(junk, 'this is not a database, just text that is long enough to fill a header page '.repeat(20));
    expect((await failure(SqliteStore.open(junk)))[1]).toBe(PoolErrorCode.CORRUPT);
  });

  it('lets two stores on one file write interleaved, with one completion order', async () => {
    const rand = makeRng();
    const path = dbFile();
    const a = await SqliteStore.open(path, { owner: 'a' });
    const b = await SqliteStore.open(path, { owner: 'b' });
    await a.addTask({ id: 't', spec: null });
    const plans = new Map<string, PlannedCall[]>();
    for (const s of [a, b]) for (let i = 0; i < 4; i++) {
      const id = `${s.owner}${i}`;
      const plan = sessionPlan(int(rand, 0, 1e9), id);
      plans.set(id, plan);
      await s.openSession({ id, taskId: 't', scaffold: 'x' });
    }
    // Interleave the two writers call by call, closing each session when its plan is done.
    const pending = [...plans.keys()];
    const next = new Map(pending.map((id) => [id, 0]));
    const order: string[] = [];
    while (pending.length) {
      const i = int(rand, 0, pending.length - 1);
      const id = pending[i];
      const s = id.startsWith('a') ? a : b;
      const k = next.get(id)!;
      if (k < plans.get(id)!.length) {
        await s.appendCall(id, plans.get(id)![k].call);
        next.set(id, k + 1);
      } else {
        await s.closeSession(id, { expectedCalls: k });
        pending.splice(i, 1);
        order.push(id);
      }
    }
    for (const s of [a, b]) expect((await s.listSessions({ status: 'closed' })).map((x) => x.id)).toEqual(order);
    for (const t of await collect(b.trajectories())) t.calls.forEach((c, k) => checkCall(c, plans.get(t.session.id)!, k, t.session.id, why));
    await a.close();
    await b.close();
  });
});
