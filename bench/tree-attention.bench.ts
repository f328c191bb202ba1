// Tree attention on an agent-like merged batch against the same kernel on the unmerged samples.
//
// Batch: R rollouts x T turns sharing a system prompt. Each call is one sample: system prompt + that
// rollout's history so far + the new observation and completion, so the calls of a rollout extend
// each other. buildPrefixTree merges them into one tree; the baseline runs the SAME kernel on the
// samples as separate chains of one forest (per-sequence causal attention), with inputs gathered from
// the tree so that both compute the same outputs (checked). Both are timed in the same run; the
// speed-up should track the reduction in attended (query, key) pairs.
import { type Bench, type BenchSection, fmt, rng, time } from './harness.js';
import {
  treeAttention,
  treeAttentionBackward,
  type AttentionOptions,
  type AttentionOutput,
  type TreeLike,
} from '../lib/attention.js';
import { nativeInfo, setNumThreads } from '../lib/native.js';
import { buildPrefixTree, gatherToSamples, type Sample } from '../lib/prefixTree.js';

interface Sizes {
  rollouts: number;
  turns: number;
  system: number;
  observation: number;
  completion: number;
}

function agentSamples(s: Sizes, seed: number): Sample[] {
  const rand = rng(seed);
  const tokens = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rand() * 32000));
  const system = tokens(s.system);
  const samples: Sample[] = [];
  for (let r = 0; r < s.rollouts; r++) {
    let history = system;
    for (let t = 0; t < s.turns; t++) {
      const call = new Int32Array(history.length + s.observation + s.completion);
      call.set(history);
      call.set(tokens(s.observation + s.completion), history.length);
      samples.push({ tokens: call });
      history = call;
    }
  }
  return samples;
}

/** Each sample its own chain: parent i - 1 inside a sample, -1 at its start. */
function forestOfSamples(offsets: Int32Array): TreeLike {
  const total = offsets[offsets.length - 1];
  const parent = new Int32Array(total), subtreeEnd = new Int32Array(total);
  for (let s = 0; s + 1 < offsets.length; s++)
    for (let i = offsets[s]; i < offsets[s + 1]; i++) {
      parent[i] = i === offsets[s] ? -1 : i - 1;
      subtreeEnd[i] = offsets[s + 1];
    }
  return { parent, subtreeEnd };
}

/** Attended (query, key) pairs: each node sees its depth + 1 keys. */
function pairs(tree: TreeLike): number {
  const depth = new Int32Array(tree.parent.length);
  let total = 0;
  for (let i = 0; i < depth.length; i++) {
    depth[i] = tree.parent[i] < 0 ? 0 : depth[tree.parent[i]] + 1;
    total += depth[i] + 1;
  }
  return total;
}

function randomArray(n: number, rand: () => number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rand() * 2 - 1;
  return out;
}

export const bench: Bench = async ({ quick, log }) => {
  const sizes: Sizes = quick
    ? { rollouts: 4, turns: 4, system: 512, observation: 40, completion: 24 }
    : { rollouts: 8, turns: 10, system: 2048, observation: 60, completion: 40 };
  const options: AttentionOptions = { numHeads: 4, numKvHeads: 2, headDim: 64 };
  const { numHeads: hq, headDim: d } = options;
  const hkv = options.numKvHeads!;

  const tree = buildPrefixTree(agentSamples(sizes, 1));
  const forest = forestOfSamples(tree.offsets);
  const N = tree.numNodes, T = tree.offsets[tree.offsets.length - 1];
  const treePairs = pairs(tree), samplePairs = pairs(forest);
  log(`${sizes.rollouts} rollouts x ${sizes.turns} turns, system prompt ${sizes.system}: ${T} input tokens -> ${N} tree nodes`);

  // Inputs live on the tree; the per-sample inputs are gathered from it, so both layouts hold the
  // same rows (as a model's would: a token's q, k, v depend only on its prefix).
  const rand = rng(2);
  const q = randomArray(N * hq * d, rand), k = randomArray(N * hkv * d, rand), v = randomArray(N * hkv * d, rand);
  const dO = randomArray(N * hq * d, rand);
  const qs = gatherToSamples(tree, q, hq * d), ks = gatherToSamples(tree, k, hkv * d), vs = gatherToSamples(tree, v, hkv * d);
  const dOs = gatherToSamples(tree, dO, hq * d);

  // Backward is timed on its own, given the forward's output; fwd+bwd is the sum of the two. Every
  // time is the best of its runs: the per-sample side takes seconds per call, so it runs only twice.
  // Its forward output doubles as the exactness check: the merged outputs, gathered to the samples,
  // equal the per-sample outputs.
  log('timing the merged tree ...');
  const merged = treeAttention(q, k, v, tree, options);
  const fTree = await time(() => treeAttention(q, k, v, tree, options));
  const bTree = await time(() => treeAttentionBackward(q, k, v, tree, merged, dO, options));
  log('timing the per-sample baseline ...');
  const twice = { warmup: 0, repeats: 2, minMs: 0 };
  let unmerged: AttentionOutput | undefined;
  const fSamples = await time(() => (unmerged = treeAttention(qs, ks, vs, forest, options)), twice);
  const bSamples = await time(() => treeAttentionBackward(qs, ks, vs, forest, unmerged!, dOs, options), twice);
  const gathered = gatherToSamples(tree, merged.o, hq * d);
  let maxDiff = 0;
  for (let i = 0; i < gathered.length; i++) maxDiff = Math.max(maxDiff, Math.abs(gathered[i] - unmerged!.o[i]));
  log(`max |o_tree - o_samples| = ${maxDiff.toExponential(2)}`);

  // FLOPs: forward 4 per (pair, query head, dim) (q.k and p.v); backward 10 (the FlashAttention
  // convention: 2.5x the forward); the kernel's recomputation is not counted.
  const gflops = (p: number, perPair: number, ms: number) => (perPair * p * hq * d) / ms / 1e6;
  const threads = nativeInfo().numThreads;
  const row = (name: string, tokens: number, p: number, fwdMs: number, bwdMs: number) => [
    name, tokens, fmt(p), fmt(fwdMs), fmt(gflops(p, 4, fwdMs)), fmt(fwdMs + bwdMs), fmt(gflops(p, 14, fwdMs + bwdMs)),
  ];
  const sections: BenchSection[] = [
    {
      title: 'Tree attention: merged agent batch vs per-sample attention',
      description:
        `${sizes.rollouts} rollouts x ${sizes.turns} turns sharing a ${sizes.system}-token system prompt ` +
        `(+${sizes.observation} observation +${sizes.completion} completion tokens per turn), Hq=${hq}, Hkv=${hkv}, D=${d}, ` +
        `${threads} threads, best-of-runs times. Baseline: the same kernel on the ${tree.numSamples} unmerged samples (each its own chain).`,
      columns: ['', 'tokens (queries)', 'attended pairs', 'forward ms', 'forward GFLOP/s', 'fwd+bwd ms', 'fwd+bwd GFLOP/s'],
      rows: [
        row('per-sample (baseline)', T, samplePairs, fSamples.minMs, bSamples.minMs),
        row('merged tree', N, treePairs, fTree.minMs, bTree.minMs),
        ['reduction / speed-up', `${fmt(T / N)}x`, `${fmt(samplePairs / treePairs)}x`, `${fmt(fSamples.minMs / fTree.minMs)}x`, '',
          `${fmt((fSamples.minMs + bSamples.minMs) / (fTree.minMs + bTree.minMs))}x`, ''],
      ],
      notes: [
        `Outputs agree: max |o_tree - o_samples| = ${maxDiff.toExponential(2)} after gathering the tree's rows to the samples.`,
        'FLOPs count 4 per (pair, query head, dim) forward and 10 backward; the speed-up should track the pair reduction.',
      ],
    },
  ];

  // Threads: the merged forward on one thread against all of them, interleaved to share the noise.
  const one: number[] = [], all: number[] = [];
  for (let round = 0; round < 3; round++) {
    setNumThreads(1);
    one.push((await time(() => treeAttention(q, k, v, tree, options), { repeats: 3, minMs: 300 })).medianMs);
    setNumThreads(0);
    all.push((await time(() => treeAttention(q, k, v, tree, options), { repeats: 3, minMs: 300 })).medianMs);
  }
  const oneMs = Math.min(...one), allMs = Math.min(...all);
  sections.push({
    title: 'Tree attention: thread scaling',
    description: 'Forward on the merged tree above, one kernel thread against the default pool (best of 3 interleaved rounds of medians).',
    columns: ['threads', 'forward ms', 'GFLOP/s', 'speed-up'],
    rows: [
      [1, fmt(oneMs), fmt(gflops(treePairs, 4, oneMs)), '1x'],
      [nativeInfo().numThreads, fmt(allMs), fmt(gflops(treePairs, 4, allMs)), `${fmt(oneMs / allMs)}x`],
    ],
  });
  return sections;
};
