// The in-memory PoolStore: the same contract as SqliteStore, without a disk, for tests and for runs
// that need no durability. It keeps the normalised rows of lib/pool/validate.ts (JSON as text, token
// arrays as private copies) and hands out fresh copies, so a caller can never change what is stored.
// Retention (prune) is in memoryRetention.ts.
import { randomUUID } from 'node:crypto';

import { expectInt } from '../validate.js';
import { PoolError, PoolErrorCode } from './errors.js';
import { memoryStats, pruneMemory } from './memoryRetention.js';
import {
  type AbandonQuery, type CallRecord, DEFAULT_REWARD_VERSION, type GroupRecord, type GroupStatus, type NewCall,
  type NewGroup, type NewPolicyVersion, type NewReward, type NewSession, type NewTask, type PolicyVersionRecord,
  type PoolStats, type PoolStore, type PruneQuery, type PruneResult, type RewardRecord, type SessionQuery, type SessionRecord, type SessionStatus,
  type TaskRecord, type Trajectory, type TrajectoryQuery,
} from './types.js';
import {
  type CallRow, callRecordOf, checkId, type GroupRow, normCall, normGroup, normPolicyVersion, normReward, normSession,
  normSessionQuery, normTask, type PolicyVersionRow, normTrajectoryQuery, normAbandonQuery, endTime, failOptions,
  requireClosed, requireOpen, resolvePrefix, type RewardRow, type SessionRow, type TaskRow, versionRange,
} from './validate.js';

export interface StoredCall extends CallRow {
  sessionId: string;
  index: number;
  sharedTokens: number;
  relation: CallRecord['relation'];
}

export interface StoredSession extends SessionRow {
  status: SessionStatus;
  /** Removed by a prune (keep 'nothing'); stays in the close-order list so closeSeq keeps counting up. */
  removed?: boolean;
  owner: string;
  endedAt: number | null;
  closeSeq: number | null;
  calls: StoredCall[];
  minVersion: number | null;
  maxVersion: number | null;
  failReason: string | null;
}

export interface MemoryStoreOptions {
  /** Owner tag of the sessions this store opens (default: a random UUID). */
  owner?: string;
  /** Clock for default timestamps, ms since the epoch (default Date.now). */
  now?: () => number;
}

export class MemoryStore implements PoolStore {
  readonly owner: string;
  private readonly now: () => number;
  private readonly tasks = new Map<string, TaskRow>();
  private readonly groups = new Map<string, GroupRow>();
  private readonly sessions = new Map<string, StoredSession>();
  private readonly callSession = new Map<string, string>();
  /** Per session, per reward version, in insertion order (oldest first). */
  private readonly rewards = new Map<string, Map<string, RewardRow>>();
  private readonly policyVersions: PolicyVersionRow[] = [];
  private readonly closed: StoredSession[] = [];
  private isClosed = false;

  constructor(options: MemoryStoreOptions = {}) {
    this.owner = options.owner === undefined ? randomUUID() : checkId('options.owner', options.owner);
    this.now = options.now ?? Date.now;
  }

  private live(): void {
    if (this.isClosed) throw new PoolError(PoolErrorCode.STORE_CLOSED, 'the pool store was closed');
  }

  private task(id: string): TaskRow {
    const t = this.tasks.get(id);
    if (!t) throw new PoolError(PoolErrorCode.UNKNOWN_TASK, `unknown task ${JSON.stringify(id)}`);
    return t;
  }

  private group(id: string): GroupRow {
    const g = this.groups.get(id);
    if (!g) throw new PoolError(PoolErrorCode.UNKNOWN_GROUP, `unknown group ${JSON.stringify(id)}`);
    return g;
  }

  private session(id: string): StoredSession {
    const s = this.sessions.get(checkId('sessionId', id));
    if (!s) throw new PoolError(PoolErrorCode.UNKNOWN_SESSION, `unknown session ${JSON.stringify(id)}`);
    return s;
  }

  async addTask(input: NewTask): Promise<TaskRecord> {
    this.live();
    const row = normTask(input, this.now);
    if (this.tasks.has(row.id)) throw new PoolError(PoolErrorCode.DUPLICATE_ID, `task id ${JSON.stringify(row.id)} is taken`);
    this.tasks.set(row.id, row);
    return taskRecord(row);
  }

  async getTask(id: string): Promise<TaskRecord> {
    this.live();
    return taskRecord(this.task(checkId('taskId', id)));
  }

  async listTasks(): Promise<TaskRecord[]> {
    this.live();
    return [...this.tasks.values()].map(taskRecord);
  }

  async addGroup(input: NewGroup): Promise<GroupRecord> {
    this.live();
    const row = normGroup(input, this.now);
    this.task(row.taskId);
    if (this.groups.has(row.id)) throw new PoolError(PoolErrorCode.DUPLICATE_ID, `group id ${JSON.stringify(row.id)} is taken`);
    this.groups.set(row.id, row);
    return { ...row };
  }

  async getGroup(id: string): Promise<GroupRecord> {
    this.live();
    return { ...this.group(checkId('groupId', id)) };
  }

  private status(group: GroupRow, rewardVersion: string | undefined): GroupStatus {
    let open = 0;
    let closed = 0;
    let failed = 0;
    let rewarded = 0;
    for (const s of this.sessions.values()) {
      if (s.groupId !== group.id) continue;
      if (s.status === 'open') open++;
      else if (s.status === 'closed') {
        closed++;
        if (rewardVersion !== undefined && this.rewards.get(s.id)?.has(rewardVersion)) rewarded++;
      } else failed++;
    }
    return { group: { ...group }, open, closed, failed, complete: closed === group.size, rewarded };
  }

  async groupStatus(id: string, options: { rewardVersion?: string } = {}): Promise<GroupStatus> {
    this.live();
    const version = options.rewardVersion === undefined ? undefined : checkId('rewardVersion', options.rewardVersion);
    return this.status(this.group(checkId('groupId', id)), version);
  }

  async completeGroups(query: { taskId?: string; rewardVersion?: string } = {}): Promise<GroupStatus[]> {
    this.live();
    const taskId = query.taskId === undefined ? undefined : checkId('query.taskId', query.taskId);
    const version = query.rewardVersion === undefined ? undefined : checkId('query.rewardVersion', query.rewardVersion);
    const out: GroupStatus[] = [];
    for (const g of this.groups.values()) {
      if (taskId !== undefined && g.taskId !== taskId) continue;
      const st = this.status(g, version);
      if (st.complete && (version === undefined || st.rewarded === st.closed)) out.push(st);
    }
    return out;
  }

  async openSession(input: NewSession): Promise<SessionRecord> {
    this.live();
    const row = normSession(input, this.now);
    this.task(row.taskId);
    if (row.groupId !== null) {
      const g = this.group(row.groupId);
      if (g.taskId !== row.taskId)
        throw new PoolError(PoolErrorCode.GROUP_TASK_MISMATCH, `group ${JSON.stringify(g.id)} belongs to task ${JSON.stringify(g.taskId)}, not ${JSON.stringify(row.taskId)}`);
    }
    if (this.sessions.has(row.id)) throw new PoolError(PoolErrorCode.DUPLICATE_ID, `session id ${JSON.stringify(row.id)} is taken`);
    if (row.groupId !== null) {
      const st = this.status(this.group(row.groupId), undefined);
      if (st.open + st.closed >= st.group.size)
        throw new PoolError(PoolErrorCode.GROUP_FULL, `group ${JSON.stringify(row.groupId)} already has ${st.group.size} open or closed sessions`);
    }
    const s: StoredSession = {
      ...row,
      status: 'open',
      owner: this.owner,
      endedAt: null,
      closeSeq: null,
      calls: [],
      minVersion: null,
      maxVersion: null,
      failReason: null,
    };
    this.sessions.set(row.id, s);
    return sessionRecord(s);
  }

  async getSession(id: string): Promise<SessionRecord> {
    this.live();
    return sessionRecord(this.session(id));
  }

  async appendCall(sessionId: string, input: NewCall): Promise<CallRecord> {
    this.live();
    const call = normCall(input);
    const s = this.session(sessionId);
    requireOpen(s);
    if (this.callSession.has(call.id)) throw new PoolError(PoolErrorCode.DUPLICATE_ID, `call id ${JSON.stringify(call.id)} is taken`);
    let parent: StoredCall | null = null;
    if (call.parentId !== null) {
      parent = s.calls.find((c) => c.id === call.parentId) ?? null;
      if (!parent)
        throw new PoolError(PoolErrorCode.UNKNOWN_CALL, `call.parentId: no call ${JSON.stringify(call.parentId)} in session ${JSON.stringify(s.id)}`);
    }
    const { sharedTokens, relation } = resolvePrefix(call, parent);
    const stored: StoredCall = { ...call, sessionId: s.id, index: s.calls.length, sharedTokens, relation };
    s.calls.push(stored);
    this.callSession.set(call.id, s.id);
    const range = versionRange([call]);
    if (range.min !== null && (s.minVersion === null || range.min < s.minVersion)) s.minVersion = range.min;
    if (range.max !== null && (s.maxVersion === null || range.max > s.maxVersion)) s.maxVersion = range.max;
    return callRecord(stored);
  }

  async closeSession(id: string, options: { expectedCalls?: number; endedAt?: number } = {}): Promise<SessionRecord> {
    this.live();
    const endedAt = endTime(options.endedAt, this.now);
    const expected = options.expectedCalls === undefined ? undefined : expectInt('options.expectedCalls', options.expectedCalls, 0);
    const s = this.session(id);
    requireOpen(s);
    if (expected !== undefined && expected !== s.calls.length)
      throw new PoolError(PoolErrorCode.CALL_COUNT_MISMATCH, `session ${JSON.stringify(s.id)}: expected ${expected} calls, ${s.calls.length} are stored`);
    s.status = 'closed';
    s.endedAt = endedAt;
    s.closeSeq = this.closed.length + 1;
    this.closed.push(s);
    return sessionRecord(s);
  }

  async failSession(id: string, options: { reason?: string; status?: 'failed' | 'abandoned'; endedAt?: number } = {}): Promise<SessionRecord> {
    this.live();
    const { status, reason } = failOptions(options);
    const endedAt = endTime(options.endedAt, this.now);
    const s = this.session(id);
    requireOpen(s);
    s.status = status;
    s.endedAt = endedAt;
    s.failReason = reason;
    return sessionRecord(s);
  }

  async listSessions(query?: SessionQuery): Promise<SessionRecord[]> {
    this.live();
    const q = normSessionQuery(query);
    const bySeq = q.status === 'closed' || q.afterSeq !== undefined;
    const source = bySeq ? this.closed : this.sessions.values();
    const out: SessionRecord[] = [];
    for (const s of source) {
      if (q.limit !== undefined && out.length >= q.limit) break;
      if (s.removed) continue;
      if (q.status !== undefined && s.status !== q.status) continue;
      if (q.taskId !== undefined && s.taskId !== q.taskId) continue;
      if (q.groupId !== undefined && s.groupId !== q.groupId) continue;
      if (q.owner !== undefined && s.owner !== q.owner) continue;
      if (q.afterSeq !== undefined && (s.closeSeq === null || s.closeSeq <= q.afterSeq)) continue;
      out.push(sessionRecord(s));
    }
    return out;
  }

  async getCalls(sessionId: string): Promise<CallRecord[]> {
    this.live();
    return this.session(sessionId).calls.map(callRecord);
  }

  private trajectory(s: StoredSession): Trajectory {
    return {
      session: sessionRecord(s),
      calls: s.calls.map(callRecord),
      rewards: [...(this.rewards.get(s.id)?.values() ?? [])].map(rewardRecord),
    };
  }

  async getTrajectory(sessionId: string): Promise<Trajectory> {
    this.live();
    const s = this.session(sessionId);
    requireClosed(s);
    return this.trajectory(s);
  }

  async *trajectories(query: TrajectoryQuery = {}): AsyncIterable<Trajectory> {
    this.live();
    const { version, after } = normTrajectoryQuery(query);
    // Walk by position, not by iterator, so sessions closed during the replay are picked up in order.
    for (let i = after; i < this.closed.length; i++) {
      this.live();
      const s = this.closed[i];
      if (query.untilSeq !== undefined && s.closeSeq! > query.untilSeq) break;
      if (s.removed) continue;
      if (query.taskId !== undefined && s.taskId !== query.taskId) continue;
      if (query.groupId !== undefined && s.groupId !== query.groupId) continue;
      if (version !== undefined && query.rewarded !== undefined && (this.rewards.get(s.id)?.has(version) ?? false) !== query.rewarded) continue;
      yield this.trajectory(s);
    }
  }

  async abandonOpenSessions(input: AbandonQuery = {}): Promise<SessionRecord[]> {
    this.live();
    const query = normAbandonQuery(input);
    const endedAt = this.now();
    const out: SessionRecord[] = [];
    for (const s of this.sessions.values()) {
      if (s.status !== 'open') continue;
      if (query.owner !== undefined && s.owner !== query.owner) continue;
      if (query.exceptOwner !== undefined && s.owner === query.exceptOwner) continue;
      if (query.createdBefore !== undefined && s.createdAt >= query.createdBefore) continue;
      s.status = 'abandoned';
      s.endedAt = endedAt;
      s.failReason = query.reason;
      out.push(sessionRecord(s));
    }
    return out;
  }

  async addReward(input: NewReward): Promise<RewardRecord> {
    this.live();
    const row = normReward(input, this.now);
    const s = this.session(row.sessionId);
    requireClosed(s);
    const versions = this.rewards.get(s.id) ?? new Map<string, RewardRow>();
    if (versions.has(row.rewardVersion))
      throw new PoolError(PoolErrorCode.ALREADY_REWARDED, `session ${JSON.stringify(s.id)} already has a reward under version ${JSON.stringify(row.rewardVersion)}`);
    for (const [i, p] of row.process.entries())
      if (!s.calls.some((c) => c.id === p.callId))
        throw new PoolError(PoolErrorCode.UNKNOWN_CALL, `reward.process[${i}].callId: no call ${JSON.stringify(p.callId)} in session ${JSON.stringify(s.id)}`);
    versions.set(row.rewardVersion, row);
    this.rewards.set(s.id, versions);
    return rewardRecord(row);
  }

  async getReward(sessionId: string, rewardVersion = DEFAULT_REWARD_VERSION): Promise<RewardRecord | undefined> {
    this.live();
    const version = checkId('rewardVersion', rewardVersion);
    const row = this.rewards.get(this.session(sessionId).id)?.get(version);
    return row && rewardRecord(row);
  }

  async listRewards(sessionId: string): Promise<RewardRecord[]> {
    this.live();
    return [...(this.rewards.get(this.session(sessionId).id)?.values() ?? [])].map(rewardRecord);
  }

  async addPolicyVersion(input: NewPolicyVersion): Promise<PolicyVersionRecord> {
    this.live();
    const row = normPolicyVersion(input, this.now);
    const latest = this.policyVersions.at(-1);
    if (latest && row.version <= latest.version)
      throw new PoolError(PoolErrorCode.VERSION_NOT_INCREASING, `policy version ${row.version} is not above the latest, ${latest.version}`);
    this.policyVersions.push(row);
    return policyRecord(row);
  }

  async latestPolicyVersion(): Promise<PolicyVersionRecord | undefined> {
    this.live();
    const latest = this.policyVersions.at(-1);
    return latest && policyRecord(latest);
  }

  async listPolicyVersions(): Promise<PolicyVersionRecord[]> {
    this.live();
    return this.policyVersions.map(policyRecord);
  }

  async stats(options: { storage?: boolean } = {}): Promise<PoolStats> {
    this.live();
    const sessions: Record<SessionStatus, number> = { open: 0, closed: 0, failed: 0, abandoned: 0 };
    let calls = 0;
    for (const s of this.sessions.values()) {
      sessions[s.status]++;
      calls += s.calls.length;
    }
    let rewards = 0;
    for (const v of this.rewards.values()) rewards += v.size;
    const stats = { tasks: this.tasks.size, groups: this.groups.size, sessions, calls, rewards, policyVersions: this.policyVersions.length };
    return options?.storage === true ? { ...stats, ...memoryStats(this.sessions.values()) } : stats;
  }

  async prune(query: PruneQuery): Promise<PruneResult> {
    this.live();
    return pruneMemory(
      { tasks: this.tasks, groups: this.groups, sessions: this.sessions, callSession: this.callSession, rewards: this.rewards, live: () => this.live() },
      query,
    );
  }

  async close(): Promise<void> {
    this.isClosed = true;
  }
}

// ---- rows to records (fresh copies) ----

const taskRecord = (t: TaskRow): TaskRecord => ({ id: t.id, spec: JSON.parse(t.spec), difficulty: t.difficulty, createdAt: t.createdAt });

const sessionRecord = (s: StoredSession): SessionRecord => ({
  id: s.id,
  taskId: s.taskId,
  groupId: s.groupId,
  scaffold: s.scaffold,
  metadata: JSON.parse(s.metadata),
  status: s.status,
  owner: s.owner,
  createdAt: s.createdAt,
  endedAt: s.endedAt,
  closeSeq: s.closeSeq,
  calls: s.calls.length,
  minVersion: s.minVersion,
  maxVersion: s.maxVersion,
  failReason: s.failReason,
});

const callRecord = (c: StoredCall): CallRecord => callRecordOf(c, c.sessionId, c.index, c.sharedTokens, c.relation, true);

const rewardRecord = (r: RewardRow): RewardRecord => ({
  sessionId: r.sessionId,
  rewardVersion: r.rewardVersion,
  outcome: r.outcome,
  process: r.process.map((p) => ({ ...p })),
  details: JSON.parse(r.details),
  createdAt: r.createdAt,
});

const policyRecord = (p: PolicyVersionRow): PolicyVersionRecord => ({ version: p.version, metadata: JSON.parse(p.metadata), createdAt: p.createdAt });
