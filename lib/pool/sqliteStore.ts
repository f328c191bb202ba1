// The durable PoolStore: one SQLite file in WAL mode (better-sqlite3). Every write is one IMMEDIATE
// transaction, so several processes can share a pool file (one writer at a time, readers never
// blocked) and a process killed at any moment leaves the last committed state: a call is stored
// once appendCall resolves, a session becomes completed exactly when closeSession's transaction
// commits, and a half-written session stays 'open', never visible as completed.
//
// Durability: synchronous=NORMAL (the default for call writes) survives a killed process, since a
// commit is in the OS's hands when it returns; an OS crash or power cut can lose the last commits.
// With syncOnClose (default true), closing a session, failing it and writing a reward run under
// synchronous=FULL, whose fsync of the WAL also covers the calls written before it: a completed
// session survives a power cut too, while the many call writes skip the fsync.
//
// Retention (prune) and the storage statistics are in sqliteRetention.ts.
import { randomUUID } from 'node:crypto';
import os from 'node:os';

import { rangeError, typeError } from '../errors.js';
import { expectInt } from '../validate.js';
import { PoolError, PoolErrorCode } from './errors.js';
import { type Database, openDatabase, type Statement, storageError } from './sqliteDriver.js';
import { CLOSE_SEQ_FLOOR_KEY, pruneSqlite, type SqliteAccess, sqliteStats } from './sqliteRetention.js';
import * as db from './sqliteSchema.js';
import {
  type AbandonQuery, type CallRecord, DEFAULT_REWARD_VERSION, type GroupRecord, type GroupStatus, type NewCall,
  type NewGroup, type NewPolicyVersion, type NewReward, type NewSession, type NewTask, type PolicyVersionRecord,
  type PoolStats, type PoolStore, type PruneQuery, type PruneResult, type RewardRecord, type SessionQuery, type SessionRecord,
  type TaskRecord, type Trajectory, type TrajectoryQuery,
} from './types.js';
import {
  callRecordOf, checkId, endTime, failOptions, normAbandonQuery, normCall, normGroup, normPolicyVersion, normReward, normSession,
  normSessionQuery, normTask, normTrajectoryQuery, requireClosed, requireOpen, resolvePrefix, versionRange,
} from './validate.js';

export interface SqliteStoreOptions {
  /** Owner tag of the sessions this store opens (default host:pid:random). */
  owner?: string;
  /** Clock for default timestamps, ms since the epoch (default Date.now). */
  now?: () => number;
  /** SQLite synchronous level of call writes (default 'normal'; see the file comment). */
  synchronous?: 'normal' | 'full';
  /** fsync the WAL on session close / fail and rewards (default true). */
  syncOnClose?: boolean;
  /** How long a write waits for another process's write lock, ms (default 5000). */
  busyTimeoutMs?: number;
  /** Refuse to create the file: it must exist and be a forge-rl pool (default true: create when absent). */
  create?: boolean;
}

export class SqliteStore implements PoolStore {
  readonly owner: string;
  readonly path: string;
  private readonly now: () => number;
  private readonly syncOnClose: boolean;
  private readonly baseSync: 'NORMAL' | 'FULL';
  private readonly statements = new Map<string, Statement>();
  private dbh: Database | null;

  private constructor(path: string, handle: Database, owner: string, options: SqliteStoreOptions) {
    this.path = path;
    this.dbh = handle;
    this.owner = owner;
    this.now = options.now ?? Date.now;
    this.baseSync = options.synchronous === 'full' ? 'FULL' : 'NORMAL';
    this.syncOnClose = options.syncOnClose ?? true;
  }

  /** Opens (creating when absent) the pool at `path`; ':memory:' gives a private in-memory DB. */
  static async open(path: string, options: SqliteStoreOptions = {}): Promise<SqliteStore> {
    if (typeof path !== 'string' || path.length === 0) throw typeError('path: expected a file path');
    if (options.synchronous !== undefined && options.synchronous !== 'normal' && options.synchronous !== 'full')
      throw rangeError(`options.synchronous: expected normal or full, got ${String(options.synchronous)}`);
    const busyTimeoutMs = options.busyTimeoutMs === undefined ? 5000 : expectInt('options.busyTimeoutMs', options.busyTimeoutMs, 0);
    const owner = options.owner === undefined ? `${os.hostname()}:${process.pid}:${randomUUID().slice(0, 8)}` : checkId('options.owner', options.owner);
    if (options.create !== undefined && typeof options.create !== 'boolean') throw typeError(`options.create: expected a boolean, got ${typeof options.create}`);
    const handle = openDatabase(path, { busyTimeoutMs, synchronous: options.synchronous === 'full' ? 'FULL' : 'NORMAL', create: options.create ?? true });
    return new SqliteStore(path, handle, owner, options);
  }

  private get handle(): Database {
    if (this.dbh === null) throw new PoolError(PoolErrorCode.STORE_CLOSED, 'the pool store was closed');
    return this.dbh;
  }

  /** Throws STORE_CLOSED after close(). */
  private live(): void {
    void this.handle;
  }

  private sql(text: string): Statement {
    let s = this.statements.get(text);
    if (!s) this.statements.set(text, (s = this.handle.prepare(text)));
    return s;
  }

  /** Runs `fn` as one IMMEDIATE transaction (the write lock taken up front: no upgrade deadlock). */
  private write<R>(fn: () => R, fsync = false): R {
    const h = this.handle;
    const sync = fsync && this.syncOnClose && this.baseSync !== 'FULL';
    try {
      if (sync) h.pragma('synchronous = FULL');
      try {
        return h.transaction(fn).immediate();
      } finally {
        if (sync) h.pragma(`synchronous = ${this.baseSync}`);
      }
    } catch (error) {
      throw storageError(error);
    }
  }

  private read<R>(fn: () => R): R {
    this.live();
    try {
      return fn();
    } catch (error) {
      throw storageError(error);
    }
  }

  /** What retention and statistics (sqliteRetention.ts) use of this store. */
  private access(): SqliteAccess {
    return {
      path: this.path,
      handle: () => this.handle,
      sql: (text) => this.sql(text),
      write: (fn) => this.write(fn),
      snapshot: (fn) => this.read(() => this.handle.transaction(fn)()),
      guard: (fn) => this.read(fn),
    };
  }

  private taskRow(id: string): db.TaskRowDb {
    const r = this.sql('SELECT * FROM tasks WHERE id = ?').get(id) as db.TaskRowDb | undefined;
    if (!r) throw new PoolError(PoolErrorCode.UNKNOWN_TASK, `unknown task ${JSON.stringify(id)}`);
    return r;
  }

  private groupRow(id: string): db.GroupRowDb {
    const r = this.sql('SELECT * FROM task_groups WHERE id = ?').get(id) as db.GroupRowDb | undefined;
    if (!r) throw new PoolError(PoolErrorCode.UNKNOWN_GROUP, `unknown group ${JSON.stringify(id)}`);
    return r;
  }

  private sessionRow(id: string): db.SessionRowDb {
    const r = this.sql('SELECT * FROM sessions WHERE id = ?').get(checkId('sessionId', id)) as db.SessionRowDb | undefined;
    if (!r) throw new PoolError(PoolErrorCode.UNKNOWN_SESSION, `unknown session ${JSON.stringify(id)}`);
    return r;
  }

  async addTask(input: NewTask): Promise<TaskRecord> {
    this.live();
    const row = normTask(input, this.now);
    return this.write(() => {
      if (this.sql('SELECT 1 FROM tasks WHERE id = ?').get(row.id)) throw new PoolError(PoolErrorCode.DUPLICATE_ID, `task id ${JSON.stringify(row.id)} is taken`);
      this.sql('INSERT INTO tasks (id, spec, difficulty, created_at) VALUES (?, ?, ?, ?)').run(row.id, row.spec, row.difficulty, row.createdAt);
      return db.taskRecord({ id: row.id, spec: row.spec, difficulty: row.difficulty, created_at: row.createdAt });
    });
  }

  async getTask(id: string): Promise<TaskRecord> {
    this.live();
    return this.read(() => db.taskRecord(this.taskRow(checkId('taskId', id))));
  }

  async listTasks(): Promise<TaskRecord[]> {
    return this.read(() => (this.sql('SELECT * FROM tasks ORDER BY rowid').all() as db.TaskRowDb[]).map(db.taskRecord));
  }

  async addGroup(input: NewGroup): Promise<GroupRecord> {
    this.live();
    const row = normGroup(input, this.now);
    return this.write(() => {
      this.taskRow(row.taskId);
      if (this.sql('SELECT 1 FROM task_groups WHERE id = ?').get(row.id)) throw new PoolError(PoolErrorCode.DUPLICATE_ID, `group id ${JSON.stringify(row.id)} is taken`);
      this.sql('INSERT INTO task_groups (id, task_id, size, created_at) VALUES (?, ?, ?, ?)').run(row.id, row.taskId, row.size, row.createdAt);
      return { ...row };
    });
  }

  async getGroup(id: string): Promise<GroupRecord> {
    this.live();
    return this.read(() => db.groupRecord(this.groupRow(checkId('groupId', id))));
  }

  // Counts per group in one pass; `rewarded` counts closed sessions with a reward under :rv.
  private static readonly GROUP_COUNTS = `SELECT g.id, g.task_id, g.size, g.created_at,
      COALESCE(SUM(s.status = 'open'), 0) AS open, COALESCE(SUM(s.status = 'closed'), 0) AS closed,
      COALESCE(SUM(s.status IN ('failed', 'abandoned')), 0) AS failed,
      COALESCE(SUM(s.status = 'closed' AND EXISTS (SELECT 1 FROM rewards r WHERE r.session_id = s.id AND r.reward_version = :rv)), 0) AS rewarded
    FROM task_groups g LEFT JOIN sessions s ON s.group_id = g.id`;

  private static groupStatusOf(r: db.GroupRowDb & { open: number; closed: number; failed: number; rewarded: number }): GroupStatus {
    return { group: db.groupRecord(r), open: r.open, closed: r.closed, failed: r.failed, complete: r.closed === r.size, rewarded: r.rewarded };
  }

  async groupStatus(id: string, options: { rewardVersion?: string } = {}): Promise<GroupStatus> {
    this.live();
    const rv = options.rewardVersion === undefined ? null : checkId('rewardVersion', options.rewardVersion);
    return this.read(() => {
      this.groupRow(checkId('groupId', id));
      const r = this.sql(`${SqliteStore.GROUP_COUNTS} WHERE g.id = :id GROUP BY g.id`).get({ id, rv });
      return SqliteStore.groupStatusOf(r as Parameters<typeof SqliteStore.groupStatusOf>[0]);
    });
  }

  async completeGroups(query: { taskId?: string; rewardVersion?: string } = {}): Promise<GroupStatus[]> {
    this.live();
    const task = query.taskId === undefined ? null : checkId('query.taskId', query.taskId);
    const rv = query.rewardVersion === undefined ? null : checkId('query.rewardVersion', query.rewardVersion);
    return this.read(() =>
      this.sql(
        `${SqliteStore.GROUP_COUNTS} WHERE (:task IS NULL OR g.task_id = :task) GROUP BY g.id
         HAVING closed = g.size AND (:rv IS NULL OR rewarded = closed) ORDER BY g.rowid`,
      )
        .all({ task, rv })
        .map((r) => SqliteStore.groupStatusOf(r as Parameters<typeof SqliteStore.groupStatusOf>[0])),
    );
  }

  async openSession(input: NewSession): Promise<SessionRecord> {
    this.live();
    const row = normSession(input, this.now);
    return this.write(() => {
      this.taskRow(row.taskId);
      if (row.groupId !== null) {
        const g = this.groupRow(row.groupId);
        if (g.task_id !== row.taskId)
          throw new PoolError(PoolErrorCode.GROUP_TASK_MISMATCH, `group ${JSON.stringify(g.id)} belongs to task ${JSON.stringify(g.task_id)}, not ${JSON.stringify(row.taskId)}`);
      }
      if (this.sql('SELECT 1 FROM sessions WHERE id = ?').get(row.id)) throw new PoolError(PoolErrorCode.DUPLICATE_ID, `session id ${JSON.stringify(row.id)} is taken`);
      if (row.groupId !== null) {
        const g = this.groupRow(row.groupId);
        const { n } = this.sql("SELECT COUNT(*) AS n FROM sessions WHERE group_id = ? AND status IN ('open', 'closed')").get(g.id) as { n: number };
        if (n >= g.size) throw new PoolError(PoolErrorCode.GROUP_FULL, `group ${JSON.stringify(g.id)} already has ${g.size} open or closed sessions`);
      }
      this.sql(
        `INSERT INTO sessions (id, task_id, group_id, scaffold, metadata, status, owner, created_at)
         VALUES (?, ?, ?, ?, ?, 'open', ?, ?)`,
      ).run(row.id, row.taskId, row.groupId, row.scaffold, row.metadata, this.owner, row.createdAt);
      return db.sessionRecord(this.sessionRow(row.id));
    });
  }

  async getSession(id: string): Promise<SessionRecord> {
    this.live();
    return this.read(() => db.sessionRecord(this.sessionRow(id)));
  }

  async appendCall(sessionId: string, input: NewCall): Promise<CallRecord> {
    this.live();
    const call = normCall(input);
    return this.write(() => {
      const s = this.sessionRow(sessionId);
      requireOpen(s);
      if (this.sql('SELECT 1 FROM calls WHERE id = ?').get(call.id)) throw new PoolError(PoolErrorCode.DUPLICATE_ID, `call id ${JSON.stringify(call.id)} is taken`);
      let parent: { id: string; promptIds: Int32Array; completionIds: Int32Array } | null = null;
      if (call.parentId !== null) {
        const p = this.sql('SELECT prompt_ids, completion_ids FROM calls WHERE id = ? AND session_id = ?').get(call.parentId, s.id) as
          | Pick<db.CallRowDb, 'prompt_ids' | 'completion_ids'>
          | undefined;
        if (!p) throw new PoolError(PoolErrorCode.UNKNOWN_CALL, `call.parentId: no call ${JSON.stringify(call.parentId)} in session ${JSON.stringify(s.id)}`);
        parent = { id: call.parentId, ...db.tokenBlobs(p, `call ${call.parentId}`) };
      }
      const { sharedTokens, relation } = resolvePrefix(call, parent);
      this.sql(
        `INSERT INTO calls (id, session_id, idx, parent_id, shared_tokens, relation, prompt_ids, completion_ids,
           logprobs, versions, queued_at, admitted_at, first_token_at, done_at, finish_reason, tool_calls,
           tool_parse_failed, trainable, untrainable_reason, request, response)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        call.id, s.id, s.n_calls, call.parentId, sharedTokens, relation, db.blob(call.promptIds), db.blob(call.completionIds),
        db.blob(call.logprobs), db.blob(call.versions), call.queuedAt, call.admittedAt, call.firstTokenAt, call.doneAt, call.finishReason,
        call.toolCalls, call.toolParseFailed ? 1 : 0, call.trainable ? 1 : 0, call.untrainableReason, call.request, call.response,
      );
      const { min, max } = versionRange([call]);
      this.sql(
        `UPDATE sessions SET n_calls = n_calls + 1,
           min_version = CASE WHEN :min IS NULL THEN min_version WHEN min_version IS NULL THEN :min ELSE MIN(min_version, :min) END,
           max_version = CASE WHEN :max IS NULL THEN max_version WHEN max_version IS NULL THEN :max ELSE MAX(max_version, :max) END
         WHERE id = :id`,
      ).run({ id: s.id, min, max });
      // The arrays are this call's private copies (normCall made them): no need to read them back.
      return callRecordOf(call, s.id, s.n_calls, sharedTokens, relation, false);
    });
  }

  async closeSession(id: string, options: { expectedCalls?: number; endedAt?: number } = {}): Promise<SessionRecord> {
    this.live();
    const endedAt = endTime(options.endedAt, this.now);
    const expected = options.expectedCalls === undefined ? undefined : expectInt('options.expectedCalls', options.expectedCalls, 0);
    return this.write(() => {
      const s = this.sessionRow(id);
      requireOpen(s);
      if (expected !== undefined && expected !== s.n_calls)
        throw new PoolError(PoolErrorCode.CALL_COUNT_MISMATCH, `session ${JSON.stringify(s.id)}: expected ${expected} calls, ${s.n_calls} are stored`);
      // Under the write lock, so the sequence has no gaps or repeats even across processes; above
      // the floor a prune leaves when it removes closed sessions, so no number is handed out twice.
      this.sql(
        `UPDATE sessions SET status = 'closed', ended_at = ?,
           close_seq = MAX((SELECT COALESCE(MAX(close_seq), 0) FROM sessions),
             (SELECT COALESCE(MAX(CAST(value AS INTEGER)), 0) FROM pool_meta WHERE key = '${CLOSE_SEQ_FLOOR_KEY}')) + 1 WHERE id = ?`,
      ).run(endedAt, s.id);
      return db.sessionRecord(this.sessionRow(s.id));
    }, true);
  }

  async failSession(id: string, options: { reason?: string; status?: 'failed' | 'abandoned'; endedAt?: number } = {}): Promise<SessionRecord> {
    this.live();
    const { status, reason } = failOptions(options);
    const endedAt = endTime(options.endedAt, this.now);
    return this.write(() => {
      const s = this.sessionRow(id);
      requireOpen(s);
      this.sql('UPDATE sessions SET status = ?, ended_at = ?, fail_reason = ? WHERE id = ?').run(status, endedAt, reason, s.id);
      return db.sessionRecord(this.sessionRow(s.id));
    }, true);
  }

  async listSessions(query?: SessionQuery): Promise<SessionRecord[]> {
    this.live();
    const q = normSessionQuery(query);
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    const filter = (column: string, name: keyof SessionQuery, op = '=') => {
      if (q[name] === undefined) return;
      where.push(`${column} ${op} :${name}`);
      params[name] = q[name];
    };
    filter('status', 'status');
    filter('task_id', 'taskId');
    filter('group_id', 'groupId');
    filter('owner', 'owner');
    filter('close_seq', 'afterSeq', '>');
    const bySeq = q.status === 'closed' || q.afterSeq !== undefined;
    const text = `SELECT * FROM sessions ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY ${bySeq ? 'close_seq' : 'rowid'} ${q.limit === undefined ? '' : `LIMIT ${q.limit}`}`;
    return this.read(() => (this.sql(text).all(params) as db.SessionRowDb[]).map(db.sessionRecord));
  }

  private callsOf(sessionId: string): CallRecord[] {
    return (this.sql('SELECT * FROM calls WHERE session_id = ? ORDER BY idx').all(sessionId) as db.CallRowDb[]).map(db.callRecord);
  }

  private rewardsOf(sessionId: string): RewardRecord[] {
    const rows = this.sql('SELECT * FROM rewards WHERE session_id = ? ORDER BY rowid').all(sessionId) as db.RewardRowDb[];
    const processOf = this.sql('SELECT call_id, value, source FROM process_rewards WHERE session_id = ? AND reward_version = ? ORDER BY pos');
    return rows.map((r) => db.rewardRecord(r, processOf.all(sessionId, r.reward_version) as db.ProcessRowDb[]));
  }

  async getCalls(sessionId: string): Promise<CallRecord[]> {
    this.live();
    return this.read(() => this.callsOf(this.sessionRow(sessionId).id));
  }

  async getTrajectory(sessionId: string): Promise<Trajectory> {
    this.live();
    return this.read(() => {
      const s = this.sessionRow(sessionId);
      requireClosed(s);
      return { session: db.sessionRecord(s), calls: this.callsOf(s.id), rewards: this.rewardsOf(s.id) };
    });
  }

  async *trajectories(query: TrajectoryQuery = {}): AsyncIterable<Trajectory> {
    this.live();
    const { version, after } = normTrajectoryQuery(query);
    const rewardFilter =
      version === undefined || query.rewarded === undefined
        ? ''
        : `AND ${query.rewarded ? '' : 'NOT'} EXISTS (SELECT 1 FROM rewards r WHERE r.session_id = sessions.id AND r.reward_version = :rv)`;
    const page = `SELECT * FROM sessions WHERE status = 'closed' AND close_seq > :after
        AND (:until IS NULL OR close_seq <= :until) AND (:task IS NULL OR task_id = :task)
        AND (:grp IS NULL OR group_id = :grp) ${rewardFilter} ORDER BY close_seq LIMIT 64`;
    // Page by the close_seq cursor: memory stays bounded and sessions closed meanwhile are picked up.
    let cursor = after;
    for (;;) {
      const rows = this.read(() =>
        this.sql(page).all({ after: cursor, until: query.untilSeq ?? null, task: query.taskId ?? null, grp: query.groupId ?? null, ...(rewardFilter ? { rv: version } : {}) }),
      ) as db.SessionRowDb[];
      if (rows.length === 0) return;
      for (const r of rows) {
        yield this.read(() => ({ session: db.sessionRecord(r), calls: this.callsOf(r.id), rewards: this.rewardsOf(r.id) }));
        cursor = r.close_seq!;
      }
    }
  }

  async abandonOpenSessions(input: AbandonQuery = {}): Promise<SessionRecord[]> {
    this.live();
    const q = normAbandonQuery(input);
    const endedAt = this.now();
    return this.write(() => {
      const rows = this.sql(
        `SELECT * FROM sessions WHERE status = 'open' AND (:owner IS NULL OR owner = :owner)
           AND (:except IS NULL OR owner != :except) AND (:before IS NULL OR created_at < :before) ORDER BY rowid`,
      ).all({ owner: q.owner ?? null, except: q.exceptOwner ?? null, before: q.createdBefore ?? null }) as db.SessionRowDb[];
      const mark = this.sql("UPDATE sessions SET status = 'abandoned', ended_at = ?, fail_reason = ? WHERE id = ?");
      return rows.map((r) => {
        mark.run(endedAt, q.reason, r.id);
        return db.sessionRecord(this.sessionRow(r.id));
      });
    }, true);
  }

  async addReward(input: NewReward): Promise<RewardRecord> {
    this.live();
    const row = normReward(input, this.now);
    return this.write(() => {
      const s = this.sessionRow(row.sessionId);
      requireClosed(s);
      if (this.sql('SELECT 1 FROM rewards WHERE session_id = ? AND reward_version = ?').get(s.id, row.rewardVersion))
        throw new PoolError(PoolErrorCode.ALREADY_REWARDED, `session ${JSON.stringify(s.id)} already has a reward under version ${JSON.stringify(row.rewardVersion)}`);
      const hasCall = this.sql('SELECT 1 FROM calls WHERE id = ? AND session_id = ?');
      for (const [i, p] of row.process.entries())
        if (!hasCall.get(p.callId, s.id))
          throw new PoolError(PoolErrorCode.UNKNOWN_CALL, `reward.process[${i}].callId: no call ${JSON.stringify(p.callId)} in session ${JSON.stringify(s.id)}`);
      this.sql('INSERT INTO rewards (session_id, reward_version, outcome, details, created_at) VALUES (?, ?, ?, ?, ?)').run(
        s.id, row.rewardVersion, row.outcome, row.details, row.createdAt,
      );
      const insert = this.sql('INSERT INTO process_rewards (session_id, reward_version, pos, call_id, value, source) VALUES (?, ?, ?, ?, ?, ?)');
      row.process.forEach((p, i) => insert.run(s.id, row.rewardVersion, i, p.callId, p.value, p.source));
      return { ...row, process: row.process.map((p) => ({ ...p })), details: JSON.parse(row.details) };
    }, true);
  }

  async getReward(sessionId: string, rewardVersion = DEFAULT_REWARD_VERSION): Promise<RewardRecord | undefined> {
    this.live();
    const version = checkId('rewardVersion', rewardVersion);
    return this.read(() => this.rewardsOf(this.sessionRow(sessionId).id).find((r) => r.rewardVersion === version));
  }

  async listRewards(sessionId: string): Promise<RewardRecord[]> {
    this.live();
    return this.read(() => this.rewardsOf(this.sessionRow(sessionId).id));
  }

  async addPolicyVersion(input: NewPolicyVersion): Promise<PolicyVersionRecord> {
    this.live();
    const row = normPolicyVersion(input, this.now);
    return this.write(() => {
      const latest = this.sql('SELECT MAX(version) AS v FROM policy_versions').get() as { v: number | null };
      if (latest.v !== null && row.version <= latest.v)
        throw new PoolError(PoolErrorCode.VERSION_NOT_INCREASING, `policy version ${row.version} is not above the latest, ${latest.v}`);
      this.sql('INSERT INTO policy_versions (version, metadata, created_at) VALUES (?, ?, ?)').run(row.version, row.metadata, row.createdAt);
      return db.policyRecord({ version: row.version, metadata: row.metadata, created_at: row.createdAt });
    }, true);
  }

  async latestPolicyVersion(): Promise<PolicyVersionRecord | undefined> {
    const r = this.read(() => this.sql('SELECT * FROM policy_versions ORDER BY version DESC LIMIT 1').get()) as db.PolicyRowDb | undefined;
    return r && db.policyRecord(r);
  }

  async listPolicyVersions(): Promise<PolicyVersionRecord[]> {
    return this.read(() => (this.sql('SELECT * FROM policy_versions ORDER BY version').all() as db.PolicyRowDb[]).map(db.policyRecord));
  }

  async stats(options: { storage?: boolean } = {}): Promise<PoolStats> {
    return sqliteStats(this.access(), options?.storage === true);
  }

  async prune(query: PruneQuery): Promise<PruneResult> {
    this.live();
    return pruneSqlite(this.access(), query);
  }

  /** SQLite's own consistency check: ['ok'] when the file is sound. */
  async integrityCheck(): Promise<string[]> {
    return this.read(() => (this.handle.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check));
  }

  async close(): Promise<void> {
    if (this.dbh === null) return;
    const h = this.dbh;
    this.dbh = null;
    this.statements.clear();
    h.close();
  }
}
