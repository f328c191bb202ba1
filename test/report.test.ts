// The demo's reporting side (lib/report): the JSONL run log (round trip, a cut-off last line, a writer
// killed with SIGKILL), the SVG plotter (well-formed, finite, inside its viewBox, the data mapped
// affinely, gaps kept) on random series, the HTML report's headline against numbers computed here from
// the raw per-task outcomes, the summary table against hand-computed totals, and the progress display.
// Failures print the seed; replay with FORGE_TEST_SEED=<seed>.
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { seededRun, type Rng } from './helpers/random.js';
import { expectError } from './helpers/errors.js';
import { renderReport, writeReport } from '../lib/report/html.js';
import { createProgress, type ProgressStream } from '../lib/report/progress.js';
import { encodeEvent, parseRunLog, readRunLog, RunLogWriter, type RunEvent, type RunEventInput } from '../lib/report/runLog.js';
import { RunLogError } from '../lib/report/errors.js';
import { progressLine, summaryTable } from '../lib/report/summary.js';
import { movingAverage, niceStep, svgPlot, type PlotSeries } from '../lib/report/svgPlot.js';
import { trainerStepFields } from '../lib/report/stepFields.js';
import type { TrainStepResult } from '../lib/model/trainer.js';

const { rng: makeRng, why } = seededRun();
const dir = mkdtempSync(join(tmpdir(), 'forge-report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const int = (rand: Rng, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

// ---- a synthetic run: per-task outcomes drawn here, the eval events aggregated from them -------------

type EvalRaw = Record<'success' | 'calls' | 'seconds', number[]>;

const SCAFFOLDS = ['react-calculator', 'kv-lookup', 'context-truncating'];

function evalRaw(rand: Rng, p: number): EvalRaw {
  const draw = (f: () => number) => Array.from({ length: n }, f), n = int(rand, 5, 40);
  return { success: draw(() => (rand() < p ? 1 : 0)), calls: draw(() => int(rand, 0, 6)), seconds: draw(() => 0.1 + 3 * rand()) };
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const evalStats = (r: EvalRaw) => ({ successRate: mean(r.success), meanToolCalls: mean(r.calls), meanSeconds: mean(r.seconds), n: r.success.length });

function syntheticRun(rand: Rng, steps: number) {
  const t0 = 1_700_000_000_000 + int(rand, 0, 1e9);
  let t = t0;
  const at = () => (t += int(rand, 10, 2000));
  const before: Record<string, EvalRaw> = {}, after: Record<string, EvalRaw> = {};
  for (const s of SCAFFOLDS) (before[s] = evalRaw(rand, 0.2 + 0.3 * rand())), (after[s] = evalRaw(rand, 0.4 + 0.5 * rand()));
  const ev: RunEvent[] = [
    {
      type: 'run', time: t0, logVersion: 1, seed: 7, options: { steps, groupSize: 4, nested: { lr: 1e-3, tags: ['a', 'b'] }, label: '<b>&' },
      model: { config: { dim: 64, numLayers: 2 }, params: 123456 }, scaffolds: SCAFFOLDS,
      scheduler: { mode: 'windowed', window: 8, capacity: 24, groupSize: 4 },
      machine: { cpus: 2, cpuModel: 'Test CPU', memoryGiB: 24, platform: 'linux', arch: 'x64', node: 'v20.19.0' }, startedAt: new Date(t0).toISOString(),
    },
    { type: 'phase', time: at(), name: 'warm-start', status: 'started' },
  ];
  for (let k = 1; k <= 30; k++) ev.push({ type: 'warmstep', time: at(), step: k, loss: 3 * Math.exp(-k / 10) + 0.1 * rand() });
  ev.push({ type: 'phase', time: at(), name: 'warm-start', status: 'ended' }, { type: 'phase', time: at(), name: 'eval-initial', status: 'started' });
  ev.push({ type: 'eval', time: at(), phase: 'eval-initial', scaffolds: Object.fromEntries(SCAFFOLDS.map((s) => [s, evalStats(before[s])])) });
  ev.push({ type: 'phase', time: at(), name: 'eval-initial', status: 'ended' }, { type: 'phase', time: at(), name: 'rl', status: 'started' });
  for (let k = 1; k <= steps; k++) {
    for (let j = 0; j < 4; j++) {
      const scaffold = SCAFFOLDS[int(rand, 0, 2)];
      ev.push({
        type: 'task', time: at(), phase: 'rl', scaffold, taskId: `t${k}-${j}`, family: 'kv', success: rand() < 0.5 ? 1 : 0,
        outcomeReward: 1, processReward: -0.5, speedReward: 0.1, totalReward: 0.6, seconds: 0.5 + rand(), toolCalls: 2, turns: 3, forks: 0, versions: [k - 1],
      });
    }
    const input = int(rand, 500, 5000), tree = int(rand, 100, input);
    ev.push({
      type: 'step', time: at(), step: k, version: k, loss: rand() - 0.5, rewardMean: rand(), successRate: rand(),
      byScaffold: Object.fromEntries(SCAFFOLDS.filter(() => rand() < 0.8).map((s) => [s, { reward: rand(), success: rand(), groups: 2 }])),
      ratioMean: 1, clipFracHigh: 0.01, clipFracLow: 0, entropy: 1.5, gradNorm: 0.3, inputTokens: input, treeTokens: tree, reduction: input / tree,
      tokensPerSecond: 2000, stepMs: 300, lagMean: rand() * 2, lagMax: int(rand, 0, 4), groups: 8, samples: int(rand, 8, 40),
    });
  }
  ev.push({ type: 'phase', time: at(), name: 'rl', status: 'ended' }, { type: 'phase', time: at(), name: 'eval-final', status: 'started' });
  const finalEval: RunEvent = { type: 'eval', time: at(), phase: 'eval-final', scaffolds: Object.fromEntries(SCAFFOLDS.map((s) => [s, evalStats(after[s])])) };
  ev.push(finalEval, { type: 'phase', time: at(), name: 'eval-final', status: 'ended' });
  ev.push({ type: 'end', time: at(), status: 'completed', wallSeconds: (t - t0) / 1000 });
  return { events: ev, before, after, finalEvalIndex: ev.indexOf(finalEval) };
}

// ---- run log ------------------------------------------------------------------------------------------

describe('run log', () => {
  it('round-trips every event type and drops a cut-off last line', () => {
    const rand = makeRng();
    const { events } = syntheticRun(rand, 5);
    const path = join(dir, 'roundtrip', 'run.jsonl');
    const log = RunLogWriter.open(path);
    for (const e of events) log.write(e);
    const stamped = log.write({ type: 'warmstep', step: 99, loss: NaN }); // time stamped, NaN -> null
    log.close();
    expect(stamped.time).toBeGreaterThan(0);
    const back = readRunLog(path);
    expect(back.truncated).toBe(false);
    expect(back.events.slice(0, -1)).toEqual(events);
    expect((back.events.at(-1) as { loss: unknown }).loss).toBeNull();

    // A writer killed mid-line leaves a prefix of its last line.
    const line = encodeEvent({ type: 'warmstep', step: 100, loss: 1.25 });
    appendFileSync(path, line.slice(0, int(rand, 1, line.length - 2)));
    const cut = readRunLog(path);
    expect(cut.truncated, why('truncated')).toBe(true);
    expect(cut.events).toEqual(back.events);
    // ... and the writer appends after it on a new line once the cut-off part is completed.
    appendFileSync(path, '\n');
    expect(readRunLog(path).events.length).toBe(back.events.length);
  });

  it('refuses a malformed line that is not the last, skips unknown types, checks what it writes', () => {
    const good = encodeEvent({ type: 'phase', name: 'rl', status: 'started' }, 5);
    const caught = (() => { try { parseRunLog(good + '{"type":"step",\n' + good, 'x.jsonl'); } catch (e) { return e; } })();
    expect(caught).toBeInstanceOf(RunLogError);
    expect(caught).toMatchObject({ code: 'FORGE_REPORT_BAD_LOG', message: expect.stringMatching(/x\.jsonl: line 2: not valid JSON/) });
    expect(() => parseRunLog(good + '{"type":"step"}\n' + good)).toThrow(/line 2: no "time"/);
    const parsed = parseRunLog(good + '{"type":"future","time":1}\n\n' + good);
    expect(parsed).toEqual({ events: [JSON.parse(good), JSON.parse(good)], truncated: false, skipped: 1 });
    expectError(() => encodeEvent({ type: 'nope' } as unknown as RunEventInput), TypeError, 'FORGE_ERR_INVALID_ARGUMENT', /event\.type: expected one of run, phase/);
    const log = RunLogWriter.open(join(dir, 'closed.jsonl'));
    log.close();
    expect(() => log.write({ type: 'phase', name: 'rl', status: 'ended' })).toThrow(expect.objectContaining({ code: 'FORGE_REPORT_LOG_CLOSED' }));
  });

  it('keeps every event a SIGKILLed writer wrote (one write per event, nothing buffered)', async () => {
    const path = join(dir, 'killed.jsonl');
    const url = new URL('../lib/report/runLog.ts', import.meta.url).href;
    const code = `const { RunLogWriter } = await import(${JSON.stringify(url)});
      const log = RunLogWriter.open(${JSON.stringify(path)});
      for (let k = 1; k <= 200; k++) log.write({ type: 'warmstep', step: k, loss: 1 / k });
      process.stdout.write('written\\n');
      setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => d.toString().includes('written') && resolve());
      child.on('exit', (c) => reject(new Error(`writer exited early (${c})`)));
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const { events, truncated } = readRunLog(path);
    expect(truncated).toBe(false);
    expect(events.map((e) => (e as { step: number }).step)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
  });
});

// ---- svg plot -----------------------------------------------------------------------------------------

type Parsed = { width: number; height: number; tags: { name: string; attrs: Record<string, string> }[] };

/** A tiny XML check: every '<' opens a well-formed tag, tags balance, '&' only in entities. */
function parseSvg(svg: string): Parsed {
  const tags: Parsed['tags'] = [];
  const stack: string[] = [];
  const tagRe = /^<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/;
  for (let i = svg.indexOf('<'); i >= 0; i = svg.indexOf('<', i + 1)) {
    const m = tagRe.exec(svg.slice(i));
    if (!m) throw new Error(`malformed tag at ${i}: ${svg.slice(i, i + 40)}`);
    const [, close, name, attrText, self] = m;
    if (close) {
      if (stack.pop() !== name) throw new Error(`unbalanced </${name}> at ${i}`);
      continue;
    }
    const attrs: Record<string, string> = {};
    for (const a of attrText.matchAll(/([\w:-]+)="([^"]*)"/g)) attrs[a[1]] = a[2];
    tags.push({ name, attrs });
    if (!self) stack.push(name);
  }
  if (stack.length) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (/&(?!(amp|lt|gt|quot|#39);)/.test(svg)) throw new Error('raw & in text');
  const root = tags[0];
  expect(root.name).toBe('svg');
  expect(root.attrs.viewBox).toBe(`0 0 ${root.attrs.width} ${root.attrs.height}`);
  return { width: Number(root.attrs.width), height: Number(root.attrs.height), tags };
}

const X_ATTRS = ['x', 'x1', 'x2', 'cx'], Y_ATTRS = ['y', 'y1', 'y2', 'cy'];

/** Every coordinate is finite and inside the viewBox; returns the data paths' points and dots. */
function checkGeometry(p: Parsed) {
  const paths: [number, number][][][] = [], dots: [number, number][] = [];
  for (const t of p.tags) {
    for (const [k, v] of Object.entries(t.attrs)) {
      if ([...X_ATTRS, ...Y_ATTRS, 'r', 'width', 'height', 'stroke-width', 'opacity', 'font-size'].includes(k)) {
        const n = Number(v);
        expect(Number.isFinite(n), `${t.name} ${k}="${v}"`).toBe(true);
        if (X_ATTRS.includes(k)) expect(n >= 0 && n <= p.width, `${t.name} ${k}=${v}`).toBe(true);
        if (Y_ATTRS.includes(k)) expect(n >= 0 && n <= p.height, `${t.name} ${k}=${v}`).toBe(true);
      }
    }
    if (t.name === 'path') {
      const runs: [number, number][][] = [];
      for (const m of t.attrs.d.matchAll(/([ML])([^ML]+)/g)) {
        const [x, y] = m[2].trim().split(/\s+/).map(Number);
        expect(Number.isFinite(x) && Number.isFinite(y) && x >= 0 && x <= p.width && y >= 0 && y <= p.height, `path point ${m[0]}`).toBe(true);
        if (m[1] === 'M') runs.push([]);
        runs.at(-1)!.push([x, y]);
      }
      paths.push(runs);
    }
    if (t.name === 'circle') dots.push([Number(t.attrs.cx), Number(t.attrs.cy)]);
  }
  return { paths, dots };
}

/** Runs of consecutive indices where both x and y are finite. */
function finiteRuns(x: number[], y: number[]): number[][] {
  const runs: number[][] = [];
  let cur: number[] = [];
  for (let i = 0; i < x.length; i++) {
    if (Number.isFinite(x[i]) && Number.isFinite(y[i])) cur.push(i);
    else if (cur.length) runs.push(cur), (cur = []);
  }
  if (cur.length) runs.push(cur);
  return runs;
}

function randomSeries(rand: Rng, i: number): PlotSeries & { x: number[]; y: number[] } {
  const n = int(rand, 0, 60), kind = int(rand, 0, 4);
  const scale = 10 ** int(rand, -3, 7), offset = (rand() - 0.5) * scale * 4;
  const x = Array.from({ length: n }, (_, k) => k * (0.5 + rand()) * scale);
  const y = Array.from({ length: n }, () =>
    kind === 0 ? offset : // constant
    kind === 1 ? NaN : // all missing
    rand() < 0.15 ? [NaN, Infinity, -Infinity][int(rand, 0, 2)] : offset + scale * (rand() - 0.5));
  return { name: `series ${i} <&"'>`, x, y, mode: (['line', 'scatter', 'line+points'] as const)[int(rand, 0, 2)] };
}

describe('svgPlot', () => {
  it('random series (gaps, constants, huge and tiny scales, fixed ranges): well formed, finite, inside the viewBox', () => {
    const rand = makeRng();
    for (let trial = 0; trial < 60; trial++) {
      const series = Array.from({ length: int(rand, 1, 4) }, (_, i) => randomSeries(rand, i));
      const fixed = rand() < 0.3;
      const legend = (['below', 'inside', 'none'] as const)[int(rand, 0, 2)];
      const svg = svgPlot(series, {
        title: 'a <title> & "more"', xLabel: 'x & y', yLabel: '<y>', width: int(rand, 300, 900), height: int(rand, 200, 600),
        ...(fixed ? { yMin: -1, yMax: 1 } : {}), legend,
        hLines: rand() < 0.5 ? [{ value: rand(), label: 'ref <1>' }] : [],
      });
      expect(svg, why('no NaN/Infinity/undefined text')).not.toMatch(/NaN|Infinity|undefined/);
      const p = parseSvg(svg);
      const { paths, dots } = checkGeometry(p);
      // Each line series draws one path whose subpaths are the runs of finite points, in order.
      const lines = series.filter((s) => s.mode !== 'scatter' && finiteRuns(s.x, s.y).length > 0);
      expect(paths.length, why('one path per line series with data')).toBe(lines.length);
      lines.forEach((s, k) => expect(paths[k].map((r) => r.length), why(`runs of series ${k}`)).toEqual(finiteRuns(s.x, s.y).map((r) => r.length)));
      const expectDots = series.reduce((a, s) => {
        const runs = finiteRuns(s.x, s.y);
        return a + (s.mode === 'line' ? runs.filter((r) => r.length === 1).length : runs.reduce((b, r) => b + r.length, 0));
      }, 0);
      const legendDots = legend === 'none' ? 0 : series.filter((s) => s.mode === 'scatter').length;
      expect(dots.length, why('dots: data points and the legend marks of scatter series')).toBe(expectDots + legendDots);
      // Nothing of the titles leaks unescaped.
      expect(svg).toContain('a &lt;title&gt; &amp; &quot;more&quot;');
    }
  });

  it('maps data affinely: pixel positions are a linear function of the values (y flipped)', () => {
    const rand = makeRng();
    for (let trial = 0; trial < 20; trial++) {
      const n = int(rand, 3, 30);
      const x = Array.from({ length: n }, () => (rand() - 0.5) * 1000), y = Array.from({ length: n }, () => rand() * 50 - 10);
      const { dots } = checkGeometry(parseSvg(svgPlot([{ name: 'd', x, y, mode: 'scatter' }], { legend: 'none' })));
      expect(dots.length).toBe(n);
      const [i, j] = [x.indexOf(Math.min(...x)), x.indexOf(Math.max(...x))];
      const [k, l] = [y.indexOf(Math.min(...y)), y.indexOf(Math.max(...y))];
      const sx = (dots[j][0] - dots[i][0]) / (x[j] - x[i]), sy = (dots[l][1] - dots[k][1]) / (y[l] - y[k]);
      expect(sx).toBeGreaterThan(0);
      expect(sy).toBeLessThan(0);
      for (let m = 0; m < n; m++) {
        expect(Math.abs(dots[i][0] + sx * (x[m] - x[i]) - dots[m][0]), why(`x of point ${m}`)).toBeLessThan(0.02);
        expect(Math.abs(dots[k][1] + sy * (y[m] - y[k]) - dots[m][1]), why(`y of point ${m}`)).toBeLessThan(0.02);
      }
    }
  });

  it('nice ticks, moving average against a direct sum, and bad arguments', () => {
    const rand = makeRng();
    for (let t = 0; t < 200; t++) {
      const span = 10 ** (rand() * 16 - 8), count = int(rand, 2, 10);
      const step = niceStep(span, count);
      const mant = step / 10 ** Math.floor(Math.log10(step) + 1e-12);
      expect([1, 2, 5, 10].some((m) => Math.abs(mant - m) < 1e-9), why(`step ${step} of span ${span}`)).toBe(true);
      expect(span / step).toBeGreaterThan(count / 3);
      expect(span / step).toBeLessThan(count * 3);
    }
    const v = Array.from({ length: 50 }, () => (rand() < 0.2 ? NaN : rand() * 10));
    const w = int(rand, 1, 8);
    const ma = movingAverage(v, w);
    v.forEach((vi, i) => {
      const lo = i - Math.floor((w - 1) / 2);
      const win = v.slice(Math.max(0, lo), lo + w).filter(Number.isFinite);
      if (!Number.isFinite(vi)) expect(ma[i]).toBeNaN();
      else expect(ma[i]).toBeCloseTo(win.reduce((a, b) => a + b, 0) / win.length, 10);
    });
    expectError(() => svgPlot([{ name: 'a', x: [1, 2], y: [1] }]), RangeError, 'FORGE_ERR_OUT_OF_RANGE', /series\[0\]\.y: expected 2 values/);
    expectError(() => svgPlot([], { yMin: 2, yMax: 1 }), RangeError, 'FORGE_ERR_OUT_OF_RANGE', /options\.yMin: expected less than options\.yMax/);
    expectError(() => svgPlot('x' as unknown as PlotSeries[]), TypeError, 'FORGE_ERR_INVALID_ARGUMENT', /series: expected an array/);
  });
});

// ---- html report ----------------------------------------------------------------------------------------

const cells = (html: string, scaffold: string) => {
  const row = new RegExp(`<tr[^>]*data-scaffold="${scaffold}"[^>]*>(.*?)</tr>`).exec(html);
  if (!row) throw new Error(`no headline row for ${scaffold}`);
  return [...row[1].matchAll(/<td>(.*?)<\/td>/g)].map((m) => m[1].replace(/<[^>]+>/g, ''));
};
const pctText = (f: number) => `${(100 * f).toFixed(1)}%`;
const ptsText = (d: number) => `${d < 0 ? '-' : '+'}${Math.abs(100 * d).toFixed(1)} pts`;

describe('renderReport', () => {
  it('shows the before/after headline computed from the raw outcomes, the plots, the step table; self-contained', () => {
    const rand = makeRng();
    const steps = int(rand, 3, 40);
    const { events, before, after, finalEvalIndex } = syntheticRun(rand, steps);
    const html = renderReport(events);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    for (const s of SCAFFOLDS) {
      const b = before[s], a = after[s];
      const sb = sum(b.success) / b.success.length, sa = sum(a.success) / a.success.length;
      expect(cells(html, s), why(s)).toEqual([
        s, pctText(sb), pctText(sa), ptsText(sa - sb),
        `${(sum(b.calls) / b.calls.length).toFixed(2)} → ${(sum(a.calls) / a.calls.length).toFixed(2)}`,
        `${(sum(b.seconds) / b.seconds.length).toFixed(2)} → ${(sum(a.seconds) / a.seconds.length).toFixed(2)}`,
        `${b.success.length} / ${a.success.length}`,
      ]);
    }
    // Pooled over scaffolds: every task counts once.
    const all = (r: Record<string, EvalRaw>, k: keyof EvalRaw) => SCAFFOLDS.flatMap((s) => r[s][k]);
    const pb = sum(all(before, 'success')) / all(before, 'success').length, pa = sum(all(after, 'success')) / all(after, 'success').length;
    expect(cells(html, 'all').slice(0, 4)).toEqual(['all', pctText(pb), pctText(pa), ptsText(pa - pb)]);
    expect(html).toContain(`Success rate <b>${pctText(pb)}</b> → <b>${pctText(pa)}</b>`);
    expect(html.match(/<svg /g)?.length, 'six plots').toBe(6);
    expect(html).toContain(`<summary>RL steps (${steps})</summary>`);
    expect(html).toContain('<code>nested.lr</code>');
    expect(html).toContain('&lt;b&gt;&amp;'); // option values escaped
    // Self-contained: no scripts, stylesheets, fonts or images fetched from anywhere.
    expect(html).not.toMatch(/<script|<link|<img|@import|url\(|src=/i);
    expect(html.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, '')).not.toMatch(/https?:/);
    for (const svg of html.match(/<svg [\s\S]*?<\/svg>/g)!) checkGeometry(parseSvg(svg));

    // A run cut off before its final evaluation still reports what it has.
    const cut = renderReport(events.slice(0, finalEvalIndex));
    expect(cut).toContain('status: <b>cut off</b>');
    expect(cut).toContain('No final evaluation');
    expect(cells(cut, SCAFFOLDS[0]).slice(2, 4)).toEqual(['—', '—']);
    expect(() => renderReport([])).not.toThrow();
  });

  it('writeReport renders a log file, cut-off last line included, into index.html and SVG files', () => {
    const { events } = syntheticRun(makeRng(), 12);
    const path = join(dir, 'report-run.jsonl');
    writeFileSync(path, events.map((e) => encodeEvent(e)).join('') + '{"type":"step","ti');
    const out = join(dir, 'report-out');
    const written = writeReport(path, out);
    expect(written.truncated).toBe(true);
    expect(written.events).toBe(events.length);
    expect(readdirSync(out).sort()).toEqual(['index.html', 'lag.svg', 'reduction.svg', 'reward.svg', 'success.svg', 'task-time.svg', 'warmstart-loss.svg']);
    for (const f of written.plots) checkGeometry(parseSvg(readFileSync(f, 'utf8')));
    expect(readFileSync(written.index, 'utf8')).toContain('status: <b>completed</b>');
  });
});

// ---- summary table and progress ---------------------------------------------------------------------------

describe('summary table', () => {
  it('prints hand-computed numbers in aligned columns', () => {
    const t = 1_000_000;
    const step = (k: number, input: number, tree: number, lagMean: number, lagMax: number, samples: number): RunEvent => ({
      type: 'step', time: t + k, step: k, version: k, loss: 0, rewardMean: 0, successRate: 0, byScaffold: {}, ratioMean: 1, clipFracHigh: 0, clipFracLow: 0,
      entropy: 1, gradNorm: 1, inputTokens: input, treeTokens: tree, reduction: input / tree, tokensPerSecond: 1, stepMs: 1, lagMean, lagMax, groups: 1, samples,
    });
    const events: RunEvent[] = [
      { type: 'eval', time: t, phase: 'eval-initial', scaffolds: { A: { successRate: 0.25, meanToolCalls: 3, meanSeconds: 1.5, n: 40 }, B: { successRate: 0.5, meanToolCalls: 2, meanSeconds: 2, n: 20 } } },
      step(1, 1000, 400, 0.5, 1, 10), step(2, 1500, 500, 1, 3, 30), step(3, 500, 250, 2, 2, 10),
      { type: 'eval', time: t + 9, phase: 'eval-final', scaffolds: { A: { successRate: 0.6, meanToolCalls: 2, meanSeconds: 1, n: 40 }, B: { successRate: 0.55, meanToolCalls: 1.5, meanSeconds: 1, n: 20 } } },
      { type: 'end', time: t + 10, status: 'completed', wallSeconds: 125 },
    ];
    const text = summaryTable(events);
    const lines = text.split('\n');
    const table = lines.slice(0, lines.indexOf(''));
    expect(new Set(table.map((l) => l.length)).size, 'aligned rows').toBe(1);
    const row = (name: string) => table.find((l) => l.startsWith(name + ' '))!.trim().split(/\s{2,}/);
    expect(row('A')).toEqual(['A', '25.0%', '60.0%', '+35.0 pts', '3.00 -> 2.00', '1.50 -> 1.00']);
    expect(row('B')).toEqual(['B', '50.0%', '55.0%', '+5.0 pts', '2.00 -> 1.50', '2.00 -> 1.00']);
    // all: success (10 + 10) / 60 -> (24 + 11) / 60; calls 160/60 -> 110/60; seconds 100/60 -> 60/60.
    expect(row('all')).toEqual(['all', '33.3%', '58.3%', '+25.0 pts', '2.67 -> 1.83', '1.67 -> 1.00']);
    // Reductions 2.5, 3, 2 -> mean 2.5; lag (0.5*10 + 1*30 + 2*10) / 50 = 1.1, max 3.
    expect(text).toMatch(/RL steps:\s+3\n/);
    expect(text).toMatch(/tokens trained:\s+3000 \(1150 computed in prefix trees\)/);
    expect(text).toMatch(/mean tree token reduction:\s+2\.50x/);
    expect(text).toMatch(/policy lag:\s+mean 1\.10, max 3 versions/);
    expect(text).toMatch(/wall time:\s+2m 05s$/);
  });

  it('reads the trainer fields of a step event off a trainer step result', () => {
    const stats = { meanRatio: 1.02, clipFracHigh: 0.03, clipFracLow: 0.001, clipFracPositiveAdv: 0, clipFracNegativeAdv: 0, meanEntropy: 0.7, meanLogprob: -1, numTerms: 9, numRows: 9 };
    const r: TrainStepResult = { version: 12, loss: -0.25, gradNorm: 0.9, clipped: false, lr: 1e-3, stats, inputTokens: 3000, treeTokens: 1200, parts: 1, ms: 1500 };
    expect(trainerStepFields(r)).toEqual({
      version: 12, loss: -0.25, ratioMean: 1.02, clipFracHigh: 0.03, clipFracLow: 0.001, entropy: 0.7, gradNorm: 0.9,
      inputTokens: 3000, treeTokens: 1200, reduction: 2.5, tokensPerSecond: 2000, stepMs: 1500,
    });
  });

  it('progress line, and the progress display as lines (CI) or as a bar (terminal)', () => {
    expect(progressLine({ phase: 'rl', step: 12, total: 30, rewardMean: 0.41234, successRate: 0.4129, tokensPerSecond: 12345.6 }))
      .toBe('rl 12/30 | reward 0.412 | success 41.3% | 12.3k tok/s');
    expect(progressLine({ phase: 'warm-start', step: 3, total: 9, loss: 1.23456, successRate: NaN })).toBe('warm-start 3/9 | loss 1.235');

    const written: string[] = [];
    const sink: ProgressStream = { write: (s: string) => written.push(s), isTTY: false };
    const p = createProgress({ total: 20, stream: sink });
    expect(p.mode).toBe('lines');
    for (let k = 1; k <= 20; k++) p.update({ phase: 'rl', step: k, total: 20, rewardMean: k / 20 });
    p.update({ phase: 'eval-final', step: 1, total: 3 });
    p.update({ phase: 'eval-final', step: 2, total: 3 });
    p.stop();
    const steps = written.map((l) => l.trimEnd().split(' | ')[0]);
    expect(steps).toEqual(['rl 1/20', ...[2, 4, 6, 8, 10, 12, 14, 16, 18, 20].map((k) => `rl ${k}/20`), 'eval-final 1/3', 'eval-final 2/3']);
    expect(written[1]).toBe('rl 2/20 | reward 0.100\n');

    const tty: string[] = [];
    const bar = createProgress({ total: 10, stream: { write: (s: string) => tty.push(s), isTTY: true } });
    expect(bar.mode).toBe('bar');
    for (let k = 1; k <= 10; k++) bar.update({ phase: 'rl', step: k, total: 10, successRate: 0.5 });
    bar.stop();
    expect(tty.join('')).toContain('rl 10/10 | success 50.0%');
    expect(createProgress({ total: 5, enabled: false }).mode).toBe('off');
    expectError(() => createProgress({ total: -1 }), RangeError, 'FORGE_ERR_OUT_OF_RANGE', /options\.total/);
  });
});
