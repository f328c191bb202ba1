// Windowed FIFO over the task queue (DESIGN.md contract 4). Tasks T_0, T_1, ... enter in order; the
// head i is the oldest task not yet consumed. The consumer may take a ready group only from
// [T_i, T_{i+W-1}], never beyond, even when finished; the head moves only as head tasks are consumed.
// Inside the window any ready group may go; which one is `order`: 'oldest' (lowest queue index, the
// default of 'windowed' and 'fifo') or 'first-ready' (the group that finished first, the default of
// 'greedy', so greedy is pure completion order as in peer systems). 'oldest' is the default because a
// head stall releases a burst of groups at once, and taking the burst in completion order puts the
// fast (easy) ones together in one batch; queue order keeps each batch's mix near the population's
// (bench/scheduler.bench.ts measured half the TV distance at W = 0.3N, at the same throughput).
// Capacity N counts tasks submitted and not consumed (see SchedulerOptions.capacity).
import { typeError } from '../errors.js';
import { expectInt } from '../validate.js';
import { StalenessPolicy } from './staleness.js';
import { type DropReason, type GroupRelease, type PickOrder, type RolloutLike, type Scheduler, SchedulerErrorCode } from './types.js';
import type { SchedulerEvents, SchedulerMode, SchedulerOptions, SchedulerStats, TaskId } from './types.js';

export class SchedulerError extends Error {
  constructor(
    readonly code: SchedulerErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SchedulerError';
  }
}

interface Entry<R> {
  id: TaskId;
  index: number;
  groupSize: number;
  rollouts: R[];
  readyAt: number;
  /** Set while the group is ready beyond the window: when it became ready there. */
  waitingSince: number;
  waited: boolean;
}

type Listener = (payload: never) => void;
interface Waiter<T> {
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
  cleanup: () => void;
}

const DROP_REASONS: DropReason[] = ['stale', 'too-few-fresh', 'aborted'];

export class WindowedFifoScheduler<R extends RolloutLike = RolloutLike> implements Scheduler<R> {
  readonly mode: SchedulerMode;
  readonly capacity: number;
  readonly window: number;
  readonly order: PickOrder;
  readonly staleness: StalenessPolicy;
  private readonly now: () => number;

  private version: number;
  private head = 0;
  private tail = 0;
  private closed = false;
  /** Unconsumed tasks by id and by index. */
  private readonly byId = new Map<TaskId, Entry<R>>();
  private readonly byIndex = new Map<number, Entry<R>>();
  /** Ready, unconsumed groups in the order they became ready (a Map iterates in insertion order). */
  private readonly ready = new Map<number, Entry<R>>();
  /** Ready groups beyond the window. */
  private readonly beyond = new Set<Entry<R>>();
  /** Recently consumed ids, bounded, to tell a late or duplicate rollout from an unknown task. */
  private readonly consumed = new Map<TaskId, 'released' | 'aborted'>();
  private readonly consumedLimit: number;

  private readonly listeners = new Map<string, Set<Listener>>();
  private readonly waiters: Waiter<GroupRelease<R>>[] = [];
  private readonly slotWaiters: Waiter<true>[] = [];
  private pumping = false;

  private readonly counts = {
    submitted: 0,
    released: 0,
    waited: { 'beyond-window': { groups: 0, time: 0 } },
    dropped: Object.fromEntries(DROP_REASONS.map((r) => [r, { groups: 0, trajectories: 0 }])) as SchedulerStats['dropped'],
    downweighted: { stale: 0 },
    lateRollouts: 0,
    lagSum: 0,
    lagMax: 0,
    lagCount: 0,
  };

  constructor(options: SchedulerOptions) {
    if (typeof options !== 'object' || options === null) throw typeError(`options: expected an object, got ${options}`);
    this.capacity = expectInt('options.capacity', options.capacity, 1);
    const mode = options.mode ?? 'windowed';
    if (mode !== 'windowed' && mode !== 'fifo' && mode !== 'greedy')
      throw typeError(`options.mode: expected 'windowed', 'fifo' or 'greedy', got ${String(mode)}`);
    this.mode = mode;
    if (mode !== 'windowed' && options.window !== undefined)
      throw typeError(`options.window: only mode 'windowed' takes a window (mode '${mode}' fixes it)`);
    this.window =
      mode === 'fifo'
        ? 1
        : mode === 'greedy'
          ? Infinity
          : options.window === undefined
            ? Math.ceil(0.3 * this.capacity)
            : expectInt('options.window', options.window, 1);

    const order = options.order ?? (mode === 'greedy' ? 'first-ready' : 'oldest');
    if (order !== 'oldest' && order !== 'first-ready')
      throw typeError(`options.order: expected 'oldest' or 'first-ready', got ${String(order)}`);
    this.order = order;

    this.staleness = new StalenessPolicy(options.staleness);
    this.version = expectInt('options.initialVersion', options.initialVersion ?? 0, 0);
    if (options.now !== undefined && typeof options.now !== 'function')
      throw typeError(`options.now: expected a function, got ${typeof options.now}`);
    this.now = options.now ?? (() => performance.now());
    this.consumedLimit = Math.max(1024, 4 * this.capacity);
  }

  get policyVersion(): number {
    return this.version;
  }

  get freeSlots(): number {
    return this.capacity - this.byId.size;
  }

  on<E extends keyof SchedulerEvents<R>>(event: E, listener: (payload: SchedulerEvents<R>[E]) => void): () => void {
    if (typeof listener !== 'function') throw typeError(`listener: expected a function, got ${typeof listener}`);
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener);
    return () => set.delete(listener as Listener);
  }

  private emit<E extends keyof SchedulerEvents<R>>(event: E, payload: SchedulerEvents<R>[E]): void {
    const set = this.listeners.get(event);
    if (set) for (const fn of [...set]) (fn as (p: SchedulerEvents<R>[E]) => void)(payload);
  }

  submit(taskId: TaskId, groupSize: number): number {
    this.checkOpen();
    if (typeof taskId !== 'string') throw typeError(`taskId: expected a string, got ${typeof taskId}`);
    expectInt('groupSize', groupSize, 1);
    if (this.byId.has(taskId) || this.consumed.has(taskId))
      throw new SchedulerError(SchedulerErrorCode.DUPLICATE_TASK, `taskId: task '${taskId}' was already submitted`);
    if (this.freeSlots <= 0)
      throw new SchedulerError(
        SchedulerErrorCode.QUEUE_FULL,
        `submit('${taskId}'): queue full (${this.capacity} tasks submitted and not consumed; head T_${this.head})`,
      );
    const entry: Entry<R> = { id: taskId, index: this.tail++, groupSize, rollouts: [], readyAt: NaN, waitingSince: NaN, waited: false };
    this.byId.set(taskId, entry);
    this.byIndex.set(entry.index, entry);
    this.counts.submitted++;
    this.emit('submit', { taskId, index: entry.index });
    return entry.index;
  }

  complete(taskId: TaskId, rollout: R): boolean {
    this.checkOpen();
    if (typeof taskId !== 'string') throw typeError(`taskId: expected a string, got ${typeof taskId}`);
    if (typeof rollout !== 'object' || rollout === null) throw typeError(`rollout: expected an object, got ${rollout}`);
    const version = expectInt('rollout.version', rollout.version, 0);
    if (version > this.version)
      throw new SchedulerError(
        SchedulerErrorCode.FUTURE_VERSION,
        `rollout.version: ${version} is newer than the current policy version ${this.version}`,
      );
    const entry = this.byId.get(taskId);
    if (!entry) {
      const past = this.consumed.get(taskId);
      if (past === 'aborted') {
        this.counts.lateRollouts++;
        return false;
      }
      if (past === 'released')
        throw new SchedulerError(SchedulerErrorCode.GROUP_FULL, `complete('${taskId}'): the group was already released`);
      throw new SchedulerError(SchedulerErrorCode.UNKNOWN_TASK, `taskId: no task '${taskId}' in the queue`);
    }
    if (entry.rollouts.length >= entry.groupSize)
      throw new SchedulerError(
        SchedulerErrorCode.GROUP_FULL,
        `complete('${taskId}'): the group already has its ${entry.groupSize} rollouts`,
      );
    entry.rollouts.push(rollout);
    if (entry.rollouts.length === entry.groupSize) {
      entry.readyAt = this.now();
      this.ready.set(entry.index, entry);
      const inWindow = entry.index < this.head + this.window;
      this.emit('ready', { taskId, index: entry.index, inWindow });
      if (!inWindow) {
        entry.waitingSince = entry.readyAt;
        entry.waited = true;
        this.beyond.add(entry);
        this.counts.waited['beyond-window'].groups++;
        this.emit('wait', { taskId, index: entry.index, head: this.head, reason: 'beyond-window' });
      }
      this.pump();
    }
    return true;
  }

  abort(taskId: TaskId, detail?: string): void {
    this.checkOpen();
    if (typeof taskId !== 'string') throw typeError(`taskId: expected a string, got ${typeof taskId}`);
    const entry = this.byId.get(taskId);
    if (!entry) {
      if (this.consumed.has(taskId)) return; // aborting a consumed task changes nothing
      throw new SchedulerError(SchedulerErrorCode.UNKNOWN_TASK, `taskId: no task '${taskId}' in the queue`);
    }
    this.consume(entry, 'aborted');
    this.countDrop('aborted', entry.rollouts.length, true);
    this.emit('drop', { taskId, index: entry.index, reason: 'aborted', trajectories: entry.rollouts.length, wholeGroup: true, detail });
    this.advanceHead();
  }

  setPolicyVersion(version: number): void {
    this.checkOpen();
    expectInt('version', version, this.version);
    if (version === this.version) return;
    this.version = version;
    this.emit('version', { version });
    this.pump();
  }

  tryNext(): GroupRelease<R> | undefined {
    for (;;) {
      const entry = this.pick();
      if (!entry) return undefined;
      const release = this.take(entry);
      if (release) return release;
    }
  }

  next(options: { signal?: AbortSignal } = {}): Promise<GroupRelease<R>> {
    return this.wait(this.waiters, () => this.tryNext(), options.signal);
  }

  waitForSlot(options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.wait(this.slotWaiters, () => (this.freeSlots > 0 ? true : undefined), options.signal).then(() => undefined);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = new SchedulerError(SchedulerErrorCode.CLOSED, 'the scheduler was closed');
    for (const w of [...this.waiters.splice(0), ...this.slotWaiters.splice(0)]) {
      w.cleanup();
      w.reject(error);
    }
  }

  stats(): SchedulerStats {
    const c = this.counts;
    return {
      mode: this.mode,
      capacity: this.capacity,
      window: this.window,
      policyVersion: this.version,
      head: this.head,
      tail: this.tail,
      submitted: c.submitted,
      released: c.released,
      pending: this.byId.size,
      ready: this.ready.size,
      waited: { 'beyond-window': { ...c.waited['beyond-window'] } },
      dropped: Object.fromEntries(DROP_REASONS.map((r) => [r, { ...c.dropped[r] }])) as SchedulerStats['dropped'],
      downweighted: { ...c.downweighted },
      lateRollouts: c.lateRollouts,
      lag: { mean: c.lagCount ? c.lagSum / c.lagCount : 0, max: c.lagMax, count: c.lagCount },
    };
  }

  // ---- internals ----

  private checkOpen(): void {
    if (this.closed) throw new SchedulerError(SchedulerErrorCode.CLOSED, 'the scheduler was closed');
  }

  /** The group `order` picks inside the window; O(ready groups), which are at most N. */
  private pick(): Entry<R> | undefined {
    const end = this.head + this.window;
    if (this.order === 'first-ready') {
      for (const entry of this.ready.values()) if (entry.index < end) return entry;
      return undefined;
    }
    let best: Entry<R> | undefined;
    for (const entry of this.ready.values()) if (entry.index < end && (!best || entry.index < best.index)) best = entry;
    return best;
  }

  /** Consumes a ready entry; returns its release, or undefined when the lag bound dropped it whole. */
  private take(entry: Entry<R>): GroupRelease<R> | undefined {
    const windowOffset = entry.index - this.head;
    const { kept: trajectories, stale, dropGroup: reason } = this.staleness.judge(entry.rollouts, this.version);
    this.consume(entry, 'released');
    if (reason) {
      this.countDrop(reason, entry.rollouts.length, true);
      this.emit('drop', { taskId: entry.id, index: entry.index, reason, trajectories: entry.rollouts.length, wholeGroup: true });
      this.advanceHead();
      return undefined;
    }
    if (stale > 0) {
      this.countDrop('stale', stale, false);
      this.emit('drop', { taskId: entry.id, index: entry.index, reason: 'stale', trajectories: stale, wholeGroup: false });
    }
    const c = this.counts;
    for (const t of trajectories) {
      c.lagSum += t.lag;
      c.lagCount++;
      if (t.lag > c.lagMax) c.lagMax = t.lag;
      if (t.lag > this.staleness.maxLag) {
        c.downweighted.stale++;
        this.emit('downweight', { taskId: entry.id, index: entry.index, lag: t.lag, weight: t.weight });
      }
    }
    c.released++;
    const release: GroupRelease<R> = {
      taskId: entry.id,
      index: entry.index,
      windowOffset,
      policyVersion: this.version,
      trajectories,
      dropped: stale,
      readyAt: entry.readyAt,
      releasedAt: this.now(),
      waited: entry.waited,
    };
    this.emit('release', release);
    this.advanceHead();
    return release;
  }

  private consume(entry: Entry<R>, how: 'released' | 'aborted'): void {
    this.byId.delete(entry.id);
    this.byIndex.delete(entry.index);
    this.ready.delete(entry.index);
    this.beyond.delete(entry);
    this.consumed.set(entry.id, how);
    if (this.consumed.size > this.consumedLimit) this.consumed.delete(this.consumed.keys().next().value as TaskId);
  }

  private countDrop(reason: DropReason, trajectories: number, wholeGroup: boolean): void {
    this.counts.dropped[reason].trajectories += trajectories;
    if (wholeGroup) this.counts.dropped[reason].groups++;
  }

  /** After a consumption: moves the head past consumed tasks (groups the window now reaches stop
   * waiting), then serves waiters (a slot opened in any case). */
  private advanceHead(): void {
    const before = this.head;
    while (this.head < this.tail && !this.byIndex.has(this.head)) this.head++;
    if (this.head !== before) this.headMoved();
    this.pump();
  }

  private headMoved(): void {
    if (this.beyond.size) {
      const end = this.head + this.window;
      const t = this.now();
      for (const entry of this.beyond) {
        if (entry.index >= end) continue;
        this.counts.waited['beyond-window'].time += t - entry.waitingSince;
        this.beyond.delete(entry);
      }
    }
    this.emit('head', { head: this.head, tail: this.tail });
  }

  /** Serves waiting next()/waitForSlot() calls in order; re-entrant calls fold into the running one. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.waiters.length) {
        const release = this.tryNext();
        if (!release) break;
        const w = this.waiters.shift()!;
        w.cleanup();
        w.resolve(release);
      }
      if (this.slotWaiters.length && this.freeSlots > 0) {
        // Every slot waiter wakes: each re-checks by submitting (QUEUE_FULL tells the losers).
        for (const w of this.slotWaiters.splice(0)) {
          w.cleanup();
          w.resolve(true);
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private wait<T>(queue: Waiter<T>[], now: () => T | undefined, signal?: AbortSignal): Promise<T> {
    if (this.closed) return Promise.reject(new SchedulerError(SchedulerErrorCode.CLOSED, 'the scheduler was closed'));
    if (signal?.aborted) return Promise.reject(new SchedulerError(SchedulerErrorCode.ABORTED, 'the wait was aborted'));
    // Earlier waiters go first: only take at once when nobody is queued.
    if (queue.length === 0) {
      const value = now();
      if (value !== undefined) return Promise.resolve(value);
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        const at = queue.indexOf(waiter);
        if (at >= 0) queue.splice(at, 1);
        reject(new SchedulerError(SchedulerErrorCode.ABORTED, 'the wait was aborted'));
      };
      const waiter: Waiter<T> = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      queue.push(waiter);
    });
  }
}
