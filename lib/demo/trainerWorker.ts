// The trainer's own process (or worker thread): it owns the policy's weights and optimizer, so the
// gateway and the engine in the main process keep serving while a step computes. Messages in:
//   { type: 'warm-start', options }   supervised warm start (warmStart.ts); progress messages, then
//                                     'warmed' with the weights; the RL trainer starts from them
//   { type: 'rl-init', config, params, version, lr, epsHigh }   an RL trainer from given weights
//   { type: 'step', batch: { parts, normalizer } }   one CISPO step; 'stepped' with the new weights
//   { type: 'save', path }            a checkpoint of the RL trainer
// Every reply carries the request's `id`; weights travel as ArrayBuffers (a copy of the trainer's,
// transferred to a thread, serialised to a process). A failure answers { type: 'error', message }.
//
// A child process is the default (trainerClient.ts): forge.node keeps a process-wide reference to its
// KvPool class, which a second Node environment loading the addon (a worker thread) replaces, so the
// engine on the main thread cannot share a process with a trainer thread until the addon keeps it
// per environment.
import { parentPort } from 'node:worker_threads';
import type { PrefixTree } from '../prefixTree.js';
import { PolicyTrainer, type TrainStepResult } from '../model/trainer.js';
import type { NanoPolicyConfig } from '../model/policy.js';
import { warmStart, type WarmStartOptions, type WarmStartResult } from './warmStart.js';

export type TrainerRequest =
  | { id: number; type: 'warm-start'; options: Omit<WarmStartOptions, 'onStep' | 'onCheck' | 'shouldStop'> & { deadline?: number; stepEvery?: number } }
  | { id: number; type: 'rl-init'; config: Partial<NanoPolicyConfig>; params: ArrayBuffer; version: number; lr: number; epsHigh: number }
  | { id: number; type: 'step'; batch: { parts: PrefixTree[]; normalizer: number } }
  | { id: number; type: 'save'; path: string };

export type TrainerReply =
  | { id: number; type: 'warm-progress'; step: number; loss: number; accuracy?: number; phase: 'clean' | 'noisy' }
  | { id: number; type: 'warmed'; result: Omit<WarmStartResult, 'params'>; params: ArrayBuffer }
  | { id: number; type: 'ready'; numParams: number }
  | { id: number; type: 'stepped'; result: TrainStepResult; params: ArrayBuffer }
  | { id: number; type: 'saved' }
  | { id: number; type: 'error'; message: string };

let trainer: PolicyTrainer | undefined;

/** The channel to the parent: a worker thread's port, or a child process's IPC. */
type Port = { postMessage(m: unknown): void; on(event: 'message', f: (m: TrainerRequest) => void): unknown };
const port: Port | null = parentPort ?? (process.send
  ? { postMessage: (m) => process.send!(m), on: (_event, f) => process.on('message', (m) => f(m as TrainerRequest)) }
  : null);
// A child process ends when the parent closes the channel (or dies).
if (!parentPort && process.send) process.on('disconnect', () => process.exit(0));
if (port === null) throw new Error('trainerWorker.ts runs as a child process or worker thread (see trainerClient.ts)');

function send(reply: TrainerReply, transfer: ArrayBuffer[] = []): void {
  if (parentPort) parentPort.postMessage(reply, transfer);
  else port!.postMessage(reply);
}

async function handle(msg: TrainerRequest): Promise<void> {
  switch (msg.type) {
    case 'warm-start': {
      const { deadline, stepEvery = 10, ...options } = msg.options;
      const result = await warmStart({
        ...options,
        onStep: (step, loss, phase) => {
          if (step % stepEvery === 0) send({ id: msg.id, type: 'warm-progress', step, loss, phase });
        },
        onCheck: (step, accuracy) => send({ id: msg.id, type: 'warm-progress', step, loss: NaN, accuracy, phase: 'clean' }),
        shouldStop: deadline === undefined ? undefined : () => Date.now() > deadline,
      });
      const { params, ...rest } = result;
      const copy = params.slice();
      send({ id: msg.id, type: 'warmed', result: rest, params: copy.buffer }, [copy.buffer]);
      return;
    }
    case 'rl-init': {
      trainer = new PolicyTrainer({
        config: msg.config, params: new Float32Array(msg.params), version: msg.version,
        optimizer: { lr: msg.lr }, loss: { mode: 'cispo', epsHigh: msg.epsHigh },
      });
      send({ id: msg.id, type: 'ready', numParams: trainer.policy.numParams });
      return;
    }
    case 'step': {
      if (!trainer) throw new Error('step: no trainer yet (send rl-init first)');
      const result = await trainer.step(msg.batch);
      const copy = trainer.params.slice();
      send({ id: msg.id, type: 'stepped', result, params: copy.buffer }, [copy.buffer]);
      return;
    }
    case 'save': {
      if (!trainer) throw new Error('save: no trainer yet');
      await trainer.save(msg.path);
      send({ id: msg.id, type: 'saved' });
      return;
    }
  }
}

// One request at a time, in order (the trainer refuses overlapping steps anyway).
let queue: Promise<void> = Promise.resolve();
port.on('message', (msg: TrainerRequest) => {
  if (msg === null || typeof msg !== 'object') return;
  queue = queue.then(() => handle(msg)).catch((e: unknown) => send({ id: msg.id, type: 'error', message: (e as Error)?.stack ?? String(e) }));
});
