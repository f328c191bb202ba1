// The report's plots, from a run's analysis: reward and success rate over the RL steps per scaffold
// (moving average, raw values faint), time per task over the run per scaffold (phases marked), tree
// token reduction and policy lag per step, and the warm-start loss. Each is a standalone SVG that
// html.ts inlines and writeReport() also saves as its own file.
import type { RunAnalysis } from './analysis.js';
import { val } from './analysis.js';
import { PALETTE, svgPlot, type PlotSeries, type ReferenceLine } from './svgPlot.js';

export interface ReportPlot {
  /** File name when saved, e.g. "reward.svg". */
  file: string;
  title: string;
  /** What the plot shows, one sentence (the HTML caption). */
  caption: string;
  /** The SVG, or null when the log has nothing to plot. */
  svg: string | null;
}

/** Moving-average window for a series of n points: about a tenth of it, 1..25. */
export const smoothingWindow = (n: number): number => Math.max(1, Math.min(25, Math.round(n / 10)));

const percentTick = (v: number) => `${Math.round(100 * v)}%`;

export function reportPlots(a: RunAnalysis): ReportPlot[] {
  const colorOf = (scaffold: string) => PALETTE[Math.max(0, a.scaffolds.indexOf(scaffold)) % PALETTE.length];
  const stepX = a.steps.map((s) => val(s.step));
  const k = smoothingWindow(a.steps.length);
  const perScaffold = (field: 'reward' | 'success'): PlotSeries[] =>
    a.scaffolds
      .filter((name) => a.steps.some((s) => s.byScaffold?.[name]))
      .map((name) => ({ name, x: stepX, y: a.steps.map((s) => val(s.byScaffold?.[name]?.[field])), color: colorOf(name), smooth: k }));
  const hasSteps = a.steps.length > 0;

  const reward: PlotSeries[] = [
    ...perScaffold('reward'),
    { name: 'all scaffolds', x: stepX, y: a.steps.map((s) => val(s.rewardMean)), color: '#000000', smooth: k, raw: false, dashed: true },
  ];
  const success: PlotSeries[] = [
    ...perScaffold('success'),
    { name: 'all scaffolds', x: stepX, y: a.steps.map((s) => val(s.successRate)), color: '#000000', smooth: k, raw: false, dashed: true },
  ];
  const smoothNote = k > 1 ? ` (moving average of ${k} steps; raw values faint)` : '';

  const minutes = (t: number) => (t - a.startTime) / 60000;
  const phaseLines: ReferenceLine[] = a.phases.filter((p) => Number.isFinite(p.startedAt)).map((p) => ({ value: minutes(p.startedAt), label: p.name }));
  const taskSeries: PlotSeries[] = a.scaffolds
    .map((name) => a.tasks.filter((t) => t.scaffold === name))
    .filter((ts) => ts.length > 0)
    .map((ts) => ({ name: ts[0].scaffold, x: ts.map((t) => minutes(t.time)), y: ts.map((t) => val(t.seconds)), color: colorOf(ts[0].scaffold), mode: 'scatter' as const, radius: 2.5 }));

  const warmX = a.warmsteps.map((w) => val(w.step));
  const warmK = smoothingWindow(a.warmsteps.length);
  return [
    {
      file: 'reward.svg',
      title: 'Reward over RL steps',
      caption: `Mean total reward of each step's batch, per scaffold and over all${smoothNote}.`,
      svg: hasSteps ? svgPlot(reward, { title: 'Reward over RL steps', xLabel: 'RL step', yLabel: 'mean reward' }) : null,
    },
    {
      file: 'success.svg',
      title: 'Success rate over RL steps',
      caption: `Fraction of each step's rollouts that solved their task, per scaffold and over all${smoothNote}.`,
      svg: hasSteps ? svgPlot(success, { title: 'Success rate over RL steps', xLabel: 'RL step', yLabel: 'success rate', yMin: 0, yMax: 1, yFormat: percentTick }) : null,
    },
    {
      file: 'task-time.svg',
      title: 'Time per task over the run',
      caption: 'Wall-clock seconds of every agent run (training and evaluation), per scaffold; dashed lines mark where phases start.',
      svg: taskSeries.length
        ? svgPlot(taskSeries, { title: 'Time per task over the run', xLabel: 'minutes since start', yLabel: 'seconds per task', yMin: 0, vLines: phaseLines })
        : null,
    },
    {
      file: 'reduction.svg',
      title: 'Tree token reduction per step',
      caption: 'Input tokens over prefix-tree tokens of each training batch: how many times fewer tokens the merged tree computes (1 = nothing shared).',
      svg: hasSteps
        ? svgPlot([{ name: 'reduction', x: stepX, y: a.steps.map((s) => (Number.isFinite(val(s.reduction)) ? val(s.reduction) : val(s.inputTokens) / val(s.treeTokens))), mode: 'line+points', radius: 2 }], {
            title: 'Tree token reduction per step', xLabel: 'RL step', yLabel: 'input tokens / tree tokens', yFormat: (v) => `${v}x`,
            hLines: [{ value: 1, label: '1x: nothing shared' }],
          })
        : null,
    },
    {
      file: 'lag.svg',
      title: 'Policy lag per step',
      caption: 'Versions between the policy that trained on a batch and the policies that produced it: mean and max per step.',
      svg: hasSteps
        ? svgPlot([
            { name: 'mean lag', x: stepX, y: a.steps.map((s) => val(s.lagMean)), mode: 'line+points', radius: 2 },
            { name: 'max lag', x: stepX, y: a.steps.map((s) => val(s.lagMax)), dashed: true },
          ], { title: 'Policy lag per step', xLabel: 'RL step', yLabel: 'lag (policy versions)', yMin: 0 })
        : null,
    },
    {
      file: 'warmstart-loss.svg',
      title: 'Warm-start loss',
      caption: `Cross-entropy of the supervised warm start on the demonstrations${warmK > 1 ? ` (moving average of ${warmK} steps; raw values faint)` : ''}.`,
      svg: a.warmsteps.length
        ? svgPlot([{ name: 'loss', x: warmX, y: a.warmsteps.map((w) => val(w.loss)), smooth: warmK }], { title: 'Warm-start loss', xLabel: 'warm-start step', yLabel: 'cross-entropy (nats/token)', yMin: 0 })
        : null,
    },
  ];
}
