// Contract 5 written out plainly for the tests, in float64: the composite reward, the speed shapes,
// a median by sorting, and advantages as (reward-to-go - group mean) / (group std + eps).

/** Median of the last `window` values, by sorting a copy. */
export function naiveMedian(history: readonly number[], window = Infinity): number {
  const last = window === Infinity ? [...history] : history.slice(Math.max(0, history.length - window));
  if (last.length === 0) return NaN;
  last.sort((a, b) => a - b);
  const n = last.length;
  return n % 2 === 1 ? last[(n - 1) / 2] : (last[n / 2 - 1] + last[n / 2]) / 2;
}

export function refSpeed(ratio: number, shape: 'log' | 'linear', clip: number): number {
  const h = shape === 'log' ? -Math.log(ratio) : 1 - ratio;
  if (h > clip) return clip;
  if (h < -clip) return -clip;
  return h;
}

export interface RefSession {
  perf: number;
  process?: number[];
  calls?: number;
  /** r_speed already computed (0 without timing). */
  speed: number;
}

export interface RefGroup {
  totals: number[];
  baseline: number;
  std: number;
  advantages: number[][];
}

export function refGroup(sessions: RefSession[], alpha: number, beta: number, eps: number, normalize: boolean): RefGroup {
  const perCall = sessions.map((s) => {
    const calls = s.process ? s.process.length : (s.calls ?? 1);
    const r: number[] = [];
    for (let p = 0; p < calls; p++) r.push(alpha * (s.process ? s.process[p] : 0));
    r[calls - 1] += s.perf + beta * s.speed;
    return r;
  });
  const totals = sessions.map((s) => s.perf + alpha * (s.process ?? []).reduce((a, b) => a + b, 0) + beta * s.speed);
  const G = totals.length;
  const baseline = totals.reduce((a, b) => a + b, 0) / G;
  const std = Math.sqrt(totals.reduce((a, t) => a + (t - baseline) * (t - baseline), 0) / G);
  const scale = normalize && std > 0 ? std + eps : 1;
  const advantages = perCall.map((r) =>
    r.map((_, t) => {
      let togo = 0;
      for (let p = t; p < r.length; p++) togo += r[p];
      return (togo - baseline) / scale;
    }),
  );
  return { totals, baseline, std, advantages };
}
