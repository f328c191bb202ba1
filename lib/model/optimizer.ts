// AdamW for the embedded trainer: typed wrappers of forge_grad_sq_norm / forge_adamw_step, and an
// `AdamW` class over named parameter groups of one flat float32 buffer (global-norm clipping across
// the groups, a learning-rate schedule, state export/import for checkpoints). It knows nothing about
// the model: a group is a name, an offset, a length and a weight decay.
import { KernelErrorCode, rangeError, typeError } from '../errors.js';
import { addon } from '../native.js';
import { expectArray, expectFinite, expectInt } from '../validate.js';

/** The per-call hyperparameters of forge_adamw_step (passed to the kernel as float32). */
export interface AdamWHyperparameters {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function beta(name: string, value: unknown): number {
  if (typeof value !== 'number') throw typeError(`${name}: expected a number in [0, 1), got ${typeof value}`);
  // As the kernel sees it: a float32 just below 1 rounds to 1.
  if (!(value >= 0 && Math.fround(value) < 1)) throw rangeError(`${name}: expected a number in [0, 1), got ${value}`);
  return value;
}

function positive(name: string, value: unknown): number {
  expectFinite(name, value);
  if (!((value as number) > 0)) throw rangeError(`${name}: expected a number > 0, got ${value}`);
  return value as number;
}

function hyperparameters(h: unknown): unknown[] {
  if (!isObject(h)) throw typeError('options: expected an object { lr, beta1, beta2, eps, weightDecay }');
  return [
    expectFinite('options.lr', h.lr, 0),
    beta('options.beta1', h.beta1),
    beta('options.beta2', h.beta2),
    positive('options.eps', h.eps),
    expectFinite('options.weightDecay', h.weightDecay, 0),
  ];
}

function stepArgs(params: unknown, grads: unknown, m: unknown, v: unknown, step: unknown, options: unknown): unknown[] {
  const p = expectArray('params', params, Float32Array);
  const n = p.length;
  const h = hyperparameters(options);
  const gradScale = (options as { gradScale?: unknown }).gradScale ?? 1;
  return [
    p,
    expectArray('grads', grads, Float32Array, n),
    expectArray('m', m, Float32Array, n),
    expectArray('v', v, Float32Array, n),
    expectInt('step', step, 1),
    expectFinite('options.gradScale', gradScale, 0),
    ...h,
  ];
}

/** Sum of squares of `grads` in float64. @throws RangeError FORGE_ERR_NON_FINITE naming the first NaN/Inf. */
export function gradSqNorm(grads: Float32Array): number {
  return addon.gradSqNorm(expectArray('grads', grads, Float32Array), false) as number;
}

export async function gradSqNormAsync(grads: Float32Array): Promise<number> {
  return (await addon.gradSqNorm(expectArray('grads', grads, Float32Array), true)) as number;
}

/**
 * One AdamW step in place on params, m, v (same length as grads); `step` is 1-based (bias correction),
 * `gradScale` (default 1) multiplies the gradients first. Nothing is written when anything is wrong
 * (a non-finite gradient gives FORGE_ERR_NON_FINITE naming its index).
 */
export function adamwStep(
  params: Float32Array,
  grads: Float32Array,
  m: Float32Array,
  v: Float32Array,
  step: number,
  options: AdamWHyperparameters & { gradScale?: number },
): void {
  addon.adamwStep(...stepArgs(params, grads, m, v, step, options), false);
}

/** adamwStep on a libuv worker; the arrays must not be touched until the promise settles. */
export async function adamwStepAsync(
  params: Float32Array,
  grads: Float32Array,
  m: Float32Array,
  v: Float32Array,
  step: number,
  options: AdamWHyperparameters & { gradScale?: number },
): Promise<void> {
  await addon.adamwStep(...stepArgs(params, grads, m, v, step, options), true);
}

// ------------------------------------------------------------------------------------------------

/** A named run of parameters [offset, offset + length) of the flat buffer, updated with one weight decay. */
export interface ParamGroup {
  name: string;
  offset: number;
  length: number;
  /** Decoupled weight decay; default: the optimizer's `weightDecay`. */
  weightDecay?: number;
}

export type LrSchedule =
  | { kind: 'constant' }
  /** Linear warmup to `lr` over `warmupSteps` (step t gets lr t / warmupSteps), then cosine decay to
   * `minLr` (default lr / 10) at `totalSteps`, constant after. */
  | { kind: 'warmup-cosine'; warmupSteps: number; totalSteps: number; minLr?: number };

export interface AdamWOptions {
  /** Peak learning rate; default 1e-3. */
  lr?: number;
  /** Default [0.9, 0.95]. */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Weight decay of the groups that set none; default 0.1 (give norms and embeddings 0, see paramGroups). */
  weightDecay?: number;
  /** Default constant. */
  schedule?: LrSchedule;
  /** Global-norm clipping threshold applied by every step that does not override it; default none. */
  maxGradNorm?: number;
  /** Length of the flat buffer; default the end of the last group. */
  numParams?: number;
}

/** Everything that defines the optimizer except its moments and step: JSON-safe, for checkpoints. */
export interface AdamWConfig {
  numParams: number;
  groups: { name: string; offset: number; length: number; weightDecay: number }[];
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  schedule: LrSchedule;
  maxGradNorm: number | null;
}

export interface AdamWState {
  /** Steps taken (0 before the first). */
  step: number;
  m: Float32Array;
  v: Float32Array;
}

export interface AdamWStepResult {
  /** Global L2 norm of the gradients over all groups, before clipping. */
  gradNorm: number;
  /** Whether the gradients were scaled down to maxGradNorm. */
  clipped: boolean;
  /** The factor the gradients were multiplied by: maxGradNorm / (gradNorm + 1e-6) when clipped, else 1. */
  gradScale: number;
  /** Learning rate of this step. */
  lr: number;
  /** 1-based number of this step. */
  step: number;
}

// As torch.nn.utils.clip_grad_norm_: scale = max / (norm + 1e-6) when norm > max.
const CLIP_EPS = 1e-6;

function schedule(value: unknown, lr: number): LrSchedule {
  if (value === undefined) return { kind: 'constant' };
  if (!isObject(value)) throw typeError('options.schedule: expected { kind: "constant" } or { kind: "warmup-cosine", ... }');
  if (value.kind === 'constant') return { kind: 'constant' };
  if (value.kind !== 'warmup-cosine')
    throw rangeError(`options.schedule.kind: expected 'constant' or 'warmup-cosine', got ${String(value.kind)}`);
  const warmupSteps = expectInt('options.schedule.warmupSteps', value.warmupSteps, 0);
  const totalSteps = expectInt('options.schedule.totalSteps', value.totalSteps, Math.max(warmupSteps, 1));
  const minLr = value.minLr === undefined ? lr / 10 : expectFinite('options.schedule.minLr', value.minLr, 0);
  if (minLr > lr) throw rangeError(`options.schedule.minLr: expected a number <= lr (${lr}), got ${minLr}`);
  return { kind: 'warmup-cosine', warmupSteps, totalSteps, minLr };
}

function maxNorm(name: string, value: unknown): number | null {
  if (value === undefined || value === null) return null;
  return positive(name, value);
}

export class AdamW {
  readonly groups: readonly Readonly<AdamWConfig['groups'][number]>[];
  readonly numParams: number;
  readonly lr: number;
  readonly betas: readonly [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly schedule: Readonly<LrSchedule>;
  readonly maxGradNorm: number | null;
  /** First and second moments, aligned with the flat parameter buffer. */
  readonly m: Float32Array;
  readonly v: Float32Array;
  #step = 0;
  #busy = false;

  constructor(groups: ParamGroup[], options: AdamWOptions = {}) {
    if (!isObject(options)) throw typeError('options: expected an object');
    this.lr = expectFinite('options.lr', options.lr ?? 1e-3, 0);
    const betas = options.betas ?? [0.9, 0.95];
    if (!Array.isArray(betas) || betas.length !== 2) throw typeError('options.betas: expected [beta1, beta2]');
    this.betas = [beta('options.betas[0]', betas[0]), beta('options.betas[1]', betas[1])];
    this.eps = positive('options.eps', options.eps ?? 1e-8);
    this.weightDecay = expectFinite('options.weightDecay', options.weightDecay ?? 0.1, 0);
    this.schedule = schedule(options.schedule, this.lr);
    this.maxGradNorm = maxNorm('options.maxGradNorm', options.maxGradNorm);

    if (!Array.isArray(groups)) throw typeError('groups: expected an array of { name, offset, length, weightDecay? }');
    const names = new Set<string>();
    this.groups = groups.map((g, i) => {
      if (!isObject(g)) throw typeError(`groups[${i}]: expected { name, offset, length, weightDecay? }`);
      if (typeof g.name !== 'string' || g.name === '') throw typeError(`groups[${i}].name: expected a non-empty string`);
      if (names.has(g.name)) throw rangeError(`groups[${i}].name: '${g.name}' appears twice`);
      names.add(g.name);
      return Object.freeze({
        name: g.name,
        offset: expectInt(`groups[${i}].offset`, g.offset, 0),
        length: expectInt(`groups[${i}].length`, g.length, 0),
        weightDecay: expectFinite(`groups[${i}].weightDecay`, g.weightDecay ?? this.weightDecay, 0),
      });
    });
    const sorted = this.groups.filter((g) => g.length > 0).sort((a, b) => a.offset - b.offset); // empty groups own nothing
    for (let i = 1; i < sorted.length; i++)
      if (sorted[i].offset < sorted[i - 1].offset + sorted[i - 1].length)
        throw rangeError(`groups: '${sorted[i - 1].name}' and '${sorted[i].name}' overlap`);
    const end = sorted.reduce((e, g) => Math.max(e, g.offset + g.length), 0);
    this.numParams = options.numParams === undefined ? end : expectInt('options.numParams', options.numParams, end);
    this.m = new Float32Array(this.numParams);
    this.v = new Float32Array(this.numParams);
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.#step;
  }

  /** Learning rate of 1-based step `step` (default: the next one). */
  learningRate(step = this.#step + 1): number {
    expectInt('step', step, 1);
    const s = this.schedule;
    if (s.kind === 'constant') return this.lr;
    if (step <= s.warmupSteps) return (this.lr * step) / s.warmupSteps;
    const minLr = s.minLr as number;
    const progress = Math.min(1, (step - s.warmupSteps) / Math.max(1, s.totalSteps - s.warmupSteps));
    return minLr + (this.lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
  }

  /**
   * One step: global gradient norm over all groups, clipping to `maxGradNorm` (this call's, else the
   * optimizer's), then AdamW per group with the scheduled learning rate. `params` and `grads` are the
   * flat buffers (numParams long). On error (a non-finite gradient names its group and index) nothing
   * has been written and the step count is unchanged.
   */
  step(params: Float32Array, grads: Float32Array, options: { maxGradNorm?: number } = {}): AdamWStepResult {
    const plan = this.#plan(params, grads, options);
    let sq = 0;
    for (const g of this.groups) sq += this.#inGroup(g, () => gradSqNorm(plan.view(grads, g)));
    const result = this.#result(plan, sq);
    for (const g of this.groups) this.#inGroup(g, () => adamwStep(...plan.args(g, result)));
    this.#step = result.step;
    return result;
  }

  /** step() with the kernels on libuv workers. One step at a time; the buffers must not be touched until it settles. */
  async stepAsync(params: Float32Array, grads: Float32Array, options: { maxGradNorm?: number } = {}): Promise<AdamWStepResult> {
    const plan = this.#plan(params, grads, options);
    this.#busy = true;
    try {
      let sq = 0;
      for (const g of this.groups) sq += await this.#inGroupAsync(g, () => gradSqNormAsync(plan.view(grads, g)));
      const result = this.#result(plan, sq);
      for (const g of this.groups) await this.#inGroupAsync(g, () => adamwStepAsync(...plan.args(g, result)));
      this.#step = result.step;
      return result;
    } finally {
      this.#busy = false;
    }
  }

  #plan(params: unknown, grads: unknown, options: unknown) {
    if (this.#busy) throw new Error('AdamW: a stepAsync is still running (one step at a time)');
    const p = expectArray('params', params, Float32Array, this.numParams);
    expectArray('grads', grads, Float32Array, this.numParams);
    if (!isObject(options)) throw typeError('options: expected an object { maxGradNorm? }');
    const limit = options.maxGradNorm === undefined ? this.maxGradNorm : maxNorm('options.maxGradNorm', options.maxGradNorm);
    const step = this.#step + 1;
    const lr = this.learningRate(step);
    const view = (a: Float32Array, g: AdamWConfig['groups'][number]) => a.subarray(g.offset, g.offset + g.length);
    const args = (g: AdamWConfig['groups'][number], r: AdamWStepResult) =>
      [view(p, g), view(grads as Float32Array, g), view(this.m, g), view(this.v, g), step,
        { lr, beta1: this.betas[0], beta2: this.betas[1], eps: this.eps, weightDecay: g.weightDecay, gradScale: r.gradScale }] as const;
    return { limit, step, lr, view, args };
  }

  #result(plan: { limit: number | null; step: number; lr: number }, sq: number): AdamWStepResult {
    const gradNorm = Math.sqrt(sq);
    const clipped = plan.limit !== null && gradNorm > plan.limit;
    const gradScale = clipped ? (plan.limit as number) / (gradNorm + CLIP_EPS) : 1;
    return { gradNorm, clipped, gradScale, lr: plan.lr, step: plan.step };
  }

  #inGroup<T>(g: { name: string; offset: number }, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw this.#named(g, e);
    }
  }

  async #inGroupAsync<T>(g: { name: string; offset: number }, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.#named(g, e);
    }
  }

  // Kernel messages index into the group's view; say which group (and where it starts) too.
  #named(g: { name: string; offset: number }, e: unknown): unknown {
    if (e instanceof Error && 'code' in e)
      e.message = `group '${g.name}' (flat offset ${g.offset}): ${e.message}`;
    return e;
  }

  /** The JSON-safe definition (groups, hyperparameters, schedule) to rebuild it with AdamW.fromConfig. */
  config(): AdamWConfig {
    return {
      numParams: this.numParams,
      groups: this.groups.map((g) => ({ ...g })),
      lr: this.lr,
      betas: [this.betas[0], this.betas[1]],
      eps: this.eps,
      weightDecay: this.weightDecay,
      schedule: { ...this.schedule },
      maxGradNorm: this.maxGradNorm,
    };
  }

  static fromConfig(config: AdamWConfig): AdamW {
    if (!isObject(config)) throw typeError('config: expected an AdamWConfig object');
    return new AdamW(config.groups, { ...config, maxGradNorm: config.maxGradNorm ?? undefined });
  }

  /** A copy of the step count and moments. */
  exportState(): AdamWState {
    return { step: this.#step, m: this.m.slice(), v: this.v.slice() };
  }

  /** Restores exported state (copied in). The moments are checked: m finite, v finite and >= 0. */
  importState(state: AdamWState): void {
    if (!isObject(state)) throw typeError('state: expected { step, m, v }');
    const step = expectInt('state.step', state.step, 0);
    const m = expectArray('state.m', state.m, Float32Array, this.numParams);
    const v = expectArray('state.v', state.v, Float32Array, this.numParams);
    for (let i = 0; i < m.length; i++) {
      if (!Number.isFinite(m[i]))
        throw rangeError(`state.m[${i}]: expected a finite number, got ${m[i]}`, KernelErrorCode.NON_FINITE);
      if (!(v[i] >= 0 && v[i] < Infinity)) throw rangeError(`state.v[${i}]: expected a finite number >= 0, got ${v[i]}`);
    }
    this.m.set(m);
    this.v.set(v);
    this.#step = step;
  }
}

/** A tensor of the flat buffer, as a model describes its parameters. */
export interface FlatTensor {
  name: string;
  offset: number;
  shape: readonly number[];
}

/**
 * One group per tensor, with the usual decay convention: `weightDecay` (default 0.1) on matrices
 * (rank >= 2), 0 on vectors (norm gains, biases) and on embeddings (a name containing "embed");
 * `decay(tensor)` overrides the rule.
 */
export function paramGroups(
  tensors: readonly FlatTensor[],
  options: { weightDecay?: number; decay?: (tensor: FlatTensor) => boolean } = {},
): ParamGroup[] {
  const wd = expectFinite('options.weightDecay', options.weightDecay ?? 0.1, 0);
  const decay = options.decay ?? ((t: FlatTensor) => t.shape.length >= 2 && !/embed/i.test(t.name));
  return tensors.map((t) => ({
    name: t.name,
    offset: t.offset,
    length: t.shape.reduce((a, b) => a * b, 1),
    weightDecay: decay(t) ? wd : 0,
  }));
}
