// The policy-version lag bound: a rollout's lag is the current version minus the version that
// generated it; past maxLag it is dropped or down-weighted. Kept apart from the queue so that the
// window logic and the staleness rule can each be read (and replaced) alone.
import { KernelErrorCode, rangeError, typeError } from '../errors.js';
import { expectInt } from '../validate.js';
import type { DropReason, ReleasedTrajectory, RolloutLike, StaleAction, StalenessOptions } from './types.js';

export interface StalenessVerdict<R extends RolloutLike> {
  /** Handed out, in completion order, with lag and weight. */
  kept: ReleasedTrajectory<R>[];
  /** Removed for staleness (under 'drop'). */
  stale: number;
  /** Set when the whole group goes: nothing fresh left, or too few. */
  dropGroup?: DropReason;
}

export class StalenessPolicy {
  readonly maxLag: number;
  readonly action: StaleAction;
  readonly minGroupSize: number;
  private readonly weightOf: (lag: number, maxLag: number) => number;

  constructor(options: StalenessOptions = {}) {
    if (typeof options !== 'object' || options === null) throw typeError(`options.staleness: expected an object, got ${options}`);
    const maxLag = options.maxLag ?? Infinity;
    if (typeof maxLag !== 'number' || Number.isNaN(maxLag) || maxLag < 0 || (Number.isFinite(maxLag) && !Number.isInteger(maxLag)))
      throw rangeError(`options.staleness.maxLag: expected an integer >= 0 or Infinity, got ${maxLag}`);
    this.maxLag = maxLag;
    const action = options.action ?? 'drop';
    if (action !== 'drop' && action !== 'downweight')
      throw typeError(`options.staleness.action: expected 'drop' or 'downweight', got ${String(action)}`);
    this.action = action;
    if (options.weight !== undefined && typeof options.weight !== 'function')
      throw typeError(`options.staleness.weight: expected a function, got ${typeof options.weight}`);
    // Halving per version past the bound: stale data still counts, but less the older it is.
    this.weightOf = options.weight ?? ((lag, bound) => 2 ** -(lag - bound));
    this.minGroupSize = expectInt('options.staleness.minGroupSize', options.minGroupSize ?? 1, 1);
  }

  /** Judges a finished group's rollouts at `version`. Throws (changing nothing) on a bad weight. */
  judge<R extends RolloutLike>(rollouts: readonly R[], version: number): StalenessVerdict<R> {
    const kept: ReleasedTrajectory<R>[] = [];
    let stale = 0;
    for (const rollout of rollouts) {
      const lag = version - rollout.version;
      if (lag <= this.maxLag) {
        kept.push({ rollout, lag, weight: 1 });
      } else if (this.action === 'downweight') {
        const weight = this.weightOf(lag, this.maxLag);
        if (typeof weight !== 'number' || !(weight >= 0 && weight <= 1))
          throw rangeError(
            `options.staleness.weight(${lag}, ${this.maxLag}): expected a number in [0, 1], got ${weight}`,
            KernelErrorCode.INVALID_ARGUMENT,
          );
        kept.push({ rollout, lag, weight });
      } else {
        stale++;
      }
    }
    // minGroupSize judges what staleness left; a group submitted small is the producer's choice.
    const dropGroup: DropReason | undefined =
      kept.length === 0 ? 'stale' : stale > 0 && kept.length < this.minGroupSize ? 'too-few-fresh' : undefined;
    return { kept, stale, dropGroup };
  }
}
