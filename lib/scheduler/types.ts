// The scheduler's contracts (DESIGN.md contracts 4 and 5) as interfaces, importing no implementation:
// a producer (task runner, data pool) feeds a GroupSink, a consumer (batch builder, trainer) reads a
// GroupSource. The data pool implements neither; it calls the sink when groups complete, so storage
// never leaks into scheduling.

/** A task's id as the producer names it (the data pool's task id). */
export type TaskId = string;

/** The one thing the scheduler reads from a rollout: the policy version that generated it. For a
 * session whose calls span several versions, give the oldest (its most off-policy tokens). */
export interface RolloutLike {
  readonly version: number;
}

/** 'windowed': W given (default ceil(0.3 N)); 'fifo': W = 1; 'greedy': no window (W = Infinity),
 * pure completion order. The contract's "W = N" greedy assumes a queue without holes; see capacity. */
export type SchedulerMode = 'windowed' | 'fifo' | 'greedy';

/** Which ready group in the window goes first: lowest queue index, or first finished. */
export type PickOrder = 'oldest' | 'first-ready';

/** What happens to a trajectory whose lag (current version - its version) exceeds maxLag. */
export type StaleAction = 'drop' | 'downweight';

export interface StalenessOptions {
  /** Largest allowed lag in policy versions (default Infinity: no bound). */
  maxLag?: number;
  /** Default 'drop'. */
  action?: StaleAction;
  /** Weight of a stale trajectory under 'downweight', in [0, 1]; default 2^-(lag - maxLag). */
  weight?: (lag: number, maxLag: number) => number;
  /** Under 'drop': a group that lost members to staleness and has fewer than this left is dropped
   * whole (default 1), since a group baseline over one or two members is mostly noise. */
  minGroupSize?: number;
}

export interface SchedulerOptions {
  /** N: queue capacity, the most tasks submitted and not yet consumed (released, dropped or
   * aborted): the tasks whose rollouts are running or whose finished groups wait for the trainer.
   * Consuming any task, in order or not, opens a slot, so rollouts keep running while a slow head
   * task holds the window. A task T_k is overtaken by at most N - 1 older and W - 1 younger tasks,
   * so its off-policy lag stays below N + W - 1 tasks. Tasks beyond the head may spread over more
   * than N positions (holes left by out-of-order consumption), which is why greedy is W = Infinity
   * rather than W = N. */
  capacity: number;
  /** Default 'windowed'. */
  mode?: SchedulerMode;
  /** W for mode 'windowed', an integer >= 1 (default ceil(0.3 N)). */
  window?: number;
  /** Default 'oldest', or 'first-ready' in mode 'greedy' (completion order). */
  order?: PickOrder;
  staleness?: StalenessOptions;
  /** The policy version at start (default 0). */
  initialVersion?: number;
  /** Clock for readiness and wait times (default performance.now, ms); the simulation passes a
   * virtual one. */
  now?: () => number;
}

/** Why a group or trajectory never reached the consumer. */
export type DropReason = 'stale' | 'too-few-fresh' | 'aborted';
/** Why a ready group was not released at once. */
export type WaitReason = 'beyond-window';

export interface ReleasedTrajectory<R extends RolloutLike> {
  rollout: R;
  /** Current version at release minus rollout.version. */
  lag: number;
  /** 1, or the down-weight of a stale trajectory. */
  weight: number;
}

export interface GroupRelease<R extends RolloutLike> {
  taskId: TaskId;
  /** The task's queue position k (T_k). */
  index: number;
  /** k - head at release; always < W. */
  windowOffset: number;
  policyVersion: number;
  /** In completion order; stale ones removed under 'drop'. */
  trajectories: ReleasedTrajectory<R>[];
  /** Trajectories removed for staleness. */
  dropped: number;
  readyAt: number;
  releasedAt: number;
  /** Whether the group was ready while beyond the window. */
  waited: boolean;
}

export interface SchedulerEvents<R extends RolloutLike> {
  submit: { taskId: TaskId; index: number };
  ready: { taskId: TaskId; index: number; inWindow: boolean };
  wait: { taskId: TaskId; index: number; head: number; reason: WaitReason };
  release: GroupRelease<R>;
  drop: { taskId: TaskId; index: number; reason: DropReason; trajectories: number; wholeGroup: boolean; detail?: string };
  downweight: { taskId: TaskId; index: number; lag: number; weight: number };
  head: { head: number; tail: number };
  version: { version: number };
}

export interface SchedulerStats {
  mode: SchedulerMode;
  capacity: number;
  window: number;
  policyVersion: number;
  head: number;
  /** Index the next submitted task gets. */
  tail: number;
  submitted: number;
  released: number;
  /** Submitted, not yet consumed (released, dropped or aborted). */
  pending: number;
  /** Ready and not yet consumed (inside or beyond the window). */
  ready: number;
  /** Groups that were ready while beyond the window, and the total time they spent there. */
  waited: Record<WaitReason, { groups: number; time: number }>;
  dropped: Record<DropReason, { groups: number; trajectories: number }>;
  downweighted: { stale: number };
  /** Rollouts that arrived for a task already aborted (ignored). */
  lateRollouts: number;
  /** Over released trajectories. */
  lag: { mean: number; max: number; count: number };
}

/** The producer's side: the task runner or the data pool. */
export interface GroupSink<R extends RolloutLike> {
  /** Queue slots open now: N - (tasks submitted and not consumed). */
  readonly freeSlots: number;
  /** Resolves when a slot is open. */
  waitForSlot(options?: { signal?: AbortSignal }): Promise<void>;
  /** Appends T_tail with `groupSize` rollouts to come; returns its index. */
  submit(taskId: TaskId, groupSize: number): number;
  /** One rollout of the task finished. False when the task was aborted (the rollout is ignored). */
  complete(taskId: TaskId, rollout: R): boolean;
  /** Gives up on a task (failed rollout, cancelled run): it counts as consumed, reason 'aborted'. */
  abort(taskId: TaskId, detail?: string): void;
}

/** The consumer's side: the batch builder or trainer. */
export interface GroupSource<R extends RolloutLike> {
  readonly policyVersion: number;
  /** The trainer published a new version; lags are measured against it. Never decreases. */
  setPolicyVersion(version: number): void;
  /** The next group the window allows, or undefined when none is ready in it. */
  tryNext(): GroupRelease<R> | undefined;
  /** Resolves with the next group as soon as one is ready in the window (waiters served in order). */
  next(options?: { signal?: AbortSignal }): Promise<GroupRelease<R>>;
  stats(): SchedulerStats;
  on<E extends keyof SchedulerEvents<R>>(event: E, listener: (payload: SchedulerEvents<R>[E]) => void): () => void;
  /** Rejects pending and future next()/waitForSlot() calls. */
  close(): void;
}

export interface Scheduler<R extends RolloutLike> extends GroupSink<R>, GroupSource<R> {}

/** The scheduler surface's error registry (argument errors use the kernel codes of lib/errors.ts). */
export const SchedulerErrorCode = {
  DUPLICATE_TASK: 'FORGE_SCHED_DUPLICATE_TASK',
  UNKNOWN_TASK: 'FORGE_SCHED_UNKNOWN_TASK',
  QUEUE_FULL: 'FORGE_SCHED_QUEUE_FULL',
  GROUP_FULL: 'FORGE_SCHED_GROUP_FULL',
  FUTURE_VERSION: 'FORGE_SCHED_FUTURE_VERSION',
  CLOSED: 'FORGE_SCHED_CLOSED',
  ABORTED: 'FORGE_SCHED_ABORTED',
} as const;
export type SchedulerErrorCode = (typeof SchedulerErrorCode)[keyof typeof SchedulerErrorCode];

// ---- Rewards (contract 5) ----

/** h: maps T_completion / T_baseline to a speed reward; must be decreasing. 'log': clamp(-ln x);
 * 'linear': clamp(1 - x); both 0 at the baseline, clamped to [-speedClip, speedClip]. */
export type SpeedShape = 'log' | 'linear' | ((ratio: number) => number);

export interface RewardOptions {
  /** Weight of process rewards (default 1: they count as the verifier or gateway gave them). */
  alpha?: number;
  /** Weight of the speed reward (default 0: opt in, since it changes what the policy learns). */
  beta?: number;
  speedShape?: SpeedShape;
  /** Clamp of the built-in shapes (default 1). */
  speedClip?: number;
  /** Running-median window per task, in observations (default 256). */
  baselineWindow?: number;
  /** Added to the group std before dividing (default 1e-6). */
  eps?: number;
  /** Divide by the group std (default true); false keeps centred rewards. */
  normalize?: boolean;
}

/** One finished session as the reward model sees it. */
export interface SessionOutcome {
  /** r_perf: the verifier's outcome reward. */
  perf: number;
  /** Process rewards, one per call in call order (gateway penalties, verifier step scores). */
  process?: readonly number[];
  /** Number of calls when `process` is absent (default 1). */
  calls?: number;
  /** T_completion: the session's wall-clock time in seconds; without it r_speed = 0. */
  seconds?: number;
}

export interface ScoredSession {
  /** r_perf + alpha sum(process) + beta r_speed. */
  total: number;
  perf: number;
  process: number;
  speed: number;
  /** r_p per call: alpha process[p], plus r_perf + beta r_speed on the last call. Sums to total. */
  callRewards: Float64Array;
  /** Per call: (sum_{p >= t} r_p - B) / scale. Every token of call t's completion gets entry t. */
  advantages: Float64Array;
}

export interface GroupScore {
  sessions: ScoredSession[];
  /** B: mean of the sessions' totals. */
  baseline: number;
  /** Population std of the totals. */
  std: number;
  /** What the centred rewards were divided by: std + eps, or 1 (normalize off, or std = 0). */
  scale: number;
  /** T_baseline used for the speed term (undefined without timings). */
  speedBaseline?: number;
}
