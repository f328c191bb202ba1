// The arrays of one engine step (an ExtendBatch under construction): every sequence adds its new
// tokens and, once, the slot path they share (each token takes the prefix of it that ends with its own
// slot). Growable typed arrays, reused across steps.
import type { ExtendBatch } from './kernels.js';

class IntList {
  data = new Int32Array(64);
  length = 0;

  push(x: number): number {
    if (this.length === this.data.length) this.grow(this.length + 1);
    this.data[this.length] = x;
    return this.length++;
  }

  append(src: Int32Array, count: number): void {
    if (this.length + count > this.data.length) this.grow(this.length + count);
    this.data.set(src.subarray(0, count), this.length);
    this.length += count;
  }

  view(): Int32Array {
    return this.data.subarray(0, this.length);
  }

  private grow(min: number): void {
    let size = this.data.length * 2;
    while (size < min) size *= 2;
    const next = new Int32Array(size);
    next.set(this.data.subarray(0, this.length));
    this.data = next;
  }
}

export class StepBatch {
  private readonly tokens = new IntList();
  private readonly positions = new IntList();
  private readonly slots = new IntList();
  private readonly paths = new IntList();
  private readonly pathOffset = new IntList();
  private readonly pathLen = new IntList();
  private readonly logitRows = new IntList();
  /** Slots taken for this step only (returned to the cache after it). */
  readonly scratch: number[] = [];
  /** Sequences in the step. */
  sequences = 0;

  get numTokens(): number {
    return this.tokens.length;
  }

  reset(): void {
    for (const l of [this.tokens, this.positions, this.slots, this.paths, this.pathOffset, this.pathLen, this.logitRows]) l.length = 0;
    this.scratch.length = 0;
    this.sequences = 0;
  }

  /** Adds a slot path (the first `count` of `slots`, then `extra` slots); returns its offset. */
  addPath(slots: Int32Array, count: number, ...extra: number[]): number {
    const offset = this.paths.length;
    this.paths.append(slots, count);
    for (const s of extra) this.paths.push(s);
    return offset;
  }

  /**
   * Adds a token that writes its K/V to `slot` and attends to paths[pathOffset .. + pathLen). With
   * `logits`, returns the index of its row in the step's logits (else -1).
   */
  addToken(token: number, position: number, slot: number, pathOffset: number, pathLen: number, logits: boolean): number {
    const i = this.tokens.push(token);
    this.positions.push(position);
    this.slots.push(slot);
    this.pathOffset.push(pathOffset);
    this.pathLen.push(pathLen);
    return logits ? this.logitRows.push(i) : -1;
  }

  /** The ExtendBatch view (valid until the next reset/add). */
  build(): ExtendBatch {
    return {
      tokens: this.tokens.view(),
      positions: this.positions.view(),
      slots: this.slots.view(),
      paths: this.paths.view(),
      pathOffset: this.pathOffset.view(),
      pathLen: this.pathLen.view(),
      logitRows: this.logitRows.view(),
    };
  }
}
