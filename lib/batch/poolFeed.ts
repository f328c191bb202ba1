// The join between the data pool and the scheduler. The scheduler's unit is a group (several rollouts
// of one task, scored against each other), so its TaskId is the POOL GROUP's id; the pool task is
// what the rollouts run. The task runner declares groups here: the feed creates the pool group, waits
// for a queue slot (back-pressure) and submits it. It then watches the pool and hands each session to
// the scheduler once it is closed AND rewarded under the reward version: newly closed sessions come
// from a closeSeq cursor, closed-but-unrewarded ones wait in a pending set that every poll re-checks.
//
// Failed or abandoned sessions. The pool lets a retry replace them in the group, so the choice is the
// runner's (option onFailedSession): 'abort' (default) gives the group up in the scheduler at the
// first failure, with the reason, since a group short of a member cannot complete and would hold the
// window's head; 'await-retry' ignores failures, for runners that open a replacement session (the
// group then completes when `size` sessions are closed and rewarded; abortGroup() gives up by hand).
//
// Restart: a feed started with afterSeq = an earlier feed's `cursor` skips what that feed scanned;
// trackGroup() re-submits an existing pool group and rescans its closed sessions, so nothing closed
// before the cursor is missed. Which groups to re-track is the runner's knowledge (those submitted
// and not yet trained on).
import { rangeError, typeError } from '../errors.js';
import { expectInt } from '../validate.js';
import { DEFAULT_REWARD_VERSION, type GroupRecord, type PoolStore, type SessionRecord } from '../pool/types.js';
import type { GroupSink } from '../scheduler/types.js';
import type { TrajectoryRollout } from './types.js';

/** The scheduler side the feed drives: a GroupSink that also tells its current policy version. */
export type FeedSink = GroupSink<TrajectoryRollout> & { readonly policyVersion: number };

export type FailedSessionPolicy = 'abort' | 'await-retry';

export interface PoolFeedOptions {
  store: PoolStore;
  scheduler: FeedSink;
  /** Sessions count once rewarded under this version (default 'default'). */
  rewardVersion?: string;
  /** Poll period in ms (default 200); 0 disables the timer (poll() / notify() by hand). */
  pollIntervalMs?: number;
  /** Resume after this closeSeq (an earlier feed's cursor); default 0. */
  afterSeq?: number;
  /** Default 'abort' (see the file comment). */
  onFailedSession?: FailedSessionPolicy;
  /** Sessions read per page while scanning (default 256). */
  pageSize?: number;
  /** Errors of timer-driven polls (default: a process warning). A poll() caller gets its own. */
  onError?: (error: unknown) => void;
}

export interface PollResult {
  /** Sessions handed to the scheduler in this pass. */
  delivered: number;
  /** Groups aborted in this pass. */
  aborted: number;
  cursor: number;
}

export interface PoolFeedStats {
  /** Groups submitted and not yet complete or aborted. */
  tracked: number;
  /** Closed sessions waiting for their reward. */
  pending: number;
  delivered: number;
  completedGroups: number;
  abortedGroups: number;
  cursor: number;
}

interface Tracked {
  id: string;
  size: number;
  /** Closed sessions not yet handed over (awaiting a reward, or a scheduler version). */
  pending: Set<string>;
  delivered: Set<string>;
  /** Its closed sessions must be listed once (newly tracked: some may predate the cursor). */
  scan: boolean;
}

export class PoolFeed {
  readonly store: PoolStore;
  readonly scheduler: FeedSink;
  readonly rewardVersion: string;
  readonly pollIntervalMs: number;
  readonly onFailedSession: FailedSessionPolicy;
  private readonly pageSize: number;
  private readonly onError: (error: unknown) => void;
  private readonly tracked = new Map<string, Tracked>();
  private seq: number;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  /** Passes run one after another; `queued` is the next one not yet started (calls coalesce into it). */
  private tail: Promise<unknown> = Promise.resolve();
  private queued: Promise<PollResult> | null = null;
  private readonly counts = { delivered: 0, completedGroups: 0, abortedGroups: 0 };

  constructor(options: PoolFeedOptions) {
    if (typeof options !== 'object' || options === null) throw typeError('options: expected an object { store, scheduler, ... }');
    if (typeof options.store?.listSessions !== 'function') throw typeError('options.store: expected a PoolStore');
    const s = options.scheduler;
    if (typeof s?.submit !== 'function' || typeof s.complete !== 'function' || typeof s.abort !== 'function')
      throw typeError('options.scheduler: expected a scheduler (GroupSink with policyVersion)');
    this.store = options.store;
    this.scheduler = s;
    const rv = options.rewardVersion ?? DEFAULT_REWARD_VERSION;
    if (typeof rv !== 'string' || rv.length === 0) throw typeError(`options.rewardVersion: expected a non-empty string, got ${String(rv)}`);
    this.rewardVersion = rv;
    this.pollIntervalMs = expectInt('options.pollIntervalMs', options.pollIntervalMs ?? 200, 0);
    this.seq = expectInt('options.afterSeq', options.afterSeq ?? 0, 0);
    const policy = options.onFailedSession ?? 'abort';
    if (policy !== 'abort' && policy !== 'await-retry')
      throw rangeError(`options.onFailedSession: expected 'abort' or 'await-retry', got ${String(policy)}`);
    this.onFailedSession = policy;
    this.pageSize = expectInt('options.pageSize', options.pageSize ?? 256, 1);
    if (options.onError !== undefined && typeof options.onError !== 'function')
      throw typeError(`options.onError: expected a function, got ${typeof options.onError}`);
    this.onError = options.onError ?? ((e) => process.emitWarning(`forge-rl PoolFeed: poll failed: ${(e as Error)?.stack ?? e}`));
    if (this.pollIntervalMs > 0) this.arm();
  }

  /** Every session closed at or before this closeSeq has been seen (persist it to resume). */
  get cursor(): number {
    return this.seq;
  }

  stats(): PoolFeedStats {
    let pending = 0;
    for (const g of this.tracked.values()) pending += g.pending.size;
    return { tracked: this.tracked.size, pending, ...this.counts, cursor: this.seq };
  }

  /**
   * Creates a pool group of `size` rollouts of `taskId`, waits for a queue slot and submits it to the
   * scheduler. Resolves with the group once submitted: the runner then opens its sessions.
   */
  async declareGroup(group: { taskId: string; size: number; id?: string }, options: { signal?: AbortSignal } = {}): Promise<GroupRecord> {
    this.checkOpen();
    const record = await this.store.addGroup(group);
    await this.submit(record, options.signal);
    return record;
  }

  /** Submits an existing pool group (after a restart) and picks up the sessions it already has. */
  async trackGroup(groupId: string, options: { signal?: AbortSignal } = {}): Promise<GroupRecord> {
    this.checkOpen();
    const record = await this.store.getGroup(groupId);
    if (this.tracked.has(record.id)) throw rangeError(`groupId: group ${JSON.stringify(record.id)} is already tracked`);
    await this.submit(record, options.signal);
    return record;
  }

  /** Gives a group up (a runner that stopped retrying): aborts it in the scheduler and stops watching it. */
  abortGroup(groupId: string, reason: string): void {
    this.checkOpen();
    if (!this.tracked.has(groupId)) throw rangeError(`groupId: group ${JSON.stringify(groupId)} is not tracked by this feed`);
    this.abort(groupId, reason);
  }

  /** Something changed in the pool (an in-process writer closed or rewarded a session): poll now. */
  notify(): void {
    if (this.closed) return;
    this.poll().catch(this.onError);
  }

  /** One pass over the pool; passes never overlap, and calls made while one runs share the next. */
  poll(): Promise<PollResult> {
    if (this.closed) return Promise.reject(rangeError('poll: the feed was closed'));
    if (this.queued) return this.queued;
    const pass = this.tail.then(() => {
      this.queued = null;
      return this.pass();
    });
    this.queued = pass;
    this.tail = pass.catch(() => undefined);
    return pass;
  }

  /** Stops polling and waits for a pass in progress. The store and the scheduler stay open. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.tail;
  }

  // ---- internals ----

  private checkOpen(): void {
    if (this.closed) throw rangeError('the feed was closed');
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.closed) return;
      this.poll()
        .catch(this.onError)
        .finally(() => !this.closed && this.arm());
    }, this.pollIntervalMs);
    this.timer.unref();
  }

  /** Waits for a slot and submits synchronously after the check, so concurrent declarations never
   * overfill the queue (waitForSlot wakes every waiter; each re-checks). */
  private async submit(record: GroupRecord, signal: AbortSignal | undefined): Promise<void> {
    while (this.scheduler.freeSlots <= 0) await this.scheduler.waitForSlot({ signal });
    this.checkOpen();
    this.scheduler.submit(record.id, record.size);
    this.tracked.set(record.id, { id: record.id, size: record.size, pending: new Set(), delivered: new Set(), scan: true });
    this.notify();
  }

  private abort(groupId: string, reason: string): void {
    this.tracked.delete(groupId);
    this.scheduler.abort(groupId, reason);
    this.counts.abortedGroups++;
  }

  private async pass(): Promise<PollResult> {
    const result: PollResult = { delivered: 0, aborted: 0, cursor: this.seq };
    // Newly tracked groups: their closed sessions, whatever their closeSeq.
    for (const g of this.tracked.values()) {
      if (!g.scan) continue;
      for (const s of await this.store.listSessions({ groupId: g.id, status: 'closed' })) this.note(g, s);
      g.scan = false;
    }
    // Newly closed sessions, in completion order, page by page.
    for (;;) {
      const page = await this.store.listSessions({ status: 'closed', afterSeq: this.seq, limit: this.pageSize });
      for (const s of page) {
        const g = s.groupId === null ? undefined : this.tracked.get(s.groupId);
        if (g) this.note(g, s);
        this.seq = s.closeSeq!;
      }
      if (page.length < this.pageSize) break;
    }
    if (this.onFailedSession === 'abort') result.aborted += await this.abortFailedGroups();
    // Hand over what is rewarded.
    for (const g of [...this.tracked.values()]) {
      for (const id of [...g.pending]) {
        if (!this.tracked.has(g.id)) break;
        if (!(await this.store.getReward(id, this.rewardVersion))) continue;
        const trajectory = await this.store.getTrajectory(id);
        const s = trajectory.session;
        // The oldest version among its tokens; a session without completion tokens is current.
        const version = s.minVersion ?? this.scheduler.policyVersion;
        if (version > this.scheduler.policyVersion) continue; // the scheduler has not heard of that version yet
        const accepted = this.scheduler.complete(g.id, { version, trajectory });
        g.pending.delete(id);
        g.delivered.add(id);
        result.delivered++;
        this.counts.delivered++;
        if (!accepted) this.tracked.delete(g.id); // aborted in the scheduler by someone else
        else if (g.delivered.size === g.size) {
          this.tracked.delete(g.id);
          this.counts.completedGroups++;
        }
      }
    }
    result.cursor = this.seq;
    return result;
  }

  private note(g: Tracked, s: SessionRecord): void {
    if (!g.delivered.has(s.id)) g.pending.add(s.id);
  }

  /** Aborts every tracked group with a failed or abandoned session; returns how many. */
  private async abortFailedGroups(): Promise<number> {
    let n = 0;
    for (const g of [...this.tracked.values()]) {
      const status = await this.store.groupStatus(g.id);
      if (status.failed === 0) continue;
      const failed = [
        ...(await this.store.listSessions({ groupId: g.id, status: 'failed' })),
        ...(await this.store.listSessions({ groupId: g.id, status: 'abandoned' })),
      ];
      const why = failed.map((s) => `session ${s.id} ${s.status}${s.failReason ? `: ${s.failReason}` : ''}`).join('; ');
      if (this.tracked.has(g.id)) {
        this.abort(g.id, why || `${status.failed} session(s) failed`);
        n++;
      }
    }
    return n;
  }
}
