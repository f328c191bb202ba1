// The CISPO policy-gradient loss (contract 3), and PPO-clip and supervised cross-entropy through the
// same kernel, over the logits rows of a prefix tree: a thin typed wrapper of forge_cispo_loss. Arguments are checked here first
// (TypeError / RangeError naming the argument); the logits themselves are checked finite by the
// kernel, in the pass that reads them anyway.
import { KernelErrorCode, rangeError, typeError } from './errors.js';
import { addon } from './native.js';
import { expectArray, expectInt } from './validate.js';

/** The loss terms: term j scores token `target[j]` under the logits row `node[j]`. `PrefixTree.terms` satisfies it. */
export interface PolicyLossTerms {
  /** Logits row (tree node) of each term, in [0, N). */
  node: Int32Array;
  /** Token id of each term, in [0, vocabSize). */
  target: Int32Array;
  /** Log-probability of the target under the policy that sampled it (finite). */
  oldLogprob: Float32Array;
  /** Advantage of each term (finite). */
  advantage: Float32Array;
}

export interface CispoOptions {
  /**
   * 'cispo' (default): loss = -(1/Z) sum_j sg(clip(r_j, 1 - epsLow, 1 + epsHigh)) A_j logp_j.
   * 'ppo-clip': loss = -(1/Z) sum_j min(r_j A_j, clip(r_j, 1 - epsLow, 1 + epsHigh) A_j).
   * 'cross-entropy': loss = -(1/Z) sum_j A_j logp_j (supervised: weight 1 on every term, A = 1 gives
   *   token-level cross-entropy; epsLow / epsHigh are ignored, the clip fractions are 0, oldLogprob
   *   only feeds meanRatio).
   */
  mode?: 'cispo' | 'ppo-clip' | 'cross-entropy';
  /** Lower clip 1 - epsLow, >= 0 (Infinity: none). Default: Infinity for CISPO (as MiniMax-M1), 0.2 for PPO. */
  epsLow?: number;
  /** Upper clip 1 + epsHigh, >= 0 (Infinity: none). Default: 4 for CISPO (ratio cap 5), 0.2 for PPO. */
  epsHigh?: number;
  /** Z, a finite number > 0. Default: the number of terms (token-level mean). */
  normalizer?: number;
  /** Compute dlogits (default true). */
  grad?: boolean;
  /** Write dlogits into `logits` (which are then consumed) instead of a new array. Needs grad. */
  inPlace?: boolean;
}

/** Batch statistics. Means over no terms (or no rows) are 0. */
export interface CispoStats {
  /** Mean importance ratio r = exp(logp - oldLogprob) over terms. */
  meanRatio: number;
  /** Fraction of terms with r > 1 + epsHigh. */
  clipFracHigh: number;
  /** Fraction of terms with r < 1 - epsLow. */
  clipFracLow: number;
  /** Among terms with A > 0, the fraction with r > 1 + epsHigh. */
  clipFracPositiveAdv: number;
  /** Among terms with A < 0, the fraction with r < 1 - epsLow. */
  clipFracNegativeAdv: number;
  /** Mean softmax entropy (nats) over the rows that carry terms. */
  meanEntropy: number;
  /** Mean logp over terms. */
  meanLogprob: number;
  numTerms: number;
  /** Rows carrying at least one term. */
  numRows: number;
}

export interface CispoResult {
  loss: number;
  /** d loss / d logits [N, V]; zero on rows without terms. Absent when grad is false; `logits` itself when inPlace. */
  dlogits?: Float32Array;
  /** logp of each term [J] (float32). */
  logprobs: Float32Array;
  stats: CispoStats;
}

// CISPO defaults. MiniMax-M1 sets no lower bound on the IS weight and tunes only the upper one. Peers
// cap the ratio near 5: TRL's GRPOConfig(loss_type='cispo') clamps the ratio at epsilon_high, whose
// documented recommended value is 5.0 (the eps_max of ScaleRL, arXiv 2510.13786); Tinker's cispo loss
// defaults to clip_high_threshold = 4.0. Here the cap is 1 + epsHigh, so epsHigh = 4 gives TRL's 5.
const CISPO_EPS_LOW = Infinity;
const CISPO_EPS_HIGH = 4;
// PPO-clip: the usual symmetric 0.2.
const PPO_EPS = 0.2;

const MODES = { cispo: 0, 'ppo-clip': 1, 'cross-entropy': 2 } as const;
const MODE_NAMES = "'cispo', 'ppo-clip' or 'cross-entropy'";
const NON_FINITE = KernelErrorCode.NON_FINITE;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function epsilon(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw typeError(`${name}: expected a number, got ${typeof value}`);
  if (Number.isNaN(value)) throw rangeError(`${name}: expected a number >= 0, got NaN`, NON_FINITE);
  if (value < 0) throw rangeError(`${name}: expected a number >= 0, got ${value}`);
  return value;
}

function flag(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw typeError(`${name}: expected a boolean, got ${typeof value}`);
  return value;
}

/** Checks everything and returns the addon's argument list (without the trailing `out` and `async`). */
function prepare(logits: unknown, vocabSize: unknown, terms: unknown, options: unknown): unknown[] {
  const z = expectArray('logits', logits, Float32Array);
  const V = expectInt('vocabSize', vocabSize, 1, 2147483647);
  if (z.length % V !== 0)
    throw rangeError(`logits: length ${z.length} is not a multiple of vocabSize ${V}`);
  const N = z.length / V;

  if (!isObject(terms)) throw typeError('terms: expected an object { node, target, oldLogprob, advantage }');
  const node = expectArray('terms.node', terms.node, Int32Array);
  const J = node.length;
  const target = expectArray('terms.target', terms.target, Int32Array, J);
  const oldLogprob = expectArray('terms.oldLogprob', terms.oldLogprob, Float32Array, J);
  const advantage = expectArray('terms.advantage', terms.advantage, Float32Array, J);
  for (let j = 0; j < J; j++) {
    if (node[j] < 0 || node[j] >= N) throw rangeError(`terms.node[${j}]: node ${node[j]} out of range [0, ${N})`);
    if (target[j] < 0 || target[j] >= V)
      throw rangeError(`terms.target[${j}]: token id ${target[j]} out of the vocabulary [0, ${V})`);
    if (!Number.isFinite(oldLogprob[j]))
      throw rangeError(`terms.oldLogprob[${j}]: expected a finite number, got ${oldLogprob[j]}`, NON_FINITE);
    if (!Number.isFinite(advantage[j]))
      throw rangeError(`terms.advantage[${j}]: expected a finite number, got ${advantage[j]}`, NON_FINITE);
  }

  const { mode, epsLow, epsHigh, normalizer, grad, inPlace } = resolveLossOptions(options);
  return [z, V, node, target, oldLogprob, advantage, mode, epsLow, epsHigh, normalizer, grad, inPlace];
}

/** The loss options as the kernels take them: checked, defaults filled in, the mode as forge_pg_mode's
 * value and Z = 0 for "the number of terms". Shared by cispoLoss and the nano policy's lossAndGrad. */
export function resolveLossOptions(options: unknown): {
  mode: number;
  epsLow: number;
  epsHigh: number;
  normalizer: number;
  grad: boolean;
  inPlace: boolean;
} {
  if (options !== undefined && !isObject(options))
    throw typeError(`options: expected an object, got ${typeof options}`);
  const o = (options ?? {}) as Record<string, unknown>;
  const mode = o.mode ?? 'cispo';
  if (typeof mode !== 'string') throw typeError(`options.mode: expected ${MODE_NAMES}, got ${typeof mode}`);
  if (!Object.hasOwn(MODES, mode)) throw rangeError(`options.mode: expected ${MODE_NAMES}, got '${mode}'`);
  const ppo = mode === 'ppo-clip';
  const epsLow = epsilon('options.epsLow', o.epsLow, ppo ? PPO_EPS : CISPO_EPS_LOW);
  const epsHigh = epsilon('options.epsHigh', o.epsHigh, ppo ? PPO_EPS : CISPO_EPS_HIGH);
  let normalizer = 0; // the kernel's "number of terms"
  if (o.normalizer !== undefined) {
    if (typeof o.normalizer !== 'number')
      throw typeError(`options.normalizer: expected a number, got ${typeof o.normalizer}`);
    if (!Number.isFinite(o.normalizer))
      throw rangeError(`options.normalizer: expected a finite number, got ${o.normalizer}`, NON_FINITE);
    if (o.normalizer <= 0) throw rangeError(`options.normalizer: expected a number > 0, got ${o.normalizer}`);
    normalizer = o.normalizer;
  }
  const grad = flag('options.grad', o.grad, true);
  const inPlace = flag('options.inPlace', o.inPlace, false);
  if (inPlace && !grad) throw rangeError('options.inPlace: writes dlogits, so it needs grad: true');
  return { mode: MODES[mode as keyof typeof MODES], epsLow, epsHigh, normalizer, grad, inPlace };
}

/**
 * CISPO (or PPO-clip) loss, dlogits and per-term log-probs over logits [N, V] (one row per tree node),
 * on the calling thread. Each logits row is read from memory once (an online max / sum-of-exponentials
 * pass); no [N, V] softmax is materialised.
 *
 * @throws TypeError for wrong argument types; RangeError (with `code`) for shapes, ids or options out
 *   of range, and FORGE_ERR_NON_FINITE naming the row and column of the first NaN/Inf logit (with
 *   inPlace, `logits` may then already be partly overwritten).
 */
export function cispoLoss(
  logits: Float32Array,
  vocabSize: number,
  terms: PolicyLossTerms,
  options?: CispoOptions,
): CispoResult {
  return addon.cispoLoss(...prepare(logits, vocabSize, terms, options), undefined, false) as CispoResult;
}

/** cispoLoss on a libuv worker thread; the arrays must not be modified until the promise settles. */
export async function cispoLossAsync(
  logits: Float32Array,
  vocabSize: number,
  terms: PolicyLossTerms,
  options?: CispoOptions,
): Promise<CispoResult> {
  return (await addon.cispoLoss(...prepare(logits, vocabSize, terms, options), undefined, true)) as CispoResult;
}
