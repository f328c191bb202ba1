// The call-tree index (lib/gateway/callTree.ts, a radix trie) against a brute-force reference that
// compares the prompt with every earlier call's prompt+completion, on random call sequences built to
// hit every case: continues of the latest or an older call, forks inside a prompt or a completion,
// duplicates, prompts that stop inside or exactly at an earlier sequence, empty prompts/completions,
// choices linked before any of them is added, and a 3-token vocabulary so prefixes collide by chance.
import { describe, expect, it } from 'vitest';
import { CallTree } from '../lib/gateway/callTree.js';
import type { CallLink } from '../lib/gateway/recorder.js';
import { seededRun, type Rng } from './helpers/random.js';

/** The definition, written out: every earlier sequence, compared token by token. */
class BruteForceTree {
  readonly seqs: { id: string; ids: number[] }[] = [];

  link(prompt: Int32Array | undefined): CallLink {
    if (prompt === undefined) return { relation: 'unknown', parent: null, forkTokens: 0 };
    if (this.seqs.length === 0) return { relation: 'root', parent: null, forkTokens: 0 };
    const shared = this.seqs.map((s) => {
      let i = 0;
      while (i < s.ids.length && i < prompt.length && s.ids[i] === prompt[i]) i++;
      return i;
    });
    // Continue: the longest earlier sequence that is a whole prefix of the prompt, latest on ties.
    let cont = -1;
    this.seqs.forEach((s, k) => {
      if (shared[k] === s.ids.length && (cont < 0 || s.ids.length >= this.seqs[cont].ids.length)) cont = k;
    });
    if (cont >= 0) return { relation: 'continue', parent: this.seqs[cont].id, forkTokens: this.seqs[cont].ids.length };
    const most = Math.max(...shared);
    const fork = shared.lastIndexOf(most);
    return { relation: 'fork', parent: this.seqs[fork].id, forkTokens: most };
  }

  add(id: string, prompt: Int32Array, completion: Int32Array): void {
    this.seqs.push({ id, ids: [...prompt, ...completion] });
  }

  /** Distinct non-empty prefixes over all sequences. */
  distinctTokens(): number {
    // A plain trie of maps, one node per distinct prefix.
    type Trie = Map<number, Trie>;
    const root: Trie = new Map();
    let count = 0;
    for (const s of this.seqs) {
      let node = root;
      for (const t of s.ids) {
        let next = node.get(t);
        if (next === undefined) {
          next = new Map();
          node.set(t, next);
          count++;
        }
        node = next;
      }
    }
    return count;
  }
}

const tokens = (rand: Rng, n: number, vocab: number) => Int32Array.from({ length: n }, () => Math.floor(rand() * vocab));
const cat = (...parts: ArrayLike<number>[]) => Int32Array.from(parts.flatMap((p) => Array.from(p)));

/** A random next prompt of a session whose earlier sequences are `seqs`. */
function nextPrompt(rand: Rng, seqs: number[][], vocab: number): Int32Array {
  const any = () => seqs[Math.floor(rand() * seqs.length)];
  const r = rand();
  if (seqs.length === 0 || r < 0.08) return tokens(rand, Math.floor(rand() * 6), vocab); // fresh (maybe empty)
  if (r < 0.4) return cat(seqs[seqs.length - 1], tokens(rand, 1 + Math.floor(rand() * 5), vocab)); // continue the latest
  if (r < 0.55) return cat(any(), tokens(rand, Math.floor(rand() * 4), vocab)); // continue an older one (or resend it)
  if (r < 0.75) {
    const s = any();
    return cat(s.slice(0, Math.floor(rand() * (s.length + 1))), tokens(rand, Math.floor(rand() * 4), vocab)); // truncate + new
  }
  if (r < 0.85) {
    const s = any(); // an earlier sequence with one token changed (an agent rewriting history)
    const p = Int32Array.from(s);
    if (p.length > 0) p[Math.floor(rand() * p.length)] = Math.floor(rand() * vocab);
    return p;
  }
  const s = any(); // a strict prefix of an earlier sequence (stops inside an edge or at a node)
  return Int32Array.from(s.slice(0, Math.floor(rand() * s.length)));
}

describe('call tree index', () => {
  const run = seededRun();

  it('links exactly like the brute-force definition on random sessions', () => {
    const rand = run.rng();
    let checked = 0;
    const relations = { root: 0, continue: 0, fork: 0, unknown: 0 };
    for (let session = 0; session < 250; session++) {
      const vocab = rand() < 0.5 ? 3 : 50;
      const tree = new CallTree(), ref = new BruteForceTree();
      const calls = 1 + Math.floor(rand() * 40);
      for (let c = 0; c < calls; c++) {
        const choices = rand() < 0.15 ? 2 + Math.floor(rand() * 3) : 1;
        const prompt = nextPrompt(rand, ref.seqs.map((s) => s.ids), vocab);
        // Choices of one request are all linked against the tree as it was, then added.
        const pending: { id: string; completion: Int32Array }[] = [];
        for (let k = 0; k < choices; k++) {
          const probe = rand() < 0.05 ? undefined : prompt;
          const got = tree.link(probe), want = ref.link(probe);
          if (JSON.stringify(got) !== JSON.stringify(want))
            run.fail(`session ${session}, call ${c}: prompt [${prompt}] linked ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
          relations[got.relation]++;
          checked++;
          // Duplicates: sometimes the same completion as an earlier choice, sometimes empty.
          const completion = k > 0 && rand() < 0.3 ? pending[0].completion : tokens(rand, Math.floor(rand() * 5), vocab);
          pending.push({ id: `s${session}c${c}k${k}`, completion });
        }
        for (const p of pending) {
          tree.add(p.id, prompt, p.completion);
          ref.add(p.id, prompt, p.completion);
        }
      }
      expect(tree.size, run.why('size')).toBe(ref.seqs.length);
      expect(tree.tokens, run.why(`distinct tokens of session ${session}`)).toBe(ref.distinctTokens());
    }
    // The generator really reached every relation (else the comparison proves little).
    expect(relations.continue, run.why('continues')).toBeGreaterThan(200);
    expect(relations.fork, run.why('forks')).toBeGreaterThan(200);
    expect(relations.root).toBeGreaterThan(100);
    expect(relations.unknown).toBeGreaterThan(0);
    expect(checked).toBeGreaterThan(2000);
  });

  it('long sessions: resent histories of hundreds of calls (the memcmp fast path) agree with the reference', () => {
    const rand = run.rng();
    const tree = new CallTree(), ref = new BruteForceTree();
    let history = tokens(rand, 200, 1000);
    for (let c = 0; c < 300; c++) {
      // Mostly continues of the latest call; now and then a context-management fork keeping the system
      // prompt, or the history with one token rewritten (often the last: long runs differing at their end).
      const r = rand();
      let prompt: Int32Array;
      if (r < 0.1) prompt = cat(history.subarray(0, 200), tokens(rand, 40, 1000));
      else if (r < 0.2) {
        prompt = Int32Array.from(history);
        const at = rand() < 0.5 ? prompt.length - 1 - Math.floor(rand() * 3) : Math.floor(rand() * prompt.length);
        prompt[at] = (prompt[at] + 1) % 1000;
      } else prompt = cat(history, tokens(rand, 30, 1000));
      const got = tree.link(prompt), want = ref.link(prompt);
      if (JSON.stringify(got) !== JSON.stringify(want)) run.fail(`call ${c}: ${JSON.stringify(got)} != ${JSON.stringify(want)}`);
      const completion = tokens(rand, 20, 1000);
      tree.add(`c${c}`, prompt, completion);
      ref.add(`c${c}`, prompt, completion);
      history = cat(prompt, completion);
    }
    expect(tree.tokens).toBe(ref.distinctTokens());
  });

  it('names the parent and the fork point in the simple cases', () => {
    const tree = new CallTree();
    expect(tree.link(undefined)).toEqual({ relation: 'unknown', parent: null, forkTokens: 0 });
    expect(tree.link(Int32Array.of(1, 2))).toEqual({ relation: 'root', parent: null, forkTokens: 0 });
    tree.add('a', Int32Array.of(1, 2), Int32Array.of(3, 4));
    expect(tree.link(Int32Array.of(1, 2, 3, 4, 5))).toEqual({ relation: 'continue', parent: 'a', forkTokens: 4 });
    expect(tree.link(Int32Array.of(1, 2, 3, 4))).toEqual({ relation: 'continue', parent: 'a', forkTokens: 4 });
    // Inside a's completion: the agent changed the model's output.
    expect(tree.link(Int32Array.of(1, 2, 3, 9))).toEqual({ relation: 'fork', parent: 'a', forkTokens: 3 });
    tree.add('b', Int32Array.of(1, 2, 3, 4, 5), Int32Array.of(6));
    tree.add('c', Int32Array.of(1, 2, 3, 4), Int32Array.of(7)); // forks from a's end, after b
    expect(tree.link(Int32Array.of(1, 2, 3, 4, 5, 6, 0))).toEqual({ relation: 'continue', parent: 'b', forkTokens: 6 });
    expect(tree.link(Int32Array.of(1, 2, 3, 4, 8))).toEqual({ relation: 'continue', parent: 'a', forkTokens: 4 });
    // Shares 3 tokens with a, b and c: the latest of them (c) is named.
    expect(tree.link(Int32Array.of(1, 2, 3))).toEqual({ relation: 'fork', parent: 'c', forkTokens: 3 });
    expect(tree.link(Int32Array.of(9))).toEqual({ relation: 'fork', parent: 'c', forkTokens: 0 });
    expect(tree.tokens).toBe(7); // 1 2 3 4 | 5 6 | 7
  });
});
