// Number formatting shared by the HTML report, the terminal summary and the progress line, so the
// same quantity reads the same everywhere. A missing value (NaN, null, undefined) prints as `missing`.

export const MISSING = '-';

const finite = (v: number | null | undefined): v is number => typeof v === 'number' && Number.isFinite(v);

/** A fraction as a percentage: 0.3125 -> "31.3%". */
export function pct(v: number | null | undefined, decimals = 1, missing = MISSING): string {
  return finite(v) ? `${(100 * v).toFixed(decimals)}%` : missing;
}

/** A change of a fraction in percentage points, signed: 0.268 -> "+26.8 pts". */
export function points(v: number | null | undefined, decimals = 1, missing = MISSING): string {
  if (!finite(v)) return missing;
  const p = 100 * v;
  const text = Math.abs(p).toFixed(decimals);
  return `${p < 0 && Number(text) !== 0 ? '-' : '+'}${text} pts`;
}

/** A number with fixed decimals. */
export function num(v: number | null | undefined, decimals = 2, missing = MISSING): string {
  return finite(v) ? v.toFixed(decimals) : missing;
}

/** A count with k / M / G suffixes past 10^4: 1234 -> "1234", 123456 -> "123.5k". */
export function count(v: number | null | undefined, missing = MISSING): string {
  if (!finite(v)) return missing;
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(2)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** "before -> after" of two numbers. */
export function beforeAfter(before: number | null | undefined, after: number | null | undefined, decimals = 2, missing = MISSING): string {
  return `${num(before, decimals, missing)} -> ${num(after, decimals, missing)}`;
}

/** Seconds as "12.3 s", "4m 05s" or "1h 02m 03s". */
export function duration(seconds: number | null | undefined, missing = MISSING): string {
  if (!finite(seconds)) return missing;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), mi = Math.floor((s % 3600) / 60), se = s % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}h ${two(mi)}m ${two(se)}s` : `${mi}m ${two(se)}s`;
}
