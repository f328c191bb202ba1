// What the demo prints in the terminal: the summary table at the end of a run (plain text, aligned
// columns: one row per scaffold with success before and after RL, the change, tool calls and seconds
// per task before -> after; then the run's totals) and the one-line progress text the progress bar
// shows while it runs.
import { analyzeRun, val, type RunAnalysis, type ScaffoldHeadline } from './analysis.js';
import type { RunEvent } from './events.js';
import { beforeAfter, count, duration, num, pct, points } from './format.js';

/** Lays out rows as columns: the first left-aligned, the others right-aligned, two spaces apart. */
export function alignColumns(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd());
}

const headlineRow = (h: ScaffoldHeadline): string[] => [
  h.scaffold,
  pct(h.before?.successRate),
  pct(h.after?.successRate),
  points(h.change),
  beforeAfter(h.before?.meanToolCalls, h.after?.meanToolCalls),
  beforeAfter(h.before?.meanSeconds, h.after?.meanSeconds),
];

/** The end-of-run table (from the events or an analysis of them). */
export function summaryTable(input: readonly RunEvent[] | RunAnalysis): string {
  const a = Array.isArray(input) ? analyzeRun(input as readonly RunEvent[]) : (input as RunAnalysis);
  const rows: string[][] = [['scaffold', 'initial success', 'final success', 'change', 'tool calls/task', 'seconds/task']];
  for (const h of a.headline) rows.push(headlineRow(h));
  if (a.headline.length > 1) rows.push(headlineRow(a.overall));
  const lines = alignColumns(rows);
  const width = Math.max(...lines.map((l) => l.length));
  lines.splice(1, 0, '-'.repeat(width));
  if (a.headline.length > 1) lines.splice(lines.length - 1, 0, '-'.repeat(width));
  if (a.headline.length === 0) lines.push('(no evaluation logged)');

  const t = a.totals;
  const totals: string[][] = [
    ['RL steps', String(t.steps)],
    ['tokens trained', `${count(t.inputTokens)} (${count(t.treeTokens)} computed in prefix trees)`],
    ['mean tree token reduction', Number.isFinite(t.meanReduction) ? `${num(t.meanReduction)}x` : '-'],
    ['policy lag', `mean ${num(t.meanLag)}, max ${Number.isFinite(t.maxLag) ? t.maxLag : '-'} versions`],
    ['tasks run', String(t.tasks)],
    ['wall time', `${duration(t.wallSeconds)}${a.status === 'completed' ? '' : ` (${a.status})`}`],
  ];
  const keyWidth = Math.max(...totals.map((r) => r[0].length));
  lines.push('', ...totals.map(([k, v]) => `${(k + ':').padEnd(keyWidth + 1)}  ${v}`));
  return lines.join('\n');
}

/** What the progress bar shows next to the bar. */
export interface ProgressState {
  /** 'warm-start', 'eval-initial', 'rl', 'eval-final' (or any label). */
  phase: string;
  /** Steps (or tasks) done in this phase, and how many it has. */
  step: number;
  total: number;
  /** Live values; the ones left out are not shown. */
  rewardMean?: number;
  successRate?: number;
  tokensPerSecond?: number;
  /** Warm-start loss. */
  loss?: number;
}

/** "rl 12/30 | reward 0.412 | success 41.3% | 1.2k tok/s" (fields without a finite value left out). */
export function progressLine(state: ProgressState): string {
  const parts = [`${state.phase} ${val(state.step) >= 0 ? state.step : '?'}/${val(state.total) >= 0 ? state.total : '?'}`];
  if (Number.isFinite(val(state.loss))) parts.push(`loss ${num(state.loss, 3)}`);
  if (Number.isFinite(val(state.rewardMean))) parts.push(`reward ${num(state.rewardMean, 3)}`);
  if (Number.isFinite(val(state.successRate))) parts.push(`success ${pct(state.successRate)}`);
  if (Number.isFinite(val(state.tokensPerSecond))) parts.push(`${count(Math.round(state.tokensPerSecond!))} tok/s`);
  return parts.join(' | ');
}
