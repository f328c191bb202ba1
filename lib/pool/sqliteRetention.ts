// The SQLite side of retention and of the pool's statistics: prune() as planned by retention.ts, one
// IMMEDIATE transaction per batch (a process killed mid-prune leaves every batch before it done and
// none half done), then giving the space back. Files created by this version use incremental
// auto-vacuum, so the freed pages are returned to the file system right after the prune (the WAL
// checkpoint truncates the file); older files only reuse them, unless the caller asks for a VACUUM.
//
// Completion numbers: closeSession assigns MAX(close_seq) + 1, and a consumer's cursor is a close_seq,
// so removing the newest closed session must not let its number be handed out again: a prune that
// removes sessions first records the highest number assigned so far in pool_meta (close_seq_floor),
// which closeSession also counts.
import { existsSync, statSync } from 'node:fs';

import { PoolError, PoolErrorCode } from './errors.js';
import {
  emptyResult, normPruneQuery, type NormPruneQuery, planPrune, prunedReason, PRUNED_REASON, type PruneUnit, recheckUnit,
  runBatches, type SessionBrief, yieldToLoop,
} from './retention.js';
import type { Database, Statement } from './sqliteDriver.js';
import type { PoolStats, PruneQuery, PruneResult, SessionStatus } from './types.js';

/** What the store lends this module: its handle, cached statements and transactions. */
export interface SqliteAccess {
  readonly path: string;
  handle(): Database;
  sql(text: string): Statement;
  /** One IMMEDIATE transaction (errors become PoolErrors). */
  write<R>(fn: () => R): R;
  /** One deferred transaction: the reads inside see one snapshot. */
  snapshot<R>(fn: () => R): R;
  /** Runs outside a transaction (VACUUM, pragmas), errors become PoolErrors. */
  guard<R>(fn: () => R): R;
}

export const CLOSE_SEQ_FLOOR_KEY = 'close_seq_floor';

const ARRAY_BYTES = 'length(prompt_ids) + length(completion_ids) + length(logprobs) + length(versions)';
const JSON_BYTES = 'octet_length(request) + octet_length(response) + octet_length(tool_calls)';
// PRUNED_REASON is a constant without quotes, so it can sit in the SQL text.
const IS_PRUNED = `COALESCE(substr(untrainable_reason, 1, ${PRUNED_REASON.length}), '') = '${PRUNED_REASON}'`;
const BRIEF = 'SELECT id, task_id AS taskId, group_id AS groupId, status, ended_at AS endedAt FROM sessions';

// Groups complete (closed = size), with nothing open, every closed session rewarded under :rv.
const REWARDED_GROUPS = `SELECT g.id FROM task_groups g JOIN sessions s ON s.group_id = g.id GROUP BY g.id
  HAVING SUM(s.status = 'open') = 0 AND SUM(s.status = 'closed') = g.size
    AND SUM(s.status = 'closed' AND EXISTS (SELECT 1 FROM rewards r WHERE r.session_id = s.id AND r.reward_version = :rv)) = g.size`;

/** The database file plus its WAL, in bytes (0 for an in-memory database). */
function fileBytes(path: string): number {
  const size = (p: string) => (existsSync(p) ? statSync(p).size : 0);
  return size(path) + size(`${path}-wal`);
}

const isFile = (path: string) => path !== ':memory:' && path !== '' && existsSync(path);

function autoVacuumOf(db: Database): 'none' | 'full' | 'incremental' {
  return (['none', 'full', 'incremental'] as const)[db.pragma('auto_vacuum', { simple: true }) as number] ?? 'none';
}

function plan(a: SqliteAccess, q: NormPruneQuery) {
  return a.snapshot(() => {
    const hasGroup = a.sql('SELECT 1 FROM task_groups WHERE id = ?');
    q.groupIds?.forEach((id, i) => {
      if (!hasGroup.get(id)) throw new PoolError(PoolErrorCode.UNKNOWN_GROUP, `query.groupIds[${i}]: unknown group ${JSON.stringify(id)}`);
    });
    const rewarded = new Set(q.rewardedGroups ? (a.sql(REWARDED_GROUPS).all({ rv: q.rewardVersion }) as { id: string }[]).map((r) => r.id) : []);
    // A superset of the matches (the planner applies every criterion), oldest first.
    const candidates = a.sql(
      `${BRIEF} WHERE status != 'open' AND (:before IS NULL OR ended_at < :before)
         AND (:groups IS NULL OR group_id IN (SELECT value FROM json_each(:groups))) ORDER BY rowid`,
    ).all({ before: q.endedBefore ?? null, groups: q.groupIds === undefined ? null : JSON.stringify(q.groupIds) }) as SessionBrief[];
    const groups = [...new Set(candidates.map((s) => s.groupId).filter((g): g is string => g !== null))];
    const members = new Map<string, SessionBrief[]>();
    for (const m of a.sql(`${BRIEF} WHERE group_id IN (SELECT value FROM json_each(?)) ORDER BY rowid`).all(JSON.stringify(groups)) as SessionBrief[]) {
      const list = members.get(m.groupId!) ?? [];
      list.push(m);
      members.set(m.groupId!, list);
    }
    return planPrune(q, candidates, members, rewarded);
  });
}

/** Per task: sessions and groups this prune removes (to tell, in a dry run, which tasks it would empty). */
type TaskTally = Map<string, { sessions: number; groups: number }>;

function applyBatch(a: SqliteAccess, q: NormPruneQuery, batch: PruneUnit[], result: PruneResult, tally: TaskTally): void {
  const nothing = q.keep === 'nothing';
  const dry = q.dryRun;
  const run = () => {
    if (nothing && !dry) {
      const { m } = a.sql('SELECT MAX(close_seq) AS m FROM sessions').get() as { m: number | null };
      if (m !== null)
        a.sql(`INSERT INTO pool_meta (key, value) VALUES ('${CLOSE_SEQ_FLOOR_KEY}', :v) ON CONFLICT (key) DO UPDATE SET value = excluded.value
               WHERE CAST(excluded.value AS INTEGER) > CAST(pool_meta.value AS INTEGER)`).run({ v: String(m) });
    }
    const measure = nothing
      ? a.sql(`SELECT COUNT(*) AS n, COALESCE(SUM(${ARRAY_BYTES} + ${JSON_BYTES}), 0) AS bytes FROM calls WHERE session_id = ?`)
      : a.sql(`SELECT COUNT(*) AS n, COALESCE(SUM(${ARRAY_BYTES}), 0) AS bytes FROM calls WHERE session_id = ? AND NOT ${IS_PRUNED}`);
    const touched = new Set<string>();
    for (const unit of batch) {
      if (unit.groupId !== null) {
        const skip = recheckUnit(unit, a.sql(`${BRIEF} WHERE group_id = ?`).all(unit.groupId) as SessionBrief[]);
        if (skip) {
          result.skipped.push(skip);
          continue;
        }
      }
      const t = tally.get(unit.taskId) ?? { sessions: 0, groups: 0 };
      tally.set(unit.taskId, t);
      touched.add(unit.taskId);
      for (const id of unit.sessionIds) {
        const s = a.sql(`${BRIEF} WHERE id = ?`).get(id) as SessionBrief | undefined;
        if (!s || s.status === 'open') continue; // pruned meanwhile by another process
        const { n, bytes } = measure.get(id) as { n: number; bytes: number };
        result.calls += n;
        result.payloadBytes += bytes;
        if (nothing) {
          result.sessions++;
          t.sessions++;
          result.rewards += (a.sql('SELECT COUNT(*) AS n FROM rewards WHERE session_id = ?').get(id) as { n: number }).n;
          if (dry) continue;
          a.sql('DELETE FROM process_rewards WHERE session_id = ?').run(id);
          a.sql('DELETE FROM rewards WHERE session_id = ?').run(id);
          a.sql('DELETE FROM calls WHERE session_id = ?').run(id);
          a.sql('DELETE FROM sessions WHERE id = ?').run(id);
        } else if (n > 0) {
          result.sessions++;
          if (dry) continue;
          // SET reads the row's values before the update, so the CASE sees the old trainable flag.
          a.sql(
            `UPDATE calls SET prompt_ids = x'', completion_ids = x'', logprobs = x'', versions = x'', shared_tokens = 0, trainable = 0,
               untrainable_reason = CASE WHEN trainable != 0 THEN :wasTrainable ELSE :prefix || COALESCE(untrainable_reason, '') || ')' END
             WHERE session_id = :id AND NOT ${IS_PRUNED}`,
          ).run({ id, wasTrainable: prunedReason(true, null), prefix: prunedReason(false, '').slice(0, -1) });
        }
      }
      if (nothing && unit.groupId !== null) {
        t.groups++;
        if (dry) result.groups++;
        else result.groups += a.sql('DELETE FROM task_groups WHERE id = :g AND NOT EXISTS (SELECT 1 FROM sessions WHERE group_id = :g)').run({ g: unit.groupId }).changes;
      }
    }
    if (nothing && !dry)
      for (const task of touched)
        result.tasks += a.sql(
          `DELETE FROM tasks WHERE id = :t AND NOT EXISTS (SELECT 1 FROM sessions WHERE task_id = :t)
             AND NOT EXISTS (SELECT 1 FROM task_groups WHERE task_id = :t)`,
        ).run({ t: task }).changes;
  };
  if (dry) a.snapshot(run);
  else a.write(run);
}

/** Gives freed pages back to the file system; returns how. */
async function reclaim(a: SqliteAccess, vacuum: boolean): Promise<'auto-vacuum' | 'vacuum' | 'none'> {
  const db = a.handle();
  let how: 'auto-vacuum' | 'vacuum' | 'none';
  if (vacuum) {
    // On an older file this also turns incremental auto-vacuum on (it takes effect with the rebuild).
    a.guard(() => {
      if (autoVacuumOf(db) === 'none') db.pragma('auto_vacuum = INCREMENTAL');
      db.exec('VACUUM');
    });
    how = 'vacuum';
  } else if (autoVacuumOf(db) !== 'none') {
    // In steps of 16 MB (4 KB pages), each its own short write, so other writers get the lock between.
    let free = a.guard(() => db.pragma('freelist_count', { simple: true }) as number);
    while (free > 0) {
      a.guard(() => db.pragma('incremental_vacuum(4096)'));
      const left = a.guard(() => db.pragma('freelist_count', { simple: true }) as number);
      if (left >= free) break;
      free = left;
      await yieldToLoop();
    }
    how = 'auto-vacuum';
  } else how = 'none';
  // The main file shrinks when the WAL is checkpointed; TRUNCATE also empties the WAL. With a reader
  // in the middle of a snapshot it checkpoints what it can (the rest happens at a later checkpoint).
  a.guard(() => db.pragma('wal_checkpoint(TRUNCATE)'));
  return how;
}

export async function pruneSqlite(a: SqliteAccess, query: PruneQuery): Promise<PruneResult> {
  const q = normPruneQuery(query);
  const withFile = isFile(a.path) && !q.dryRun;
  const bytesBefore = withFile ? fileBytes(a.path) : 0;
  const p = plan(a, q);
  const result = emptyResult(q, p.skipped);
  const tally: TaskTally = new Map();
  await runBatches(q, p, result, (batch) => applyBatch(a, q, batch, result, tally));
  if (q.dryRun && q.keep === 'nothing')
    // A task would be removed when this prune takes every session and every group it has.
    a.snapshot(() => {
      for (const [task, t] of tally) {
        const n = a.sql('SELECT (SELECT COUNT(*) FROM sessions WHERE task_id = :t) AS s, (SELECT COUNT(*) FROM task_groups WHERE task_id = :t) AS g').get({ t: task }) as { s: number; g: number };
        if (n.s === t.sessions && n.g === t.groups) result.tasks++;
      }
    });
  if (withFile) {
    const how = await reclaim(a, q.vacuum);
    result.file = { bytesBefore, bytesAfter: fileBytes(a.path), reclaim: how };
  }
  return result;
}

export function sqliteStats(a: SqliteAccess, storage: boolean): PoolStats {
  return a.snapshot(() => {
    const count = (table: string) => (a.sql(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    const sessions: Record<SessionStatus, number> = { open: 0, closed: 0, failed: 0, abandoned: 0 };
    for (const r of a.sql('SELECT status, COUNT(*) AS n FROM sessions GROUP BY status').all() as { status: SessionStatus; n: number }[]) sessions[r.status] = r.n;
    const stats: PoolStats = { tasks: count('tasks'), groups: count('task_groups'), sessions, calls: count('calls'), rewards: count('rewards'), policyVersions: count('policy_versions') };
    if (!storage) return stats;
    const c = a.sql(`SELECT COALESCE(SUM(${ARRAY_BYTES}), 0) AS arrays, COALESCE(SUM(${JSON_BYTES}), 0) AS json,
        COALESCE(SUM(${IS_PRUNED}), 0) AS pruned FROM calls`).get() as { arrays: number; json: number; pruned: number };
    const e = a.sql("SELECT MIN(ended_at) AS oldest, MAX(ended_at) AS newest FROM sessions WHERE status != 'open'").get() as { oldest: number | null; newest: number | null };
    const db = a.handle();
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    return {
      ...stats,
      callPayloadBytes: c.arrays + c.json,
      tokenArrayBytes: c.arrays,
      prunedCalls: c.pruned,
      oldestEndedAt: e.oldest,
      newestEndedAt: e.newest,
      fileBytes: isFile(a.path) ? fileBytes(a.path) : 0,
      freeBytes: (db.pragma('freelist_count', { simple: true }) as number) * pageSize,
      autoVacuum: autoVacuumOf(db),
    };
  });
}
