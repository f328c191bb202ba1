// From a pool trajectory to training samples (contract 1's input): one sample per trainable call,
// tokens = prompt ++ completion, a loss term on every completion token (trainable = 1 there only),
// the sampling logprobs as old logprobs, and the call's advantage (contract 5: every token of call t
// carries call t's reward-to-go advantage) times the trajectory's staleness weight.
import { rangeError, typeError } from '../errors.js';
import type { Sample } from '../prefixTree.js';
import type { RewardRecord, Trajectory } from '../pool/types.js';
import type { SessionOutcome } from '../scheduler/types.js';
import { SKIP_REASONS, type SampleSource, type SkipReason } from './types.js';

/** The trajectory's reward under `rewardVersion`; throws when it has none. */
export function rewardOf(trajectory: Trajectory, rewardVersion: string): RewardRecord {
  const reward = trajectory.rewards.find((r) => r.rewardVersion === rewardVersion);
  if (!reward)
    throw rangeError(`trajectory ${JSON.stringify(trajectory.session.id)}: no reward under version ${JSON.stringify(rewardVersion)}`);
  return reward;
}

/** Default T_completion: the session's wall-clock time from opening to closing, in seconds. */
export function sessionSeconds(trajectory: Trajectory): number | undefined {
  const { createdAt, endedAt } = trajectory.session;
  return endedAt !== null && endedAt > createdAt ? (endedAt - createdAt) / 1000 : undefined;
}

/**
 * The session as the reward model scores it: r_perf from the reward's outcome, process rewards summed
 * per call in call order (present only when the reward has some), T_completion when known.
 */
export function sessionOutcome(trajectory: Trajectory, reward: RewardRecord, seconds: number | undefined): SessionOutcome {
  const calls = Math.max(1, trajectory.calls.length);
  const outcome: SessionOutcome = { perf: reward.outcome, calls };
  if (seconds !== undefined) outcome.seconds = seconds;
  if (reward.process.length > 0) {
    const indexOf = new Map(trajectory.calls.map((c, i) => [c.id, i]));
    const process = new Array<number>(calls).fill(0);
    for (const p of reward.process) {
      const i = indexOf.get(p.callId);
      if (i === undefined)
        throw rangeError(`trajectory ${JSON.stringify(trajectory.session.id)}: a process reward names call ${JSON.stringify(p.callId)}, which is not in the session`);
      process[i] += p.value;
    }
    outcome.process = process;
  }
  return outcome;
}

export interface TrajectorySamples {
  samples: Sample[];
  sources: SampleSource[];
  skipped: Record<SkipReason, number>;
}

export function noSkips(): Record<SkipReason, number> {
  return Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])) as Record<SkipReason, number>;
}

/**
 * One sample per trainable call of `trajectory`. `advantages[t]` is call t's advantage (one entry per
 * call, as RewardModel.scoreGroup gives them); the sample's advantage is `advantages[t] * weight`.
 * Its version is the oldest version among the call's completion tokens; `mixedVersions` tells when
 * the weights changed during the call.
 */
export function trajectorySamples(trajectory: Trajectory, advantages: ArrayLike<number>, weight: number, group = 0): TrajectorySamples {
  if (typeof trajectory !== 'object' || trajectory === null || !Array.isArray(trajectory.calls))
    throw typeError('trajectory: expected a pool Trajectory { session, calls, rewards }');
  const calls = trajectory.calls;
  if (advantages.length < calls.length)
    throw rangeError(`advantages: expected one per call (${calls.length}), got ${advantages.length}`);
  if (!(weight >= 0 && weight <= 1)) throw rangeError(`weight: expected a number in [0, 1], got ${weight}`);
  const out: TrajectorySamples = { samples: [], sources: [], skipped: noSkips() };
  for (let t = 0; t < calls.length; t++) {
    const call = calls[t];
    const P = call.promptIds.length, C = call.completionIds.length;
    const reason: SkipReason | undefined = !call.trainable ? 'untrainable' : C === 0 ? 'empty-completion' : P === 0 ? 'empty-prompt' : undefined;
    if (reason) {
      out.skipped[reason]++;
      continue;
    }
    const tokens = new Int32Array(P + C);
    tokens.set(call.promptIds);
    tokens.set(call.completionIds, P);
    const trainable = new Uint8Array(P + C).fill(1, P);
    const oldLogprobs = new Float32Array(P + C);
    oldLogprobs.set(call.logprobs, P);
    let min = call.versions[0], max = call.versions[0];
    for (let i = 1; i < C; i++) {
      const v = call.versions[i];
      if (v < min) min = v;
      else if (v > max) max = v;
    }
    const advantage = advantages[t];
    out.samples.push({ tokens, trainable, oldLogprobs, advantage: advantage * weight, version: min });
    out.sources.push({
      group,
      sessionId: trajectory.session.id,
      callId: call.id,
      callIndex: t,
      advantage,
      weight,
      version: min,
      mixedVersions: max !== min,
      promptTokens: P,
      completionTokens: C,
    });
  }
  return out;
}
