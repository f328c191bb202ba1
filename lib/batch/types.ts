// The batch builder's contracts, as types only: what the scheduler hands it (groups of pool
// trajectories), and what it hands the trainer (a training batch: prefix-tree parts that share one
// loss normaliser, so their gradients sum to the unsplit batch's).
import type { PrefixTree } from '../prefixTree.js';
import type { Trajectory } from '../pool/types.js';
import type { RewardModel } from '../scheduler/rewards.js';
import type { RewardOptions, RolloutLike, TaskId } from '../scheduler/types.js';

/** One rollout as the scheduler carries it from the pool to the builder: a completed, rewarded
 * session and the version the scheduler measures its lag by (the oldest policy version among its
 * completion tokens). */
export interface TrajectoryRollout extends RolloutLike {
  readonly version: number;
  readonly trajectory: Trajectory;
}

/** Why a call of a released trajectory produced no sample. */
export type SkipReason =
  /** The call is marked untrainable (the upstream returned no token ids, the call failed or was aborted). */
  | 'untrainable'
  /** No completion tokens: nothing to predict. */
  | 'empty-completion'
  /** No prompt tokens: the first completion token has nothing to be predicted from. */
  | 'empty-prompt';

export const SKIP_REASONS: readonly SkipReason[] = ['untrainable', 'empty-completion', 'empty-prompt'];

/** Where a sample came from and what it carries (one per trainable call). */
export interface SampleSource {
  /** Index of the group in the batch (TrainingBatch.groups). */
  group: number;
  sessionId: string;
  callId: string;
  callIndex: number;
  /** The call's advantage (reward-to-go - group baseline, normalised) before the staleness weight. */
  advantage: number;
  /** The staleness weight of the trajectory (1 unless the scheduler down-weighted it). */
  weight: number;
  /** Oldest policy version among the call's completion tokens (the Sample's version). */
  version: number;
  /** The call's completion tokens came from more than one policy version. */
  mixedVersions: boolean;
  promptTokens: number;
  completionTokens: number;
}

export interface BatchSample extends SampleSource {
  /** The part (TrainingBatch.parts index) holding the sample, and its sample index there. */
  part: number;
  indexInPart: number;
}

export interface BatchGroup {
  /** The scheduler's task id: the pool group's id. */
  groupId: TaskId;
  /** The pool task the group's rollouts ran (the key of the speed baseline). */
  taskId: string;
  /** The group's queue index in the scheduler. */
  queueIndex: number;
  trajectories: number;
  samples: number;
  /** Group baseline B and std of the composite rewards (contract 5). */
  baseline: number;
  std: number;
  /** Whether the group's samples had to be spread over several parts. */
  split: boolean;
}

export interface BatchStats {
  groups: number;
  trajectories: number;
  samples: number;
  /** Tokens of all samples (prompt + completion of every trainable call). */
  inputTokens: number;
  /** Tree nodes over all parts: what the trainer computes. */
  treeTokens: number;
  /** Tree nodes of the whole batch merged into one tree (treeTokens minus what splitting repeats). */
  mergedTokens: number;
  /** inputTokens / treeTokens. */
  reduction: number;
  /** Loss terms (trainable positions) over all parts: the normaliser Z. */
  terms: number;
  parts: number;
  /** Groups spread over more than one part because they did not fit the budget together. */
  splitGroups: number;
  /** Samples longer than the budget, each alone in its own (over-budget) part. */
  overBudget: number;
  skippedCalls: Record<SkipReason, number>;
  /** Sample versions (the oldest version of each call), and the calls whose tokens span versions. */
  versions: { min: number; max: number };
  mixedVersionCalls: number;
  /** Scheduler lag (policy versions) over the batch's trajectories. */
  lag: { mean: number; max: number };
}

/** What the trainer reads: prefix-tree parts whose losses all divide by the same normaliser. */
export interface TreeParts {
  parts: PrefixTree[];
  /** Z: with it every part's loss is -(1/Z) sum over its terms, so the parts sum to the whole batch. */
  normalizer?: number;
}

export interface TrainingBatch extends TreeParts {
  /** Total loss terms of the batch (CISPO's token-level mean over the whole batch). */
  normalizer: number;
  groups: BatchGroup[];
  /** One per sample, in group order. */
  samples: BatchSample[];
  stats: BatchStats;
}

export interface BatchBuilderOptions {
  /** Largest prefix tree (in nodes, after merging) of one part: bounds the trainer's activations. */
  tokenBudget: number;
  /** Reward model settings (alpha, beta, speed shape, baseline window, eps, normalize), or a
   * RewardModel to share (its per-task speed baselines then persist across builders). */
  rewards?: RewardOptions | RewardModel;
  /** Reward version to score with (default 'default'). */
  rewardVersion?: string;
  /** Bounds the token ids (the policy's vocabulary); checked when the trees are built. */
  vocabSize?: number;
  /** T_completion of a session in seconds, or undefined for none; default the session's ended - created time. */
  sessionSeconds?: (trajectory: Trajectory) => number | undefined;
}
