// Packing a batch into parts under a token budget counted in tree nodes. Planned on the prefix tree
// of the whole batch: the tree of any subset of its samples is the union of their root paths, so a
// part's size is the number of distinct nodes on its samples' paths, counted exactly by walking each
// sample's path up from its last node until a node the part already holds. Every sample goes whole
// into one part, so two parts can only diverge where their samples' paths do, at a branch (a segment
// boundary); a shared prefix is then repeated in each part, which is exact because the logits at a
// node depend only on its root path (contract 1).
import { KernelErrorCode, rangeError } from '../errors.js';
import { expectInt } from '../validate.js';
import type { PrefixTree } from '../prefixTree.js';

/** The fields of the whole batch's tree the plan reads. */
export type PlanTree = Pick<PrefixTree, 'numNodes' | 'numSamples' | 'parent' | 'nodeOf' | 'offsets'>;

export interface PartPlan {
  /** Sample indices of each part, ascending; parts in creation order. */
  parts: number[][];
  /** Tree nodes of each part. */
  sizes: number[];
  /** Per part: a single sample longer than the budget, alone. */
  overBudget: boolean[];
}

/** First fit looks at this many of the newest parts; older ones are closed so memory stays at
 * OPEN_PARTS bytes per tree node however many parts a batch needs. */
const OPEN_PARTS = 8;

interface Part {
  /** 1 on the nodes the part holds (null once closed). */
  marks: Uint8Array | null;
  size: number;
  samples: number[];
  overBudget: boolean;
}

/**
 * Assigns every sample of `tree` to a part. `groups` lists the sample indices of each group: a group
 * goes whole into the first open part it fits, else into a new part; a group too large for one part
 * is split, its samples taken in tree (DFS) order so those sharing a prefix tend to stay together and
 * each placed first-fit. A sample longer than `budget` goes alone into an over-budget part.
 */
export function planParts(tree: PlanTree, groups: readonly (readonly number[])[], budget: number): PartPlan {
  expectInt('budget', budget, 1);
  const { parent, nodeOf, offsets } = tree;
  const leaf = (s: number) => nodeOf[offsets[s + 1] - 1];
  const length = (s: number) => offsets[s + 1] - offsets[s];
  const added = new Int32Array(tree.numNodes); // nodes marked by the attempt in progress
  const parts: Part[] = [];
  const open: Part[] = [];

  // Adds `samples` to `part` if the union stays within the budget; otherwise leaves it unchanged.
  const tryAdd = (part: Part, samples: readonly number[]): boolean => {
    const marks = part.marks!;
    let n = 0;
    for (const s of samples) {
      for (let node = leaf(s); node >= 0 && marks[node] === 0; node = parent[node]) {
        if (part.size + n >= budget) {
          for (let i = 0; i < n; i++) marks[added[i]] = 0;
          return false;
        }
        marks[node] = 1;
        added[n++] = node;
      }
    }
    part.size += n;
    part.samples.push(...samples);
    return true;
  };
  const newPart = (): Part => {
    const part: Part = { marks: new Uint8Array(tree.numNodes), size: 0, samples: [], overBudget: false };
    parts.push(part);
    open.push(part);
    if (open.length > OPEN_PARTS) open.shift()!.marks = null;
    return part;
  };
  const firstFit = (samples: readonly number[]): boolean => open.some((part) => tryAdd(part, samples));

  const seen = new Uint8Array(tree.numSamples);
  for (const group of groups) {
    for (const s of group) {
      expectInt('groups[][]', s, 0, tree.numSamples - 1);
      if (seen[s]) throw rangeError(`groups: sample ${s} is listed twice`, KernelErrorCode.INVALID_ARGUMENT);
      seen[s] = 1;
    }
    if (group.length === 0 || firstFit(group) || tryAdd(newPart(), group)) continue;
    // The group alone exceeds the budget: place its samples one by one, in tree order.
    const byLeaf = [...group].sort((a, b) => leaf(a) - leaf(b));
    for (const s of byLeaf) {
      if (length(s) > budget) {
        parts.push({ marks: null, size: length(s), samples: [s], overBudget: true });
      } else if (!firstFit([s])) {
        tryAdd(newPart(), [s]);
      }
    }
  }
  const missing = seen.indexOf(0);
  if (missing >= 0) throw rangeError(`groups: sample ${missing} is in no group`, KernelErrorCode.INVALID_ARGUMENT);

  const used = parts.filter((p) => p.samples.length > 0);
  return {
    parts: used.map((p) => p.samples.sort((a, b) => a - b)),
    sizes: used.map((p) => p.size),
    overBudget: used.map((p) => p.overBudget),
  };
}
