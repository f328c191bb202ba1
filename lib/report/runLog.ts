// The run's event log on disk: an append-only JSONL file, one event per line, each line written with
// one write(2) as it happens, so a run killed at any point leaves every earlier event readable and at
// most its last line cut off. The reader drops such a cut-off last line (and says so) and refuses
// any other malformed line, naming it. The event types are in events.ts.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname } from 'node:path';

import { typeError } from '../errors.js';
import { ReportErrorCode, RunLogError } from './errors.js';
import { RUN_EVENT_TYPES, type MachineInfo, type RunEvent, type RunEventInput, type RunEventType } from './events.js';

export * from './events.js';

const KNOWN_TYPES = new Set<string>(RUN_EVENT_TYPES);

// JSON has no NaN / Infinity; JSON.stringify would write null anyway, this says it on purpose.
const finiteOrNull = (_key: string, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value);

/** One event as its JSONL line (with the newline); `time` stamped with `now` when absent. */
export function encodeEvent(event: RunEventInput, now: number = Date.now()): string {
  if (event === null || typeof event !== 'object' || Array.isArray(event))
    throw typeError(`event: expected an object, got ${event === null ? 'null' : Array.isArray(event) ? 'Array' : typeof event}`);
  if (!KNOWN_TYPES.has((event as { type: unknown }).type as string))
    throw typeError(`event.type: expected one of ${RUN_EVENT_TYPES.join(', ')}, got ${JSON.stringify((event as { type: unknown }).type)}`);
  const stamped = { ...event, time: typeof event.time === 'number' && Number.isFinite(event.time) ? event.time : now };
  // `type` first, `time` second: the file stays readable with grep and head.
  const { type, time, ...rest } = stamped;
  return JSON.stringify({ type, time, ...rest }, finiteOrNull) + '\n';
}

export interface RunLogWriterOptions {
  /** fsync after every event (survives a power loss, not only a killed process). Default false. */
  fsync?: boolean;
}

/** Appends events to a JSONL file (created with its folder when missing). */
export class RunLogWriter {
  #fd: number | null;
  readonly #fsync: boolean;

  private constructor(
    readonly path: string,
    fd: number,
    fsync: boolean,
  ) {
    this.#fd = fd;
    this.#fsync = fsync;
  }

  static open(path: string, options: RunLogWriterOptions = {}): RunLogWriter {
    if (typeof path !== 'string' || path === '') throw typeError(`path: expected a file path, got ${JSON.stringify(path)}`);
    mkdirSync(dirname(path), { recursive: true });
    return new RunLogWriter(path, openSync(path, 'a'), options.fsync === true);
  }

  /** Writes one event now (one write call) and returns it as stored, with its time. */
  write<E extends RunEventInput>(event: E): Extract<RunEvent, { type: E['type'] }> {
    if (this.#fd === null) throw new RunLogError(ReportErrorCode.LOG_CLOSED, `run log ${this.path}: write after close`);
    const line = encodeEvent(event);
    const bytes = Buffer.from(line, 'utf8');
    for (let off = 0; off < bytes.length; ) off += writeSync(this.#fd, bytes, off, bytes.length - off);
    if (this.#fsync) fsyncSync(this.#fd);
    return JSON.parse(line) as Extract<RunEvent, { type: E['type'] }>;
  }

  get closed(): boolean {
    return this.#fd === null;
  }

  close(): void {
    if (this.#fd === null) return;
    const fd = this.#fd;
    this.#fd = null;
    closeSync(fd);
  }
}

export interface RunLogContents {
  events: RunEvent[];
  /** The last line was cut off (a killed writer) and was left out. */
  truncated: boolean;
  /** Events of a type this version does not know (a newer writer), left out. */
  skipped: number;
}

/** Parses a run log's text. `source` names it in errors. */
export function parseRunLog(text: string, source = 'run log'): RunLogContents {
  if (typeof text !== 'string') throw typeError(`text: expected a string, got ${typeof text}`);
  const lines = text.split('\n');
  // The last non-empty line is the only one a killed writer can leave unfinished.
  let last = lines.length - 1;
  while (last >= 0 && lines[last].trim() === '') last--;
  const events: RunEvent[] = [];
  let truncated = false, skipped = 0;
  for (let i = 0; i <= last; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    let value: unknown;
    let problem: string | undefined;
    try {
      value = JSON.parse(line);
    } catch {
      problem = 'not valid JSON';
    }
    if (problem === undefined) problem = eventProblem(value);
    if (problem !== undefined) {
      if (i === last) {
        truncated = true;
        break;
      }
      throw new RunLogError(ReportErrorCode.BAD_LOG, `${source}: line ${i + 1}: ${problem}`);
    }
    if (!KNOWN_TYPES.has((value as { type: string }).type)) skipped++;
    else events.push(value as RunEvent);
  }
  return { events, truncated, skipped };
}

function eventProblem(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'not a JSON object';
  const { type, time } = value as { type?: unknown; time?: unknown };
  if (typeof type !== 'string' || type === '') return 'no "type"';
  if (typeof time !== 'number' || !Number.isFinite(time)) return `no "time" on a ${JSON.stringify(type)} event`;
  return undefined;
}

/** Reads a run log file (see parseRunLog). */
export function readRunLog(path: string): RunLogContents {
  if (typeof path !== 'string' || path === '') throw typeError(`path: expected a file path, got ${JSON.stringify(path)}`);
  return parseRunLog(readFileSync(path, 'utf8'), path);
}

/** The events of one type, in log order. */
export function eventsOf<T extends RunEventType>(events: readonly RunEvent[], type: T): Extract<RunEvent, { type: T }>[] {
  return events.filter((e): e is Extract<RunEvent, { type: T }> => e.type === type);
}

/** This machine, for the run event (`threads` and `backend` are the caller's to add). */
export function machineInfo(): MachineInfo {
  const list = cpus();
  return {
    cpus: list.length,
    cpuModel: list[0]?.model?.trim() || 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    platform: process.platform,
    arch: process.arch,
    node: process.version,
  };
}
