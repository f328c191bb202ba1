// The session as a tree of calls. A call whose prompt ids extend an earlier call's prompt+completion
// continues that branch (the longest such sequence; the latest call among equal ones); otherwise it
// forks, and the fork point is recorded: the longest common prefix with any earlier call's
// prompt+completion (the latest call among those sharing it).
//
// The calls' sequences live in a radix trie (edges hold runs of tokens; each new call stores only its
// new tokens, so memory is the number of distinct tokens). Linking walks the new prompt down the trie
// once, so its cost is the prompt's length, whatever the number of earlier calls. The common case —
// the prompt extends the latest call — is one memcmp of the prompt against that call's sequence
// (kept contiguous) followed by a walk over the new tokens only.
import type { CallLink } from './recorder.js';

interface RadixNode {
  /** Tokens on the edge into this node (empty at the root). */
  label: Int32Array;
  /** Tokens from the root to the end of `label`. */
  depth: number;
  parent: RadixNode | null;
  /** Keyed by the first token of the child's label. */
  children: Map<number, RadixNode> | null;
  /** Index of the latest call whose sequence passes through or ends at this node. Every sequence
   *  that touches a token of `label` reaches the node (sequences end only at nodes). */
  latest: number;
  /** Index of the latest call whose sequence ends exactly here; -1 when none does. */
  endsHere: number;
}

/** Where a walk stopped: the deepest node whose whole label matched, and how far the sequence got. */
interface WalkEnd {
  node: RadixNode;
  /** Tokens of the sequence matched (node.depth, plus the part of a child's label that matched). */
  matched: number;
  /** The child whose label matched partly (1 <= matched - node.depth < label length), if any. */
  partial: RadixNode | null;
  /** Deepest node on the way (node included) where a call's sequence ends, if any. */
  deepestEnd: RadixNode | null;
}

const MEMCMP_MIN = 32;

/** Length of the common prefix of `label` and `seq[from..]`. */
function matchLength(label: Int32Array, seq: Int32Array, from: number): number {
  const n = Math.min(label.length, seq.length - from);
  // A run that matches whole (the usual case: a resent history) is checked at memcmp speed.
  if (n >= MEMCMP_MIN && equalRange(label, 0, seq, from, n)) return n;
  let i = 0;
  while (i < n && label[i] === seq[from + i]) i++;
  return i;
}

function bytes(a: Int32Array, from: number, count: number): Buffer {
  return Buffer.from(a.buffer, a.byteOffset + from * 4, count * 4);
}

function equalRange(a: Int32Array, aFrom: number, b: Int32Array, bFrom: number, count: number): boolean {
  return bytes(a, aFrom, count).equals(bytes(b, bFrom, count));
}

export class CallTree {
  private readonly root: RadixNode = { label: new Int32Array(0), depth: 0, parent: null, children: null, latest: -1, endsHere: -1 };
  private readonly ids: string[] = [];
  /** The latest call's whole sequence and the node where it ends (the fast path of link and add). */
  private hot: { seq: Int32Array; node: RadixNode } | null = null;
  private distinctTokens = 0;

  /** Calls added. */
  get size(): number {
    return this.ids.length;
  }

  /** Distinct tokens over all added sequences (what a prefix-tree batch of them would compute). */
  get tokens(): number {
    return this.distinctTokens;
  }

  /** Where a call with `promptIds` hangs in the tree (computed against the calls added so far). */
  link(promptIds: Int32Array | undefined): CallLink {
    if (promptIds === undefined) return { relation: 'unknown', parent: null, forkTokens: 0 };
    if (this.ids.length === 0) return { relation: 'root', parent: null, forkTokens: 0 };
    const end = this.walk(promptIds);
    if (end.deepestEnd !== null)
      return { relation: 'continue', parent: this.ids[end.deepestEnd.endsHere], forkTokens: end.deepestEnd.depth };
    // Every sequence sharing `matched` tokens with the prompt runs through the stopping point.
    const through = end.partial ?? end.node;
    return { relation: 'fork', parent: this.ids[through.latest], forkTokens: end.matched };
  }

  add(id: string, promptIds: Int32Array, completionIds: Int32Array): void {
    const index = this.ids.push(id) - 1;
    const seq = new Int32Array(promptIds.length + completionIds.length);
    seq.set(promptIds);
    seq.set(completionIds, promptIds.length);
    const end = this.walk(seq);
    let node = end.node;
    if (end.partial !== null) node = this.split(node, end.partial, end.matched - node.depth);
    if (end.matched < seq.length) {
      const leaf: RadixNode = {
        // A copy of the new tokens only: no label keeps a whole earlier sequence alive.
        label: seq.slice(end.matched), depth: seq.length, parent: node, children: null, latest: index, endsHere: -1,
      };
      (node.children ??= new Map()).set(seq[end.matched], leaf);
      this.distinctTokens += leaf.label.length;
      node = leaf;
    }
    node.endsHere = index;
    for (let n: RadixNode | null = node; n !== null; n = n.parent) n.latest = index;
    this.hot = { seq, node };
  }

  /** Walks `seq` down the trie; starts below the latest call's end when `seq` extends that call. */
  private walk(seq: Int32Array): WalkEnd {
    let node = this.root;
    let deepestEnd: RadixNode | null = node.endsHere >= 0 ? node : null;
    const hot = this.hot;
    // A sequence longer than the hot one that is a prefix of `seq` passes through the hot node, so
    // the walk may start there; nodes above it are shallower than the hot node (which ends a call).
    if (hot !== null && hot.seq.length <= seq.length && equalRange(hot.seq, 0, seq, 0, hot.seq.length)) {
      node = hot.node;
      deepestEnd = node;
    }
    let pos = node.depth;
    for (;;) {
      if (pos === seq.length) return { node, matched: pos, partial: null, deepestEnd };
      const child = node.children?.get(seq[pos]);
      if (child === undefined) return { node, matched: pos, partial: null, deepestEnd };
      const m = matchLength(child.label, seq, pos);
      if (m < child.label.length) return { node, matched: pos + m, partial: child, deepestEnd };
      node = child;
      pos += m;
      if (node.endsHere >= 0) deepestEnd = node;
    }
  }

  /** Splits `child`'s edge after `at` tokens (0 < at < label length); returns the new middle node. */
  private split(parent: RadixNode, child: RadixNode, at: number): RadixNode {
    const mid: RadixNode = {
      label: child.label.subarray(0, at), depth: parent.depth + at, parent, children: new Map(),
      latest: child.latest, endsHere: -1,
    };
    child.label = child.label.subarray(at);
    child.parent = mid;
    mid.children!.set(child.label[0], child);
    parent.children!.set(mid.label[0], mid);
    return mid;
  }
}
