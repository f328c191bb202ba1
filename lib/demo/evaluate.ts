// Evaluation on held-out tasks through the real path: the agent programs, the gateway, the engine.
// Each scaffold runs the same `tasksPerScaffold` evaluation tasks before and after RL (task stream
// 'eval', never used for training), one session each, outside any group (never trained on).
import type { PoolStore } from '../pool/types.js';
import type { EvalScaffoldStats } from '../report/events.js';
import type { AgentPool } from './agentPool.js';
import { scaffoldTask, type ScaffoldName } from './scaffolds.js';
import { runSession, type GatewayAdmin, type SessionRun } from './sessionRunner.js';

export interface EvaluateOptions {
  admin: GatewayAdmin;
  pool: PoolStore;
  agents: AgentPool;
  scaffolds: readonly ScaffoldName[];
  seed: number;
  tasksPerScaffold: number;
  /** Stored with each session and passed to onRun. */
  phase: 'eval-initial' | 'eval-final';
  /** Each finished run (progress, task events). */
  onRun?: (run: SessionRun) => void;
}

export interface ScaffoldEval extends EvalScaffoldStats {
  /** Model calls per task, wasted tool calls per task (beyond the fewest that solve it). */
  meanTurns: number;
  meanWasted: number;
  /** Runs the agent program could not finish (counted as failures). */
  failedRuns: number;
}

export async function evaluate(o: EvaluateOptions): Promise<Record<string, ScaffoldEval>> {
  const jobs = o.scaffolds.flatMap((scaffold) =>
    Array.from({ length: o.tasksPerScaffold }, (_, i) => ({ scaffold, task: scaffoldTask(scaffold, 'eval', o.seed, i) })));
  for (const j of jobs) await o.admin.ensureTask(j.task);
  const runs = await Promise.all(jobs.map(async (j) => {
    const run = await runSession({ admin: o.admin, pool: o.pool, agents: o.agents, scaffold: j.scaffold, task: j.task, metadata: { phase: o.phase } });
    o.onRun?.(run);
    return run;
  }));
  const out: Record<string, ScaffoldEval> = {};
  for (const scaffold of o.scaffolds) {
    const mine = runs.filter((r) => r.scaffold === scaffold);
    const n = mine.length;
    const mean = (f: (r: SessionRun) => number) => (n > 0 ? mine.reduce((a, r) => a + f(r), 0) / n : NaN);
    out[scaffold] = {
      successRate: mean((r) => (r.ok && r.verdict.correct ? 1 : 0)),
      meanToolCalls: mean((r) => r.result.toolCalls),
      meanSeconds: mean((r) => r.seconds),
      n,
      meanTurns: mean((r) => r.result.turns),
      meanWasted: mean((r) => r.verdict.wastedCalls),
      failedRuns: mine.filter((r) => !r.ok).length,
    };
  }
  return out;
}
