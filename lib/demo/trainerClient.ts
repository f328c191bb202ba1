// The main process's handle on the trainer (trainerWorker.ts): requests as promises, weights as
// buffers. The trainer runs in a child process by default ('process': IPC with the structured-clone
// serialisation, so typed arrays cross as such) or in a worker thread ('thread': see the note in
// trainerWorker.ts). Run from TypeScript sources (tsx, vitest) it is started through tsx's loader;
// from the compiled package (dist/), directly.
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { NanoPolicyConfig } from '../model/policy.js';
import type { TrainStepResult } from '../model/trainer.js';
import type { PrefixTree } from '../prefixTree.js';
import type { TrainerReply, TrainerRequest } from './trainerWorker.js';
import type { WarmStartOptions, WarmStartResult } from './warmStart.js';

/** A request without its id (distributes over the union). */
type Request = TrainerRequest extends infer T ? (T extends unknown ? Omit<T, 'id'> : never) : never;

type Pending = { resolve: (r: TrainerReply) => void; reject: (e: Error) => void; onProgress?: (r: TrainerReply) => void };

const ENTRY = new URL(import.meta.url.endsWith('.ts') ? './trainerWorker.ts' : './trainerWorker.js', import.meta.url);
const FROM_SOURCE = ENTRY.pathname.endsWith('.ts');
const require = createRequire(import.meta.url);

function startThread(): Worker {
  if (!FROM_SOURCE) return new Worker(ENTRY);
  // tsx's ESM API registers its loader inside the worker before the entry is imported.
  const api = pathToFileURL(require.resolve('tsx/package.json').replace(/package\.json$/, 'dist/esm/api/index.mjs')).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(ENTRY.href)}); })`;
  return new Worker(code, { eval: true });
}

function startProcess(): ChildProcess {
  const execArgv = FROM_SOURCE ? ['--import', pathToFileURL(require.resolve('tsx')).href] : [];
  return fork(fileURLToPath(ENTRY), [], { execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

export interface WarmProgress {
  step: number;
  loss: number;
  accuracy?: number;
  phase: 'clean' | 'noisy';
}

export class TrainerClient {
  readonly mode: 'process' | 'thread';
  private readonly worker: Worker | undefined;
  private readonly child: ChildProcess | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failure: Error | undefined;

  constructor(options: { mode?: 'process' | 'thread' } = {}) {
    this.mode = options.mode ?? 'process';
    if (this.mode === 'thread') this.worker = startThread();
    else this.child = startProcess();
    const channel = (this.worker ?? this.child)!;
    channel.on('message', (reply: TrainerReply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      if (reply.type === 'warm-progress') return p.onProgress?.(reply);
      this.pending.delete(reply.id);
      if (reply.type === 'error') p.reject(new Error(`trainer: ${reply.message}`));
      else p.resolve(reply);
    });
    const fail = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    channel.on('error', (e: Error) => fail(new Error(`trainer ${this.mode} failed: ${e.message}`)));
    channel.on('exit', (code: number | null) => fail(new Error(`trainer ${this.mode} exited (code ${code})`)));
  }

  private request(msg: Request, transfer: ArrayBuffer[] = [], onProgress?: (r: TrainerReply) => void): Promise<TrainerReply> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<TrainerReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      if (this.worker) this.worker.postMessage({ ...msg, id }, transfer);
      else this.child!.send({ ...msg, id });
    });
  }

  /** The supervised warm start; `deadline` (ms since the epoch) ends it early. */
  async warmStart(
    options: Omit<WarmStartOptions, 'onStep' | 'onCheck' | 'shouldStop'> & { deadline?: number; stepEvery?: number },
    onProgress?: (p: WarmProgress) => void,
  ): Promise<WarmStartResult> {
    const reply = await this.request({ type: 'warm-start', options }, [], (r) => {
      if (r.type === 'warm-progress') onProgress?.({ step: r.step, loss: r.loss, accuracy: r.accuracy, phase: r.phase });
    });
    if (reply.type !== 'warmed') throw new Error(`trainer: unexpected reply ${reply.type}`);
    return { ...reply.result, params: new Float32Array(reply.params) };
  }

  /** Starts the RL trainer from `params` (copied) at `version`. */
  async initRl(o: { config: Partial<NanoPolicyConfig>; params: Float32Array; version: number; lr: number; epsHigh: number }): Promise<void> {
    const copy = o.params.slice();
    await this.request({ type: 'rl-init', config: o.config, params: copy.buffer, version: o.version, lr: o.lr, epsHigh: o.epsHigh }, [copy.buffer]);
  }

  /** One CISPO step on prefix-tree parts sharing `normalizer`; the new weights come back. */
  async step(batch: { parts: PrefixTree[]; normalizer: number }): Promise<{ result: TrainStepResult; params: Float32Array }> {
    // The trees are plain data: structured clone copies them (their prototype methods are not needed).
    const parts = batch.parts.map((p) => ({ ...p }));
    const reply = await this.request({ type: 'step', batch: { parts, normalizer: batch.normalizer } });
    if (reply.type !== 'stepped') throw new Error(`trainer: unexpected reply ${reply.type}`);
    return { result: reply.result, params: new Float32Array(reply.params) };
  }

  async save(path: string): Promise<void> {
    await this.request({ type: 'save', path });
  }

  async close(): Promise<void> {
    if (this.worker) {
      this.worker.removeAllListeners('exit');
      await this.worker.terminate();
      return;
    }
    const child = this.child!;
    child.removeAllListeners('exit');
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.disconnect(); // the trainer exits when its IPC channel closes
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    });
  }
}
