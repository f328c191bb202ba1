// What the demo tells the user while it runs and at the end: every event goes into the run log
// (lib/report's JSONL format), the progress bar shows the phase with live reward and success, and at
// the end the HTML report is written from the log and the summary table printed.
import { dirname } from 'node:path';
import type { TrainStepResult } from '../model/trainer.js';
import { createProgress, type Progress } from '../report/progress.js';
import { writeReport } from '../report/html.js';
import { readRunLog, type RunLogWriter } from '../report/runLog.js';
import type { PhaseName, StepScaffoldStats } from '../report/events.js';
import { trainerStepFields } from '../report/stepFields.js';
import { summaryTable } from '../report/summary.js';
import type { WindowedFifoScheduler } from '../scheduler/windowedFifo.js';
import type { TrajectoryRollout } from '../batch/types.js';
import type { CpuTime } from './cpu.js';
import type { ScaffoldEval } from './evaluate.js';
import type { DemoOptions } from './options.js';
import type { RlStep } from './rlLoop.js';
import type { SessionRun } from './sessionRunner.js';
import type { WarmProgress } from './trainerClient.js';
import type { WarmStartResult } from './warmStart.js';

type Output = { write(s: string): unknown; isTTY?: boolean };

export class DemoReporter {
  private progress: Progress | undefined;
  private current: PhaseName | undefined;
  private total = 0;
  private done = 0;
  /** Recent RL sessions' success (the live rate while the first steps train). */
  private recent: number[] = [];
  reportPath: string | undefined;
  summary: string | undefined;

  constructor(private readonly log: RunLogWriter, private readonly options: DemoOptions, private readonly output?: Output) {}

  phase(name: PhaseName, total: number): void {
    if (this.current) this.log.write({ type: 'phase', name: this.current, status: 'ended' });
    this.log.write({ type: 'phase', name, status: 'started' });
    this.current = name;
    this.total = total;
    this.done = 0;
    this.progress ??= this.output ? createProgress({ total, stream: this.output }) : undefined;
    this.progress?.update({ phase: name, step: 0, total });
  }

  warmProgress(p: WarmProgress): void {
    if (p.accuracy !== undefined) {
      this.log.write({ type: 'warmstep', step: p.step, loss: NaN, accuracy: p.accuracy });
      return;
    }
    this.log.write({ type: 'warmstep', step: p.step, loss: p.loss });
    this.progress?.update({ phase: 'warm-start', step: p.step, total: this.total, loss: p.loss });
  }

  warmDone(w: Omit<WarmStartResult, 'params'>): void {
    this.progress?.update({ phase: 'warm-start', step: w.steps, total: w.steps, loss: w.finalLoss });
  }

  evalRun(phase: 'eval-initial' | 'eval-final', run: SessionRun): void {
    this.taskEvent(phase, run, { perf: run.verdict.reward, process: this.options.rewards.alpha * run.process, speed: NaN });
    this.done++;
    this.recent.push(run.verdict.correct ? 1 : 0);
    const rate = this.recent.reduce((a, b) => a + b, 0) / this.recent.length;
    this.progress?.update({ phase, step: this.done, total: this.total, successRate: rate });
  }

  evalDone(phase: 'eval-initial' | 'eval-final', stats: Record<string, ScaffoldEval>): void {
    this.log.write({ type: 'eval', phase, scaffolds: stats });
    this.recent = [];
  }

  rlSession(run: SessionRun): void {
    this.recent.push(run.verdict.correct ? 1 : 0);
    if (this.recent.length > 64) this.recent.shift();
  }

  step(s: RlStep, result: TrainStepResult | undefined, scheduler: WindowedFifoScheduler<TrajectoryRollout>): void {
    for (const r of s.runs) this.taskEvent('rl', r.run, { perf: r.perf, process: r.process, speed: r.speed, total: r.total });
    const by: Record<string, StepScaffoldStats> = {};
    const groupsOf = new Map<string, Set<string>>();
    for (const r of s.runs) {
      const name = r.run.scaffold;
      const e = (by[name] ??= { reward: 0, success: 0, groups: 0 });
      e.reward += r.total;
      e.success += r.run.verdict.correct ? 1 : 0;
      const g = groupsOf.get(name) ?? new Set<string>();
      g.add(r.run.task.id);
      groupsOf.set(name, g);
    }
    for (const [name, e] of Object.entries(by)) {
      const n = s.runs.filter((r) => r.run.scaffold === name).length;
      e.reward /= n;
      e.success /= n;
      e.groups = groupsOf.get(name)!.size;
    }
    const n = s.runs.length;
    const rewardMean = n ? s.runs.reduce((a, r) => a + r.total, 0) / n : NaN;
    const successRate = n ? s.runs.reduce((a, r) => a + (r.run.verdict.correct ? 1 : 0), 0) / n : NaN;
    const lags = s.releases.flatMap((r) => r.trajectories.map((t) => t.lag));
    const b = s.batch.stats;
    const trainer = result
      ? trainerStepFields(result)
      : { version: scheduler.policyVersion, loss: NaN, ratioMean: NaN, clipFracHigh: NaN, clipFracLow: NaN, entropy: NaN, gradNorm: NaN,
          inputTokens: b.inputTokens, treeTokens: b.treeTokens, reduction: b.reduction, tokensPerSecond: NaN, stepMs: NaN };
    this.log.write({
      type: 'step', step: s.step, ...trainer, rewardMean, successRate, byScaffold: by,
      lagMean: lags.length ? lags.reduce((a, x) => a + x, 0) / lags.length : 0, lagMax: lags.reduce((a, x) => Math.max(a, x), 0),
      groups: s.batch.groups.length, samples: s.batch.samples.length,
    });
    this.progress?.update({ phase: 'rl', step: s.step, total: this.total, rewardMean, successRate, tokensPerSecond: trainer.tokensPerSecond });
  }

  end(status: 'completed' | 'failed' | 'interrupted', wallSeconds: number, error?: string, checkpoint?: string): void {
    if (this.current) this.log.write({ type: 'phase', name: this.current, status: 'ended' });
    this.current = undefined;
    this.log.write({ type: 'end', status, wallSeconds, ...(error ? { error } : {}), ...(checkpoint ? { checkpoint } : {}) });
  }

  /** Writes the HTML report next to the log and prints the summary (after the log is closed). */
  finish(cpu: CpuTime): void {
    this.progress?.stop();
    const dir = dirname(this.log.path);
    this.reportPath = writeReport(this.log.path, dir).index;
    this.summary = summaryTable(readRunLog(this.log.path).events);
    const children = Number.isFinite(cpu.children) ? `, trainer and agent processes ${cpu.children.toFixed(1)} s` : '';
    this.output?.write(`\n${this.summary}\nCPU time: gateway + engine process ${cpu.self.toFixed(1)} s${children}\n` +
      `report: ${this.reportPath}\nrun log: ${this.log.path}\n`);
  }

  private taskEvent(phase: PhaseName, run: SessionRun, r: { perf: number; process: number; speed: number; total?: number }): void {
    this.log.write({
      type: 'task', phase, scaffold: run.scaffold, taskId: run.task.id, family: run.task.family,
      success: run.ok && run.verdict.correct ? 1 : 0, outcomeReward: r.perf, processReward: r.process, speedReward: r.speed,
      totalReward: r.total ?? r.perf + r.process, seconds: run.seconds, toolCalls: run.result.toolCalls, turns: run.result.turns,
      forks: run.forks, versions: run.versions,
    });
  }
}
