// `npm run example`: an agent-like batch (8 rollouts x 6 turns sharing a system prompt) merged into a
// prefix tree, then one forward/backward of tree attention and a CISPO loss on it — the path a trainer
// step takes — with the token reduction the merge bought.
import { buildPrefixTreeAsync, cispoLoss, nativeInfo, treeAttention, treeAttentionBackward, type Sample } from '../lib/index.js';

const VOCAB = 512, HEADS = 4, KV_HEADS = 2, DIM = 32;
let state = 7;
const rand = () => ((state = (state * 1103515245 + 12345) >>> 0) >>> 8) / 2 ** 24;
const tokens = (n: number) => Array.from({ length: n }, () => Math.floor(rand() * VOCAB));

const system = tokens(256);
const samples: Sample[] = [];
for (let rollout = 0; rollout < 8; rollout++) {
  let history = system.slice();
  const reward = rand() < 0.5 ? 1 : 0;
  for (let turn = 0; turn < 6; turn++) {
    const observation = tokens(24), completion = tokens(16);
    const prompt = [...history, ...observation];
    samples.push({
      tokens: Int32Array.from([...prompt, ...completion]),
      trainable: Uint8Array.from([...prompt.map(() => 0), ...completion.map(() => 1)]),
      oldLogprobs: Float32Array.from({ length: prompt.length + completion.length }, () => -Math.log(VOCAB)),
      advantage: reward - 0.5,
      version: 0,
    });
    history = [...prompt, ...completion];
  }
}

const info = nativeInfo();
console.log(`forge-rl kernels: ABI ${info.abiVersion}, ${info.numThreads} threads, CUDA ${info.cudaDevices > 0 ? `${info.cudaDevices} device(s)` : `not used (${info.cudaReason})`}`);

let t0 = performance.now();
const tree = await buildPrefixTreeAsync(samples, { vocabSize: VOCAB });
console.log(`prefix tree: ${samples.length} samples, ${tree.stats.inputTokens} input tokens -> ${tree.stats.treeTokens} tree tokens (${tree.stats.ratio.toFixed(1)}x fewer), ${tree.numTerms} loss terms, ${(performance.now() - t0).toFixed(1)} ms`);

const N = tree.numNodes;
const randn = (n: number) => Float32Array.from({ length: n }, () => (rand() - 0.5) * 2);
const q = randn(N * HEADS * DIM), k = randn(N * KV_HEADS * DIM), v = randn(N * KV_HEADS * DIM);
const opts = { numHeads: HEADS, numKvHeads: KV_HEADS, headDim: DIM };
t0 = performance.now();
const fwd = treeAttention(q, k, v, tree, opts);
const grads = treeAttentionBackward(q, k, v, tree, fwd, randn(N * HEADS * DIM), opts);
console.log(`tree attention forward + backward over ${N} nodes: ${(performance.now() - t0).toFixed(1)} ms (|dQ| ${norm(grads.dq).toFixed(3)})`);

t0 = performance.now();
const logits = randn(N * VOCAB);
const { loss, stats } = cispoLoss(logits, VOCAB, tree.terms);
console.log(`CISPO: loss ${loss.toFixed(5)}, mean ratio ${stats.meanRatio.toFixed(3)}, entropy ${stats.meanEntropy.toFixed(3)} nats, ${(performance.now() - t0).toFixed(1)} ms`);

function norm(x: Float32Array): number {
  let s = 0;
  for (const value of x) s += value * value;
  return Math.sqrt(s);
}

