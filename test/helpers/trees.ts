// Random forests in DFS pre-order (parent + subtreeEnd) and random inputs for the attention tests,
// plus a comparison helper whose failure message carries the run's seed.

export interface Tree {
  parent: Int32Array;
  subtreeEnd: Int32Array;
}

export { makeRng, runSeed } from './random.js';

/** subtreeEnd from parent, for a forest already in DFS pre-order (children after their parent). */
export function subtreeEndOf(parent: Int32Array): Int32Array {
  const n = parent.length;
  const end = new Int32Array(n);
  for (let i = 0; i < n; i++) end[i] = i + 1;
  for (let i = n - 1; i >= 0; i--) if (parent[i] >= 0) end[parent[i]] = Math.max(end[parent[i]], end[i]);
  return end;
}

/**
 * Builds a pre-order forest: node i hangs under a node on the root path of node i - 1, at a depth
 * picked by `depthOf(pathLength)` in [0, pathLength] (0 starts a new root, pathLength extends the
 * chain); node 0 is always a root.
 */
function grow(n: number, depthOf: (i: number, pathLength: number) => number): Tree {
  const parent = new Int32Array(n);
  const path: number[] = [];
  for (let i = 0; i < n; i++) {
    const depth = i === 0 ? 0 : Math.max(0, Math.min(path.length, depthOf(i, path.length)));
    path.length = depth;
    parent[i] = depth === 0 ? -1 : path[depth - 1];
    path.push(i);
  }
  return { parent, subtreeEnd: subtreeEndOf(parent) };
}

/** One chain 0 -> 1 -> ... -> n-1: tree attention is then plain causal attention. */
export const chain = (n: number): Tree => grow(n, (_, len) => len);

/** A root with n - 1 leaves. */
export const star = (n: number): Tree => grow(n, () => 1);

/** n separate nodes (each its own root): every query sees only itself. */
export const singletons = (n: number): Tree => grow(n, () => 0);

/**
 * A random tree: mostly extends the current chain (agent-like long segments), sometimes branches off
 * at a random depth of the current root path. With `forest`, some branches start new roots.
 */
export function bushy(n: number, rng: () => number, { branch = 0.15, forest = false } = {}): Tree {
  return grow(n, (_, len) => {
    if (rng() >= branch) return len;
    const lowest = forest ? 0 : 1;
    return lowest + Math.floor(rng() * (len + 1 - lowest));
  });
}

/**
 * A shared prefix chain of `prefix` nodes, then `copies` sibling branches of identical shape (each a
 * random subtree of `branchSize` nodes). Returns the tree and the first node of each copy.
 */
export function duplicatedBranches(
  prefix: number, copies: number, branchSize: number, rng: () => number,
): Tree & { branchStarts: number[] } {
  const shape = bushy(branchSize, rng, { branch: 0.3 }).parent;
  const n = prefix + copies * branchSize;
  const parent = new Int32Array(n);
  for (let i = 0; i < prefix; i++) parent[i] = i - 1;
  const branchStarts: number[] = [];
  for (let c = 0; c < copies; c++) {
    const base = prefix + c * branchSize;
    branchStarts.push(base);
    for (let i = 0; i < branchSize; i++) parent[base + i] = shape[i] < 0 ? prefix - 1 : base + shape[i];
  }
  return { parent, subtreeEnd: subtreeEndOf(parent), branchStarts };
}

/** Uniform values in [-amplitude, amplitude). */
export function randomArray(length: number, rng: () => number, amplitude = 1): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (2 * rng() - 1) * amplitude;
  return out;
}

/**
 * Throws unless |actual - expected| <= atol + rtol * |expected| everywhere; the message names the
 * worst element, the largest error seen and the seed to replay with.
 */
export function expectClose(
  label: string, actual: ArrayLike<number>, expected: ArrayLike<number>, seed: number, atol: number, rtol: number,
): { maxAbs: number; maxRel: number } {
  if (actual.length !== expected.length)
    throw new Error(`${label}: length ${actual.length} != ${expected.length} (seed ${seed})`);
  let worst = -1, worstExcess = 0, maxAbs = 0, maxRel = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (a === e) continue; // also equal infinities
    const err = Math.abs(a - e);
    maxAbs = Math.max(maxAbs, Number.isNaN(err) ? Infinity : err);
    if (e !== 0) maxRel = Math.max(maxRel, err / Math.abs(e));
    const excess = Number.isNaN(err) ? Infinity : err - (atol + rtol * Math.abs(e));
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = i;
    }
  }
  if (worst >= 0)
    throw new Error(
      `${label}[${worst}]: got ${actual[worst]}, expected ${expected[worst]} (tolerance ${atol} + ${rtol}*|expected|; ` +
        `max abs error ${maxAbs}); replay with FORGE_TEST_SEED=${seed}`,
    );
  return { maxAbs, maxRel };
}
