// The session as a tree of calls. A call whose prompt ids extend an earlier call's prompt+completion
// continues that branch; otherwise it forks, and the fork point (the longest common prefix with an
// earlier call's prompt+completion) is recorded. Cost: one prefix comparison per earlier call (each
// stops at the first differing token); a trie over the calls would make it proportional to the prompt.
import type { CallLink } from './recorder.js';

interface Node {
  id: string;
  /** prompt ++ completion. */
  ids: Int32Array;
}

function commonPrefix(a: Int32Array, b: Int32Array): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

export class CallTree {
  private readonly nodes: Node[] = [];

  get size(): number {
    return this.nodes.length;
  }

  /** Where a call with `promptIds` hangs in the tree (computed against the calls added so far). */
  link(promptIds: Int32Array | undefined): CallLink {
    if (promptIds === undefined) return { relation: 'unknown', parent: null, forkTokens: 0 };
    if (this.nodes.length === 0) return { relation: 'root', parent: null, forkTokens: 0 };
    let best: Node | undefined;
    let bestShared = -1;
    let extends_: Node | undefined;
    for (let k = this.nodes.length - 1; k >= 0; k--) {
      const node = this.nodes[k];
      const shared = commonPrefix(node.ids, promptIds);
      // Continuing: the whole earlier sequence is a prefix; the longest such sequence is the parent.
      if (shared === node.ids.length && (extends_ === undefined || shared > extends_.ids.length)) extends_ = node;
      if (shared > bestShared) {
        best = node;
        bestShared = shared;
      }
    }
    if (extends_ !== undefined) return { relation: 'continue', parent: extends_.id, forkTokens: extends_.ids.length };
    return { relation: 'fork', parent: best!.id, forkTokens: bestShared };
  }

  add(id: string, promptIds: Int32Array, completionIds: Int32Array): void {
    const ids = new Int32Array(promptIds.length + completionIds.length);
    ids.set(promptIds);
    ids.set(completionIds, promptIds.length);
    this.nodes.push({ id, ids });
  }
}
