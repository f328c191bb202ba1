// The CISPO policy-gradient loss (contract 3), and PPO-clip and supervised cross-entropy through the
// same kernel, over the logits rows of a prefix tree: a thin typed wrapper of forge_cispo_loss. Arguments are checked here first
// (TypeError / RangeError naming the argument); the logits themselves are checked finite by the
// kernel, in the pass that reads them anyway. `options.backend` picks the CPU or the device kernel
// (lib/backend.ts).
import { chooseBackend, type BackendOption } from './backend.js';
import { KernelErrorCode, rangeError, typeError } from './errors.js';
import { cispoLossOnDevice } from './hostDevice.js';
import { resolveLossOptions } from './lossOptions.js';
import { addon } from './native.js';
import { expectArray, expectInt } from './validate.js';

export { resolveLossOptions } from './lossOptions.js';

const NON_FINITE = KernelErrorCode.NON_FINITE;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

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

type CispoArgs = [
  logits: Float32Array, vocabSize: number, node: Int32Array, target: Int32Array, oldLogprob: Float32Array, advantage: Float32Array,
  mode: number, epsLow: number, epsHigh: number, normalizer: number, grad: boolean, inPlace: boolean,
];

/** Checks everything and returns the addon's argument list (without the trailing `out` and `async`). */
function prepare(logits: unknown, vocabSize: unknown, terms: unknown, options: unknown): CispoArgs {
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
  options?: CispoOptions & BackendOption,
): CispoResult {
  const args = prepare(logits, vocabSize, terms, options);
  if (chooseBackend('cispoLoss', options?.backend) === 'cuda') return onDevice(args, terms, options);
  return addon.cispoLoss(...args, undefined, false) as CispoResult;
}

/**
 * cispoLoss on a libuv worker thread; the arrays must not be modified until the promise settles. With
 * backend 'cuda' the device call blocks the event loop until the device is done.
 */
export async function cispoLossAsync(
  logits: Float32Array,
  vocabSize: number,
  terms: PolicyLossTerms,
  options?: CispoOptions & BackendOption,
): Promise<CispoResult> {
  const args = prepare(logits, vocabSize, terms, options);
  if (chooseBackend('cispoLossAsync', options?.backend) === 'cuda') return onDevice(args, terms, options);
  return (await addon.cispoLoss(...args, undefined, true)) as CispoResult;
}

function onDevice(args: CispoArgs, terms: PolicyLossTerms, options: CispoOptions | undefined): CispoResult {
  const [z, V, , , , , , , , , grad, inPlace] = args;
  return cispoLossOnDevice(z, V, terms, options, grad, inPlace);
}
