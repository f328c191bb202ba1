// Argument checks and normalisation shared by every store, so that each raises the same error for the
// same bad input before touching its storage. Inputs become plain rows: ids checked or generated,
// token arrays copied into Int32Array / Float32Array (the caller may reuse its buffers), JSON values
// serialised once (what a store keeps is the JSON text; what reads back is its parse).
import { randomUUID } from 'node:crypto';

import { KernelErrorCode, rangeError, typeError } from '../errors.js';
import { expectFinite, expectInt } from '../validate.js';
import { PoolError, PoolErrorCode } from './errors.js';
import {
  type CallRecord,
  type CallRelation,
  DEFAULT_REWARD_VERSION,
  type NewCall,
  type NewGroup,
  type NewPolicyVersion,
  type NewReward,
  type NewSession,
  type NewTask,
  type SessionQuery,
  type TokenIds,
  type TrajectoryQuery,
  type AbandonQuery,
} from './types.js';

const MAX_ID_LENGTH = 256;
const INT32_MAX = 2 ** 31 - 1;

export function checkId(name: string, value: unknown): string {
  if (typeof value !== 'string') throw typeError(`${name}: expected a string id, got ${value === null ? 'null' : typeof value}`);
  if (value.length === 0 || value.length > MAX_ID_LENGTH)
    throw rangeError(`${name}: expected 1 to ${MAX_ID_LENGTH} characters, got ${value.length}`);
  return value;
}

const idOrNew = (name: string, value: unknown) => (value === undefined ? randomUUID() : checkId(name, value));

/** JSON text of `value`; undefined becomes null. Rejects what JSON cannot hold (BigInt, cycles). */
export function jsonText(name: string, value: unknown): string {
  if (value === undefined) return 'null';
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw typeError(`${name}: expected a JSON-serialisable value (${(error as Error).message})`);
  }
  if (text === undefined) throw typeError(`${name}: expected a JSON-serialisable value, got ${typeof value}`);
  return text;
}

function timestamp(name: string, value: unknown, now: () => number): number {
  return value === undefined ? now() : expectFinite(name, value, 0);
}

function optionalString(name: string, value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw typeError(`${name}: expected a string or null, got ${typeof value}`);
  return value;
}

/** Copies token ids into a fresh Int32Array, each checked to be an integer in [0, 2^31). */
export function tokenArray(name: string, value: unknown): Int32Array {
  if (!(value instanceof Int32Array) && !Array.isArray(value))
    throw typeError(`${name}: expected an Int32Array or an array of token ids, got ${describeValue(value)}`);
  if (value instanceof Int32Array) {
    // Already int32: only the sign needs checking (the common, fast path).
    const out = value.slice();
    for (let i = 0; i < out.length; i++) if (out[i] < 0) throw rangeError(`${name}[${i}]: expected a token id in [0, ${INT32_MAX}], got ${out[i]}`);
    return out;
  }
  const src = value as TokenIds;
  const out = new Int32Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const t = src[i];
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t > INT32_MAX)
      throw rangeError(`${name}[${i}]: expected a token id in [0, ${INT32_MAX}], got ${String(t)}`);
    out[i] = t;
  }
  return out;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (ArrayBuffer.isView(value)) return value.constructor.name;
  return typeof value;
}

export interface TaskRow {
  id: string;
  spec: string;
  difficulty: number | null;
  createdAt: number;
}

export function normTask(input: NewTask, now: () => number): TaskRow {
  if (typeof input !== 'object' || input === null) throw typeError('task: expected an object');
  if (input.spec === undefined) throw typeError('task.spec: expected a JSON value, got undefined');
  return {
    id: idOrNew('task.id', input.id),
    spec: jsonText('task.spec', input.spec),
    difficulty: input.difficulty === undefined || input.difficulty === null ? null : expectFinite('task.difficulty', input.difficulty),
    createdAt: timestamp('task.createdAt', input.createdAt, now),
  };
}

export interface GroupRow {
  id: string;
  taskId: string;
  size: number;
  createdAt: number;
}

export function normGroup(input: NewGroup, now: () => number): GroupRow {
  if (typeof input !== 'object' || input === null) throw typeError('group: expected an object');
  return {
    id: idOrNew('group.id', input.id),
    taskId: checkId('group.taskId', input.taskId),
    size: expectInt('group.size', input.size, 1, 1 << 20),
    createdAt: timestamp('group.createdAt', input.createdAt, now),
  };
}

export interface SessionRow {
  id: string;
  taskId: string;
  groupId: string | null;
  scaffold: string;
  metadata: string;
  createdAt: number;
}

export function normSession(input: NewSession, now: () => number): SessionRow {
  if (typeof input !== 'object' || input === null) throw typeError('session: expected an object');
  if (typeof input.scaffold !== 'string') throw typeError(`session.scaffold: expected a string, got ${describeValue(input.scaffold)}`);
  return {
    id: idOrNew('session.id', input.id),
    taskId: checkId('session.taskId', input.taskId),
    groupId: input.groupId === undefined || input.groupId === null ? null : checkId('session.groupId', input.groupId),
    scaffold: input.scaffold,
    metadata: jsonText('session.metadata', input.metadata ?? {}),
    createdAt: timestamp('session.createdAt', input.createdAt, now),
  };
}

/** A checked call, before the store resolves its parent (sharedTokens may still be unknown). */
export interface CallRow {
  id: string;
  parentId: string | null;
  sharedTokens: number | undefined;
  promptIds: Int32Array;
  completionIds: Int32Array;
  logprobs: Float32Array;
  versions: Int32Array;
  queuedAt: number;
  admittedAt: number | null;
  firstTokenAt: number | null;
  doneAt: number;
  finishReason: string | null;
  toolCalls: string;
  toolParseFailed: boolean;
  trainable: boolean;
  untrainableReason: string | null;
  request: string;
  response: string;
}

export function normCall(input: NewCall): CallRow {
  if (typeof input !== 'object' || input === null) throw typeError('call: expected an object');
  const promptIds = tokenArray('call.promptIds', input.promptIds);
  const completionIds = tokenArray('call.completionIds', input.completionIds);
  const n = completionIds.length;

  if (!(input.logprobs instanceof Float32Array) && !(input.logprobs instanceof Float64Array) && !Array.isArray(input.logprobs))
    throw typeError(`call.logprobs: expected a Float32Array, a Float64Array or an array of numbers, got ${describeValue(input.logprobs)}`);
  if (input.logprobs.length !== n)
    throw rangeError(`call.logprobs: expected ${n} values (one per completion token), got ${input.logprobs.length}`);
  const logprobs = Float32Array.from(input.logprobs as ArrayLike<number>);
  for (let i = 0; i < n; i++) {
    // Checked as given, before rounding to float32 (a plain array may hold anything).
    const v = (input.logprobs as ArrayLike<unknown>)[i];
    if (typeof v !== 'number' || !Number.isFinite(v))
      throw rangeError(`call.logprobs[${i}]: expected a finite logprob, got ${String(v)}`, KernelErrorCode.NON_FINITE);
    // log-softmax values are <= 0 exactly in floating point; a positive one is a probability or a bug.
    if (v > 0) throw rangeError(`call.logprobs[${i}]: expected a logprob <= 0, got ${v}`);
  }

  let versions: Int32Array;
  if (typeof input.versions === 'number') {
    versions = new Int32Array(n).fill(expectInt('call.versions', input.versions, 0, INT32_MAX));
  } else {
    if (!(input.versions instanceof Int32Array) && !Array.isArray(input.versions))
      throw typeError(`call.versions: expected a version, an Int32Array or an array, got ${describeValue(input.versions)}`);
    if (input.versions.length !== n)
      throw rangeError(`call.versions: expected ${n} versions (one per completion token), got ${input.versions.length}`);
    versions = new Int32Array(n);
    for (let i = 0; i < n; i++) versions[i] = expectInt(`call.versions[${i}]`, (input.versions as ArrayLike<number>)[i], 0, INT32_MAX);
  }

  const t = input.timings;
  if (typeof t !== 'object' || t === null) throw typeError('call.timings: expected { queuedAt, firstTokenAt, doneAt }');
  const queuedAt = expectFinite('call.timings.queuedAt', t.queuedAt, 0);
  const admittedAt = t.admittedAt === undefined || t.admittedAt === null ? null : expectFinite('call.timings.admittedAt', t.admittedAt, queuedAt);
  const firstTokenAt =
    t.firstTokenAt === undefined || t.firstTokenAt === null ? null : expectFinite('call.timings.firstTokenAt', t.firstTokenAt, admittedAt ?? queuedAt);
  const doneAt = expectFinite('call.timings.doneAt', t.doneAt, firstTokenAt ?? queuedAt);

  if (typeof input.trainable !== 'boolean') throw typeError(`call.trainable: expected a boolean, got ${describeValue(input.trainable)}`);
  const untrainableReason = optionalString('call.untrainableReason', input.untrainableReason);
  if (input.trainable && untrainableReason !== null) throw rangeError('call.untrainableReason: must be null for a trainable call');
  if (!input.trainable && !untrainableReason) throw rangeError('call.untrainableReason: required (a non-empty string) when trainable is false');
  if (input.toolParseFailed !== undefined && typeof input.toolParseFailed !== 'boolean')
    throw typeError(`call.toolParseFailed: expected a boolean, got ${describeValue(input.toolParseFailed)}`);

  const parentId = input.parentId === undefined || input.parentId === null ? null : checkId('call.parentId', input.parentId);
  let sharedTokens: number | undefined;
  if (input.sharedTokens !== undefined) {
    if (parentId === null) throw rangeError('call.sharedTokens: only meaningful with a parentId');
    sharedTokens = expectInt('call.sharedTokens', input.sharedTokens, 0, promptIds.length);
  }

  return {
    id: idOrNew('call.id', input.id),
    parentId,
    sharedTokens,
    promptIds,
    completionIds,
    logprobs,
    versions,
    queuedAt,
    admittedAt,
    firstTokenAt,
    doneAt,
    finishReason: optionalString('call.finishReason', input.finishReason),
    toolCalls: jsonText('call.toolCalls', input.toolCalls ?? null),
    toolParseFailed: input.toolParseFailed ?? false,
    trainable: input.trainable,
    untrainableReason,
    request: jsonText('call.request', input.request ?? null),
    response: jsonText('call.response', input.response ?? null),
  };
}

/** The record of a stored call (fresh copies of its arrays when `copy`). */
export function callRecordOf(c: CallRow, sessionId: string, index: number, sharedTokens: number, relation: CallRelation, copy: boolean): CallRecord {
  const own = <T extends Int32Array | Float32Array>(a: T): T => (copy ? (a.slice() as T) : a);
  return {
    id: c.id,
    sessionId,
    index,
    parentId: c.parentId,
    sharedTokens,
    relation,
    promptIds: own(c.promptIds),
    completionIds: own(c.completionIds),
    logprobs: own(c.logprobs),
    versions: own(c.versions),
    timings: { queuedAt: c.queuedAt, admittedAt: c.admittedAt, firstTokenAt: c.firstTokenAt, doneAt: c.doneAt },
    finishReason: c.finishReason,
    toolCalls: JSON.parse(c.toolCalls),
    toolParseFailed: c.toolParseFailed,
    trainable: c.trainable,
    untrainableReason: c.untrainableReason,
    request: JSON.parse(c.request),
    response: JSON.parse(c.response),
  };
}

/** The tokens a child's prompt may share with its parent: the parent's prompt then completion. */
function parentToken(prompt: Int32Array, completion: Int32Array, i: number): number {
  return i < prompt.length ? prompt[i] : completion[i - prompt.length];
}

/**
 * Resolves a call's shared prefix against its parent: computed (longest common prefix) when the
 * caller gave none, checked token by token when it did. Returns the count and the relation.
 */
export function resolvePrefix(
  call: CallRow,
  parent: { id: string; promptIds: Int32Array; completionIds: Int32Array } | null,
): { sharedTokens: number; relation: CallRelation } {
  if (parent === null) return { sharedTokens: 0, relation: 'root' };
  const parentLen = parent.promptIds.length + parent.completionIds.length;
  const limit = Math.min(call.promptIds.length, parentLen);
  let shared: number;
  if (call.sharedTokens === undefined) {
    shared = 0;
    while (shared < limit && call.promptIds[shared] === parentToken(parent.promptIds, parent.completionIds, shared)) shared++;
  } else {
    shared = call.sharedTokens;
    if (shared > limit)
      throw new PoolError(PoolErrorCode.PREFIX_MISMATCH, `call.sharedTokens: ${shared} exceeds the parent call ${parent.id}'s ${parentLen} tokens`);
    for (let i = 0; i < shared; i++) {
      const expected = parentToken(parent.promptIds, parent.completionIds, i);
      if (call.promptIds[i] !== expected)
        throw new PoolError(
          PoolErrorCode.PREFIX_MISMATCH,
          `call.promptIds[${i}]: token ${call.promptIds[i]} differs from the parent call ${parent.id}'s ${expected} inside the claimed shared prefix of ${shared}`,
        );
    }
  }
  return { sharedTokens: shared, relation: shared === parentLen ? 'continue' : 'fork' };
}

export interface RewardRow {
  sessionId: string;
  rewardVersion: string;
  outcome: number;
  process: { callId: string; value: number; source: string | null }[];
  details: string;
  createdAt: number;
}

export function normReward(input: NewReward, now: () => number): RewardRow {
  if (typeof input !== 'object' || input === null) throw typeError('reward: expected an object');
  const process = input.process ?? [];
  if (!Array.isArray(process)) throw typeError('reward.process: expected an array of { callId, value }');
  return {
    sessionId: checkId('reward.sessionId', input.sessionId),
    rewardVersion: input.rewardVersion === undefined ? DEFAULT_REWARD_VERSION : checkId('reward.rewardVersion', input.rewardVersion),
    outcome: expectFinite('reward.outcome', input.outcome),
    process: process.map((p, i) => {
      if (typeof p !== 'object' || p === null) throw typeError(`reward.process[${i}]: expected { callId, value }`);
      return {
        callId: checkId(`reward.process[${i}].callId`, p.callId),
        value: expectFinite(`reward.process[${i}].value`, p.value),
        source: optionalString(`reward.process[${i}].source`, p.source),
      };
    }),
    details: jsonText('reward.details', input.details ?? null),
    createdAt: timestamp('reward.createdAt', input.createdAt, now),
  };
}

export interface PolicyVersionRow {
  version: number;
  metadata: string;
  createdAt: number;
}

export function normPolicyVersion(input: NewPolicyVersion, now: () => number): PolicyVersionRow {
  if (typeof input !== 'object' || input === null) throw typeError('policyVersion: expected an object');
  return {
    version: expectInt('policyVersion.version', input.version, 0, INT32_MAX),
    metadata: jsonText('policyVersion.metadata', input.metadata ?? null),
    createdAt: timestamp('policyVersion.createdAt', input.createdAt, now),
  };
}

export function normSessionQuery(query: SessionQuery | undefined): SessionQuery {
  const q = query ?? {};
  if (q.status !== undefined && !['open', 'closed', 'failed', 'abandoned'].includes(q.status))
    throw rangeError(`query.status: expected open, closed, failed or abandoned, got ${String(q.status)}`);
  if (q.afterSeq !== undefined) expectInt('query.afterSeq', q.afterSeq, 0);
  if (q.limit !== undefined) expectInt('query.limit', q.limit, 1);
  return q;
}

/** Min and max over the per-token versions of several calls (null when there are no tokens). */
export function versionRange(calls: readonly { versions: Int32Array }[]): { min: number | null; max: number | null } {
  let min: number | null = null;
  let max: number | null = null;
  for (const c of calls)
    for (const v of c.versions) {
      if (min === null || v < min) min = v;
      if (max === null || v > max) max = v;
    }
  return { min, max };
}

export function normTrajectoryQuery(query: TrajectoryQuery): { version: string | undefined; after: number } {
  if (typeof query !== 'object' || query === null) throw typeError('query: expected an object');
  if (query.rewarded !== undefined && typeof query.rewarded !== 'boolean') throw typeError(`query.rewarded: expected a boolean, got ${typeof query.rewarded}`);
  if (query.untilSeq !== undefined) expectInt('query.untilSeq', query.untilSeq, 0);
  if (query.taskId !== undefined) checkId('query.taskId', query.taskId);
  if (query.groupId !== undefined) checkId('query.groupId', query.groupId);
  const version =
    query.rewardVersion !== undefined
      ? checkId('query.rewardVersion', query.rewardVersion)
      : query.rewarded === undefined
        ? undefined
        : DEFAULT_REWARD_VERSION;
  return { version, after: query.afterSeq === undefined ? 0 : expectInt('query.afterSeq', query.afterSeq, 0) };
}

export function normAbandonQuery(query: AbandonQuery): AbandonQuery & { reason: string } {
  if (typeof query !== 'object' || query === null) throw typeError('query: expected an object');
  if (query.owner !== undefined) checkId('query.owner', query.owner);
  if (query.exceptOwner !== undefined) checkId('query.exceptOwner', query.exceptOwner);
  if (query.createdBefore !== undefined) expectFinite('query.createdBefore', query.createdBefore);
  if (query.reason !== undefined && typeof query.reason !== 'string') throw typeError(`query.reason: expected a string, got ${typeof query.reason}`);
  return { ...query, reason: query.reason ?? 'abandoned: its writer stopped before closing it' };
}

export function endTime(value: unknown, now: () => number): number {
  return value === undefined ? now() : expectFinite('options.endedAt', value, 0);
}

export function failOptions(options: { reason?: string; status?: 'failed' | 'abandoned' }): { status: 'failed' | 'abandoned'; reason: string | null } {
  if (typeof options !== 'object' || options === null) throw typeError('options: expected an object');
  const status = options.status ?? 'failed';
  if (status !== 'failed' && status !== 'abandoned') throw rangeError(`options.status: expected failed or abandoned, got ${String(status)}`);
  return { status, reason: optionalString('options.reason', options.reason) };
}

// ---- state checks every store makes, with the same codes ----

export function requireOpen(s: { id: string; status: string }): void {
  if (s.status === 'closed') throw new PoolError(PoolErrorCode.SESSION_CLOSED, `session ${JSON.stringify(s.id)} is closed`);
  if (s.status !== 'open') throw new PoolError(PoolErrorCode.SESSION_FAILED, `session ${JSON.stringify(s.id)} is ${s.status}`);
}

export function requireClosed(s: { id: string; status: string }): void {
  if (s.status !== 'closed') throw new PoolError(PoolErrorCode.SESSION_NOT_CLOSED, `session ${JSON.stringify(s.id)} is ${s.status}, not closed`);
}
