// Prefix-tree build throughput on agent-like batches, against a straightforward JS Map-based trie
// build of the same input measured in the same run (speed-up ratio), plus the token reduction the
// tree gives (input tokens / tree nodes).
import { type Bench, fmt, rng, time } from './harness.js';
import { addon, nativeInfo, setNumThreads } from '../lib/native.js';
import { buildPrefixTree, type PackedSamples } from '../lib/prefixTree.js';

const VOCAB = 151_936;

/**
 * An RL batch from multi-turn agent sessions: every call is one sample (its prompt + completion).
 * All share a 2k-token system prompt; rollouts of a task share its prompt; call k+1 of a session
 * extends call k (prompt + completion + tool output), sometimes after the context was truncated (a
 * fork); a few calls are exact duplicates (retries). Completion tokens are trainable.
 */
function agentBatch(targetTokens: number, seed: number): PackedSamples {
  const rand = rng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const run = (n: number) => Array.from({ length: n }, () => int(0, VOCAB - 1));
  const system = run(2048);
  const tokens: number[] = [];
  const trainable: number[] = [];
  const offsets = [0];
  const push = (context: number[], contextMask: number[]) => {
    for (let i = 0; i < context.length; i++) {
      tokens.push(context[i]);
      trainable.push(contextMask[i]);
    }
    offsets.push(tokens.length);
  };
  while (tokens.length < targetTokens) {
    const task = run(int(300, 800));
    for (let rollout = 0; rollout < 8 && tokens.length < targetTokens; rollout++) {
      let context = [...system, ...task];
      let mask = context.map(() => 0);
      const turns = int(2, 8);
      for (let turn = 0; turn < turns && tokens.length < targetTokens; turn++) {
        if (turn > 1 && rand() < 0.1) {
          // Context management: drop the middle turns, keep system + task + the last 1k tokens.
          const keep = system.length + task.length;
          context = [...context.slice(0, keep), ...context.slice(Math.max(keep, context.length - 1024))];
          mask = [...mask.slice(0, keep), ...mask.slice(Math.max(keep, mask.length - 1024))];
        }
        const completion = run(int(40, 400));
        context = [...context, ...completion];
        mask = [...mask, ...completion.map(() => 1)];
        push(context, mask);
        if (rand() < 0.05) push(context, mask);  // a retried call: an exact duplicate
        const tool = run(int(50, 600));
        context = [...context, ...tool];
        mask = [...mask, ...tool.map(() => 0)];
      }
    }
  }
  const S = offsets.length - 1;
  const advantages = Float32Array.from({ length: S }, () => rand() * 2 - 1);
  return {
    tokens: Int32Array.from(tokens),
    offsets: Int32Array.from(offsets),
    trainable: Uint8Array.from(trainable),
    oldLogprobs: Float32Array.from(tokens, () => -rand() * 3),
    sampleAdvantages: advantages,
  };
}

/**
 * The baseline: what one would write in plain JS. A Map keyed by parent * 2^18 + token finds
 * children; children lists give the pre-order (explicit stack); then the same outputs as the native
 * build (node arrays, subtree ends, node of each position, loss terms).
 */
function jsMapBuild(p: PackedSamples) {
  const { tokens, offsets } = p;
  const trainable = p.trainable!;
  const T = tokens.length;
  const child = new Map<number, number>();
  const tok: number[] = [];
  const par: number[] = [];
  const kids: number[][] = [];
  const roots: number[] = [];
  const insOf = new Int32Array(T);
  for (let s = 0; s + 1 < offsets.length; s++) {
    let at = -1;
    for (let i = offsets[s]; i < offsets[s + 1]; i++) {
      const key = (at + 1) * 262144 + tokens[i];
      let id = child.get(key);
      if (id === undefined) {
        id = tok.length;
        child.set(key, id);
        tok.push(tokens[i]);
        par.push(at);
        kids.push([]);
        (at < 0 ? roots : kids[at]).push(id);
      }
      insOf[i] = at = id;
    }
  }
  const N = tok.length;
  const pre = new Int32Array(N);
  const token = new Int32Array(N), parent = new Int32Array(N), position = new Int32Array(N), subtreeEnd = new Int32Array(N);
  const stack = roots.slice().reverse();
  let counter = 0;
  while (stack.length) {
    const x = stack.pop()!;
    const q = (pre[x] = counter++);
    token[q] = tok[x];
    parent[q] = par[x] < 0 ? -1 : pre[par[x]];
    position[q] = par[x] < 0 ? 0 : position[parent[q]] + 1;
    const c = kids[x];
    for (let k = c.length - 1; k >= 0; k--) stack.push(c[k]);
  }
  const size = new Int32Array(N).fill(1);
  for (let q = N - 1; q >= 0; q--) {
    if (parent[q] >= 0) size[parent[q]] += size[q];
    subtreeEnd[q] = q + size[q];
  }
  const nodeOf = Int32Array.from(insOf, (x) => pre[x]);
  const termNode: number[] = [], termTarget: number[] = [], termSample: number[] = [];
  for (let s = 0; s + 1 < offsets.length; s++)
    for (let i = offsets[s] + 1; i < offsets[s + 1]; i++)
      if (trainable[i]) {
        termNode.push(nodeOf[i - 1]);
        termTarget.push(tokens[i]);
        termSample.push(s);
      }
  return { numNodes: N, token, parent, position, subtreeEnd, nodeOf, numTerms: termNode.length };
}

function rawBuild(p: PackedSamples) {
  return addon.prefixTreeBuild(p.tokens, p.offsets, p.trainable, p.oldLogprobs, null, p.sampleAdvantages, null, VOCAB, false);
}

export const bench: Bench = async ({ quick, log }) => {
  const target = quick ? 100_000 : 1_000_000;
  const batch = agentBatch(target, 1234);
  const T = batch.tokens.length;
  const S = batch.offsets.length - 1;
  const tree = buildPrefixTree(batch, { vocabSize: VOCAB });
  const js = jsMapBuild(batch);
  // The baseline must compute the same tree, or the comparison means nothing.
  if (js.numNodes !== tree.numNodes || js.numTerms !== tree.numTerms || js.subtreeEnd.some((x, i) => x !== tree.subtreeEnd[i]) || js.nodeOf.some((x, i) => x !== tree.nodeOf[i]))
    throw new Error('prefix-tree bench: the JS baseline and the native build disagree');
  log(`batch: ${S} samples, ${T} input tokens, ${tree.numNodes} tree nodes, ${tree.numSegments} segments, ${tree.numTerms} loss terms, depth ${tree.maxDepth}`);

  const opts = { warmup: 1, repeats: quick ? 5 : 7, minMs: 300 };
  const tJs = await time(() => jsMapBuild(batch), opts);
  const tApi = await time(() => buildPrefixTree(batch, { vocabSize: VOCAB }), opts);
  const tRaw = await time(() => rawBuild(batch), opts);
  const threads = nativeInfo().numThreads;
  setNumThreads(1);
  let tRaw1;
  try {
    tRaw1 = await time(() => rawBuild(batch), opts);
  } finally {
    setNumThreads(0);
  }
  const row = (name: string, ms: number) => [name, fmt(ms), fmt(T / ms / 1e3), fmt(tJs.medianMs / ms)];
  return [
    {
      title: 'Prefix-tree build throughput',
      description:
        `Agent-like batch (${S} calls of multi-turn sessions sharing a 2k system prompt, forks, 5% duplicate calls; ` +
        `${T} input tokens) merged into a prefix tree; baseline: a plain JS Map-based trie build of the same input with the same outputs.`,
      columns: ['build', 'median ms', 'M input tokens/s', 'speed-up vs JS Map'],
      rows: [
        row('JS Map trie (baseline)', tJs.medianMs),
        row(`buildPrefixTree (TS validation + native, ${threads} threads)`, tApi.medianMs),
        row(`native only (${threads} threads)`, tRaw.medianMs),
        row('native only (1 thread)', tRaw1.medianMs),
      ],
      notes: [
        `Token reduction: ${T} input tokens -> ${tree.numNodes} tree tokens (${fmt(tree.stats.ratio)}x fewer), ${tree.numSegments} segments, ${tree.numTerms} loss terms.`,
        'The trie insertion is sequential (one core); validation, node mapping and loss terms use the thread pool. ' +
          'Native times include copying the result into JS TypedArrays.',
      ],
    },
  ];
};
