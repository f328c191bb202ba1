// A small dependency-free SVG plotter for reports and benchmarks: line and scatter series with a
// legend, axes with "nice" ticks (1, 2 or 5 times a power of ten), titles, optional moving-average
// smoothing (the raw values drawn faintly underneath), fixed or automatic ranges, and
// reference lines. Non-finite values are gaps; every coordinate lands inside the viewBox (values
// beyond a fixed range are drawn at its edge); every text is escaped. The output is one standalone
// <svg> string that can be written to a .svg file or inlined into HTML.
import { rangeError, typeError } from '../errors.js';

export interface PlotSeries {
  name: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  /** CSS colour; default from the palette by index. */
  color?: string;
  /** 'line' (default; an isolated point gets a dot), 'scatter', or 'line+points'. */
  mode?: 'line' | 'scatter' | 'line+points';
  /** Centred moving average over this many points (1: none). */
  smooth?: number;
  /** With smooth > 1, also draw the raw values faintly (default true). */
  raw?: boolean;
  dashed?: boolean;
  /** Dot radius of scatter points (default 3). */
  radius?: number;
  /** Opacity of the series (default 1; scatter default 0.75). */
  opacity?: number;
  /** Leave the series out of the legend. */
  hideInLegend?: boolean;
}

export interface ReferenceLine {
  value: number;
  label?: string;
  color?: string;
  dashed?: boolean;
}

export interface PlotOptions {
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Pixels; defaults 720 x 400. */
  width?: number;
  height?: number;
  /** Fixed ends of the axes; an end left out is fitted to the data and rounded out to a tick. */
  xMin?: number;
  xMax?: number;
  yMin?: number;
  yMax?: number;
  /** Tick count to aim at (default 5 on x, 5 on y). */
  xTicks?: number;
  yTicks?: number;
  /** Tick label formatting (default: the tick step's decimals, k / M for large values). */
  xFormat?: (v: number) => string;
  yFormat?: (v: number) => string;
  /** Horizontal and vertical reference lines (included in the fitted range). */
  hLines?: ReferenceLine[];
  vLines?: ReferenceLine[];
  /** 'below' the plot (default with 2+ legend entries), 'inside' (top-left corner) or 'none'. */
  legend?: 'below' | 'inside' | 'none';
}

export const PALETTE: readonly string[] = Object.freeze(['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf']);

/** Escapes text for XML / HTML content and attribute values. */
export function escapeXml(text: string): string {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Centred moving average over `window` points (i - floor((window-1)/2) .. i + ceil((window-1)/2),
 * cut at the ends), ignoring non-finite values inside the window; a non-finite input stays a gap. A
 * centred window does not shift the curve to the right the way a trailing one does. */
export function movingAverage(values: ArrayLike<number>, window: number): Float64Array {
  if (!Number.isInteger(window) || window < 1) throw rangeError(`window: expected an integer >= 1, got ${window}`);
  const n = values.length;
  // Prefix sums and counts of the finite values.
  const sum = new Float64Array(n + 1), cnt = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) {
    const ok = Number.isFinite(values[i]);
    sum[i + 1] = sum[i] + (ok ? values[i] : 0);
    cnt[i + 1] = cnt[i] + (ok ? 1 : 0);
  }
  const before = Math.floor((window - 1) / 2), after = window - 1 - before;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const a = Math.max(0, i - before), b = Math.min(n, i + after + 1);
    out[i] = Number.isFinite(values[i]) ? (sum[b] - sum[a]) / (cnt[b] - cnt[a]) : NaN;
  }
  return out;
}

/** A tick step of 1, 2 or 5 times a power of ten giving about `count` intervals over `span` (the
 * raw step rounded to the nearest nice one, Heckbert's "nice numbers"). */
export function niceStep(span: number, count: number): number {
  if (!(span > 0) || !Number.isFinite(span)) return 1;
  const raw = span / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/** Decimals that show multiples of `step` exactly. */
const decimalsOf = (step: number) => Math.max(0, Math.min(12, -Math.floor(Math.log10(step) + 1e-9)));

/** The multiples of `step` inside [lo, hi] (rounded to the step's decimals). */
export function ticksOf(lo: number, hi: number, step: number): number[] {
  const d = decimalsOf(step) + 1;
  const out: number[] = [];
  // Capped: a span below the values' float precision (1e9 + 1e-8) must not loop forever.
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9 && out.length < 100; k++) out.push(Number((k * step).toFixed(d)) || 0);
  return out;
}

/** A tick label: the step's decimals, in k / M when the axis reaches 10^4 / 10^6. */
export function formatTick(v: number, step: number, axisMax = Math.abs(v)): string {
  const unit = axisMax >= 1e6 ? 1e6 : axisMax >= 1e4 ? 1e3 : 1;
  const suffix = unit === 1e6 ? 'M' : unit === 1e3 ? 'k' : '';
  return (v / unit).toFixed(decimalsOf(step / unit)) + (v === 0 ? '' : suffix);
}

interface Axis {
  lo: number;
  hi: number;
  step: number;
  ticks: number[];
}

function fitAxis(name: 'x' | 'y', values: number[], fixedLo: number | undefined, fixedHi: number | undefined, count: number): Axis {
  for (const [k, v] of [[`options.${name}Min`, fixedLo], [`options.${name}Max`, fixedHi]] as const)
    if (v !== undefined && !Number.isFinite(v)) throw rangeError(`${k}: expected a finite number, got ${v}`);
  if (fixedLo !== undefined && fixedHi !== undefined && !(fixedLo < fixedHi))
    throw rangeError(`options.${name}Min: expected less than options.${name}Max, got [${fixedLo}, ${fixedHi}]`);
  if (!Number.isInteger(count) || count < 1) throw rangeError(`options.${name}Ticks: expected an integer >= 1, got ${count}`);
  // A loop, not Math.min(...values): long series would overflow the argument list.
  let min = Infinity, max = -Infinity;
  for (const v of values) (min = v < min ? v : min), (max = v > max ? v : max);
  let lo = fixedLo ?? (values.length ? min : 0);
  let hi = fixedHi ?? (values.length ? max : 1);
  if (lo >= hi) {
    // A constant series (or data beyond a fixed end): widen the free end(s) around it.
    const pad = Math.abs(fixedLo === undefined ? hi : lo) * 0.1 || 1;
    if (fixedLo === undefined && fixedHi === undefined) (lo -= pad), (hi += pad);
    else if (fixedLo === undefined) lo = hi - pad;
    else hi = lo + pad;
  }
  const step = niceStep(hi - lo, count);
  if (fixedLo === undefined) lo = Math.floor(lo / step + 1e-9) * step;
  if (fixedHi === undefined) hi = Math.ceil(hi / step - 1e-9) * step;
  return { lo, hi, step, ticks: ticksOf(lo, hi, step) };
}

const r2 = (v: number) => Math.round(v * 100) / 100;
const clamp = (v: number, a: number, b: number) => Math.min(b, Math.max(a, v));
const CHAR_W = 6.6; // average glyph width of 12px sans-serif, for legend layout

function checkSeries(series: unknown): PlotSeries[] {
  if (!Array.isArray(series)) throw typeError(`series: expected an array, got ${typeof series}`);
  series.forEach((s, i) => {
    if (s === null || typeof s !== 'object') throw typeError(`series[${i}]: expected an object`);
    if (typeof s.name !== 'string') throw typeError(`series[${i}].name: expected a string`);
    if (!s.x || typeof s.x.length !== 'number') throw typeError(`series[${i}].x: expected an array of numbers`);
    if (!s.y || typeof s.y.length !== 'number') throw typeError(`series[${i}].y: expected an array of numbers`);
    if (s.x.length !== s.y.length) throw rangeError(`series[${i}].y: expected ${s.x.length} values (as many as x), got ${s.y.length}`);
    if (s.smooth !== undefined && (!Number.isInteger(s.smooth) || s.smooth < 1))
      throw rangeError(`series[${i}].smooth: expected an integer >= 1, got ${s.smooth}`);
  });
  return series as PlotSeries[];
}

/** Renders the series as a standalone SVG document string. */
export function svgPlot(seriesIn: PlotSeries[], options: PlotOptions = {}): string {
  const series = checkSeries(seriesIn);
  const W = options.width ?? 720, H0 = options.height ?? 400;
  if (!(W >= 160 && W <= 10000)) throw rangeError(`options.width: expected 160..10000 pixels, got ${W}`);
  if (!(H0 >= 120 && H0 <= 10000)) throw rangeError(`options.height: expected 120..10000 pixels, got ${H0}`);
  const m = { l: 64, r: 24, t: options.title ? 36 : 16, b: options.xLabel ? 50 : 32 };

  // What each series draws: its smoothed line and, faintly, its raw values.
  const drawn = series.map((s) => {
    const smooth = s.smooth ?? 1;
    return { s, y: smooth > 1 ? movingAverage(s.y, smooth) : s.y, raw: smooth > 1 && s.raw !== false };
  });
  const xs: number[] = [], ys: number[] = [];
  for (const { s } of drawn)
    for (let i = 0; i < s.x.length; i++)
      if (Number.isFinite(s.x[i]) && Number.isFinite(s.y[i])) xs.push(s.x[i]), ys.push(s.y[i]);
  for (const l of options.hLines ?? []) if (Number.isFinite(l.value)) ys.push(l.value);
  for (const l of options.vLines ?? []) if (Number.isFinite(l.value)) xs.push(l.value);
  const ax = fitAxis('x', xs, options.xMin, options.xMax, options.xTicks ?? 5);
  const ay = fitAxis('y', ys, options.yMin, options.yMax, options.yTicks ?? 5);

  // Legend entries, laid out in rows under the plot or stacked inside it.
  const entries = drawn.map((d, i) => ({ d, color: d.s.color ?? PALETTE[i % PALETTE.length] })).filter((e) => !e.d.s.hideInLegend);
  const legend = options.legend ?? (entries.length >= 2 ? 'below' : 'none');
  const rows: { e: (typeof entries)[number]; x: number }[][] = [];
  if (legend === 'below') {
    let row: { e: (typeof entries)[number]; x: number }[] = [], x = m.l;
    for (const e of entries) {
      const w = 30 + e.d.s.name.length * CHAR_W + 16;
      if (row.length && x + w > W - m.r) rows.push(row), (row = []), (x = m.l);
      row.push({ e, x });
      x += w;
    }
    if (row.length) rows.push(row);
  }
  const H = H0 + rows.length * 18;
  const plotBottom = H0 - m.b;
  const X = (v: number) => r2(clamp(m.l + ((v - ax.lo) / (ax.hi - ax.lo)) * (W - m.l - m.r), m.l, W - m.r));
  const Y = (v: number) => r2(clamp(plotBottom - ((v - ay.lo) / (ay.hi - ay.lo)) * (plotBottom - m.t), m.t, plotBottom));
  const fx = options.xFormat ?? ((v: number) => formatTick(v, ax.step, Math.max(Math.abs(ax.lo), Math.abs(ax.hi))));
  const fy = options.yFormat ?? ((v: number) => formatTick(v, ay.step, Math.max(Math.abs(ay.lo), Math.abs(ay.hi))));

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12" role="img">`,
    `<title>${escapeXml(options.title ?? 'plot')}</title>`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`,
  ];
  if (options.title) out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${escapeXml(options.title)}</text>`);
  for (const t of ay.ticks) {
    const y = Y(t);
    out.push(
      `<line x1="${m.l}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="#e5e5e5"/>`,
      `<line x1="${m.l - 5}" y1="${y}" x2="${m.l}" y2="${y}" stroke="black"/>`,
      `<text x="${m.l - 8}" y="${r2(y + 4)}" text-anchor="end">${escapeXml(fy(t))}</text>`,
    );
  }
  for (const t of ax.ticks) {
    const x = X(t);
    out.push(
      `<line x1="${x}" y1="${plotBottom}" x2="${x}" y2="${plotBottom + 5}" stroke="black"/>`,
      `<text x="${x}" y="${plotBottom + 18}" text-anchor="middle">${escapeXml(fx(t))}</text>`,
    );
  }
  out.push(
    `<line x1="${m.l}" y1="${plotBottom}" x2="${W - m.r}" y2="${plotBottom}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${plotBottom}" stroke="black"/>`,
  );
  if (options.xLabel) out.push(`<text x="${r2((m.l + W - m.r) / 2)}" y="${plotBottom + 38}" text-anchor="middle">${escapeXml(options.xLabel)}</text>`);
  if (options.yLabel)
    out.push(`<text x="16" y="${r2((m.t + plotBottom) / 2)}" transform="rotate(-90 16 ${r2((m.t + plotBottom) / 2)})" text-anchor="middle">${escapeXml(options.yLabel)}</text>`);

  for (const l of options.hLines ?? []) {
    if (!Number.isFinite(l.value)) continue;
    const y = Y(l.value), c = escapeXml(l.color ?? 'gray');
    out.push(`<line x1="${m.l}" y1="${y}" x2="${W - m.r}" y2="${y}" stroke="${c}"${l.dashed !== false ? ' stroke-dasharray="5 4"' : ''}/>`);
    // The label under its line, or over it when the line runs along the bottom.
    if (l.label) out.push(`<text x="${W - m.r - 4}" y="${r2(y + 16 <= plotBottom - 2 ? y + 16 : y - 5)}" text-anchor="end" fill="${c}">${escapeXml(l.label)}</text>`);
  }
  (options.vLines ?? []).forEach((l, k) => {
    if (!Number.isFinite(l.value)) return;
    const x = X(l.value), c = escapeXml(l.color ?? 'gray');
    out.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${plotBottom}" stroke="${c}"${l.dashed !== false ? ' stroke-dasharray="5 4"' : ''}/>`);
    if (!l.label) return;
    // Labels of nearby lines (phases that start close together) are staggered over three rows; a
    // label that would run past the right edge sits left of its line.
    const y = m.t + 12 + 13 * (k % 3);
    const right = x + 4 + l.label.length * CHAR_W * 0.92 > W - m.r;
    out.push(`<text x="${r2(right ? x - 4 : x + 4)}" y="${y}" fill="${c}" font-size="11"${right ? ' text-anchor="end"' : ''}>${escapeXml(l.label)}</text>`);
  });

  drawn.forEach(({ s, y, raw }, i) => {
    const color = escapeXml(s.color ?? PALETTE[i % PALETTE.length]);
    const mode = s.mode ?? 'line';
    if (raw) out.push(seriesPath(s.x, s.y, X, Y, color, 0.25, 1, false, mode === 'scatter' ? 'scatter' : 'line', 2));
    out.push(seriesPath(s.x, y, X, Y, color, s.opacity ?? (mode === 'scatter' ? 0.75 : 1), raw ? 2.2 : 1.6, s.dashed === true, mode, s.radius ?? 3));
  });

  if (legend === 'inside' && entries.length) {
    const w = 40 + Math.max(...entries.map((e) => e.d.s.name.length)) * CHAR_W;
    out.push(`<rect x="${m.l + 8}" y="${m.t + 4}" width="${r2(Math.min(w, W - m.l - m.r - 16))}" height="${entries.length * 18 + 6}" fill="white" fill-opacity="0.85" stroke="#cccccc"/>`);
    entries.forEach((e, k) => out.push(legendEntry(e.d.s, e.color, m.l + 14, m.t + 20 + 18 * k)));
  }
  rows.forEach((row, k) => row.forEach(({ e, x }) => out.push(legendEntry(e.d.s, e.color, x, H0 + 4 + 18 * k))));
  out.push('</svg>');
  return out.join('\n');
}

/** One series as a path broken at gaps (dots for isolated points) or as dots. */
function seriesPath(
  xs: ArrayLike<number>, ys: ArrayLike<number>, X: (v: number) => number, Y: (v: number) => number,
  color: string, opacity: number, width: number, dashed: boolean, mode: 'line' | 'scatter' | 'line+points', radius: number,
): string {
  const ok = (i: number) => i >= 0 && i < xs.length && Number.isFinite(xs[i]) && Number.isFinite(ys[i]);
  const dots: string[] = [];
  let d = '';
  for (let i = 0; i < xs.length; i++) {
    if (!ok(i)) continue;
    const px = X(xs[i]), py = Y(ys[i]);
    if (mode !== 'scatter') d += `${ok(i - 1) ? 'L' : 'M'}${px} ${py}`;
    if (mode !== 'line' || (!ok(i - 1) && !ok(i + 1))) dots.push(`<circle cx="${px}" cy="${py}" r="${mode === 'line' ? 2 : radius}"/>`);
  }
  const parts = [`<g fill="${color}" stroke="none" opacity="${opacity}">`];
  if (d) parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="${width}" stroke-linejoin="round"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
  parts.push(...dots, '</g>');
  return parts.join('');
}

function legendEntry(s: PlotSeries, color: string, x: number, y: number): string {
  const c = escapeXml(color);
  const mark =
    s.mode === 'scatter'
      ? `<circle cx="${x + 10}" cy="${y - 4}" r="5" fill="${c}"/>`
      : `<line x1="${x}" y1="${y - 4}" x2="${x + 22}" y2="${y - 4}" stroke="${c}" stroke-width="2.5"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`;
  return `${mark}<text x="${r2(x + 30)}" y="${y}">${escapeXml(s.name)}</text>`;
}
