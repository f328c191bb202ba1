// Batch building throughput: groups of agent-like sessions read back from a pool (trajectories with
// calls, logprobs, versions and rewards), released by the windowed-FIFO scheduler, turned into a
// training batch by BatchBuilder (rewards, samples, one merged tree to plan the parts, one tree per
// part) under several token budgets. Baseline in the same run: the same samples, one prefix tree per
// sample (no merging), which is what a trainer without the tree would compute.
import { type Bench, fmt, rng, time } from './harness.js';
import { BatchBuilder } from '../lib/batch/builder.js';
import type { TrajectoryRollout } from '../lib/batch/types.js';
import { MemoryStore } from '../lib/pool/memoryStore.js';
import type { NewCall, Trajectory } from '../lib/pool/types.js';
import { buildPrefixTreeAsync } from '../lib/prefixTree.js';
import type { GroupRelease } from '../lib/scheduler/types.js';
import { WindowedFifoScheduler } from '../lib/scheduler/windowedFifo.js';

const VOCAB = 151_936;

/**
 * One session's calls: a 2k system prompt shared by every session, the task's prompt shared by its
 * group, then turns that continue each other (completion + tool output appended), sometimes forking
 * after context management (system + task + the last ~1k tokens kept); a few calls untrainable.
 */
function sessionCalls(rand: () => number, system: Int32Array, task: Int32Array, id: string): NewCall[] {
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const tok = (n: number) => Array.from({ length: n }, () => int(0, VOCAB - 1));
  let context = [...system, ...task];
  const calls: NewCall[] = [];
  const turns = int(4, 10);
  for (let k = 0; k < turns; k++) {
    let parentId = k === 0 ? null : `${id}/c${k - 1}`;
    if (k > 2 && rand() < 0.15) {
      context = [...system, ...task, ...context.slice(Math.max(system.length + task.length, context.length - 1000))];
      parentId = `${id}/c${int(0, k - 1)}`;
    }
    const untrainable = rand() < 0.03;
    const completion = untrainable ? [] : tok(int(80, 300));
    calls.push({
      id: `${id}/c${k}`,
      parentId,
      promptIds: context,
      completionIds: completion,
      logprobs: completion.map(() => -rand() * 3),
      versions: 7,
      timings: { queuedAt: 1, firstTokenAt: 2, doneAt: 3 },
      trainable: !untrainable,
      untrainableReason: untrainable ? 'upstream returned no token ids' : null,
    });
    context = [...context, ...completion, ...tok(int(40, 200))];
  }
  return calls;
}

/** Writes `groups` x `size` sessions into a pool, rewards them, and releases them through the scheduler. */
async function poolReleases(groups: number, size: number): Promise<GroupRelease<TrajectoryRollout>[]> {
  const rand = rng(11);
  const store = new MemoryStore();
  const system = Int32Array.from({ length: 2048 }, () => Math.floor(rand() * VOCAB));
  const sched = new WindowedFifoScheduler<TrajectoryRollout>({ capacity: groups, initialVersion: 7 });
  for (let g = 0; g < groups; g++) {
    await store.addTask({ id: `t${g}`, spec: null });
    await store.addGroup({ id: `g${g}`, taskId: `t${g}`, size });
    sched.submit(`g${g}`, size);
    const task = Int32Array.from({ length: 300 + Math.floor(rand() * 500) }, () => Math.floor(rand() * VOCAB));
    for (let s = 0; s < size; s++) {
      const id = `g${g}s${s}`;
      await store.openSession({ id, taskId: `t${g}`, groupId: `g${g}`, scaffold: 'bench', createdAt: 0 });
      for (const c of sessionCalls(rand, system, task, id)) await store.appendCall(id, c);
      await store.closeSession(id, { endedAt: 1000 + rand() * 60_000 });
      await store.addReward({ sessionId: id, outcome: rand() < 0.5 ? 1 : 0 });
    }
  }
  for await (const t of store.trajectories()) sched.complete(t.session.groupId!, { version: t.session.minVersion ?? 7, trajectory: t as Trajectory });
  const out: GroupRelease<TrajectoryRollout>[] = [];
  for (let r = sched.tryNext(); r; r = sched.tryNext()) out.push(r);
  return out;
}

export const bench: Bench = async ({ quick, log }) => {
  const groups = quick ? 4 : 8, size = 4;
  const releases = await poolReleases(groups, size);
  const trajectories = releases.reduce((a, r) => a + r.trajectories.length, 0);

  // Baseline: the same samples, each its own tree.
  const perSample = async () => {
    const b = new BatchBuilder({ tokenBudget: 2 ** 30 });
    const samples = releases.flatMap((r, i) => b.groupSamples(r, i).samples);
    const trees = await Promise.all(samples.map((s) => buildPrefixTreeAsync([s])));
    return { inputTokens: trees.reduce((a, t) => a + t.stats.inputTokens, 0), treeTokens: trees.reduce((a, t) => a + t.numNodes, 0), parts: trees.length };
  };
  const base = await perSample();
  const baseTime = await time(perSample, { repeats: quick ? 3 : 5 });
  const rows: (string | number)[][] = [];
  const row = (label: string, ms: number, r: { inputTokens: number; treeTokens: number; parts: number }, splitGroups: number | string) => {
    rows.push([label, r.parts, splitGroups, r.inputTokens, r.treeTokens, `${fmt(r.inputTokens / r.treeTokens)}x`, fmt(ms), fmt(r.inputTokens / ms / 1e3), fmt(r.treeTokens / ms / 1e3), `${fmt(baseTime.medianMs / ms)}x`]);
  };
  row('one tree per sample (baseline)', baseTime.medianMs, base, '-');
  log(`baseline: ${base.parts} samples, ${fmt(baseTime.medianMs)} ms`);

  const whole = await new BatchBuilder({ tokenBudget: 2 ** 30 }).build(releases);
  const merged = whole.stats.mergedTokens;
  const budgets: [string, number][] = [
    ['unlimited', 2 ** 30],
    ['1/2 of the merged tree', Math.ceil(merged / 2)],
    ['1/8 of the merged tree', Math.ceil(merged / 8)],
    ['16k', 16_384],
  ];
  for (const [label, budget] of budgets) {
    const builder = new BatchBuilder({ tokenBudget: budget });
    const batch = await builder.build(releases);
    const t = await time(() => builder.build(releases), { repeats: quick ? 3 : 5 });
    row(`BatchBuilder, budget ${label} (${budget >= 2 ** 30 ? '∞' : budget})`, t.medianMs, batch.stats, batch.stats.splitGroups);
    log(`budget ${budget}: ${batch.stats.parts} parts, ${fmt(t.medianMs)} ms, reduction ${fmt(batch.stats.reduction)}x, over-budget ${batch.stats.overBudget}`);
  }
  return [
    {
      title: 'Batch building throughput (pool trajectories -> prefix-tree parts)',
      description:
        `${groups} groups x ${size} sessions (${trajectories} trajectories, ${whole.stats.samples} trainable calls, ${whole.stats.skippedCalls.untrainable} untrainable skipped) ` +
        `read back from a pool and released by the scheduler: a 2048-token system prompt shared by all, a 300-800-token task prompt per group, 4-10 turns per session ` +
        `(80-300 completion + 40-200 tool tokens), 15% forks after context management. BatchBuilder: rewards, samples, one merged tree to plan, one tree per part ` +
        `(parts built concurrently). Baseline: the same samples, one tree each (no merging). Median of repeated runs; M tokens/s = million tokens per second.`,
      columns: ['build', 'parts', 'groups split', 'input tokens', 'tree tokens', 'reduction', 'ms', 'input M tokens/s', 'tree M tokens/s', 'speed-up vs baseline'],
      rows,
      notes: [
        `Tree tokens are what the trainer forwards and backpropagates: the reduction is the training work saved (${fmt(whole.stats.reduction)}x unsplit). ` +
          `A budget below a group's tree splits it between samples; each part repeats the shared prefix, so the reduction falls as the budget shrinks.`,
      ],
    },
  ];
};
