// The RL phase: a producer and a consumer running at once, joined by the data pool and the scheduler.
//
//   producer: for task T_k (scaffolds in turn, task stream 'train'): register it, declare a group of
//             G rollouts (PoolFeed.declareGroup waits for a free queue slot: back-pressure), and run
//             its G sessions through the agent programs; each finished session is closed and rewarded
//             in the pool, and the feed hands it to the scheduler.
//   consumer: takes `groupsPerStep` groups as the windowed-FIFO scheduler releases them, builds the
//             batch (rewards, group-normalised advantages, prefix-tree parts), and hands it to `train`
//             (the trainer thread: new weights, which the caller pushes to the engine) or to an
//             exporter (an external trainer).
//
// Rollouts keep running while a step trains, so a batch may hold trajectories of older versions:
// the scheduler measures that lag (and drops what exceeds maxLag). Each trained group's sessions are
// logged once they are scored, with the speed reward the batch used.
import type { BatchBuilder, TrainingBatch, TrajectoryRollout } from '../batch/index.js';
import type { PoolFeed } from '../batch/poolFeed.js';
import type { PoolStore, Trajectory } from '../pool/types.js';
import { speedReward } from '../scheduler/rewards.js';
import type { GroupRelease } from '../scheduler/types.js';
import type { WindowedFifoScheduler } from '../scheduler/windowedFifo.js';
import type { AgentPool } from './agentPool.js';
import { scaffoldTask, type ScaffoldName } from './scaffolds.js';
import { runSession, type GatewayAdmin, type SessionRun } from './sessionRunner.js';

export interface ScoredRun {
  run: SessionRun;
  /** r_perf, alpha * r_process, r_speed and the composite the batch trained on. */
  perf: number;
  process: number;
  speed: number;
  total: number;
}

export interface RlStep {
  step: number;
  batch: TrainingBatch;
  releases: GroupRelease<TrajectoryRollout>[];
  /** The trained groups' sessions with their rewards. */
  runs: ScoredRun[];
}

export interface RlLoopOptions {
  admin: GatewayAdmin;
  pool: PoolStore;
  agents: AgentPool;
  scheduler: WindowedFifoScheduler<TrajectoryRollout>;
  feed: PoolFeed;
  builder: BatchBuilder;
  scaffolds: readonly ScaffoldName[];
  seed: number;
  groupSize: number;
  groupsPerStep: number;
  maxSteps: number;
  /** ms since the epoch: no step starts after it. */
  deadline: number;
  /** Trains on (or exports) a batch; resolves when the step is done. */
  train: (step: RlStep) => Promise<void>;
  /** A session finished (before it is scored: progress display). */
  onSession?: (run: SessionRun) => void;
}

/** T_completion for the speed reward: only a session that solved its task is compared on speed (a
 * quick wrong answer must not look efficient). */
export function successSeconds(trajectory: Trajectory): number | undefined {
  const { createdAt, endedAt } = trajectory.session;
  const solved = trajectory.rewards.some((r) => r.outcome > 0);
  return solved && endedAt !== null && endedAt > createdAt ? (endedAt - createdAt) / 1000 : undefined;
}

/** Runs the RL phase; resolves with the number of steps taken. */
export async function runRlLoop(o: RlLoopOptions): Promise<number> {
  const stop = new AbortController();
  const runs = new Map<string, SessionRun>();
  const inflight = new Set<Promise<void>>();
  let producerError: unknown;

  const produce = async () => {
    for (let k = 0; !stop.signal.aborted; k++) {
      const scaffold = o.scaffolds[k % o.scaffolds.length];
      const task = scaffoldTask(scaffold, 'train', o.seed, Math.floor(k / o.scaffolds.length));
      await o.admin.ensureTask(task);
      let groupId: string;
      try {
        groupId = (await o.feed.declareGroup({ taskId: task.id, size: o.groupSize }, { signal: stop.signal })).id;
      } catch (e) {
        if (stop.signal.aborted) return;
        throw e;
      }
      for (let g = 0; g < o.groupSize; g++) {
        const p = runSession({ admin: o.admin, pool: o.pool, agents: o.agents, scaffold, task, groupId, metadata: { phase: 'rl' } })
          .then((run) => {
            runs.set(run.sessionId, run);
            o.onSession?.(run);
            o.feed.notify();
          })
          .catch((e) => {
            if (!stop.signal.aborted) producerError ??= e;
          });
        inflight.add(p);
        void p.finally(() => inflight.delete(p));
      }
    }
  };
  const producer = produce().catch((e) => (producerError ??= e));

  const timer = setTimeout(() => stop.abort(), Math.max(0, o.deadline - Date.now()));
  let steps = 0;
  try {
    while (steps < o.maxSteps && Date.now() < o.deadline) {
      const releases: GroupRelease<TrajectoryRollout>[] = [];
      try {
        while (releases.length < o.groupsPerStep) releases.push(await o.scheduler.next({ signal: stop.signal }));
      } catch (e) {
        if (stop.signal.aborted) break;
        throw e;
      }
      if (producerError) throw producerError;
      const batch = await o.builder.build(releases);
      if (batch.samples.length === 0) continue;
      steps++;
      await o.train({ step: steps, batch, releases, runs: scoreRuns(o.builder, releases, runs) });
    }
  } finally {
    clearTimeout(timer);
    stop.abort();
    await producer;
    // Sessions still running finish on their own (their groups are never trained on).
    await Promise.race([Promise.allSettled([...inflight]), new Promise((r) => setTimeout(r, 30_000).unref())]);
  }
  if (producerError) throw producerError;
  return steps;
}

/** The sessions of the released groups with the reward the batch builder gave them. */
function scoreRuns(builder: BatchBuilder, releases: GroupRelease<TrajectoryRollout>[], runs: Map<string, SessionRun>): ScoredRun[] {
  const m = builder.rewards;
  const out: ScoredRun[] = [];
  for (const release of releases) {
    for (const { rollout } of release.trajectories) {
      const t = rollout.trajectory;
      const run = runs.get(t.session.id);
      if (!run) continue;
      runs.delete(t.session.id);
      const reward = t.rewards[0];
      const perf = reward?.outcome ?? 0;
      const process = m.alpha * (reward?.process.reduce((a, p) => a + p.value, 0) ?? 0);
      const seconds = successSeconds(t);
      const baseline = m.baselines.baseline(t.session.taskId);
      const speed = seconds !== undefined && baseline !== undefined ? speedReward(seconds / baseline, m.speedShape, m.speedClip) : 0;
      out.push({ run, perf, process, speed, total: perf + process + m.beta * speed });
    }
  }
  return out;
}
