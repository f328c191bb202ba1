// Plain reference of contract 1 (DESIGN.md), written from the definitions with ordinary JS values:
// a trie of nested Maps, a pre-order walk with an explicit stack, segments found by following
// only-child chains, loss terms by looping over samples, gather/scatter/merge in float64. Meant to be
// obviously right, not fast.

export interface RefSample {
  tokens: ArrayLike<number>;
  trainable?: ArrayLike<number>;
  oldLogprobs?: ArrayLike<number>;
  advantage?: number | ArrayLike<number>;
  version?: number;
}

export interface RefTree {
  token: number[];
  parent: number[];
  position: number[];
  subtreeEnd: number[];
  segmentOf: number[];
  segStart: number[];
  segLen: number[];
  segParent: number[];
  terms: { node: number[]; target: number[]; oldLogprob: number[]; advantage: number[]; sample: number[]; position: number[]; version: number[] };
  offsets: number[];
  nodeOf: number[];
  maxDepth: number;
}

interface TrieNode {
  token: number;
  parent: TrieNode | null;
  children: Map<number, TrieNode>; // Map iterates in insertion order = order of first appearance
  id: number;
}

export function referencePrefixTree(samples: RefSample[]): RefTree {
  const root: TrieNode = { token: -1, parent: null, children: new Map(), id: -1 };
  // Insert every sample, remembering the trie node of each of its positions.
  const paths: TrieNode[][] = samples.map((sample) => {
    const path: TrieNode[] = [];
    let at = root;
    for (const tok of Array.from(sample.tokens)) {
      let next = at.children.get(tok);
      if (!next) {
        next = { token: tok, parent: at === root ? null : at, children: new Map(), id: -1 };
        at.children.set(tok, next);
      }
      path.push(next);
      at = next;
    }
    return path;
  });

  // DFS pre-order: pop a node, number it, push its children last-first so the first is next.
  const order: TrieNode[] = [];
  const stack = [...root.children.values()].reverse();
  while (stack.length > 0) {
    const node = stack.pop()!;
    node.id = order.length;
    order.push(node);
    stack.push(...[...node.children.values()].reverse());
  }
  const N = order.length;
  const token = order.map((n) => n.token);
  const parent = order.map((n) => (n.parent ? n.parent.id : -1));
  // A parent comes before its children in pre-order, so its depth is known when they are reached.
  const position: number[] = [];
  for (const n of order) position.push(n.parent ? position[n.parent.id] + 1 : 0);
  // Subtree sizes, children before parents (reverse pre-order).
  const size = new Array<number>(N).fill(1);
  for (let i = N - 1; i >= 0; i--) if (order[i].parent) size[order[i].parent!.id] += size[i];
  const subtreeEnd = order.map((n) => n.id + size[n.id]);

  // Segments: a node starts one when it is a root or its parent has several children; the segment
  // then follows only-children down.
  const segmentOf = new Array<number>(N).fill(-1);
  const segStart: number[] = [];
  const segLen: number[] = [];
  const segParent: number[] = [];
  for (const n of order) {
    if (n.parent && n.parent.children.size === 1) continue;
    const g = segStart.length;
    segStart.push(n.id);
    segParent.push(n.parent ? segmentOf[n.parent.id] : -1);
    let len = 0;
    for (let x: TrieNode | undefined = n; x; x = x.children.size === 1 ? [...x.children.values()][0] : undefined) {
      segmentOf[x.id] = g;
      len++;
    }
    segLen.push(len);
  }

  const terms: RefTree['terms'] = { node: [], target: [], oldLogprob: [], advantage: [], sample: [], position: [], version: [] };
  const offsets = [0];
  const nodeOf: number[] = [];
  samples.forEach((sample, s) => {
    const L = sample.tokens.length;
    offsets.push(offsets[s] + L);
    for (let t = 0; t < L; t++) nodeOf.push(paths[s][t].id);
    for (let t = 1; t < L; t++) {
      if (!sample.trainable || sample.trainable[t] !== 1) continue;
      terms.node.push(paths[s][t - 1].id);
      terms.target.push(sample.tokens[t]);
      terms.oldLogprob.push(sample.oldLogprobs ? sample.oldLogprobs[t] : 0);
      const adv = sample.advantage;
      // The tree stores advantages as float32, like every per-token value.
      terms.advantage.push(adv === undefined ? 0 : typeof adv === 'number' ? Math.fround(adv) : adv[t]);
      terms.sample.push(s);
      terms.position.push(t);
      terms.version.push(sample.version ?? 0);
    }
  });
  return {
    token, parent, position, subtreeEnd, segmentOf, segStart, segLen, segParent, terms, offsets, nodeOf,
    maxDepth: Math.max(...position) + 1,
  };
}

/** out[i, c] = values[nodeOf[i], c], in float64. */
export function referenceGather(values: ArrayLike<number>, nodeOf: ArrayLike<number>, channels: number): Float64Array {
  const out = new Float64Array(nodeOf.length * channels);
  for (let i = 0; i < nodeOf.length; i++)
    for (let c = 0; c < channels; c++) out[i * channels + c] = values[nodeOf[i] * channels + c];
  return out;
}

/** out[n, c] = sum over i with nodeOf[i] = n of values[i, c], in float64. */
export function referenceScatter(values: ArrayLike<number>, nodeOf: ArrayLike<number>, numNodes: number, channels: number): Float64Array {
  const out = new Float64Array(numNodes * channels);
  for (let i = 0; i < nodeOf.length; i++)
    for (let c = 0; c < channels; c++) out[nodeOf[i] * channels + c] += values[i * channels + c];
  return out;
}

/** out[n, c] = values[i, c] for the lowest i with nodeOf[i] = n; 0 for a node no position maps to. */
export function referenceMergeToTree(values: ArrayLike<number>, nodeOf: ArrayLike<number>, numNodes: number, channels: number): Float64Array {
  const out = new Float64Array(numNodes * channels);
  const taken = new Array<boolean>(numNodes).fill(false);
  for (let i = 0; i < nodeOf.length; i++) {
    const n = nodeOf[i];
    if (taken[n]) continue;
    taken[n] = true;
    for (let c = 0; c < channels; c++) out[n * channels + c] = values[i * channels + c];
  }
  return out;
}

/**
 * Whether (parent, subtreeEnd) is a forest in DFS pre-order, from the definitions: parent[i] in
 * [-1, i); the parent of i is an ancestor-or-self of i - 1 (found by walking up from i - 1);
 * subtreeEnd[i] = i + 1 + the number of nodes whose root path passes through i. O(N * depth).
 */
export function referenceTreeIsValid(parent: ArrayLike<number>, subtreeEnd: ArrayLike<number>): boolean {
  const N = parent.length;
  if (N < 1 || subtreeEnd.length !== N) return false;
  for (let i = 0; i < N; i++) if (!(parent[i] >= -1 && parent[i] < i)) return false;
  for (let i = 1; i < N; i++) {
    if (parent[i] === -1) continue;
    let a = i - 1;
    while (a !== -1 && a !== parent[i]) a = parent[a];
    if (a === -1) return false;
  }
  const descendants = new Array<number>(N).fill(0);
  for (let q = 0; q < N; q++) for (let a = parent[q]; a !== -1; a = parent[a]) descendants[a]++;
  for (let i = 0; i < N; i++) if (subtreeEnd[i] !== i + 1 + descendants[i]) return false;
  return true;
}

// ---- random inputs shared by the prefix-tree tests ---------------------------------------------

export { makeRng as seededRandom, runSeed as testSeed } from '../helpers/random.js';

export interface RandomBatchOptions {
  vocabSize: number;
  numSamples: number;
  maxLength: number;
}

/**
 * Samples with agent-like sharing: many extend a random prefix of an earlier sample (branches),
 * some repeat one exactly (duplicates), the rest are fresh (new roots). Random masks, old
 * log-probabilities, scalar or per-token advantages, versions; every optional field sometimes absent.
 */
export function randomSamples(rand: () => number, o: RandomBatchOptions) {
  const int = (n: number) => Math.floor(rand() * n);
  const seqs: number[][] = [];
  for (let s = 0; s < o.numSamples; s++) {
    const r = rand();
    let seq: number[];
    if (seqs.length > 0 && r < 0.15) seq = [...seqs[int(seqs.length)]];
    else {
      seq = seqs.length > 0 && r < 0.8 ? seqs[int(seqs.length)].slice(0, 1 + int(o.maxLength)) : [];
      const extra = (seq.length === 0 ? 1 : 0) + int(o.maxLength);
      for (let k = 0; k < extra; k++) seq.push(int(o.vocabSize));
    }
    seqs.push(seq);
  }
  const withMask = rand() < 0.9, withOld = rand() < 0.8, withVersion = rand() < 0.7;
  return seqs.map((seq) => {
    const L = seq.length;
    const sample: {
      tokens: Int32Array; trainable?: Uint8Array; oldLogprobs?: Float32Array; advantage?: number | Float32Array; version?: number;
    } = { tokens: Int32Array.from(seq) };
    if (withMask) {
      const density = rand();
      sample.trainable = Uint8Array.from(seq, (_, t) => (t > 0 && rand() < density ? 1 : 0));
    }
    if (withOld) sample.oldLogprobs = Float32Array.from(seq, () => (rand() < 0.05 ? 0 : -rand() * 8));
    const a = rand();
    if (a < 0.4) sample.advantage = rand() * 4 - 2;
    else if (a < 0.7) sample.advantage = Float32Array.from({ length: L }, () => rand() * 4 - 2);
    if (withVersion) sample.version = int(100) - 10;
    return sample;
  });
}
