// The nano policy on the CPU: (1) the SGEMM under it (forge_gemm) against a naive triple loop
// (forge_bench_gemm_naive: one float dot product per output element, rows over the same thread pool)
// on the model's own matrix shapes; (2) forward and forward + backward of the default config on an
// agent-like batch (a shared system prompt, tasks whose calls extend each other or fork), merged into
// one prefix tree against the same samples unmerged (each its own chain in one forest), so the time
// ratio can be read against the token-reduction ratio. Both variants run the same kernels in the same
// run; throughput counts the samples' input tokens.
import { type Bench, type BenchSection, fmt, rng, time } from './harness.js';
import { NanoPolicy, type PolicyBatch } from '../lib/model/policy.js';
import { addon, nativeInfo } from '../lib/native.js';
import { buildPrefixTree, type PrefixTree, type Sample } from '../lib/prefixTree.js';

// ---- GEMM ------------------------------------------------------------------------------------------

interface GemmShape {
  label: string;
  ta: number;
  tb: number;
  m: number;
  n: number;
  k: number;
}

function gemmOperands(s: GemmShape, rand: () => number) {
  const fill = (len: number) => Float32Array.from({ length: len }, () => rand() * 2 - 1);
  const a = fill(s.m * s.k), b = fill(s.k * s.n), c = new Float32Array(s.m * s.n);
  const lda = s.ta ? s.m : s.k, ldb = s.tb ? s.k : s.n;
  return (fn: 'gemm' | 'benchGemmNaive') => addon[fn](s.ta, s.tb, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n, false);
}

async function gemmSection(quick: boolean, log: (line: string) => void): Promise<BenchSection> {
  const n = quick ? 512 : 2048;
  const shapes: GemmShape[] = [
    { label: `x W_q: [${n}, 128] x [128, 128]`, ta: 0, tb: 0, m: n, n: 128, k: 128 },
    { label: `x W_gate: [${n}, 128] x [128, 352]`, ta: 0, tb: 0, m: n, n: 352, k: 128 },
    { label: `act W_down: [${n}, 352] x [352, 128]`, ta: 0, tb: 0, m: n, n: 128, k: 352 },
    { label: `dact = dy W_down^T (NT)`, ta: 0, tb: 1, m: n, n: 352, k: 128 },
    { label: `dW_gate = x^T dgate (TN)`, ta: 1, tb: 0, m: 128, n: 352, k: n },
    { label: `head: [${n}, 128] x [128, 288]`, ta: 0, tb: 0, m: n, n: 288, k: 128 },
    { label: 'square 512', ta: 0, tb: 0, m: 512, n: 512, k: 512 },
  ];
  const rand = rng(11);
  const rows: (string | number)[][] = [];
  for (const s of shapes) {
    const call = gemmOperands(s, rand);
    const flop = 2 * s.m * s.n * s.k;
    const fast = await time(() => call('gemm'), { repeats: 7, minMs: 200 });
    const naive = await time(() => call('benchGemmNaive'), { warmup: 1, repeats: 3, minMs: 0 });
    const gflops = (ms: number) => fmt(flop / ms / 1e6);
    const speedUp = `**${fmt(naive.medianMs / fast.medianMs)}x**`;
    log(`gemm ${s.label}: ${gflops(fast.medianMs)} GFLOP/s, naive ${gflops(naive.medianMs)}`);
    rows.push([s.label, fmt(fast.medianMs), gflops(fast.medianMs), fmt(naive.medianMs), gflops(naive.medianMs), speedUp]);
  }
  return {
    title: 'SGEMM (forge_gemm) vs a naive triple loop',
    description:
      'Blocked, packed SGEMM against one float dot product per output element (forge_bench_gemm_naive), both over ' +
      `the same ${nativeInfo().numThreads} kernel threads; the model's shapes at ${n} tree nodes. Median of repeated runs.`,
    columns: ['shape (m x k times k x n)', 'gemm ms', 'gemm GFLOP/s', 'naive ms', 'naive GFLOP/s', 'speed-up'],
    rows,
  };
}

// ---- Model on merged vs unmerged trees -------------------------------------------------------------

/** Agent-like samples: one call per sample, each call's prompt the task's history so far. */
function agentSamples(quick: boolean, vocab: number): Sample[] {
  const rand = rng(5);
  const tokens = (count: number) => Array.from({ length: count }, () => Math.floor(rand() * vocab));
  const [systemLength, tasks, calls] = quick ? [120, 3, 3] : [300, 4, 5];
  const system = tokens(systemLength);
  const samples: Sample[] = [];
  for (let task = 0; task < tasks; task++) {
    let history = [...system, ...tokens(40)]; // the task prompt
    for (let call = 0; call < calls; call++) {
      const completion = tokens(30 + Math.floor(rand() * 20));
      const all = Int32Array.from([...history, ...completion]);
      const trainable = new Uint8Array(all.length).fill(1, history.length);
      const oldLogprobs = new Float32Array(all.length).fill(-Math.log(vocab));
      samples.push({ tokens: all, trainable, oldLogprobs, advantage: rand() * 2 - 1 });
      // Mostly the next call extends this one with a tool result; sometimes context management forks.
      history = rand() < 0.8 ? [...all, ...tokens(60)] : [...system, ...tokens(80)];
    }
  }
  return samples;
}

/** The samples as separate chains in one forest: what a batch without prefix merging computes. */
function unmerged(samples: Sample[], vocab: number): PolicyBatch {
  const trees = samples.map((s) => buildPrefixTree([s], { vocabSize: vocab }));
  const N = trees.reduce((a, t) => a + t.numNodes, 0), J = trees.reduce((a, t) => a + t.numTerms, 0);
  const out = {
    token: new Int32Array(N), position: new Int32Array(N), parent: new Int32Array(N), subtreeEnd: new Int32Array(N),
    terms: {
      node: new Int32Array(J),
      target: new Int32Array(J),
      oldLogprob: new Float32Array(J),
      advantage: new Float32Array(J),
    },
  };
  let base = 0, at = 0;
  for (const t of trees) {
    out.token.set(t.token, base);
    out.position.set(t.position, base);
    out.parent.set(t.parent.map((p) => (p < 0 ? -1 : p + base)), base);
    out.subtreeEnd.set(t.subtreeEnd.map((e) => e + base), base);
    out.terms.node.set(t.terms.node.map((n) => n + base), at);
    out.terms.target.set(t.terms.target, at);
    out.terms.oldLogprob.set(t.terms.oldLogprob, at);
    out.terms.advantage.set(t.terms.advantage, at);
    base += t.numNodes;
    at += t.numTerms;
  }
  return out;
}

async function modelSection(quick: boolean, log: (line: string) => void): Promise<BenchSection> {
  const policy = new NanoPolicy();
  const V = policy.config.vocabSize;
  const params = policy.init(1);
  const samples = agentSamples(quick, V);
  const merged: PrefixTree = buildPrefixTree(samples, { vocabSize: V });
  const flat = unmerged(samples, V);
  const T = merged.stats.inputTokens;
  // Same Z for both, so they compute the same loss (and gradients, to float rounding).
  const Z = merged.numTerms;
  const rows: (string | number)[][] = [];
  const timings: Record<string, { fwd: number; step: number; loss: number }> = {};
  for (const [name, batch] of [['merged tree', merged], ['unmerged chains', flat]] as const) {
    const n = batch.token.length;
    log(`${name}: ${n} nodes`);
    const fwd = await time(() => policy.forward(params, batch.token, batch.position, batch), { repeats: 3, minMs: 0 });
    const step = await time(() => policy.lossAndGrad(params, batch, { normalizer: Z }), { repeats: 3, minMs: 0 });
    const loss = policy.lossAndGrad(params, batch, { normalizer: Z }).loss;
    timings[name] = { fwd: fwd.medianMs, step: step.medianMs, loss };
    rows.push([name, n, fmt(fwd.medianMs), fmt((T / fwd.medianMs) * 1000), fmt(step.medianMs), fmt((T / step.medianMs) * 1000)]);
  }
  const m = timings['merged tree'], u = timings['unmerged chains'];
  if (Math.abs(m.loss - u.loss) > 1e-4 * Math.abs(u.loss)) throw new Error(`loss mismatch: merged ${m.loss}, unmerged ${u.loss}`);
  const c = policy.config;
  return {
    title: 'Nano policy: forward and training step, merged prefix tree vs unmerged samples',
    description:
      `Default config (vocab ${V}, dim ${c.dim}, ${c.numLayers} layers, ${c.numHeads} heads / ${c.numKvHeads} kv, ffn ${c.ffnDim}; ` +
      `${policy.numParams} parameters), ${samples.length} agent-like samples, ${T} input tokens, ${merged.numTerms} loss terms; ` +
      `${nativeInfo().numThreads} kernel threads. Tokens/s counts the input tokens, so both rows do the same useful work.`,
    columns: ['batch', 'nodes computed', 'forward ms', 'forward tokens/s', 'fwd + bwd ms', 'fwd + bwd tokens/s'],
    rows,
    notes: [
      `Token reduction (input tokens / tree nodes): **${fmt(merged.stats.ratio)}x**. ` +
        `Time ratio unmerged / merged: forward **${fmt(u.fwd / m.fwd)}x**, forward + backward **${fmt(u.step / m.step)}x**. ` +
        'Dense work (projections, MLP, head) scales with the nodes computed, tree attention with the ancestors each ' +
        'node reads; merging cuts both.',
    ],
  };
}

export const bench: Bench = async ({ quick, log }) => [await gemmSection(quick, log), await modelSection(quick, log)];
