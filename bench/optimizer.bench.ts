// AdamW step and gradient-norm throughput: forge_adamw_step / forge_grad_sq_norm (on the default pool
// and on 1 thread) against a plain TypeScript loop doing the same float32-stored arithmetic, measured
// in the same run on the same arrays. Both are memory bound: the GB/s columns count the bytes a step
// must move at least (params, grads, m, v read; params, m, v written: 28 bytes per parameter).
import { type Bench, type BenchSection, fmt, rng, time } from './harness.js';
import { adamwStep, gradSqNorm } from '../lib/model/optimizer.js';
import { nativeInfo, setNumThreads } from '../lib/native.js';

const OPTIONS = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 };
const STEP_BYTES = 28; // per parameter
const NORM_BYTES = 4;

/** The baseline: AdamW as one would write it in TypeScript over Float32Arrays. */
function adamwTs(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, t: number, scale: number): void {
  const { lr, beta1, beta2, eps, weightDecay } = OPTIONS;
  const stepSize = lr / (1 - beta1 ** t);
  const invSqrtBc2 = 1 / Math.sqrt(1 - beta2 ** t);
  const decay = 1 - lr * weightDecay;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * scale;
    const mi = (m[i] = beta1 * m[i] + (1 - beta1) * gi);
    const vi = (v[i] = beta2 * v[i] + (1 - beta2) * gi * gi);
    p[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) * invSqrtBc2 + eps);
  }
}

function sqNormTs(g: Float32Array): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return s;
}

export const bench: Bench = async ({ quick, log }) => {
  const sizes = quick ? [1 << 18, 1 << 22] : [1 << 18, 1 << 22, 1 << 24];
  const threads = nativeInfo().numThreads;
  const stepRows: (string | number)[][] = [];
  const normRows: (string | number)[][] = [];
  for (const n of sizes) {
    log(`n = ${n}`);
    const rand = rng(n);
    const p = Float32Array.from({ length: n }, () => rand() - 0.5);
    const g = Float32Array.from({ length: n }, () => rand() - 0.5);
    const m = new Float32Array(n), v = new Float32Array(n);
    // The step count only changes the bias corrections; keep it moving as training would.
    let t = 1;
    const opts = { warmup: 1, repeats: n > 1 << 22 ? 5 : 9, minMs: 300 };
    setNumThreads(0);
    const pooled = await time(() => adamwStep(p, g, m, v, t++, { ...OPTIONS, gradScale: 0.5 }), opts);
    const pooledNorm = await time(() => gradSqNorm(g), opts);
    setNumThreads(1);
    const single = await time(() => adamwStep(p, g, m, v, t++, { ...OPTIONS, gradScale: 0.5 }), opts);
    const singleNorm = await time(() => gradSqNorm(g), opts);
    setNumThreads(0);
    const ts = await time(() => adamwTs(p, g, m, v, t++, 0.5), opts);
    const tsNorm = await time(() => sqNormTs(g), opts);
    const norm = gradSqNorm(g), normTs = sqNormTs(g);
    if (Math.abs(norm - normTs) > 1e-9 * normTs) throw new Error(`norm mismatch: ${norm} vs ${normTs}`);

    const gbps = (bytes: number, ms: number) => fmt((bytes * n) / (ms * 1e6));
    const mps = (ms: number) => fmt(n / (ms * 1e3)); // million parameters per second
    log(`  step: kernel ${fmt(pooled.medianMs)} ms, 1 thread ${fmt(single.medianMs)} ms, TS ${fmt(ts.medianMs)} ms`);
    stepRows.push([
      n.toLocaleString('en-US'),
      fmt(pooled.medianMs),
      fmt(single.medianMs),
      fmt(ts.medianMs),
      `**${fmt(ts.medianMs / pooled.medianMs)}x**`,
      mps(pooled.medianMs),
      gbps(STEP_BYTES, pooled.medianMs),
      gbps(STEP_BYTES, single.medianMs),
      gbps(STEP_BYTES, ts.medianMs),
    ]);
    normRows.push([
      n.toLocaleString('en-US'),
      fmt(pooledNorm.medianMs),
      fmt(singleNorm.medianMs),
      fmt(tsNorm.medianMs),
      `**${fmt(tsNorm.medianMs / pooledNorm.medianMs)}x**`,
      gbps(NORM_BYTES, pooledNorm.medianMs),
    ]);
  }
  const sections: BenchSection[] = [
    {
      title: 'AdamW step throughput',
      description:
        `forge_adamw_step (${threads} kernel threads, and 1) against a plain TypeScript loop over the same ` +
        'Float32Arrays, same formulas, median of repeated runs. GB/s: 28 bytes per parameter (params, grads, ' +
        'm, v read; params, m, v written); the kernel also reads grads once more to check them first.',
      columns: ['params', 'kernel ms', 'kernel 1-thread ms', 'TS loop ms', 'speed-up vs TS', 'kernel Mparams/s', 'kernel GB/s', '1-thread GB/s', 'TS GB/s'],
      rows: stepRows,
    },
    {
      title: 'Gradient sum of squares (global-norm clipping)',
      description:
        `forge_grad_sq_norm (float64 accumulation, ${threads} threads and 1) against a TypeScript float64 loop.`,
      columns: ['params', 'kernel ms', 'kernel 1-thread ms', 'TS loop ms', 'speed-up vs TS', 'kernel GB/s'],
      rows: normRows,
    },
  ];
  return sections;
};
