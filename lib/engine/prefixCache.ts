// The engine's prefix cache: a radix trie over token ids whose nodes own KV-pool slots, so sequences
// that share a prefix share the slots of that prefix (the same idea as the prefix tree of contract 1,
// kept across calls). A running sequence holds a reference on every node of its path; a node nobody
// references is cached, and is evicted (its slot reused) least-recently-used leaf first when the pool
// runs out of free slots. Referenced nodes are never evicted.
//
// Weight swaps: K/V computed with old weights must not serve new requests, so newEpoch() detaches the
// whole trie. Its unreferenced nodes are freed at once; nodes still held by running sequences stay
// usable by them (and their descendants inherit the old epoch) and are freed when released.
import { rangeError } from '../errors.js';
import { expectInt } from '../validate.js';

/** One cached token. */
export interface CacheNode {
  readonly token: number;
  /** Pool slot holding this token's K/V (-1 for the root). */
  readonly slot: number;
  readonly parent: CacheNode | null;
  /** Index of the token in its sequence (its RoPE position); -1 for the root. */
  readonly depth: number;
  /** false once newEpoch() detached it: only the sequences already holding it may use it. */
  attached: boolean;
  /** Running sequences whose path holds this node. */
  refs: number;
  /** Clock value of the last use (LRU order). */
  lastUse: number;
  freed: boolean;
  children: Map<number, CacheNode>;
}

export interface PrefixCacheStats {
  /** Pool slots managed. */
  capacity: number;
  /** Slots not holding any node or scratch. */
  free: number;
  /** Attached nodes (cached tokens). */
  cachedTokens: number;
  /** Attached nodes no running sequence references: reclaimable. */
  evictable: number;
  evictions: number;
  /** Tokens looked up through match() / hits among them. */
  lookups: number;
  hits: number;
  hitRate: number;
}

function makeNode(token: number, slot: number, parent: CacheNode | null): CacheNode {
  return {
    token,
    slot,
    parent,
    depth: parent ? parent.depth + 1 : -1,
    attached: parent ? parent.attached : true,
    refs: 0,
    lastUse: 0,
    freed: false,
    children: new Map(),
  };
}

/** A binary min-heap of (lastUse, node) entries; stale entries are skipped when popped. */
class LruHeap {
  private keys: number[] = [];
  private nodes: CacheNode[] = [];

  get size(): number {
    return this.keys.length;
  }

  push(node: CacheNode): void {
    let i = this.keys.length;
    this.keys.push(node.lastUse);
    this.nodes.push(node);
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (this.keys[up] <= this.keys[i]) break;
      this.swap(i, up);
      i = up;
    }
  }

  pop(): { key: number; node: CacheNode } | undefined {
    if (this.keys.length === 0) return undefined;
    const top = { key: this.keys[0], node: this.nodes[0] };
    const lastKey = this.keys.pop()!, lastNode = this.nodes.pop()!;
    if (this.keys.length > 0) {
      this.keys[0] = lastKey;
      this.nodes[0] = lastNode;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < this.keys.length && this.keys[l] < this.keys[m]) m = l;
        if (r < this.keys.length && this.keys[r] < this.keys[m]) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }

  clear(): void {
    this.keys = [];
    this.nodes = [];
  }

  private swap(a: number, b: number): void {
    [this.keys[a], this.keys[b]] = [this.keys[b], this.keys[a]];
    [this.nodes[a], this.nodes[b]] = [this.nodes[b], this.nodes[a]];
  }
}

export class PrefixCache {
  readonly capacity: number;
  private root: CacheNode;
  private readonly freeSlots: Int32Array;
  private freeCount: number;
  private readonly lru = new LruHeap();
  private clock = 0;
  private attachedNodes = 0;
  private evictableNodes = 0;
  private evictions = 0;
  private lookups = 0;
  private hits = 0;

  /** Manages pool slots [0, capacity). */
  constructor(capacity: number) {
    this.capacity = expectInt('capacity', capacity, 1, 2 ** 31 - 1);
    this.freeSlots = new Int32Array(this.capacity);
    // Popped from the end: slot 0 first.
    for (let i = 0; i < this.capacity; i++) this.freeSlots[i] = this.capacity - 1 - i;
    this.freeCount = this.capacity;
    this.root = makeNode(-1, -1, null);
  }

  /** The root of the current epoch (its children are the cached first tokens). */
  get rootNode(): CacheNode {
    return this.root;
  }

  /**
   * A root outside the trie: nodes grown under it are never found by match() and are freed when
   * released (for a request that must not share or leave cached K/V).
   */
  privateRoot(): CacheNode {
    const root = makeNode(-1, -1, null);
    root.attached = false;
    return root;
  }

  /** Slots that can be had now without touching referenced nodes: free + evictable. */
  available(): number {
    return this.freeCount + this.evictableNodes;
  }

  /** The cached child of `node` for `token`, if any. */
  child(node: CacheNode, token: number): CacheNode | undefined {
    return node.children.get(token);
  }

  /**
   * Longest cached path for tokens[0..limit) from the root (nodes in order). Takes no references:
   * acquire() the nodes to keep them. With `record` (default) the lookup counts toward the hit
   * statistics; a caller that may retry counts it once with recordLookup().
   */
  match(tokens: ArrayLike<number>, limit = tokens.length, record = true): CacheNode[] {
    const out: CacheNode[] = [];
    let node = this.root;
    for (let i = 0; i < limit; i++) {
      const next = node.children.get(tokens[i]);
      if (!next) break;
      out.push(next);
      node = next;
    }
    if (record) this.recordLookup(limit, out.length);
    return out;
  }

  recordLookup(tokens: number, hits: number): void {
    this.lookups += tokens;
    this.hits += hits;
  }

  /** Adds a reference (a running sequence's path now holds the node). */
  acquire(node: CacheNode): void {
    if (node.freed) throw new Error('prefix cache: acquire of a freed node');
    if (node.refs++ === 0 && node.attached) this.evictableNodes--;
    node.lastUse = ++this.clock;
  }

  /** Drops one reference from each node; nodes left unreferenced become cached (or are freed if detached). */
  release(nodes: readonly CacheNode[]): void {
    // Deepest first, so a parent becomes a leaf candidate after its children were handled.
    for (let i = nodes.length - 1; i >= 0; i--) {
      const node = nodes[i];
      if (node.refs <= 0) throw new Error('prefix cache: release of an unreferenced node');
      node.lastUse = ++this.clock;
      if (--node.refs > 0) continue;
      if (!node.attached) this.freeNode(node);
      else {
        this.evictableNodes++;
        if (node.children.size === 0) this.lru.push(node);
      }
    }
  }

  /**
   * A new node for `token` under `parent` (which must not have that child), holding one reference for
   * the caller. Evicts the least recently used unreferenced leaf when no slot is free; returns
   * undefined when nothing can be evicted.
   */
  insert(parent: CacheNode, token: number): CacheNode | undefined {
    if (parent.children.has(token)) throw new Error(`prefix cache: node for token ${token} already exists`);
    const slot = this.takeSlot();
    if (slot < 0) return undefined;
    const node = makeNode(token, slot, parent);
    parent.children.set(token, node);
    if (node.attached) this.attachedNodes++;
    node.refs = 1;
    node.lastUse = ++this.clock;
    return node;
  }

  /** A slot outside the trie (a token whose K/V are computed only for its logits); give it back with freeScratch. */
  takeScratch(): number {
    return this.takeSlot();
  }

  freeScratch(slot: number): void {
    if (this.freeCount >= this.capacity) throw new Error('prefix cache: more slots freed than taken');
    this.freeSlots[this.freeCount++] = slot;
  }

  /**
   * Detaches the trie (weights changed: its K/V are stale). Unreferenced nodes are freed now; the
   * others when their last reference is released. Returns the number of nodes freed now.
   */
  newEpoch(): number {
    const old = this.root;
    this.root = makeNode(-1, -1, null);
    let freed = 0;
    const stack: CacheNode[] = [...old.children.values()];
    old.children.clear();
    while (stack.length > 0) {
      const node = stack.pop()!;
      node.attached = false;
      for (const c of node.children.values()) stack.push(c);
      if (node.refs === 0) {
        this.freeNode(node);
        freed++;
      }
    }
    this.attachedNodes = 0;
    this.evictableNodes = 0;
    this.lru.clear();
    return freed;
  }

  /** Evicts unreferenced nodes until at most `keep` attached nodes remain (or nothing more can go). */
  trim(keep = 0): number {
    let n = 0;
    while (this.attachedNodes > keep && this.evictOne()) n++;
    return n;
  }

  stats(): PrefixCacheStats {
    return {
      capacity: this.capacity,
      free: this.freeCount,
      cachedTokens: this.attachedNodes,
      evictable: this.evictableNodes,
      evictions: this.evictions,
      lookups: this.lookups,
      hits: this.hits,
      hitRate: this.lookups > 0 ? this.hits / this.lookups : 0,
    };
  }

  private takeSlot(): number {
    if (this.freeCount === 0 && !this.evictOne()) return -1;
    return this.freeSlots[--this.freeCount];
  }

  private evictOne(): boolean {
    for (;;) {
      const entry = this.lru.pop();
      if (!entry) return false;
      const node = entry.node;
      // Stale entries: touched since (key differs), referenced, grown children, or already gone.
      if (node.freed || !node.attached || node.refs > 0 || node.children.size > 0 || entry.key !== node.lastUse) continue;
      const parent = node.parent!;
      this.freeNode(node);
      this.evictableNodes--;
      this.evictions++;
      if (parent.depth >= 0 && parent.refs === 0 && parent.children.size === 0 && parent.attached) this.lru.push(parent);
      return true;
    }
  }

  // Unlinks a node from its parent and returns its slot. Detached nodes may still sit in a parent's
  // map (stale sequences share them), so they are unlinked too.
  private freeNode(node: CacheNode): void {
    if (node.freed) return;
    node.freed = true;
    if (node.parent && node.parent.children.get(node.token) === node) node.parent.children.delete(node.token);
    if (node.attached) this.attachedNodes--;
    if (this.freeCount >= this.capacity) throw rangeError('prefix cache: slot accounting broke (more frees than slots)');
    this.freeSlots[this.freeCount++] = node.slot;
  }
}
