// The memory store's side of retention and storage statistics: the same plan as every store
// (retention.ts), applied to its maps batch by batch. Byte counts follow the SQLite store's (token
// arrays at 4 bytes an element, JSON as UTF-8), so both stores report the same numbers for the
// same data. A removed closed session stays in the close-order list as a tombstone (`removed`), so
// that completion numbers keep counting up and never repeat.
import { PoolError, PoolErrorCode } from './errors.js';
import type { StoredCall, StoredSession } from './memoryStore.js';
import {
  emptyResult, isPrunedCall, jsonBytes, normPruneQuery, type NormPruneQuery, planPrune, prunedReason, type PruneUnit, recheckUnit,
  runBatches, type SessionBrief, tokenArrayBytes,
} from './retention.js';
import type { PoolStats, PruneQuery, PruneResult } from './types.js';
import type { GroupRow, RewardRow, TaskRow } from './validate.js';

/** The memory store's maps, lent to the prune. */
export interface MemoryPoolState {
  tasks: Map<string, TaskRow>;
  groups: Map<string, GroupRow>;
  sessions: Map<string, StoredSession>;
  callSession: Map<string, string>;
  rewards: Map<string, Map<string, RewardRow>>;
  /** Throws STORE_CLOSED once the store is closed. */
  live(): void;
}

const brief = (s: StoredSession): SessionBrief => ({ id: s.id, taskId: s.taskId, groupId: s.groupId, status: s.status, endedAt: s.endedAt });

const arrayBytes = (c: StoredCall) => tokenArrayBytes(c.promptIds.length, c.completionIds.length);
const payloadBytes = (c: StoredCall) => arrayBytes(c) + jsonBytes(c.request, c.response, c.toolCalls);

function membersByGroup(st: MemoryPoolState): Map<string, SessionBrief[]> {
  const out = new Map<string, SessionBrief[]>();
  for (const s of st.sessions.values()) {
    if (s.groupId === null) continue;
    const list = out.get(s.groupId) ?? [];
    list.push(brief(s));
    out.set(s.groupId, list);
  }
  return out;
}

/** Groups complete (closed = size), nothing open, every closed session rewarded under the version. */
function rewardedGroups(st: MemoryPoolState, members: Map<string, SessionBrief[]>, version: string): Set<string> {
  const out = new Set<string>();
  for (const [id, list] of members) {
    const closed = list.filter((s) => s.status === 'closed');
    if (list.some((s) => s.status === 'open') || closed.length !== st.groups.get(id)!.size) continue;
    if (closed.every((s) => st.rewards.get(s.id)?.has(version))) out.add(id);
  }
  return out;
}

/** Drops a call's token arrays (keep 'summary'): it stays in the tree, untrainable, saying why. */
function stripCall(c: StoredCall): void {
  c.untrainableReason = prunedReason(c.trainable, c.untrainableReason);
  c.trainable = false;
  c.promptIds = new Int32Array(0);
  c.completionIds = new Int32Array(0);
  c.logprobs = new Float32Array(0);
  c.versions = new Int32Array(0);
  c.sharedTokens = 0;
}

type TaskTally = Map<string, { sessions: number; groups: number }>;

function applyBatch(st: MemoryPoolState, q: NormPruneQuery, batch: PruneUnit[], result: PruneResult, tally: TaskTally): void {
  st.live();
  const nothing = q.keep === 'nothing';
  const dry = q.dryRun;
  const members = membersByGroup(st);
  const touched = new Set<string>();
  for (const unit of batch) {
    const skip = unit.groupId === null ? null : recheckUnit(unit, members.get(unit.groupId) ?? []);
    if (skip) {
      result.skipped.push(skip);
      continue;
    }
    const t = tally.get(unit.taskId) ?? { sessions: 0, groups: 0 };
    tally.set(unit.taskId, t);
    touched.add(unit.taskId);
    for (const id of unit.sessionIds) {
      const s = st.sessions.get(id);
      if (!s || s.status === 'open') continue;
      if (nothing) {
        result.sessions++;
        t.sessions++;
        result.calls += s.calls.length;
        result.payloadBytes += s.calls.reduce((n, c) => n + payloadBytes(c), 0);
        result.rewards += st.rewards.get(id)?.size ?? 0;
        if (dry) continue;
        for (const c of s.calls) st.callSession.delete(c.id);
        st.rewards.delete(id);
        st.sessions.delete(id);
        s.removed = true;
        s.calls = [];
      } else {
        const calls = s.calls.filter((c) => !isPrunedCall(c));
        if (calls.length === 0) continue;
        result.sessions++;
        result.calls += calls.length;
        result.payloadBytes += calls.reduce((n, c) => n + arrayBytes(c), 0);
        if (!dry) calls.forEach(stripCall);
      }
    }
    if (nothing && unit.groupId !== null) {
      t.groups++;
      if (dry || st.groups.delete(unit.groupId)) result.groups++;
    }
  }
  if (!nothing || dry || touched.size === 0) return;
  // A task goes when nothing refers to it any more.
  const used = new Set<string>();
  for (const s of st.sessions.values()) used.add(s.taskId);
  for (const g of st.groups.values()) used.add(g.taskId);
  for (const task of touched) if (!used.has(task) && st.tasks.delete(task)) result.tasks++;
}

export async function pruneMemory(st: MemoryPoolState, query: PruneQuery): Promise<PruneResult> {
  const q = normPruneQuery(query);
  q.groupIds?.forEach((id, i) => {
    if (!st.groups.has(id)) throw new PoolError(PoolErrorCode.UNKNOWN_GROUP, `query.groupIds[${i}]: unknown group ${JSON.stringify(id)}`);
  });
  const members = membersByGroup(st);
  const rewarded = q.rewardedGroups ? rewardedGroups(st, members, q.rewardVersion) : new Set<string>();
  const plan = planPrune(q, [...st.sessions.values()].map(brief), members, rewarded);
  const result = emptyResult(q, plan.skipped);
  const tally: TaskTally = new Map();
  await runBatches(q, plan, result, (batch) => applyBatch(st, q, batch, result, tally));
  if (q.dryRun && q.keep === 'nothing')
    for (const [task, t] of tally) {
      let sessions = 0;
      let groups = 0;
      for (const s of st.sessions.values()) if (s.taskId === task) sessions++;
      for (const g of st.groups.values()) if (g.taskId === task) groups++;
      if (sessions === t.sessions && groups === t.groups) result.tasks++;
    }
  return result;
}

/** The storage fields of PoolStats (no file here). */
export function memoryStats(sessions: Iterable<StoredSession>): Partial<PoolStats> {
  let arrays = 0;
  let json = 0;
  let pruned = 0;
  let oldest: number | null = null;
  let newest: number | null = null;
  for (const s of sessions) {
    for (const c of s.calls) {
      arrays += arrayBytes(c);
      json += jsonBytes(c.request, c.response, c.toolCalls);
      if (isPrunedCall(c)) pruned++;
    }
    if (s.endedAt !== null) {
      if (oldest === null || s.endedAt < oldest) oldest = s.endedAt;
      if (newest === null || s.endedAt > newest) newest = s.endedAt;
    }
  }
  return { callPayloadBytes: arrays + json, tokenArrayBytes: arrays, prunedCalls: pruned, oldestEndedAt: oldest, newestEndedAt: newest };
}
