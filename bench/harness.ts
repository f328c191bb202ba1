// What every benchmark shares: a timer that reports the median of repeated runs, and the shape of a
// result section that bench/run.ts prints and records in bench/RESULTS.md. Benchmarks report ratios
// against a baseline measured in the same run, because these machines are noisy.

export interface BenchSection {
  /** Heading in RESULTS.md, e.g. "Prefix-tree build throughput". */
  title: string;
  /** One line on what is measured and against which baseline. */
  description: string;
  columns: string[];
  rows: (string | number)[][];
  /** Extra lines printed under the table (conclusions, caveats). */
  notes?: string[];
}

export interface BenchContext {
  /** Smaller problem sizes for a quick check (`npm run bench -- --quick`). */
  quick: boolean;
  log: (line: string) => void;
}

export type Bench = (ctx: BenchContext) => Promise<BenchSection[]>;

export interface Timing {
  medianMs: number;
  minMs: number;
  runs: number;
}

/** Runs `fn` `warmup` times, then until `repeats` runs and at least `minMs` have passed; median time. */
export async function time(
  fn: () => unknown | Promise<unknown>,
  { warmup = 1, repeats = 5, minMs = 200 }: { warmup?: number; repeats?: number; minMs?: number } = {},
): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  while (samples.length < repeats || (performance.now() - start < minMs && samples.length < 1000)) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  return { medianMs: samples[Math.floor(samples.length / 2)], minMs: samples[0], runs: samples.length };
}

/** Formats a number with `digits` significant digits (no exponent for ordinary magnitudes). */
export function fmt(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  if (x !== 0 && (Math.abs(x) >= 1e7 || Math.abs(x) < 1e-3)) return x.toExponential(digits - 1);
  return Number(x.toPrecision(digits)).toString();
}

/** A small deterministic PRNG (mulberry32) so bench inputs are the same in every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
