// The demo's options, their defaults and checks. The defaults are the recipe measured on 2 CPU cores
// (docs in scripts/demo.ts's --help and the report): a tiny policy, a two-phase warm start, groups of
// 8 rollouts, 8 groups per CISPO step, a reward of outcome + 0.1 x process (-1 per malformed tool
// call) + 0.3 x speed (solved sessions against the task's median time).
import { rangeError, typeError } from '../errors.js';
import type { SchedulerMode } from '../scheduler/types.js';
import type { DemonstratorMix } from './demonstrator.js';
import { MODEL_SIZES, type ModelSize } from './models.js';
import { SCAFFOLDS, type ScaffoldName } from './scaffolds.js';

export interface DemoOptions {
  seed: number;
  /** Wall-clock budget of the whole run, minutes. */
  minutes: number;
  scaffolds: ScaffoldName[];
  model: ModelSize;
  mode: SchedulerMode;
  /** Folder of the report, the run log, the pool and the checkpoint. */
  out: string;
  /** An external OpenAI-compatible server: no in-process training, batches exported as JSONL. */
  upstreamUrl?: string;
  /** The model name the external server serves. */
  upstreamModel?: string;
  /** Rollouts per task (G), groups per step, queue capacity N, window W, staleness bound. */
  groupSize: number;
  groupsPerStep: number;
  capacity: number;
  window?: number;
  maxLag: number;
  /** RL steps at most (the time budget usually ends the phase first). */
  rlSteps: number;
  /** Evaluation tasks per scaffold, before and after RL (the same ones). */
  evalTasks: number;
  /** Agent sessions running at once. */
  concurrency: number;
  warmStart: { maxSteps: number; noisySteps: number; targetAccuracy: number; lr: number; noisyLr: number; batch: number; mix?: DemonstratorMix };
  rl: { lr: number; epsHigh: number };
  rewards: { alpha: number; beta: number };
}

export function defaultOptions(): DemoOptions {
  return {
    seed: 1,
    minutes: 10,
    scaffolds: [...SCAFFOLDS],
    model: 'tiny',
    mode: 'windowed',
    out: 'demo-out',
    groupSize: 8,
    groupsPerStep: 8,
    capacity: 16,
    maxLag: 4,
    rlSteps: 400,
    evalTasks: 48,
    concurrency: 64,
    warmStart: { maxSteps: 3000, noisySteps: 300, targetAccuracy: 0.99, lr: 5e-3, noisyLr: 1e-3, batch: 32 },
    rl: { lr: 3e-4, epsHigh: 4 },
    rewards: { alpha: 0.1, beta: 0.3 },
  };
}

const positiveInt = (name: string, v: unknown, min = 1) => {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw rangeError(`${name}: expected an integer >= ${min}, got ${String(v)}`);
  return v;
};
const positive = (name: string, v: unknown) => {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw rangeError(`${name}: expected a number > 0, got ${String(v)}`);
  return v;
};

/** Defaults overridden by `partial` (nested objects merged), checked; errors name the option. */
export function resolveOptions(partial: Partial<DemoOptions> = {}): DemoOptions {
  const d = defaultOptions();
  const o: DemoOptions = {
    ...d,
    ...partial,
    warmStart: { ...d.warmStart, ...partial.warmStart },
    rl: { ...d.rl, ...partial.rl },
    rewards: { ...d.rewards, ...partial.rewards },
  };
  positiveInt('seed', o.seed, 0);
  positive('minutes', o.minutes);
  if (!Array.isArray(o.scaffolds) || o.scaffolds.length === 0) throw typeError('scaffolds: expected at least one scaffold');
  for (const s of o.scaffolds)
    if (!SCAFFOLDS.includes(s)) throw rangeError(`scaffolds: unknown scaffold ${JSON.stringify(s)} (known: ${SCAFFOLDS.join(', ')})`);
  if (new Set(o.scaffolds).size !== o.scaffolds.length) throw rangeError(`scaffolds: ${o.scaffolds.join(',')} names a scaffold twice`);
  if (!MODEL_SIZES.includes(o.model)) throw rangeError(`model: expected one of ${MODEL_SIZES.join(', ')}, got ${JSON.stringify(o.model)}`);
  if (!['windowed', 'fifo', 'greedy'].includes(o.mode)) throw rangeError(`mode: expected windowed, fifo or greedy, got ${JSON.stringify(o.mode)}`);
  if (typeof o.out !== 'string' || o.out === '') throw typeError('out: expected a folder path');
  if (o.upstreamUrl !== undefined && !/^https?:\/\//.test(o.upstreamUrl))
    throw rangeError(`upstreamUrl: expected an http(s) URL, got ${JSON.stringify(o.upstreamUrl)}`);
  positiveInt('groupSize', o.groupSize, 2);
  positiveInt('groupsPerStep', o.groupsPerStep);
  positiveInt('capacity', o.capacity);
  if (o.capacity < o.groupsPerStep) throw rangeError(`capacity: expected at least groupsPerStep (${o.groupsPerStep}) tasks, got ${o.capacity}`);
  if (o.window !== undefined) {
    positiveInt('window', o.window);
    if (o.mode !== 'windowed') throw rangeError(`window: only the windowed mode takes a window (mode is ${o.mode})`);
  }
  positiveInt('maxLag', o.maxLag, 0);
  positiveInt('rlSteps', o.rlSteps);
  positiveInt('evalTasks', o.evalTasks);
  positiveInt('concurrency', o.concurrency);
  positiveInt('warmStart.maxSteps', o.warmStart.maxSteps);
  positiveInt('warmStart.noisySteps', o.warmStart.noisySteps, 0);
  positiveInt('warmStart.batch', o.warmStart.batch);
  positive('warmStart.lr', o.warmStart.lr);
  positive('warmStart.noisyLr', o.warmStart.noisyLr);
  positive('rl.lr', o.rl.lr);
  positive('rl.epsHigh', o.rl.epsHigh);
  for (const k of ['alpha', 'beta'] as const)
    if (typeof o.rewards[k] !== 'number' || !Number.isFinite(o.rewards[k]) || o.rewards[k] < 0)
      throw rangeError(`rewards.${k}: expected a number >= 0, got ${String(o.rewards[k])}`);
  return o;
}
