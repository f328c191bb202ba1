// The agent programs as child processes. Each scaffold's program (agents/*.mjs, agents/sdk-agent.ts)
// runs once in serve mode (agents/common.mjs): the pool writes one job per line to its stdin — the
// session's base URL, its key and the task — and reads one result line back per job, so a program
// starts once per run rather than once per task (Node's start-up is ~0.1 s of CPU, more than a whole
// nano-policy session). Jobs run concurrently inside a program; `maxConcurrent` bounds them over all
// programs. A program that dies fails its running jobs with its last stderr lines and is started
// again for the next job.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { rangeError, typeError } from '../errors.js';
import { scaffoldSpec, type ScaffoldName } from './scaffolds.js';
import type { AgentResult } from './tasks.js';

/** lib/demo and dist/demo both sit two levels below the package root. */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** One job for an agent program. */
export interface AgentJob {
  /** The session's OpenAI base URL (e.g. http://127.0.0.1:40123/sessions/<id>/v1). */
  baseURL: string;
  apiKey: string;
  /** What the program needs of the task ({ prompt } or { prompt, store }). */
  task: Record<string, unknown>;
}

interface Running {
  resolve: (r: AgentResult) => void;
  reject: (e: Error) => void;
}

interface Program {
  child: ChildProcessWithoutNullStreams;
  running: Map<number, Running>;
  stderr: string[];
}

/** The command that runs a program file: node for .mjs, node with the tsx loader for .ts. */
export function programCommand(file: string): { command: string; args: string[] } {
  if (file.endsWith('.ts')) {
    const loader = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    return { command: process.execPath, args: ['--import', loader, file] };
  }
  return { command: process.execPath, args: [file] };
}

export class AgentPool {
  readonly maxConcurrent: number;
  private readonly programs = new Map<ScaffoldName, Program>();
  private nextId = 0;
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private closed = false;

  constructor(options: { maxConcurrent: number; env?: Record<string, string> }) {
    if (!Number.isInteger(options?.maxConcurrent) || options.maxConcurrent < 1)
      throw rangeError(`options.maxConcurrent: expected an integer >= 1, got ${options?.maxConcurrent}`);
    this.maxConcurrent = options.maxConcurrent;
    this.env = options.env;
  }

  private readonly env: Record<string, string> | undefined;

  /** Runs `job` with `scaffold`'s program; resolves with what the program reported. */
  async run(scaffold: ScaffoldName, job: AgentJob): Promise<AgentResult> {
    if (this.closed) throw typeError('AgentPool: closed');
    await this.slot();
    try {
      const program = this.program(scaffold);
      const id = this.nextId++;
      return await new Promise<AgentResult>((resolve, reject) => {
        program.running.set(id, { resolve, reject });
        program.child.stdin.write(JSON.stringify({ id, ...job }) + '\n');
      });
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }

  /** Starts the programs of `scaffolds` and waits until each answers (start-up kept out of task times). */
  async start(scaffolds: readonly ScaffoldName[]): Promise<void> {
    await Promise.all(scaffolds.map((name) => {
      const program = this.program(name);
      const id = this.nextId++;
      return new Promise<AgentResult>((resolve, reject) => {
        program.running.set(id, { resolve, reject });
        program.child.stdin.write(JSON.stringify({ id, ping: true }) + '\n');
      });
    }));
  }

  /** Ends every program (stdin closed: each finishes its jobs and exits), killing laggards after `graceMs`. */
  async close(graceMs = 5000): Promise<void> {
    this.closed = true;
    await Promise.all([...this.programs.values()].map((p) => new Promise<void>((resolve) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
      const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
      p.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      p.child.stdin.end();
    })));
    this.programs.clear();
  }

  private async slot(): Promise<void> {
    while (this.active >= this.maxConcurrent) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active++;
  }

  private program(scaffold: ScaffoldName): Program {
    const existing = this.programs.get(scaffold);
    if (existing && existing.child.exitCode === null && existing.child.signalCode === null) return existing;
    const file = join(PACKAGE_ROOT, scaffoldSpec(scaffold).program);
    const { command, args } = programCommand(file);
    const child = spawn(command, [...args, '--serve'], {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, ...this.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const program: Program = { child, running: new Map(), stderr: [] };
    createInterface({ input: child.stdout, crlfDelay: Infinity }).on('line', (line) => {
      let out: (AgentResult & { id?: number }) | undefined;
      try {
        out = JSON.parse(line);
      } catch {
        return; // not a result line (a program printing something else): ignored
      }
      const job = typeof out?.id === 'number' ? program.running.get(out.id) : undefined;
      if (!job) return;
      program.running.delete(out!.id!);
      const { id: _id, ...result } = out!;
      job.resolve({ answer: result.answer ?? null, toolCalls: result.toolCalls ?? 0, turns: result.turns ?? 0, ...(result.error ? { error: result.error } : {}) });
    });
    createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (line) => {
      program.stderr.push(line);
      if (program.stderr.length > 20) program.stderr.shift();
    });
    const failAll = (why: string) => {
      const error = new Error(`agent program ${scaffold} ${why}${program.stderr.length ? `: ${program.stderr.slice(-5).join(' | ')}` : ''}`);
      for (const job of program.running.values()) job.reject(error);
      program.running.clear();
    };
    child.on('exit', (code, signal) => failAll(`exited (${signal ?? `code ${code}`})`));
    child.on('error', (e) => failAll(`could not run: ${e.message}`));
    child.stdin.on('error', () => {}); // a dead program's pipe: reported by 'exit'
    this.programs.set(scaffold, program);
    return program;
  }
}
