// The batch builder: groups released by the scheduler -> rewards and advantages (contract 5) ->
// samples, one per trainable call -> prefix-tree parts under a token budget (contract 1), ready for
// the trainer. The whole batch is merged once (natively, off the event loop) to plan the parts; each
// part is then merged on its own. All parts share the normaliser Z = the batch's loss terms, so the
// sum of their losses and gradients is the unsplit batch's (CISPO's token-level mean over the batch).
import { KernelErrorCode, typeError } from '../errors.js';
import { buildPrefixTreeAsync, type PrefixTree, type Sample } from '../prefixTree.js';
import { DEFAULT_REWARD_VERSION, type Trajectory } from '../pool/types.js';
import { RewardModel } from '../scheduler/rewards.js';
import type { GroupRelease, GroupSource } from '../scheduler/types.js';
import { expectInt } from '../validate.js';
import { planParts } from './partition.js';
import { noSkips, rewardOf, sessionOutcome, sessionSeconds, trajectorySamples } from './samples.js';
import { SKIP_REASONS, type BatchBuilderOptions, type BatchGroup, type BatchSample, type BatchStats, type SampleSource } from './types.js';
import type { SkipReason, TrainingBatch, TrajectoryRollout } from './types.js';

const INT32_MAX = 2 ** 31 - 1;

/** One scored group: its summary and its samples (with where each came from). */
export interface GroupSamples {
  group: BatchGroup;
  samples: Sample[];
  sources: SampleSource[];
  skipped: Record<SkipReason, number>;
}

export class BatchBuilder {
  readonly tokenBudget: number;
  readonly rewards: RewardModel;
  readonly rewardVersion: string;
  readonly vocabSize: number | undefined;
  private readonly secondsOf: (trajectory: Trajectory) => number | undefined;

  constructor(options: BatchBuilderOptions) {
    if (typeof options !== 'object' || options === null) throw typeError('options: expected an object { tokenBudget, ... }');
    this.tokenBudget = expectInt('options.tokenBudget', options.tokenBudget, 1, INT32_MAX);
    this.rewards = options.rewards instanceof RewardModel ? options.rewards : new RewardModel(options.rewards);
    const rv = options.rewardVersion ?? DEFAULT_REWARD_VERSION;
    if (typeof rv !== 'string' || rv.length === 0) throw typeError(`options.rewardVersion: expected a non-empty string, got ${String(rv)}`);
    this.rewardVersion = rv;
    this.vocabSize = options.vocabSize === undefined ? undefined : expectInt('options.vocabSize', options.vocabSize, 1, INT32_MAX);
    if (options.sessionSeconds !== undefined && typeof options.sessionSeconds !== 'function')
      throw typeError(`options.sessionSeconds: expected a function, got ${typeof options.sessionSeconds}`);
    this.secondsOf = options.sessionSeconds ?? sessionSeconds;
  }

  /**
   * Scores one released group (its trajectories against each other; the speed baseline of its pool
   * task learns their times) and turns it into samples. Call it once per group: scoring updates the
   * running speed baselines. `index` is the group's position in the batch (SampleSource.group).
   */
  groupSamples(release: GroupRelease<TrajectoryRollout>, index = 0): GroupSamples {
    const where = `releases[${index}]`;
    if (typeof release !== 'object' || release === null || !Array.isArray(release.trajectories))
      throw typeError(`${where}: expected a GroupRelease { taskId, trajectories, ... }`);
    const kept = release.trajectories;
    kept.forEach((t, i) => {
      if (typeof t?.rollout?.trajectory !== 'object' || t.rollout.trajectory === null)
        throw typeError(`${where}.trajectories[${i}].rollout.trajectory: expected a pool Trajectory`);
    });
    const trajectories = kept.map((t) => t.rollout.trajectory);
    const taskId = trajectories[0]?.session.taskId ?? release.taskId;
    const group: BatchGroup = {
      groupId: release.taskId,
      taskId,
      queueIndex: release.index,
      trajectories: kept.length,
      samples: 0,
      baseline: 0,
      std: 0,
      split: false,
    };
    const out: GroupSamples = { group, samples: [], sources: [], skipped: noSkips() };
    if (kept.length === 0) return out;
    const outcomes = trajectories.map((t) => sessionOutcome(t, rewardOf(t, this.rewardVersion), this.secondsOf(t)));
    const score = this.rewards.scoreGroup(taskId, outcomes);
    group.baseline = score.baseline;
    group.std = score.std;
    kept.forEach((t, i) => {
      const part = trajectorySamples(trajectories[i], score.sessions[i].advantages, t.weight, index);
      out.samples.push(...part.samples);
      out.sources.push(...part.sources);
      for (const r of SKIP_REASONS) out.skipped[r] += part.skipped[r];
    });
    group.samples = out.samples.length;
    return out;
  }

  /** One training batch from `releases` (in the order given). */
  async build(releases: readonly GroupRelease<TrajectoryRollout>[]): Promise<TrainingBatch> {
    if (!Array.isArray(releases)) throw typeError(`releases: expected an array of GroupRelease, got ${typeof releases}`);
    const scored = releases.map((r, i) => this.groupSamples(r, i));
    const samples = scored.flatMap((g) => g.samples);
    const sources = scored.flatMap((g) => g.sources);
    const groups = scored.map((g) => g.group);
    const skipped = noSkips();
    for (const g of scored) for (const r of SKIP_REASONS) skipped[r] += g.skipped[r];
    const lags = releases.flatMap((r: GroupRelease<TrajectoryRollout>) => r.trajectories.map((t) => t.lag));
    const base = {
      groups: groups.length,
      trajectories: lags.length,
      samples: samples.length,
      skippedCalls: skipped,
      lag: { mean: lags.length ? lags.reduce((a, b) => a + b, 0) / lags.length : 0, max: lags.reduce((a, b) => Math.max(a, b), 0) },
      mixedVersionCalls: sources.filter((s) => s.mixedVersions).length,
    };
    if (samples.length === 0) {
      // Nothing to train on (every call untrainable): an empty batch the trainer refuses.
      const stats: BatchStats = { ...base, inputTokens: 0, treeTokens: 0, mergedTokens: 0, reduction: 1, terms: 0, parts: 0, splitGroups: 0, overBudget: 0, versions: { min: 0, max: 0 } };
      return { parts: [], normalizer: 0, groups, samples: [], stats };
    }

    const options = this.vocabSize === undefined ? undefined : { vocabSize: this.vocabSize };
    const whole = await buildPrefixTreeAsync(samples, options);
    const sampleGroups: number[][] = scored.map(() => []);
    sources.forEach((s, i) => sampleGroups[s.group].push(i));
    const plan = planParts(whole, sampleGroups, this.tokenBudget);
    const parts: PrefixTree[] =
      plan.parts.length === 1
        ? [whole] // everything fits: the planning tree is the part
        : await Promise.all(plan.parts.map((ids) => buildPrefixTreeAsync(ids.map((i) => samples[i]), options)));
    parts.forEach((p, k) => {
      if (p.numNodes !== plan.sizes[k])
        throw Object.assign(new Error(`internal: part ${k} has ${p.numNodes} nodes, planned ${plan.sizes[k]}`), { code: KernelErrorCode.INTERNAL });
    });

    const batchSamples: BatchSample[] = new Array(samples.length);
    plan.parts.forEach((ids, part) => ids.forEach((i, indexInPart) => (batchSamples[i] = { ...sources[i], part, indexInPart })));
    const partsOfGroup = groups.map(() => new Set<number>());
    for (const s of batchSamples) partsOfGroup[s.group].add(s.part);
    groups.forEach((g, i) => (g.split = partsOfGroup[i].size > 1));

    const treeTokens = parts.reduce((a, p) => a + p.numNodes, 0);
    let vmin = INT32_MAX, vmax = -INT32_MAX - 1;
    for (const s of sources) {
      if (s.version < vmin) vmin = s.version;
      if (s.version > vmax) vmax = s.version;
    }
    const stats: BatchStats = {
      ...base,
      inputTokens: whole.stats.inputTokens,
      treeTokens,
      mergedTokens: whole.numNodes,
      reduction: whole.stats.inputTokens / treeTokens,
      terms: whole.numTerms,
      parts: parts.length,
      splitGroups: groups.filter((g) => g.split).length,
      overBudget: plan.overBudget.filter(Boolean).length,
      versions: { min: vmin, max: vmax },
    };
    // Z > 0 even for a batch whose samples carry no terms (cannot happen: each has a completion).
    return { parts, normalizer: Math.max(1, whole.numTerms), groups, samples: batchSamples, stats };
  }

  /**
   * Waits for `groups` releases from the scheduler (in release order) and builds them into one batch.
   * If the wait fails (aborted, scheduler closed), the groups already taken are not lost: the error
   * carries them as `releases`.
   */
  async next(source: GroupSource<TrajectoryRollout>, options: { groups: number; signal?: AbortSignal }): Promise<TrainingBatch> {
    const n = expectInt('options.groups', options?.groups, 1);
    const releases: GroupRelease<TrajectoryRollout>[] = [];
    try {
      while (releases.length < n) releases.push(await source.next({ signal: options.signal }));
    } catch (error) {
      if (releases.length > 0 && typeof error === 'object' && error !== null) Object.assign(error, { releases });
      throw error;
    }
    return this.build(releases);
  }
}
