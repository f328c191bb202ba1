// The demo's progress display: a cli-progress bar with the live progress line (summary.ts) on a
// terminal, and on anything else (CI logs, a file, a pipe) one plain line every `logEvery` steps and
// at each phase's first and last step, so logs stay readable. A new phase finishes the old bar (it
// stays on screen) and starts a new one. No signal handlers are installed: the caller stops the bar.
import cliProgress from 'cli-progress';

import { rangeError, typeError } from '../errors.js';
import { progressLine, type ProgressState } from './summary.js';

/** Where progress goes: a stream with write(); `isTTY` picks the bar. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

export interface ProgressOptions {
  /** Steps of the first phase (each update may carry another phase's total). */
  total: number;
  /** false: show nothing. Default true. */
  enabled?: boolean;
  /** Default process.stdout. */
  stream?: ProgressStream;
  /** Force the bar (true) or the plain lines (false); default: the stream's isTTY. */
  tty?: boolean;
  /** Plain-line mode: a line every this many steps (default: a tenth of the phase's total). */
  logEvery?: number;
}

export interface Progress {
  /** 'bar' on a terminal, 'lines' otherwise, 'off' when disabled. */
  readonly mode: 'bar' | 'lines' | 'off';
  update(state: ProgressState): void;
  /** Finishes the display (the bar's last state stays on screen). */
  stop(): void;
}

export function createProgress(options: ProgressOptions): Progress {
  if (options === null || typeof options !== 'object') throw typeError('options: expected { total, enabled? }');
  if (!Number.isInteger(options.total) || options.total < 0) throw rangeError(`options.total: expected an integer >= 0, got ${options.total}`);
  if (options.logEvery !== undefined && (!Number.isInteger(options.logEvery) || options.logEvery < 1))
    throw rangeError(`options.logEvery: expected an integer >= 1, got ${options.logEvery}`);
  if (options.enabled === false) return { mode: 'off', update() {}, stop() {} };
  const stream = options.stream ?? process.stdout;
  if (typeof stream?.write !== 'function') throw typeError('options.stream: expected a writable stream');
  const tty = options.tty ?? stream.isTTY === true;
  return tty ? new BarProgress(stream, options.total) : new LineProgress(stream, options.total, options.logEvery);
}

class BarProgress implements Progress {
  readonly mode = 'bar';
  #bar: cliProgress.SingleBar | null = null;
  #phase: string | undefined;

  constructor(
    private readonly stream: ProgressStream,
    private total: number,
  ) {}

  update(state: ProgressState): void {
    const total = Number.isInteger(state.total) && state.total >= 0 ? state.total : this.total;
    const payload = { line: progressLine(state) };
    if (this.#bar === null || state.phase !== this.#phase) {
      this.#bar?.stop();
      this.#phase = state.phase;
      this.total = total;
      this.#bar = new cliProgress.SingleBar({
        format: '{bar} {line}',
        stream: this.stream as NodeJS.WritableStream,
        barsize: 24,
        hideCursor: null,
        gracefulExit: false, // its SIGINT handler would keep the process alive on Ctrl-C
        linewrap: true,
      });
      this.#bar.start(total, Math.min(state.step, total), payload);
      return;
    }
    if (total !== this.total) this.#bar.setTotal((this.total = total));
    this.#bar.update(Math.min(state.step, total), payload);
  }

  stop(): void {
    this.#bar?.stop();
    this.#bar = null;
  }
}

class LineProgress implements Progress {
  readonly mode = 'lines';
  #phase: string | undefined;
  #last: ProgressState | undefined;
  #printed = false;

  constructor(
    private readonly stream: ProgressStream,
    private readonly total: number,
    private readonly logEvery: number | undefined,
  ) {}

  update(state: ProgressState): void {
    const total = Number.isInteger(state.total) && state.total >= 0 ? state.total : this.total;
    const every = this.logEvery ?? Math.max(1, Math.ceil(total / 10));
    const first = state.phase !== this.#phase;
    if (first && this.#last && !this.#printed) this.print(this.#last); // the old phase's last state
    this.#phase = state.phase;
    this.#last = state;
    this.#printed = first || state.step % every === 0 || state.step >= total;
    if (this.#printed) this.print(state);
  }

  stop(): void {
    if (this.#last && !this.#printed) this.print(this.#last);
    this.#printed = true;
  }

  private print(state: ProgressState): void {
    this.stream.write(progressLine(state) + '\n');
  }
}
