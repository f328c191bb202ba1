// The SQLite pool's on-disk format: the schema, and the codecs between its rows and the pool's
// records. Token arrays are BLOBs of little-endian int32 / float32 (the byte order of every platform
// Node ships for but s390x, where opening refuses); JSON values are TEXT.
import { PoolError, PoolErrorCode } from './errors.js';
import type { CallRecord, PolicyVersionRecord, RewardRecord, SessionRecord, SessionStatus, TaskRecord } from './types.js';

/** Bumped on any incompatible change; a database of another version is refused (CORRUPT). */
export const SCHEMA_VERSION = 1;

// `relation` and the counters are denormalised so that reads need no second query. close_seq is
// UNIQUE (its index serves the replay cursor); a session's calls are UNIQUE (session_id, idx).
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS pool_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY, spec TEXT NOT NULL, difficulty REAL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS task_groups (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks(id), size INTEGER NOT NULL,
  created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS task_groups_by_task ON task_groups(task_id);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks(id),
  group_id TEXT REFERENCES task_groups(id), scaffold TEXT NOT NULL, metadata TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('open', 'closed', 'failed', 'abandoned')),
  owner TEXT NOT NULL, created_at REAL NOT NULL, ended_at REAL, close_seq INTEGER UNIQUE,
  n_calls INTEGER NOT NULL DEFAULT 0, min_version INTEGER, max_version INTEGER, fail_reason TEXT);
CREATE INDEX IF NOT EXISTS sessions_by_task ON sessions(task_id, status);
CREATE INDEX IF NOT EXISTS sessions_by_group ON sessions(group_id, status);
CREATE INDEX IF NOT EXISTS sessions_by_status ON sessions(status, owner);
CREATE TABLE IF NOT EXISTS calls (
  id TEXT PRIMARY KEY, session_id TEXT NOT NULL REFERENCES sessions(id), idx INTEGER NOT NULL,
  parent_id TEXT, shared_tokens INTEGER NOT NULL, relation TEXT NOT NULL,
  prompt_ids BLOB NOT NULL, completion_ids BLOB NOT NULL, logprobs BLOB NOT NULL, versions BLOB NOT NULL,
  queued_at REAL NOT NULL, admitted_at REAL, first_token_at REAL, done_at REAL NOT NULL, finish_reason TEXT,
  tool_calls TEXT NOT NULL, tool_parse_failed INTEGER NOT NULL, trainable INTEGER NOT NULL,
  untrainable_reason TEXT, request TEXT NOT NULL, response TEXT NOT NULL,
  UNIQUE (session_id, idx));
CREATE TABLE IF NOT EXISTS rewards (
  session_id TEXT NOT NULL REFERENCES sessions(id), reward_version TEXT NOT NULL,
  outcome REAL NOT NULL, details TEXT NOT NULL, created_at REAL NOT NULL,
  PRIMARY KEY (session_id, reward_version));
CREATE TABLE IF NOT EXISTS process_rewards (
  session_id TEXT NOT NULL, reward_version TEXT NOT NULL, pos INTEGER NOT NULL,
  call_id TEXT NOT NULL, value REAL NOT NULL, source TEXT,
  PRIMARY KEY (session_id, reward_version, pos),
  FOREIGN KEY (session_id, reward_version) REFERENCES rewards(session_id, reward_version));
CREATE TABLE IF NOT EXISTS policy_versions (
  version INTEGER PRIMARY KEY, metadata TEXT NOT NULL, created_at REAL NOT NULL);
`;

export interface TaskRowDb { id: string; spec: string; difficulty: number | null; created_at: number }
export interface GroupRowDb { id: string; task_id: string; size: number; created_at: number }
export interface SessionRowDb {
  id: string; task_id: string; group_id: string | null; scaffold: string; metadata: string;
  status: SessionStatus; owner: string; created_at: number; ended_at: number | null;
  close_seq: number | null; n_calls: number; min_version: number | null; max_version: number | null;
  fail_reason: string | null;
}
export interface CallRowDb {
  id: string; session_id: string; idx: number; parent_id: string | null; shared_tokens: number;
  relation: CallRecord['relation']; prompt_ids: Uint8Array; completion_ids: Uint8Array;
  logprobs: Uint8Array; versions: Uint8Array; queued_at: number; admitted_at: number | null; first_token_at: number | null;
  done_at: number; finish_reason: string | null; tool_calls: string; tool_parse_failed: number;
  trainable: number; untrainable_reason: string | null; request: string; response: string;
}
export interface RewardRowDb { session_id: string; reward_version: string; outcome: number; details: string; created_at: number }
export interface ProcessRowDb { call_id: string; value: number; source: string | null }
export interface PolicyRowDb { version: number; metadata: string; created_at: number }

const corrupt = (what: string) => new PoolError(PoolErrorCode.CORRUPT, `pool database: ${what}`);

export function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw corrupt(`${where} holds invalid JSON`);
  }
}

/** The bytes of a typed array, without copying. */
export const blob = (a: Int32Array | Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

function decode<T extends Int32Array | Float32Array>(ctor: { new (n: number): T }, bytes: Uint8Array, where: string): T {
  if (!(bytes instanceof Uint8Array) || bytes.byteLength % 4 !== 0) throw corrupt(`${where} is not a 4-byte array`);
  // Copy into a fresh, aligned buffer: what SQLite hands back may sit at any offset.
  const out = new ctor(bytes.byteLength / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

export const taskRecord = (r: TaskRowDb): TaskRecord => ({
  id: r.id,
  spec: parseJson(r.spec, `task ${r.id} spec`),
  difficulty: r.difficulty,
  createdAt: r.created_at,
});

export const groupRecord = (r: GroupRowDb) => ({ id: r.id, taskId: r.task_id, size: r.size, createdAt: r.created_at });

export const sessionRecord = (r: SessionRowDb): SessionRecord => ({
  id: r.id,
  taskId: r.task_id,
  groupId: r.group_id,
  scaffold: r.scaffold,
  metadata: parseJson(r.metadata, `session ${r.id} metadata`),
  status: r.status,
  owner: r.owner,
  createdAt: r.created_at,
  endedAt: r.ended_at,
  closeSeq: r.close_seq,
  calls: r.n_calls,
  minVersion: r.min_version,
  maxVersion: r.max_version,
  failReason: r.fail_reason,
});

/** The token arrays of a call row (for the prefix check against a parent). */
export function tokenBlobs(r: Pick<CallRowDb, 'prompt_ids' | 'completion_ids'>, where: string): { promptIds: Int32Array; completionIds: Int32Array } {
  return { promptIds: decode(Int32Array, r.prompt_ids, `${where} prompt_ids`), completionIds: decode(Int32Array, r.completion_ids, `${where} completion_ids`) };
}

export function callRecord(r: CallRowDb): CallRecord {
  const where = `call ${r.id}`;
  const completionIds = decode(Int32Array, r.completion_ids, `${where} completion_ids`);
  const logprobs = decode(Float32Array, r.logprobs, `${where} logprobs`);
  const versions = decode(Int32Array, r.versions, `${where} versions`);
  if (logprobs.length !== completionIds.length || versions.length !== completionIds.length)
    throw corrupt(`${where}: ${completionIds.length} completion tokens but ${logprobs.length} logprobs and ${versions.length} versions`);
  return {
    id: r.id,
    sessionId: r.session_id,
    index: r.idx,
    parentId: r.parent_id,
    sharedTokens: r.shared_tokens,
    relation: r.relation,
    promptIds: decode(Int32Array, r.prompt_ids, `${where} prompt_ids`),
    completionIds,
    logprobs,
    versions,
    timings: { queuedAt: r.queued_at, admittedAt: r.admitted_at, firstTokenAt: r.first_token_at, doneAt: r.done_at },
    finishReason: r.finish_reason,
    toolCalls: parseJson(r.tool_calls, `${where} tool_calls`),
    toolParseFailed: r.tool_parse_failed !== 0,
    trainable: r.trainable !== 0,
    untrainableReason: r.untrainable_reason,
    request: parseJson(r.request, `${where} request`),
    response: parseJson(r.response, `${where} response`),
  };
}

export const rewardRecord = (r: RewardRowDb, process: ProcessRowDb[]): RewardRecord => ({
  sessionId: r.session_id,
  rewardVersion: r.reward_version,
  outcome: r.outcome,
  process: process.map((p) => ({ callId: p.call_id, value: p.value, source: p.source })),
  details: parseJson(r.details, `reward ${r.session_id}/${r.reward_version} details`),
  createdAt: r.created_at,
});

export const policyRecord = (r: PolicyRowDb): PolicyVersionRecord => ({
  version: r.version,
  metadata: parseJson(r.metadata, `policy version ${r.version} metadata`),
  createdAt: r.created_at,
});
