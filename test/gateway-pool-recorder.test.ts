// PoolRecorder alone, on hand-made gateway records and a SQLite pool on disk: the cases a live
// gateway reaches only by races or by a misbehaving upstream — a call handed over before its parent
// (waits for it), a parent that never comes (stored as a root, with a note), token data the pool
// refuses (stored without tokens, children as roots), partial completion arrays, clocks out of order.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PoolRecorder, type CallRecord } from '../lib/gateway/index.js';
import { SqliteStore } from '../lib/pool/index.js';

const tmp = mkdtempSync(join(os.tmpdir(), 'forge-pool-recorder-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('PoolRecorder on its own (hand-made records, SQLite on disk)', () => {
  const rec = (id: string, over: Partial<CallRecord> = {}): CallRecord => ({
    id, sessionId: 's1', protocol: 'openai', request: { id }, choice: 0, status: 'ok', trainable: true,
    promptIds: Int32Array.from([1, 2, 3]), completionIds: Int32Array.from([4, 5]), logprobs: Float64Array.from([-0.5, -0.25]), versions: Int32Array.from([0, 0]),
    toolCalls: [], parseErrors: [], link: { relation: 'root', parent: null, forkTokens: 0 },
    timings: { receivedAt: 1000, admittedAt: 1001, firstTokenAt: 1002, doneAt: 1003 }, usage: { promptTokens: 3, completionTokens: 2, cachedPromptTokens: 0 },
    ...over,
  });
  const child = (id: string, parent: string) => rec(id, { promptIds: Int32Array.from([1, 2, 3, 4, 5, 6]), link: { relation: 'continue', parent, forkTokens: 5 } });

  async function withRecorder(fn: (r: PoolRecorder, s: SqliteStore) => Promise<void>, parentWaitMs?: number) {
    const s = await SqliteStore.open(join(tmp, `recorder-${Math.random().toString(36).slice(2)}.db`));
    const r = new PoolRecorder(s, { parentWaitMs });
    await r.sessionCreated({ id: 's1', createdAt: 1000 });
    try {
      await fn(r, s);
    } finally {
      await s.close();
    }
  }

  it('a call handed over before its parent waits for it, and is linked', () => withRecorder(async (r, s) => {
    const late = r.callRecorded(child('c1', 'c0'));
    await r.callRecorded(rec('c0'));
    await late;
    const calls = await s.getCalls('s1');
    expect(calls.map((c) => [c.id, c.index, c.parentId, c.relation, c.sharedTokens])).toEqual([['c0', 0, null, 'root', 0], ['c1', 1, 'c0', 'continue', 5]]);
    await r.sessionClosed({ id: 's1', createdAt: 1000, closedAt: 1100, calls: 2 });
    expect(await s.getSession('s1')).toMatchObject({ status: 'closed', calls: 2, endedAt: 1100 });
  }));

  it('a parent that never comes: the call is stored as a root, with a note', () => withRecorder(async (r, s) => {
    await r.callRecorded(child('c1', 'ghost'));
    const [c] = await s.getCalls('s1');
    expect([c.parentId, c.relation, c.trainable]).toEqual([null, 'root', true]);
    expect((c.response as { notes: string[] }).notes.join()).toMatch(/parent call ghost/);
    // The gateway says it recorded 2: the close refuses, nothing lost goes unnoticed.
    await expect(r.sessionClosed({ id: 's1', createdAt: 1000, calls: 2 })).rejects.toMatchObject({ code: 'FORGE_POOL_CALL_COUNT_MISMATCH' });
  }, 20));

  it('token data the pool refuses is stored without tokens (and its children as roots); partial arrays too', () => withRecorder(async (r, s) => {
    await r.callRecorded(rec('bad', { logprobs: Float64Array.from([0.5, -0.1]) }));
    await r.callRecorded(child('kid', 'bad'));
    await r.callRecorded(rec('partial', { logprobs: undefined, trainable: false, notTrainableReason: 'no logprobs' }));
    await r.callRecorded(rec('clock', { timings: { receivedAt: 1000, admittedAt: 1005, firstTokenAt: 1002, doneAt: 1003 } }));
    const [bad, kid, partial, clock] = await s.getCalls('s1');
    expect(bad).toMatchObject({ trainable: false, untrainableReason: expect.stringMatching(/refused its token data: call\.logprobs\[0\]/), promptIds: new Int32Array(0) });
    expect([kid.parentId, kid.trainable, Array.from(kid.promptIds)]).toEqual([null, true, [1, 2, 3, 4, 5, 6]]);
    expect([Array.from(partial.promptIds), partial.completionIds.length, partial.untrainableReason]).toEqual([[1, 2, 3], 0, 'no logprobs']);
    expect((partial.response as { notes: string[] }).notes.join()).toMatch(/without a logprob and version per token/);
    expect(clock.timings).toEqual({ queuedAt: 1000, admittedAt: 1002, firstTokenAt: 1002, doneAt: 1003 });
  }));
});
