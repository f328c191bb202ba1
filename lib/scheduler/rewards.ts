// Rewards and advantages (DESIGN.md contract 5): r = r_perf + alpha r_process + beta r_speed, with
// r_speed = h(T_completion / T_baseline), T_baseline a running median of the task's completion times;
// advantages are centred on the group mean B and divided by the group std. With process rewards a
// session's calls get a reward-to-go: call t's advantage is (sum_{p >= t} r_p - B) / scale, and every
// token of call t's completion carries it. A session's outcome (perf and speed) lands on its last call,
// so without process rewards every call gets the same advantage, (R - B) / scale.
import { rangeError, typeError } from '../errors.js';
import { expectFinite, expectInt } from '../validate.js';
import type { GroupScore, RewardOptions, ScoredSession, SessionOutcome, SpeedShape, TaskId } from './types.js';

/** Median of the last `window` values pushed: a sorted copy plus arrival order, O(window) per push. */
export class RunningMedian {
  private readonly sorted: number[] = [];
  private readonly order: number[] = [];
  private start = 0;

  constructor(readonly window = Infinity) {
    if (window !== Infinity) expectInt('window', window, 1);
  }

  get size(): number {
    return this.sorted.length;
  }

  push(value: number): void {
    expectFinite('value', value);
    if (this.sorted.length === this.window) {
      const oldest = this.order[this.start++];
      this.sorted.splice(lowerBound(this.sorted, oldest), 1);
      // Compact the arrival log once its consumed half dominates.
      if (this.start > this.window) {
        this.order.splice(0, this.start);
        this.start = 0;
      }
    }
    if (this.window !== Infinity) this.order.push(value);
    this.sorted.splice(lowerBound(this.sorted, value), 0, value);
  }

  /** NaN when empty. */
  get median(): number {
    const n = this.sorted.length;
    if (n === 0) return NaN;
    const mid = n >> 1;
    return n % 2 ? this.sorted[mid] : (this.sorted[mid - 1] + this.sorted[mid]) / 2;
  }
}

function lowerBound(a: number[], x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** T_baseline per task: a running median of its sessions' completion times. */
export class SpeedBaselines {
  private readonly medians = new Map<TaskId, RunningMedian>();

  constructor(readonly window = 256) {
    if (window !== Infinity) expectInt('window', window, 1);
  }

  observe(taskId: TaskId, seconds: number): void {
    if (typeof taskId !== 'string') throw typeError(`taskId: expected a string, got ${typeof taskId}`);
    expectPositive('seconds', seconds);
    let m = this.medians.get(taskId);
    if (!m) this.medians.set(taskId, (m = new RunningMedian(this.window)));
    m.push(seconds);
  }

  /** undefined for a task never observed. */
  baseline(taskId: TaskId): number | undefined {
    const m = this.medians.get(taskId);
    return m ? m.median : undefined;
  }
}

function expectPositive(name: string, value: unknown): number {
  expectFinite(name, value);
  if ((value as number) <= 0) throw rangeError(`${name}: expected a number > 0, got ${value}`);
  return value as number;
}

/** h(ratio), ratio = T_completion / T_baseline. The built-in shapes are 0 at ratio 1, positive when
 * faster, clamped to [-clip, clip] so one extreme session cannot dominate its group. */
export function speedReward(ratio: number, shape: SpeedShape = 'log', clip = 1): number {
  expectPositive('ratio', ratio);
  expectFinite('clip', clip, 0);
  let h: number;
  if (shape === 'log') h = -Math.log(ratio);
  else if (shape === 'linear') h = 1 - ratio;
  else if (typeof shape === 'function') return expectFinite(`speedShape(${ratio})`, shape(ratio));
  else throw typeError(`speedShape: expected 'log', 'linear' or a function, got ${String(shape)}`);
  return Math.min(clip, Math.max(-clip, h)) + 0; // + 0: -ln(1) is -0
}

/** r_perf + alpha r_process + beta r_speed. */
export function compositeReward(perf: number, process: number, speed: number, alpha = 1, beta = 0): number {
  return perf + alpha * process + beta * speed;
}

export interface AdvantageOptions {
  eps?: number;
  normalize?: boolean;
}

export interface GroupAdvantages {
  baseline: number;
  std: number;
  scale: number;
  totals: Float64Array;
  /** Per session, per call: (reward-to-go - B) / scale. */
  advantages: Float64Array[];
}

/** Group baseline and reward-to-go advantages from per-call rewards (one array per session). */
export function groupAdvantages(callRewards: readonly ArrayLike<number>[], options: AdvantageOptions = {}): GroupAdvantages {
  if (!Array.isArray(callRewards) || callRewards.length === 0)
    throw typeError(`callRewards: expected a non-empty array of per-call reward arrays`);
  const eps = expectFinite('options.eps', options.eps ?? 1e-6, 0);
  const normalize = options.normalize ?? true;
  const G = callRewards.length;
  const totals = new Float64Array(G);
  const togo: Float64Array[] = callRewards.map((r, i) => {
    if (r === null || typeof r !== 'object' || typeof r.length !== 'number' || r.length < 1)
      throw typeError(`callRewards[${i}]: expected an array of at least one reward`);
    const out = new Float64Array(r.length);
    let acc = 0;
    for (let t = r.length - 1; t >= 0; t--) out[t] = acc += expectFinite(`callRewards[${i}][${t}]`, r[t]);
    totals[i] = acc;
    return out;
  });
  // Mean as R_0 + mean(R_i - R_0): a group of identical totals gets B equal to them bit for bit, so
  // its advantages are exact zeros rather than rounding noise divided by eps.
  let dev = 0;
  for (let i = 0; i < G; i++) dev += totals[i] - totals[0];
  const baseline = totals[0] + dev / G;
  let sq = 0;
  for (let i = 0; i < G; i++) sq += (totals[i] - baseline) ** 2;
  const std = Math.sqrt(sq / G);
  // std = 0 leaves nothing to normalise by: the centred rewards (zeros without process rewards) stay.
  const scale = normalize && std > 0 ? std + eps : 1;
  for (const a of togo) for (let t = 0; t < a.length; t++) a[t] = (a[t] - baseline) / scale;
  return { baseline, std, scale, totals, advantages: togo };
}

/** Scores groups of sessions; keeps the per-task speed baselines between calls. */
export class RewardModel {
  readonly alpha: number;
  readonly beta: number;
  readonly speedShape: SpeedShape;
  readonly speedClip: number;
  readonly eps: number;
  readonly normalize: boolean;
  readonly baselines: SpeedBaselines;

  constructor(options: RewardOptions = {}) {
    this.alpha = expectFinite('options.alpha', options.alpha ?? 1);
    this.beta = expectFinite('options.beta', options.beta ?? 0);
    const shape = options.speedShape ?? 'log';
    if (shape !== 'log' && shape !== 'linear' && typeof shape !== 'function')
      throw typeError(`options.speedShape: expected 'log', 'linear' or a function, got ${String(shape)}`);
    this.speedShape = shape;
    this.speedClip = expectFinite('options.speedClip', options.speedClip ?? 1, 0);
    this.eps = expectFinite('options.eps', options.eps ?? 1e-6, 0);
    this.normalize = options.normalize ?? true;
    this.baselines = new SpeedBaselines(options.baselineWindow ?? 256);
  }

  /**
   * Scores the sessions of one group (rollouts of `taskId`). Their completion times join the task's
   * running median first, and each is then compared with it: a first sighting scores r_speed = 0 and
   * the group's members are judged against the same baseline.
   */
  scoreGroup(taskId: TaskId, sessions: readonly SessionOutcome[]): GroupScore {
    if (typeof taskId !== 'string') throw typeError(`taskId: expected a string, got ${typeof taskId}`);
    if (!Array.isArray(sessions) || sessions.length === 0) throw typeError(`sessions: expected a non-empty array`);
    sessions.forEach((s, i) => checkSession(s, i));
    for (const s of sessions) if (s.seconds !== undefined) this.baselines.observe(taskId, s.seconds);
    const speedBaseline = this.baselines.baseline(taskId);

    const parts = sessions.map((s) => {
      const speed =
        s.seconds !== undefined && speedBaseline !== undefined
          ? speedReward(s.seconds / speedBaseline, this.speedShape, this.speedClip)
          : 0;
      const calls = s.process?.length ?? s.calls ?? 1;
      const callRewards = new Float64Array(calls);
      let process = 0;
      for (let p = 0; p < calls; p++) {
        const r = s.process ? s.process[p] : 0;
        process += r;
        callRewards[p] = this.alpha * r;
      }
      callRewards[calls - 1] += s.perf + this.beta * speed;
      return { perf: s.perf, process, speed, callRewards };
    });
    const group = groupAdvantages(
      parts.map((p) => p.callRewards),
      { eps: this.eps, normalize: this.normalize },
    );
    const scored: ScoredSession[] = parts.map((p, i) => ({
      total: group.totals[i],
      perf: p.perf,
      process: p.process,
      speed: p.speed,
      callRewards: p.callRewards,
      advantages: group.advantages[i],
    }));
    return { sessions: scored, baseline: group.baseline, std: group.std, scale: group.scale, speedBaseline };
  }
}

function checkSession(s: SessionOutcome, i: number): void {
  if (typeof s !== 'object' || s === null) throw typeError(`sessions[${i}]: expected an object, got ${s}`);
  expectFinite(`sessions[${i}].perf`, s.perf);
  if (s.process !== undefined) {
    if (!Array.isArray(s.process) || s.process.length === 0)
      throw typeError(`sessions[${i}].process: expected a non-empty array of numbers (one per call)`);
    s.process.forEach((r, p) => expectFinite(`sessions[${i}].process[${p}]`, r));
    if (s.calls !== undefined && s.calls !== s.process.length)
      throw rangeError(`sessions[${i}].calls: ${s.calls} disagrees with process.length ${s.process.length}`);
  }
  if (s.calls !== undefined) expectInt(`sessions[${i}].calls`, s.calls, 1);
  if (s.seconds !== undefined) expectPositive(`sessions[${i}].seconds`, s.seconds);
}
