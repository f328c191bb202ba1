// The demo's HTML report: one self-contained page (inline CSS and SVG; no scripts, fonts or anything
// else fetched) with the headline (success before vs after RL per scaffold, tool calls and seconds
// per task), the plots (plots.ts), the totals, the run's options and machine, and the step table.
// writeReport() renders a run log file into a folder: index.html plus each plot as its own .svg.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { typeError } from '../errors.js';
import { analyzeRun, val, type RunAnalysis, type ScaffoldHeadline } from './analysis.js';
import type { RunEvent, StepEvent } from './events.js';
import { count, duration, num, pct, points } from './format.js';
import { reportPlots } from './plots.js';
import { readRunLog } from './runLog.js';
import { escapeXml as esc } from './svgPlot.js';

const DASH = '—';

const CSS = `
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta { color: #666; } .big { font-size: 1.35rem; } .up { color: #1a7f37; } .down { color: #b42318; }
table { border-collapse: collapse; margin: 0.6rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25rem 0.7rem; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f6f6f6; }
tr.overall td { font-weight: 600; border-top: 2px solid #ccc; }
figure { margin: 1.2rem 0; } figcaption { color: #555; font-size: 0.9rem; max-width: 720px; }
svg { max-width: 100%; height: auto; } .empty { color: #888; font-style: italic; }
details summary { cursor: pointer; font-weight: 600; margin: 1rem 0; } .scroll { overflow-x: auto; }
code { background: #f3f3f3; padding: 0 0.2rem; }`;

const table = (head: string[], rows: string[][], rowAttrs: string[] = []) =>
  `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>` +
  rows.map((r, i) => `<tr${rowAttrs[i] ?? ''}>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('') +
  '</tbody></table>';

const arrow = (before: number | undefined, after: number | undefined, digits = 2) =>
  `${num(before, digits, DASH)} → ${num(after, digits, DASH)}`;

function headlineRow(h: ScaffoldHeadline): string[] {
  const cls = h.change > 0 ? 'up' : h.change < 0 ? 'down' : '';
  return [
    esc(h.scaffold),
    pct(h.before?.successRate, 1, DASH),
    pct(h.after?.successRate, 1, DASH),
    `<span class="${cls}">${esc(points(h.change, 1, DASH))}</span>`,
    arrow(h.before?.meanToolCalls, h.after?.meanToolCalls),
    arrow(h.before?.meanSeconds, h.after?.meanSeconds),
    `${Number.isFinite(val(h.before?.n)) ? h.before!.n : DASH} / ${Number.isFinite(val(h.after?.n)) ? h.after!.n : DASH}`,
  ];
}

function headlineSection(a: RunAnalysis): string {
  if (a.headline.length === 0) return '<p class="empty">No evaluation was logged.</p>';
  const o = a.overall;
  const cls = o.change > 0 ? 'up' : o.change < 0 ? 'down' : '';
  const sentence =
    `<p class="big">Success rate <b>${pct(o.before?.successRate, 1, DASH)}</b> → <b>${pct(o.after?.successRate, 1, DASH)}</b> ` +
    `<span class="${cls}">(${esc(points(o.change, 1, DASH))})</span> over ${a.headline.length} scaffold${a.headline.length === 1 ? '' : 's'}; ` +
    `tool calls per task ${arrow(o.before?.meanToolCalls, o.after?.meanToolCalls)}, seconds per task ${arrow(o.before?.meanSeconds, o.after?.meanSeconds)}.</p>`;
  const rows = a.headline.map(headlineRow), attrs = a.headline.map((h) => ` data-scaffold="${esc(h.scaffold)}"`);
  if (a.headline.length > 1) rows.push(headlineRow(o)), attrs.push(' class="overall" data-scaffold="all"');
  const missing = !a.evalFinal ? '<p class="empty">No final evaluation: the run was cut off before it.</p>' : '';
  return sentence + missing +
    table(['scaffold', 'success before', 'success after', 'change', 'tool calls/task', 'seconds/task', 'tasks before / after'], rows, attrs);
}

/** An object's leaves as dotted keys and JSON-ish values. */
function flatten(value: unknown, prefix = ''): [string, string][] {
  if (value !== null && typeof value === 'object' && !Array.isArray(value))
    return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k));
  return [[prefix || '(value)', typeof value === 'string' ? value : JSON.stringify(value) ?? String(value)]];
}

const kvTable = (pairs: [string, string][]) =>
  pairs.length ? table(['name', 'value'], pairs.map(([k, v]) => [`<code>${esc(k)}</code>`, esc(v)])) : '<p class="empty">Not logged.</p>';

function runSection(a: RunAnalysis): string {
  const r = a.run;
  if (!r) return '<p class="empty">The log has no run event.</p>';
  return [
    '<h3>Options</h3>', kvTable([['seed', String(r.seed)], ...flatten(r.options ?? {})]),
    '<h3>Model</h3>', kvTable([['parameters', String(r.model?.params)], ...flatten(r.model?.config ?? {}, 'config')]),
    '<h3>Scheduler</h3>', kvTable(flatten(r.scheduler ?? {})),
    '<h3>Machine</h3>', kvTable(flatten(r.machine ?? {})),
  ].join('\n');
}

function totalsSection(a: RunAnalysis): string {
  const t = a.totals;
  return table(['total', 'value'], [
    ['RL steps', String(t.steps)],
    ['tokens trained (input tokens)', count(t.inputTokens, DASH)],
    ['tokens computed (prefix-tree nodes)', count(t.treeTokens, DASH)],
    ['mean tree token reduction', Number.isFinite(t.meanReduction) ? `${num(t.meanReduction)}x` : DASH],
    ['policy lag: mean (sample-weighted) / max', `${num(t.meanLag, 2, DASH)} / ${Number.isFinite(t.maxLag) ? t.maxLag : DASH}`],
    ['tasks run (all phases)', String(t.tasks)],
    ['wall time', esc(duration(t.wallSeconds, DASH))],
  ]);
}

const STEP_COLUMNS: [string, (s: StepEvent) => string][] = [
  ['step', (s) => num(val(s.step), 0, DASH)],
  ['version', (s) => num(val(s.version), 0, DASH)],
  ['loss', (s) => num(val(s.loss), 4, DASH)],
  ['reward', (s) => num(val(s.rewardMean), 3, DASH)],
  ['success', (s) => pct(val(s.successRate), 1, DASH)],
  ['ratio', (s) => num(val(s.ratioMean), 3, DASH)],
  ['clip hi', (s) => pct(val(s.clipFracHigh), 2, DASH)],
  ['clip lo', (s) => pct(val(s.clipFracLow), 2, DASH)],
  ['entropy', (s) => num(val(s.entropy), 3, DASH)],
  ['grad norm', (s) => num(val(s.gradNorm), 3, DASH)],
  ['input tok', (s) => count(val(s.inputTokens), DASH)],
  ['tree tok', (s) => count(val(s.treeTokens), DASH)],
  ['reduction', (s) => (Number.isFinite(val(s.reduction)) ? `${num(val(s.reduction))}x` : DASH)],
  ['tok/s', (s) => count(Math.round(val(s.tokensPerSecond)), DASH)],
  ['step ms', (s) => num(val(s.stepMs), 0, DASH)],
  ['lag mean', (s) => num(val(s.lagMean), 2, DASH)],
  ['lag max', (s) => num(val(s.lagMax), 0, DASH)],
  ['groups', (s) => num(val(s.groups), 0, DASH)],
  ['samples', (s) => num(val(s.samples), 0, DASH)],
];

export interface RenderOptions {
  /** Page title; default "forge-rl demo report". */
  title?: string;
}

/** The report page for a run's events (any prefix of a run renders: missing parts say so). */
export function renderReport(events: readonly RunEvent[], options: RenderOptions = {}): string {
  if (!Array.isArray(events)) throw typeError(`events: expected an array of run events, got ${typeof events}`);
  const a = analyzeRun(events);
  const title = options.title ?? 'forge-rl demo report';
  const meta = [
    a.run ? `started ${esc(a.run.startedAt ?? new Date(a.run.time).toISOString())}` : 'no run event',
    a.run ? `seed ${esc(String(a.run.seed))}` : '',
    `status: <b>${esc(a.status)}</b>${a.end?.error ? ` (${esc(a.end.error)})` : ''}`,
    `wall time ${esc(duration(a.totals.wallSeconds, DASH))}`,
  ].filter(Boolean).join(' · ');
  const plots = reportPlots(a)
    .map((p) => (p.svg
      ? `<figure>${p.svg}<figcaption>${esc(p.caption)}</figcaption></figure>`
      : `<h3>${esc(p.title)}</h3><p class="empty">Nothing logged for this plot.</p>`))
    .join('\n');
  const steps = a.steps.length
    ? `<details><summary>RL steps (${a.steps.length})</summary><div class="scroll">` +
      table(STEP_COLUMNS.map(([h]) => h), a.steps.map((s) => STEP_COLUMNS.map(([, f]) => esc(f(s))))) + '</div></details>'
    : '<p class="empty">No RL step was logged.</p>';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}
</style>
</head>
<body>
<h1>${esc(title)}</h1>
<p class="meta">${meta}</p>
<h2 id="headline">Before vs after RL</h2>
${headlineSection(a)}
<h2 id="plots">Plots</h2>
${plots}
<h2 id="totals">Totals</h2>
${totalsSection(a)}
<h2 id="run">Run</h2>
${runSection(a)}
<h2 id="steps">Steps</h2>
${steps}
</body>
</html>
`;
}

export interface WrittenReport {
  /** Path of index.html. */
  index: string;
  /** Paths of the SVG files written. */
  plots: string[];
  /** Events rendered; whether the log's last line was cut off (and left out). */
  events: number;
  truncated: boolean;
}

/** Reads the run log at `logPath` and writes index.html and the plots' SVG files into `outDir`. */
export function writeReport(logPath: string, outDir: string, options: RenderOptions = {}): WrittenReport {
  if (typeof outDir !== 'string' || outDir === '') throw typeError(`outDir: expected a folder path, got ${JSON.stringify(outDir)}`);
  const { events, truncated } = readRunLog(logPath);
  mkdirSync(outDir, { recursive: true });
  const plots: string[] = [];
  for (const p of reportPlots(analyzeRun(events))) {
    if (!p.svg) continue;
    const file = join(outDir, p.file);
    writeFileSync(file, p.svg + '\n');
    plots.push(file);
  }
  const index = join(outDir, 'index.html');
  writeFileSync(index, renderReport(events, options));
  return { index, plots, events: events.length, truncated };
}
