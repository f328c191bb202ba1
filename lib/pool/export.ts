// Reading a finished run back out of a pool: JSONL export (one line per completed session: the task,
// the group, the session, its call tree as a flat list linked by parentId, and every reward version;
// token arrays as JSON arrays), reading such a file back, importing it into another store, and
// re-scoring a run with a new reward function without running the agents again.
//
// Re-scoring never overwrites: rewards are keyed by (session, reward version), so a new reward
// function writes under a new reward version (write: true), or only returns what it would write
// (write: false). A re-score interrupted midway continues with resume: true, which skips the sessions
// already rewarded under that version.
import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';

import { PoolError, PoolErrorCode } from './errors.js';
import type { CallRecord, GroupRecord, Json, NewReward, PoolStore, RewardRecord, SessionRecord, TaskRecord, Trajectory, TrajectoryQuery } from './types.js';
import { checkId, normReward, tokenArray } from './validate.js';

/** A call with its typed arrays as plain arrays (JSON). */
export type CallJson = Omit<CallRecord, 'promptIds' | 'completionIds' | 'logprobs' | 'versions'> & {
  promptIds: number[];
  completionIds: number[];
  logprobs: number[];
  versions: number[];
};

/** One JSONL line. */
export interface TrajectoryJson {
  task: TaskRecord;
  group: GroupRecord | null;
  session: SessionRecord;
  calls: CallJson[];
  rewards: RewardRecord[];
}

/** An exported trajectory with its task and group, as readJsonl yields it. */
export interface ExportedTrajectory extends Trajectory {
  task: TaskRecord;
  group: GroupRecord | null;
}

export function callToJson(c: CallRecord): CallJson {
  // Float32 values are exact doubles, so the JSON numbers read back to the same float32.
  return { ...c, promptIds: Array.from(c.promptIds), completionIds: Array.from(c.completionIds), logprobs: Array.from(c.logprobs), versions: Array.from(c.versions) };
}

export function callFromJson(c: CallJson, where: string): CallRecord {
  if (typeof c !== 'object' || c === null) throw new TypeError(`${where}: expected a call object`);
  if (!Array.isArray(c.logprobs)) throw new TypeError(`${where}.logprobs: expected an array`);
  return {
    ...c,
    promptIds: tokenArray(`${where}.promptIds`, c.promptIds),
    completionIds: tokenArray(`${where}.completionIds`, c.completionIds),
    logprobs: Float32Array.from(c.logprobs),
    versions: tokenArray(`${where}.versions`, c.versions),
  };
}

/** One line's JSON; tasks and groups are read once per export (many sessions share them). */
async function lineOf(store: PoolStore, t: Trajectory, seen: Map<string, TaskRecord | GroupRecord>): Promise<TrajectoryJson> {
  const { taskId, groupId } = t.session;
  const task = (seen.get(`t:${taskId}`) as TaskRecord | undefined) ?? (await store.getTask(taskId));
  seen.set(`t:${taskId}`, task);
  let group: GroupRecord | null = null;
  if (groupId !== null) {
    group = (seen.get(`g:${groupId}`) as GroupRecord | undefined) ?? (await store.getGroup(groupId));
    seen.set(`g:${groupId}`, group);
  }
  return { task, group, session: t.session, calls: t.calls.map(callToJson), rewards: t.rewards };
}

export interface ExportSummary {
  sessions: number;
  calls: number;
  tokens: number;
  bytes: number;
}

/** Writes the completed sessions matching `query`, in completion order, one JSON line each, to a file
 * path (created or truncated) or a stream (left open). */
export async function exportJsonl(store: PoolStore, out: string | Writable, query: TrajectoryQuery = {}): Promise<ExportSummary> {
  const stream = typeof out === 'string' ? createWriteStream(out) : out;
  const summary: ExportSummary = { sessions: 0, calls: 0, tokens: 0, bytes: 0 };
  const seen = new Map<string, TaskRecord | GroupRecord>();
  // A stream error (disk full, bad path) is kept and thrown here, never left as an unhandled event.
  let failed: unknown;
  const onError = (e: unknown) => (failed ??= e);
  stream.on('error', onError);
  const check = () => {
    if (failed !== undefined) throw failed;
  };
  try {
    for await (const t of store.trajectories(query)) {
      check();
      const line = `${JSON.stringify(await lineOf(store, t, seen))}\n`;
      summary.sessions++;
      summary.calls += t.calls.length;
      for (const c of t.calls) summary.tokens += c.promptIds.length + c.completionIds.length;
      summary.bytes += Buffer.byteLength(line);
      if (!stream.write(line)) await drained(stream);
    }
    if (typeof out === 'string') {
      stream.end();
      await finished(stream);
    }
    check();
  } finally {
    stream.off('error', onError);
    if (typeof out === 'string' && !stream.destroyed) stream.destroy();
  }
  return summary;
}

/** Resolves when the stream can take more, or has closed (after an error). */
function drained(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

/** Parses one exported line back into a trajectory (typed arrays restored). */
export function trajectoryFromJson(value: unknown, where = 'line'): ExportedTrajectory {
  const v = value as TrajectoryJson;
  if (typeof v !== 'object' || v === null || typeof v.session !== 'object' || !Array.isArray(v.calls) || !Array.isArray(v.rewards) || typeof v.task !== 'object')
    throw new TypeError(`${where}: expected { task, group, session, calls, rewards }`);
  return { task: v.task, group: v.group ?? null, session: v.session, calls: v.calls.map((c, i) => callFromJson(c, `${where}.calls[${i}]`)), rewards: v.rewards };
}

/** Reads an exported JSONL file back, line by line (blank lines skipped). */
export async function* readJsonl(path: string): AsyncIterable<ExportedTrajectory> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new PoolError(PoolErrorCode.CORRUPT, `${path}:${n}: invalid JSON (${(error as Error).message})`);
    }
    try {
      yield trajectoryFromJson(value, `${path}:${n}`);
    } catch (error) {
      if (error instanceof TypeError || error instanceof RangeError) throw new PoolError(PoolErrorCode.CORRUPT, error.message, { cause: error });
      throw error;
    }
  }
}

const isCode = (error: unknown, code: string) => (error as { code?: string })?.code === code;

/**
 * Writes exported trajectories into a store: tasks and groups created when absent, each session
 * opened, its calls appended with their ids and tree links, closed, and its rewards written. The
 * store assigns its own owner and completion sequence; everything else is kept. Sessions whose id
 * the store already has are skipped (so an interrupted import can be rerun).
 */
export async function importTrajectories(
  store: PoolStore,
  source: AsyncIterable<ExportedTrajectory> | Iterable<ExportedTrajectory>,
): Promise<{ imported: number; skipped: number }> {
  let imported = 0;
  let skipped = 0;
  for await (const t of source) {
    const { task, group, session: s } = t;
    try {
      await store.getSession(s.id);
      skipped++;
      continue;
    } catch (error) {
      if (!isCode(error, PoolErrorCode.UNKNOWN_SESSION)) throw error;
    }
    await store.addTask({ id: task.id, spec: task.spec, difficulty: task.difficulty, createdAt: task.createdAt }).catch((e) => {
      if (!isCode(e, PoolErrorCode.DUPLICATE_ID)) throw e;
    });
    if (group)
      await store.addGroup({ id: group.id, taskId: group.taskId, size: group.size, createdAt: group.createdAt }).catch((e) => {
        if (!isCode(e, PoolErrorCode.DUPLICATE_ID)) throw e;
      });
    await store.openSession({ id: s.id, taskId: s.taskId, groupId: s.groupId, scaffold: s.scaffold, metadata: s.metadata, createdAt: s.createdAt });
    for (const c of t.calls) {
      await store.appendCall(s.id, {
        id: c.id,
        parentId: c.parentId,
        sharedTokens: c.parentId === null ? undefined : c.sharedTokens,
        promptIds: c.promptIds,
        completionIds: c.completionIds,
        logprobs: c.logprobs,
        versions: c.versions,
        timings: c.timings,
        finishReason: c.finishReason,
        toolCalls: c.toolCalls,
        toolParseFailed: c.toolParseFailed,
        trainable: c.trainable,
        untrainableReason: c.untrainableReason,
        request: c.request,
        response: c.response,
      });
    }
    await store.closeSession(s.id, { expectedCalls: t.calls.length, endedAt: s.endedAt ?? undefined });
    for (const r of t.rewards)
      await store.addReward({ sessionId: s.id, rewardVersion: r.rewardVersion, outcome: r.outcome, process: r.process, details: r.details, createdAt: r.createdAt });
    imported++;
  }
  return { imported, skipped };
}

/** What a reward function returns for one trajectory. */
export interface Score {
  outcome: number;
  process?: { callId: string; value: number; source?: string | null }[];
  details?: Json;
}

export type RewardFunction = (trajectory: Trajectory) => Score | Promise<Score>;

export interface RescoreOptions {
  /** The reward version the new scores go under (must differ from versions already written). */
  rewardVersion: string;
  /** true: write each score with addReward; false: only return them. */
  write: boolean;
  /** Which completed sessions (default: all, in completion order). */
  query?: Omit<TrajectoryQuery, 'rewardVersion' | 'rewarded'>;
  /** Skip sessions already rewarded under rewardVersion (continue an interrupted re-score). Without
   * it such a session fails the re-score with ALREADY_REWARDED. */
  resume?: boolean;
}

export interface RescoreResult {
  /** The new rewards in completion order (written or not). */
  rewards: NewReward[];
  written: number;
}

/** Replays the completed sessions through `fn` and writes (or returns) the new rewards. */
export async function rescore(store: PoolStore, fn: RewardFunction, options: RescoreOptions): Promise<RescoreResult> {
  if (typeof fn !== 'function') throw new TypeError('fn: expected a reward function');
  const rewardVersion = checkId('options.rewardVersion', options?.rewardVersion);
  if (typeof options.write !== 'boolean') throw new TypeError('options.write: expected a boolean (write the new rewards, or only return them)');
  const query: TrajectoryQuery = { ...options.query, ...(options.resume ? { rewardVersion, rewarded: false } : {}) };
  const rewards: NewReward[] = [];
  let written = 0;
  for await (const t of store.trajectories(query)) {
    const score = await fn(t);
    const reward: NewReward = { sessionId: t.session.id, rewardVersion, outcome: score.outcome, process: score.process ?? [], details: score.details ?? null };
    if (options.write) {
      await store.addReward(reward);
      written++;
    } else {
      normReward(reward, Date.now); // the same checks a write would make
    }
    rewards.push(reward);
  }
  return { rewards, written };
}
