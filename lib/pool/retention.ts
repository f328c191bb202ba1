// Retention: which sessions prune() removes, decided by one planner for every store so that they
// agree. The stores hand it the sessions that may match and every member of the groups those touch;
// it returns units (a whole group, or one session without a group) cut into batches, and the groups
// left whole with the reason. The group is the unit because its sessions are scored against each
// other (the group baseline) and its status counts them: removing part of a group would make a
// complete group incomplete and free slots that a retry could take. Each store then applies a batch
// in one transaction, re-checking its units there (a writer may have opened a session meanwhile).
import { rangeError, typeError } from '../errors.js';
import { expectFinite, expectInt } from '../validate.js';
import { DEFAULT_REWARD_VERSION, type PruneProgress, type PruneQuery, type PruneResult, type PruneSkip, type SessionStatus } from './types.js';
import { checkId } from './validate.js';

/** The start of a pruned call's untrainableReason (its token arrays were dropped). */
export const PRUNED_REASON = 'pruned by pool retention';

/** The untrainableReason a call gets when its arrays are dropped; keeps what it said before. */
export function prunedReason(trainable: boolean, reason: string | null): string {
  return trainable ? `${PRUNED_REASON} (was trainable)` : `${PRUNED_REASON} (was not trainable: ${reason ?? ''})`;
}

/** Whether a call's token arrays were dropped by a prune (keep 'summary'). */
export function isPrunedCall(call: { untrainableReason: string | null }): boolean {
  return call.untrainableReason !== null && call.untrainableReason.startsWith(PRUNED_REASON);
}

/** Bytes of a call's token arrays as stored: int32 prompt and completion ids, float32 logprobs, int32 versions. */
export const tokenArrayBytes = (promptTokens: number, completionTokens: number): number => 4 * (promptTokens + 3 * completionTokens);

/** UTF-8 bytes of a call's JSON texts (request, response, tool calls), as SQLite's octet_length counts them. */
export const jsonBytes = (...texts: string[]): number => texts.reduce((n, t) => n + Buffer.byteLength(t, 'utf8'), 0);

export interface NormPruneQuery {
  endedBefore: number | undefined;
  groupIds: string[] | undefined;
  rewardedGroups: boolean;
  rewardVersion: string;
  keep: 'summary' | 'nothing';
  vacuum: boolean;
  dryRun: boolean;
  batchSize: number;
  onBatch: ((progress: PruneProgress) => void) | undefined;
}

const optionalBoolean = (name: string, value: unknown): boolean => {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw typeError(`${name}: expected a boolean, got ${typeof value}`);
  return value;
};

export function normPruneQuery(query: PruneQuery): NormPruneQuery {
  if (typeof query !== 'object' || query === null) throw typeError('query: expected an object');
  const keep = query.keep ?? 'summary';
  if (keep !== 'summary' && keep !== 'nothing') throw rangeError(`query.keep: expected summary or nothing, got ${String(keep)}`);
  let groupIds: string[] | undefined;
  if (query.groupIds !== undefined) {
    if (!Array.isArray(query.groupIds)) throw typeError('query.groupIds: expected an array of group ids');
    groupIds = query.groupIds.map((id, i) => checkId(`query.groupIds[${i}]`, id));
  }
  const rewardedGroups = optionalBoolean('query.rewardedGroups', query.rewardedGroups);
  if (query.rewardVersion !== undefined && !rewardedGroups) throw rangeError('query.rewardVersion: only meaningful with rewardedGroups');
  const endedBefore = query.endedBefore === undefined ? undefined : expectFinite('query.endedBefore', query.endedBefore);
  if (endedBefore === undefined && groupIds === undefined && !rewardedGroups)
    throw rangeError('query: give at least one of endedBefore, groupIds, rewardedGroups (an empty query would prune every ended session)');
  if (query.onBatch !== undefined && typeof query.onBatch !== 'function') throw typeError('query.onBatch: expected a function');
  return {
    endedBefore,
    groupIds,
    rewardedGroups,
    rewardVersion: query.rewardVersion === undefined ? DEFAULT_REWARD_VERSION : checkId('query.rewardVersion', query.rewardVersion),
    keep,
    vacuum: optionalBoolean('query.vacuum', query.vacuum),
    dryRun: optionalBoolean('query.dryRun', query.dryRun),
    batchSize: query.batchSize === undefined ? 64 : expectInt('query.batchSize', query.batchSize, 1, 1 << 20),
    onBatch: query.onBatch,
  };
}

/** What the planner needs to know of a session. */
export interface SessionBrief {
  id: string;
  taskId: string;
  groupId: string | null;
  status: SessionStatus;
  endedAt: number | null;
}

/** Whether one session matches every criterion given (open sessions never do). */
export function sessionMatches(q: NormPruneQuery, s: SessionBrief, rewardedGroups: ReadonlySet<string>): boolean {
  if (s.status === 'open') return false;
  if (q.endedBefore !== undefined && !(s.endedAt !== null && s.endedAt < q.endedBefore)) return false;
  if (q.groupIds !== undefined && (s.groupId === null || !q.groupIds.includes(s.groupId))) return false;
  if (q.rewardedGroups && (s.groupId === null || !rewardedGroups.has(s.groupId))) return false;
  return true;
}

/** A whole group, or one session without a group: pruned in one transaction. */
export interface PruneUnit {
  groupId: string | null;
  taskId: string;
  sessionIds: string[];
}

export interface PrunePlan {
  units: PruneUnit[];
  skipped: PruneSkip[];
  sessions: number;
}

/**
 * The plan: `candidates` may be a superset of the matching sessions (the planner filters them);
 * `members` holds every session of each group a candidate belongs to. Units come in the order of
 * their first candidate (the stores pass them oldest first).
 */
export function planPrune(
  q: NormPruneQuery,
  candidates: readonly SessionBrief[],
  members: ReadonlyMap<string, readonly SessionBrief[]>,
  rewardedGroups: ReadonlySet<string>,
): PrunePlan {
  const units: PruneUnit[] = [];
  const skipped: PruneSkip[] = [];
  const seenGroups = new Set<string>();
  for (const s of candidates) {
    if (!sessionMatches(q, s, rewardedGroups)) continue;
    if (s.groupId === null) {
      units.push({ groupId: null, taskId: s.taskId, sessionIds: [s.id] });
      continue;
    }
    if (seenGroups.has(s.groupId)) continue;
    seenGroups.add(s.groupId);
    const all = members.get(s.groupId) ?? [s];
    const skip = groupSkip(s.groupId, all, (m) => sessionMatches(q, m, rewardedGroups));
    if (skip) skipped.push(skip);
    else units.push({ groupId: s.groupId, taskId: s.taskId, sessionIds: all.map((m) => m.id) });
  }
  return { units, skipped, sessions: units.reduce((n, u) => n + u.sessionIds.length, 0) };
}

/** Why a group must be left whole, or null when every member matches. */
export function groupSkip(groupId: string, all: readonly SessionBrief[], matches: (s: SessionBrief) => boolean): PruneSkip | null {
  const open = all.filter((m) => m.status === 'open').length;
  const matched = all.filter(matches).length;
  if (open > 0) return { groupId, reason: 'open-session', matched, open };
  if (matched < all.length) return { groupId, reason: 'partial', matched, open };
  return null;
}

/**
 * Re-checks a group unit inside the write transaction against the group's members now: it must
 * still have exactly the planned sessions, none open. Returns the skip to report, or null.
 */
export function recheckUnit(unit: PruneUnit, now: readonly SessionBrief[]): PruneSkip | null {
  if (unit.groupId === null) return null;
  const planned = new Set(unit.sessionIds);
  const skip = groupSkip(unit.groupId, now, (m) => planned.has(m.id));
  return skip && { ...skip, matched: now.filter((m) => planned.has(m.id)).length };
}

/** The units cut into batches of about `size` sessions; a unit is never split. */
export function batchesOf(units: readonly PruneUnit[], size: number): PruneUnit[][] {
  const out: PruneUnit[][] = [];
  let batch: PruneUnit[] = [];
  let n = 0;
  for (const u of units) {
    if (n > 0 && n + u.sessionIds.length > size) {
      out.push(batch);
      batch = [];
      n = 0;
    }
    batch.push(u);
    n += u.sessionIds.length;
  }
  if (batch.length) out.push(batch);
  return out;
}

export function emptyResult(q: NormPruneQuery, skipped: PruneSkip[]): PruneResult {
  return { keep: q.keep, dryRun: q.dryRun, sessions: 0, calls: 0, rewards: 0, groups: 0, tasks: 0, payloadBytes: 0, skipped, batches: 0 };
}

/** Lets other work on the event loop run between batches (a gateway sharing the process). */
export const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Runs the batches: `apply` does one (in a transaction) and adds to the result; progress after each. */
export async function runBatches(q: NormPruneQuery, plan: PrunePlan, result: PruneResult, apply: (batch: PruneUnit[]) => void): Promise<void> {
  let done = 0;
  for (const batch of batchesOf(plan.units, q.batchSize)) {
    apply(batch);
    result.batches++;
    done += batch.reduce((n, u) => n + u.sessionIds.length, 0);
    q.onBatch?.({ batches: result.batches, sessions: done, plannedSessions: plan.sessions });
    await yieldToLoop();
  }
}
