// A plain model of windowed FIFO (contract 4), written from the definition for the tests: every
// decision rescans all tasks. head = first task not consumed; the window is [head, head + W - 1]
// (W = Infinity for greedy); take = among ready, unconsumed tasks in the window, the lowest index
// ('oldest') or the one that became ready first ('first-ready'). Lag policy: lag = version - rollout version; lag > maxLag is dropped or weighted 2^-(lag - maxLag).

export interface RefOutcome {
  index: number;
  /** Lags of the trajectories handed out, in completion order. */
  lags: number[];
  weights: number[];
  /** Stale trajectories removed. */
  stale: number;
  /** Set when the whole group was dropped instead of released. */
  dropped?: 'stale' | 'too-few-fresh';
}

interface RefTask {
  groupSize: number;
  versions: number[];
  readySeq: number;
  consumed: boolean;
}

export class ReferenceWindowedFifo {
  readonly tasks: RefTask[] = [];
  version = 0;
  private seq = 0;

  constructor(
    readonly N: number,
    readonly W: number,
    readonly maxLag = Infinity,
    readonly action: 'drop' | 'downweight' = 'drop',
    readonly minGroupSize = 1,
    readonly order: 'oldest' | 'first-ready' = 'oldest',
  ) {}

  head(): number {
    for (let k = 0; k < this.tasks.length; k++) if (!this.tasks[k].consumed) return k;
    return this.tasks.length;
  }

  /** At most N tasks submitted and not consumed. */
  canSubmit(): boolean {
    return this.tasks.filter((t) => !t.consumed).length < this.N;
  }

  submit(groupSize: number): number {
    if (!this.canSubmit()) throw new Error('reference: queue full');
    this.tasks.push({ groupSize, versions: [], readySeq: -1, consumed: false });
    return this.tasks.length - 1;
  }

  complete(index: number, version: number): void {
    const t = this.tasks[index];
    t.versions.push(version);
    if (t.versions.length === t.groupSize) t.readySeq = this.seq++;
  }

  abort(index: number): void {
    this.tasks[index].consumed = true;
  }

  isReady(index: number): boolean {
    return this.tasks[index].readySeq >= 0;
  }

  /** One take (a release or a whole-group drop), or undefined when nothing in the window is ready. */
  take(): RefOutcome | undefined {
    const head = this.head();
    let best = -1;
    for (let k = head; k < Math.min(head + this.W, this.tasks.length); k++) {
      const t = this.tasks[k];
      if (t.consumed || t.readySeq < 0) continue;
      if (best < 0 || (this.order === 'first-ready' && t.readySeq < this.tasks[best].readySeq)) best = k;
    }
    if (best < 0) return undefined;
    const t = this.tasks[best];
    t.consumed = true;
    const out: RefOutcome = { index: best, lags: [], weights: [], stale: 0 };
    for (const v of t.versions) {
      const lag = this.version - v;
      if (lag <= this.maxLag) {
        out.lags.push(lag);
        out.weights.push(1);
      } else if (this.action === 'downweight') {
        out.lags.push(lag);
        out.weights.push(Math.pow(2, this.maxLag - lag));
      } else {
        out.stale++;
      }
    }
    if (out.lags.length === 0) out.dropped = 'stale';
    else if (out.stale > 0 && out.lags.length < this.minGroupSize) out.dropped = 'too-few-fresh';
    return out;
  }
}
