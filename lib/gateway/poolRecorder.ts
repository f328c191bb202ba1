// PoolRecorder: the gateway's CallRecorder over a data pool (any PoolStore). Sessions become pool
// sessions, each call is appended as it is recorded (durably, before the agent gets its answer), and
// closing or failing a session closes or fails it in the pool with the number of calls the gateway
// recorded, so a call lost on the way is an error, not a silent gap.
//
// Tasks and groups: the pool needs a task per session. A session created without task_id runs its
// own task (id = the session id, spec { scaffold, metadata }); a task id the pool does not know is
// created on first use with spec null (register it first with POST /v1/tasks to give it a spec). A
// group_id must name an existing group (POST /v1/groups) unless group_size is given, which creates
// it; without task_id, a session of an existing group runs the group's task.
//
// Calls the pool cannot hold token-exact are still stored, never dropped: a failed call, or one from
// an upstream without token ids, is stored with empty token arrays, not trainable, with its reason;
// its status and error sit in `response`. A call whose token data the pool refuses (e.g. a positive
// logprob from an upstream) is stored the same way with the pool's reason.
import type { ParseErrorKind } from '../model/chatParse.js';
import { PoolErrorCode, isPoolError } from '../pool/errors.js';
import type { GroupRecord, NewCall, PoolStore } from '../pool/types.js';
import { GatewayErrorCode, gatewayError } from './errors.js';
import type { CallRecord, CallRecorder, SessionInfo } from './recorder.js';

export interface PoolRecorderOptions {
  /** How long a call waits for its parent call to be written (choices of one request are written in
   *  turn; a concurrent request may continue one still being written), ms. Default 10 000. */
  parentWaitMs?: number;
}

/** The parse-error kinds that mean a tool call did not parse (the pool's toolParseFailed). */
export const TOOL_CALL_ERROR_KINDS: ReadonlySet<ParseErrorKind> = new Set<ParseErrorKind>([
  'missing_name', 'missing_arguments', 'bad_json', 'arguments_not_object', 'unknown_tool', 'unterminated_tool_call',
]);

/** How a call's tokens were stored: whole, or without them (so no child can link to it). */
type Stored = 'tokens' | 'no-tokens';

interface SessionState {
  /** Calls handed over by the gateway. */
  handed: number;
  stored: Map<string, Stored>;
  /** Parent call id -> children waiting for it to be written. */
  waiting: Map<string, (() => void)[]>;
}

export class PoolRecorder implements CallRecorder {
  private readonly states = new Map<string, SessionState>();
  private readonly parentWaitMs: number;

  constructor(readonly pool: PoolStore, options: PoolRecorderOptions = {}) {
    if (typeof pool?.appendCall !== 'function') throw new TypeError('pool: expected a PoolStore');
    this.parentWaitMs = options.parentWaitMs ?? 10_000;
  }

  private state(sessionId: string): SessionState {
    let s = this.states.get(sessionId);
    if (s === undefined) this.states.set(sessionId, (s = { handed: 0, stored: new Map(), waiting: new Map() }));
    return s;
  }

  async sessionCreated(info: SessionInfo): Promise<void> {
    const pool = this.pool;
    let taskId = info.taskId;
    let group: GroupRecord | undefined;
    if (info.groupId !== undefined) {
      group = await orUndefined(pool.getGroup(info.groupId), PoolErrorCode.UNKNOWN_GROUP);
      if (group === undefined && info.groupSize === undefined)
        throw gatewayError(GatewayErrorCode.GROUP_NOT_FOUND,
          `no group ${JSON.stringify(info.groupId)}: create it with POST /v1/groups, or pass group_size to create it with the session`, 'group_id');
      if (group !== undefined && info.groupSize !== undefined && group.size !== info.groupSize)
        throw gatewayError(GatewayErrorCode.INVALID_REQUEST,
          `group_size: group ${JSON.stringify(group.id)} exists with size ${group.size}, not ${info.groupSize}`, 'group_size');
      taskId ??= group?.taskId;
    }
    const ownTask = taskId === undefined;
    taskId ??= info.id;
    await ensureTask(pool, taskId, ownTask ? { scaffold: info.scaffold ?? null, metadata: info.metadata ?? {} } : null);
    if (info.groupId !== undefined && group === undefined) await ensureGroup(pool, { id: info.groupId, taskId, size: info.groupSize! });
    try {
      await pool.openSession({
        id: info.id, taskId, groupId: info.groupId ?? null, scaffold: info.scaffold ?? '', metadata: info.metadata ?? {}, createdAt: info.createdAt,
      });
    } catch (e) {
      if (isPoolError(e, PoolErrorCode.GROUP_TASK_MISMATCH)) throw gatewayError(GatewayErrorCode.INVALID_REQUEST, e.message, 'group_id');
      throw e;
    }
    info.taskId = taskId;
    this.state(info.id);
  }

  async callRecorded(rec: CallRecord): Promise<void> {
    const st = this.state(rec.sessionId);
    st.handed++;
    let stored: Stored | undefined;
    try {
      const notes: string[] = [];
      let parentId = rec.link.relation === 'continue' || rec.link.relation === 'fork' ? rec.link.parent : null;
      if (parentId !== null && (await this.parentStored(st, parentId)) !== 'tokens') {
        notes.push(`its parent call ${parentId} was not stored with its tokens, so it is stored as a root`);
        parentId = null;
      }
      const call = toNewCall(rec, parentId, notes);
      try {
        await this.pool.appendCall(rec.sessionId, call);
        stored = rec.promptIds !== undefined && completionWhole(rec) ? 'tokens' : 'no-tokens';
      } catch (e) {
        // The pool refused the token data (its argument checks): keep the call, without its tokens.
        if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
        notes.push(`the pool refused its token data: ${e.message}`);
        await this.pool.appendCall(rec.sessionId, withoutTokens(call, `the pool refused its token data: ${e.message}`, notes));
        stored = 'no-tokens';
      }
    } finally {
      // Children waiting on this call go on either way (without the link when it was not stored).
      st.stored.set(rec.id, stored ?? 'no-tokens');
      for (const wake of st.waiting.get(rec.id) ?? []) wake();
      st.waiting.delete(rec.id);
    }
  }

  /** Waits (bounded) until `parentId` was written; what was stored of it, or undefined. */
  private async parentStored(st: SessionState, parentId: string): Promise<Stored | undefined> {
    if (!st.stored.has(parentId)) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        const list = st.waiting.get(parentId) ?? [];
        list.push(resolve);
        st.waiting.set(parentId, list);
        timer = setTimeout(resolve, this.parentWaitMs);
      });
      clearTimeout(timer);
    }
    return st.stored.get(parentId);
  }

  async sessionClosed(info: SessionInfo): Promise<void> {
    const expectedCalls = info.calls ?? this.states.get(info.id)?.handed ?? 0;
    await this.pool.closeSession(info.id, { expectedCalls, endedAt: info.closedAt });
    this.states.delete(info.id);
  }

  async sessionFailed(info: SessionInfo): Promise<void> {
    await this.pool.failSession(info.id, { reason: info.failReason, endedAt: info.closedAt });
    this.states.delete(info.id);
  }
}

/** Completion ids with a logprob and a version per token (an upstream may return them partly). */
function completionWhole(rec: CallRecord): boolean {
  const n = rec.completionIds?.length;
  return n !== undefined && rec.logprobs?.length === n && rec.versions?.length === n;
}

/** The pool's form of a gateway call record; `notes` gets what the mapping had to change. */
export function toNewCall(rec: CallRecord, parentId: string | null, notes: string[] = []): NewCall {
  const whole = completionWhole(rec);
  const promptIds = rec.promptIds ?? new Int32Array(0);
  if (rec.completionIds !== undefined && !whole) notes.push('its completion ids came without a logprob and version per token; stored without them');
  const trainable = rec.trainable && whole && rec.promptIds !== undefined;
  const t = rec.timings;
  // Upstream and gateway clocks round differently: keep the pool's order received <= admitted <=
  // first token <= done by clamping the inner times into their neighbours.
  const doneAt = Math.max(t.doneAt, t.receivedAt);
  const firstTokenAt = t.firstTokenAt === null ? null : clamp(t.firstTokenAt, t.receivedAt, doneAt);
  const admittedAt = t.admittedAt === null ? null : clamp(t.admittedAt, t.receivedAt, firstTokenAt ?? doneAt);
  const call: NewCall = {
    id: rec.id,
    parentId,
    promptIds,
    completionIds: whole ? rec.completionIds! : new Int32Array(0),
    logprobs: whole ? rec.logprobs! : new Float64Array(0),
    versions: whole ? rec.versions! : new Int32Array(0),
    timings: { queuedAt: t.receivedAt, admittedAt, firstTokenAt, doneAt },
    finishReason: rec.finishReason ?? null,
    toolCalls: rec.toolCalls,
    toolParseFailed: rec.parseErrors.some((e) => TOOL_CALL_ERROR_KINDS.has(e.kind)),
    trainable,
    untrainableReason: trainable ? null : rec.notTrainableReason || (rec.trainable ? 'its token data is incomplete' : 'not trainable'),
    request: rec.request,
    response: {
      protocol: rec.protocol, choice: rec.choice, status: rec.status, error: rec.error ?? null,
      content: rec.content ?? null, reasoning: rec.reasoning ?? null, toolCalls: rec.toolCalls, finishReason: rec.finishReason ?? null,
      parseErrors: rec.parseErrors, usage: rec.usage, notes: [...(rec.notes ?? []), ...notes],
    },
  };
  if (parentId !== null) call.sharedTokens = rec.link.forkTokens;
  return call;
}

function withoutTokens(call: NewCall, reason: string, notes: string[]): NewCall {
  return {
    ...call, parentId: null, sharedTokens: undefined, promptIds: [], completionIds: [], logprobs: [], versions: [],
    trainable: false, untrainableReason: reason, response: { ...(call.response as object), notes },
  };
}

const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);

/** `p`'s value, or undefined when it rejects with `code`. */
async function orUndefined<T>(p: Promise<T>, code: PoolErrorCode): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    if (isPoolError(e, code)) return undefined;
    throw e;
  }
}

/** The task, created with `spec` when the pool does not have it (a concurrent creator may win). */
export async function ensureTask(pool: PoolStore, id: string, spec: unknown): Promise<void> {
  if ((await orUndefined(pool.getTask(id), PoolErrorCode.UNKNOWN_TASK)) !== undefined) return;
  await orUndefined(pool.addTask({ id, spec }), PoolErrorCode.DUPLICATE_ID);
}

/** The group, created when absent; an existing one must match (task and size). */
export async function ensureGroup(pool: PoolStore, group: { id: string; taskId: string; size: number }): Promise<GroupRecord> {
  const made = await orUndefined(pool.addGroup(group), PoolErrorCode.DUPLICATE_ID);
  if (made !== undefined) return made;
  const existing = await pool.getGroup(group.id);
  if (existing.taskId !== group.taskId || existing.size !== group.size)
    throw gatewayError(GatewayErrorCode.CONFLICT,
      `group ${JSON.stringify(group.id)} exists for task ${JSON.stringify(existing.taskId)} with size ${existing.size}`, 'group_id');
  return existing;
}
