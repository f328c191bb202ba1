// The data pool's contract: record types and the PoolStore interface, importing no implementation.
// The gateway writes sessions and their calls into a store, the task runner / verifier writes rewards,
// the scheduler and batch builder read completed sessions. Every method returns a Promise so that a
// distributed backend (many gateways on many machines writing into one pool) can implement the same
// interface; SqliteStore (durable, embedded default) and MemoryStore (tests) implement it today.
//
// Visibility rule: a session's calls are stored as they happen, but a session counts as completed —
// listed by completed-session queries, groups, replay and export, rewardable — only once it is
// closed, and closing is atomic. A writer that dies leaves its sessions 'open' (never visible as
// completed); abandonOpenSessions() marks them after a restart.

/** Any JSON value (stored as JSON text; what reads back is JSON.parse(JSON.stringify(value))). */
export type Json = unknown;

/** Token ids as the caller has them; stored as Int32Array. */
export type TokenIds = Int32Array | readonly number[];

export interface TaskRecord {
  id: string;
  /** The task's prompt / spec, as the task runner describes it. */
  spec: Json;
  /** Known difficulty (the simulation's mix, a curriculum), or null. */
  difficulty: number | null;
  /** ms since the epoch. */
  createdAt: number;
}

export interface NewTask {
  /** Default: a random UUID. */
  id?: string;
  spec: Json;
  difficulty?: number | null;
  createdAt?: number;
}

/** Several rollouts of one task, scored against each other (the group baseline of contract 5). */
export interface GroupRecord {
  id: string;
  taskId: string;
  /** Rollouts the group needs: it is complete when this many of its sessions are closed. */
  size: number;
  createdAt: number;
}

export interface NewGroup {
  id?: string;
  taskId: string;
  size: number;
  createdAt?: number;
}

/** open: calls being written; closed: completed (visible to consumers); failed: the agent run
 * failed; abandoned: its writer died (marked after a restart). Failed and abandoned sessions never
 * count toward a group and may be replaced by a retry. */
export type SessionStatus = 'open' | 'closed' | 'failed' | 'abandoned';

export interface SessionRecord {
  id: string;
  taskId: string;
  groupId: string | null;
  /** The agent scaffold that ran (e.g. "openai-tools", "claude-code"). */
  scaffold: string;
  metadata: Json;
  status: SessionStatus;
  /** The store instance that opened it (so a restarted writer can find its dead sessions). */
  owner: string;
  createdAt: number;
  /** When it was closed, failed or abandoned; null while open. */
  endedAt: number | null;
  /** Completion order: 1, 2, ... across the pool, assigned atomically at close; null unless closed.
   * Never reused: a prune that removes sessions leaves gaps. */
  closeSeq: number | null;
  calls: number;
  /** Oldest and newest per-token policy version over its calls' completion tokens (null: none). */
  minVersion: number | null;
  maxVersion: number | null;
  /** Why it failed or was abandoned. */
  failReason: string | null;
}

export interface NewSession {
  id?: string;
  taskId: string;
  groupId?: string | null;
  scaffold: string;
  metadata?: Json;
  createdAt?: number;
}

/** How a call's prompt relates to its parent call's prompt + completion. */
export type CallRelation = 'root' | 'continue' | 'fork';

export interface CallTimings {
  /** ms since the epoch: request received, admitted by the upstream (scheduled), first token
   * produced, last token produced. */
  queuedAt: number;
  admittedAt?: number | null;
  firstTokenAt: number | null;
  doneAt: number;
}

export interface CallRecord {
  id: string;
  sessionId: string;
  /** 0, 1, ... in the order the calls were stored. */
  index: number;
  /** The call whose prompt + completion this call's prompt extends or forks from; null at a root. */
  parentId: string | null;
  /** Leading prompt tokens equal to the parent's prompt + completion (0 at a root). */
  sharedTokens: number;
  /** 'continue' when the prompt starts with the parent's whole prompt + completion, else 'fork'. */
  relation: CallRelation;
  promptIds: Int32Array;
  completionIds: Int32Array;
  /** Per completion token: the sampling policy's logprob (stored as float32). */
  logprobs: Float32Array;
  /** Per completion token: the policy version that produced it. */
  versions: Int32Array;
  timings: CallTimings;
  finishReason: string | null;
  toolCalls: Json;
  /** The completion tried to call a tool and the call did not parse (a process-reward signal). */
  toolParseFailed: boolean;
  trainable: boolean;
  /** Why not trainable (e.g. "upstream returned no token ids"); null when trainable. */
  untrainableReason: string | null;
  /** The raw request as the agent sent it. */
  request: Json;
  /** What the gateway answered (text, tool calls), for verifiers that re-score from text. */
  response: Json;
}

export interface NewCall {
  id?: string;
  parentId?: string | null;
  /** Default: the longest common prefix of this prompt and the parent's prompt + completion. When
   * given, the store checks those tokens are equal. */
  sharedTokens?: number;
  promptIds: TokenIds;
  completionIds: TokenIds;
  /** Float32Array, Float64Array or numbers; stored as float32. */
  logprobs: Float32Array | Float64Array | readonly number[];
  /** Per-token versions, or one version for every completion token. */
  versions: Int32Array | readonly number[] | number;
  timings: CallTimings;
  finishReason?: string | null;
  toolCalls?: Json;
  toolParseFailed?: boolean;
  trainable: boolean;
  untrainableReason?: string | null;
  request?: Json;
  response?: Json;
}

export interface ProcessReward {
  callId: string;
  value: number;
  /** Who gave it ("gateway", "verifier", ...). */
  source: string | null;
}

export interface RewardRecord {
  sessionId: string;
  /** Rewards are keyed by (session, reward version); a re-score writes under a new version. */
  rewardVersion: string;
  /** r_perf: the verifier's outcome reward. */
  outcome: number;
  /** Per-call process rewards (several per call allowed; consumers sum them per call). */
  process: ProcessReward[];
  details: Json;
  createdAt: number;
}

export interface NewReward {
  sessionId: string;
  /** Default 'default'. */
  rewardVersion?: string;
  outcome: number;
  process?: readonly { callId: string; value: number; source?: string | null }[];
  details?: Json;
  createdAt?: number;
}

export interface PolicyVersionRecord {
  version: number;
  /** Checkpoint path, training step, etc. */
  metadata: Json;
  createdAt: number;
}

export interface NewPolicyVersion {
  version: number;
  metadata?: Json;
  createdAt?: number;
}

export interface GroupStatus {
  group: GroupRecord;
  open: number;
  closed: number;
  /** Failed or abandoned (they do not count toward size). */
  failed: number;
  /** closed === size. */
  complete: boolean;
  /** Closed sessions with a reward under the queried reward version (0 when none was asked). */
  rewarded: number;
}

export interface SessionQuery {
  status?: SessionStatus;
  taskId?: string;
  groupId?: string;
  owner?: string;
  /** Closed sessions only: closeSeq > afterSeq (a consumer's cursor). */
  afterSeq?: number;
  limit?: number;
}

/** A completed session as consumers read it: the session, its calls in index order, its rewards. */
export interface Trajectory {
  session: SessionRecord;
  calls: CallRecord[];
  /** Every reward version it has, oldest first. */
  rewards: RewardRecord[];
}

export interface TrajectoryQuery {
  taskId?: string;
  groupId?: string;
  /** Start after this closeSeq (default 0: from the first completed session). */
  afterSeq?: number;
  /** Stop after this closeSeq (inclusive). */
  untilSeq?: number;
  /** Only sessions rewarded (true) / not rewarded (false) under this reward version. */
  rewardVersion?: string;
  rewarded?: boolean;
}

export interface AbandonQuery {
  /** Only sessions opened by this owner (a known-dead writer). */
  owner?: string;
  /** Every owner but this one (the live process itself). */
  exceptOwner?: string;
  /** Only sessions created before this time (ms since the epoch). */
  createdBefore?: number;
  reason?: string;
}

export interface PoolStats {
  tasks: number;
  groups: number;
  sessions: Record<SessionStatus, number>;
  calls: number;
  rewards: number;
  policyVersions: number;
  // The fields below are filled by stats({ storage: true }) only (they read every call row).
  /** Bytes of call payload: token arrays plus the request, response and tool-call JSON. */
  callPayloadBytes?: number;
  /** Of which token arrays (prompt ids, completion ids, logprobs, versions): what keep 'summary' frees. */
  tokenArrayBytes?: number;
  /** Calls whose token arrays a prune dropped (keep 'summary'). */
  prunedCalls?: number;
  /** When the oldest and newest ended (closed, failed, abandoned) session ended; null when none has. */
  oldestEndedAt?: number | null;
  newestEndedAt?: number | null;
  /** SQLite: the database file plus its WAL, in bytes. */
  fileBytes?: number;
  /** SQLite: bytes of free pages inside the file (reused by later writes; a vacuum gives them back). */
  freeBytes?: number;
  /** SQLite: 'incremental' when a prune gives space back to the file system by itself (files created
   * by this version), 'none' when it takes a vacuum (older files), 'full' for files set so by hand. */
  autoVacuum?: 'none' | 'full' | 'incremental';
}

/**
 * What prune() removes. The criteria narrow each other (a session must match every one given); at
 * least one is required. A group is pruned whole or not at all: never while one of its sessions is
 * open, nor when only some of its sessions match (it is then reported in `skipped`). Open sessions
 * are never touched.
 */
export interface PruneQuery {
  /** Sessions that ended (closed, failed or abandoned) before this time, ms since the epoch. */
  endedBefore?: number;
  /** Sessions of these groups (e.g. the groups the trainer has consumed: that knowledge is the caller's). */
  groupIds?: readonly string[];
  /** Sessions of groups that are complete, with no open session and every closed one rewarded under
   * rewardVersion (default 'default'). */
  rewardedGroups?: boolean;
  rewardVersion?: string;
  /** 'summary' (default): keep the session, reward and call rows, drop the calls' token arrays (calls
   * become untrainable, the reason says so); 'nothing': remove the sessions, their calls and rewards,
   * and the groups and tasks this leaves without sessions. */
  keep?: 'summary' | 'nothing';
  /** SQLite: rebuild the file afterwards (VACUUM), which also gives space back on files created
   * before retention existed (and switches them to incremental auto-vacuum). Holds the write lock
   * for the whole rebuild. Ignored by stores without a file. */
  vacuum?: boolean;
  /** Count what would be pruned; change nothing. */
  dryRun?: boolean;
  /** Sessions per transaction (default 64); a group is never split across transactions. */
  batchSize?: number;
  /** Called after each batch is committed (or counted, in a dry run). */
  onBatch?: (progress: PruneProgress) => void;
}

export interface PruneProgress {
  batches: number;
  /** Sessions processed so far, of `plannedSessions`. */
  sessions: number;
  plannedSessions: number;
}

/** A group that matched but was left whole. */
export interface PruneSkip {
  groupId: string;
  /** 'open-session': one of its sessions is open; 'partial': some of its sessions do not match
   * (e.g. ended after endedBefore). */
  reason: 'open-session' | 'partial';
  /** Its sessions that matched, and those open. */
  matched: number;
  open: number;
}

export interface PruneResult {
  keep: 'summary' | 'nothing';
  dryRun: boolean;
  /** Sessions removed ('nothing') or whose calls lost their token arrays ('summary'). */
  sessions: number;
  /** Calls removed, or stripped of their token arrays. */
  calls: number;
  /** Rewards (reward versions) removed, groups and tasks removed (keep 'nothing' only). */
  rewards: number;
  groups: number;
  tasks: number;
  /** Bytes of call payload removed: token arrays, and with 'nothing' the request, response and tool-call JSON. */
  payloadBytes: number;
  skipped: PruneSkip[];
  batches: number;
  /** SQLite (a file, not a dry run): its size (file + WAL) before and after, and how space came back:
   * 'auto-vacuum' (the file's own: files created by this version), 'vacuum' (rebuilt), 'none' (free
   * pages are reused by later writes but the file does not shrink: pass vacuum). */
  file?: { bytesBefore: number; bytesAfter: number; reclaim: 'auto-vacuum' | 'vacuum' | 'none' };
}

export interface PoolStore {
  /** This instance's owner tag, written on the sessions it opens. */
  readonly owner: string;

  addTask(task: NewTask): Promise<TaskRecord>;
  getTask(id: string): Promise<TaskRecord>;
  /** In insertion order. */
  listTasks(): Promise<TaskRecord[]>;

  addGroup(group: NewGroup): Promise<GroupRecord>;
  getGroup(id: string): Promise<GroupRecord>;
  groupStatus(id: string, options?: { rewardVersion?: string }): Promise<GroupStatus>;
  /** Complete groups (closed === size) in creation order; with rewardVersion, only those whose every
   * closed session is rewarded under it. */
  completeGroups(query?: { taskId?: string; rewardVersion?: string }): Promise<GroupStatus[]>;

  openSession(session: NewSession): Promise<SessionRecord>;
  getSession(id: string): Promise<SessionRecord>;
  /** Stores one call of an open session (durably, as it happens). */
  appendCall(sessionId: string, call: NewCall): Promise<CallRecord>;
  /** Makes the session completed, atomically. With expectedCalls, refuses when another number of
   * calls is stored (a writer's check that nothing it sent was lost). */
  closeSession(id: string, options?: { expectedCalls?: number; endedAt?: number }): Promise<SessionRecord>;
  /** Marks an open session failed (or abandoned); it never becomes completed. */
  failSession(id: string, options?: { reason?: string; status?: 'failed' | 'abandoned'; endedAt?: number }): Promise<SessionRecord>;
  /** Closed sessions in closeSeq order, others in creation order. */
  listSessions(query?: SessionQuery): Promise<SessionRecord[]>;
  /** The calls stored so far, in index order (of any session, open ones included). */
  getCalls(sessionId: string): Promise<CallRecord[]>;
  /** A completed session with its calls and rewards (SESSION_NOT_CLOSED otherwise). */
  getTrajectory(sessionId: string): Promise<Trajectory>;
  /** Completed sessions in completion (closeSeq) order: the replay of a run. */
  trajectories(query?: TrajectoryQuery): AsyncIterable<Trajectory>;
  /** After a restart: marks matching open sessions abandoned and returns them. */
  abandonOpenSessions(query?: AbandonQuery): Promise<SessionRecord[]>;

  /** Rewards a closed session once per reward version; never overwrites (ALREADY_REWARDED). */
  addReward(reward: NewReward): Promise<RewardRecord>;
  /** The session's reward under a version (default 'default'), or undefined. */
  getReward(sessionId: string, rewardVersion?: string): Promise<RewardRecord | undefined>;
  listRewards(sessionId: string): Promise<RewardRecord[]>;

  /** Versions must increase (VERSION_NOT_INCREASING otherwise). */
  addPolicyVersion(version: NewPolicyVersion): Promise<PolicyVersionRecord>;
  latestPolicyVersion(): Promise<PolicyVersionRecord | undefined>;
  listPolicyVersions(): Promise<PolicyVersionRecord[]>;

  /** Counts; with { storage: true } also the payload sizes and ended-time range (reads every call row). */
  stats(options?: { storage?: boolean }): Promise<PoolStats>;
  /** Removes what training has used (see PruneQuery); each batch is one transaction, so a process
   * killed mid-prune leaves the pool consistent. Safe while other processes write the pool. */
  prune(query: PruneQuery): Promise<PruneResult>;
  /** Releases the store; later calls fail with STORE_CLOSED. */
  close(): Promise<void>;
}

export const DEFAULT_REWARD_VERSION = 'default';
