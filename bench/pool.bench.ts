// Data-pool throughput: writing agent sessions (calls of ~2k prompt + 256 completion tokens, with
// logprobs and per-token versions, each call one durable write as the gateway would make it, the
// session closed at the end) into the SQLite store under its durability settings, against the
// in-memory store measured in the same run (the baseline: no storage at all); then reading them
// back (replay in completion order) and exporting them to JSONL.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

import { type Bench, type BenchSection, fmt, rng } from './harness.js';
import { exportJsonl } from '../lib/pool/export.js';
import { MemoryStore } from '../lib/pool/memoryStore.js';
import { SqliteStore, type SqliteStoreOptions } from '../lib/pool/sqliteStore.js';
import type { NewCall, PoolStore } from '../lib/pool/types.js';

const CALLS_PER_SESSION = 8;


/** One session's calls: an 800-token start (system prompt + task) growing by the completion and a
 * tool's output each turn; ~2.3k tokens per call on average. Each call continues the previous one. */
function sessionCalls(rand: () => number, s: number): NewCall[] {
  const tok = (n: number) => Int32Array.from({ length: n }, () => Math.floor(rand() * 151_936));
  let context = tok(800);
  const calls: NewCall[] = [];
  for (let k = 0; k < CALLS_PER_SESSION; k++) {
    const completionIds = tok(256);
    calls.push({
      id: `s${s}/c${k}`,
      parentId: k === 0 ? null : `s${s}/c${k - 1}`,
      promptIds: context,
      completionIds,
      logprobs: Float32Array.from(completionIds, () => -rand() * 4),
      versions: 3,
      timings: { queuedAt: 1, firstTokenAt: 2, doneAt: 3 },
      finishReason: 'tool_calls',
      toolCalls: [{ name: 'bash', arguments: { cmd: 'ls -la' } }],
      trainable: true,
      request: { model: 'policy', max_tokens: 1024 },
    });
    const tool = tok(100);
    const next = new Int32Array(context.length + completionIds.length + tool.length);
    next.set(context);
    next.set(completionIds, context.length);
    next.set(tool, context.length + completionIds.length);
    context = next;
  }
  return calls;
}

interface Config {
  name: string;
  open: (dir: string) => Promise<PoolStore>;
}

async function writeAll(store: PoolStore, sessions: NewCall[][]): Promise<number> {
  await store.addTask({ id: 't', spec: null });
  const t0 = performance.now();
  for (let s = 0; s < sessions.length; s++) {
    await store.openSession({ id: `s${s}`, taskId: 't', scaffold: 'bench' });
    for (const c of sessions[s]) await store.appendCall(`s${s}`, c);
    await store.closeSession(`s${s}`);
  }
  return performance.now() - t0;
}

export const bench: Bench = async ({ quick, log }) => {
  const rand = rng(5);
  const nSessions = quick ? 20 : 100;
  const sessions = Array.from({ length: nSessions }, (_, s) => sessionCalls(rand, s));
  const calls = nSessions * CALLS_PER_SESSION;
  let tokens = 0;
  for (const s of sessions) for (const c of s) tokens += c.promptIds.length + c.completionIds.length;
  const bytes = tokens * 4 + calls * 256 * 8;
  const dir = mkdtempSync(join(os.tmpdir(), 'forge-pool-bench-'));
  let files = 0;
  const sqlite = (o: SqliteStoreOptions) => async (d: string) => SqliteStore.open(join(d, `b${files++}.db`), o);
  const configs: Config[] = [
    { name: 'memory store (baseline)', open: async () => new MemoryStore() },
    { name: 'SQLite WAL, synchronous=NORMAL', open: sqlite({ synchronous: 'normal', syncOnClose: false }) },
    { name: 'SQLite WAL, NORMAL + fsync at close (default)', open: sqlite({}) },
    { name: 'SQLite WAL, synchronous=FULL', open: sqlite({ synchronous: 'full' }) },
  ];
  const repeats = quick ? 1 : 3;
  const writeRows: (string | number)[][] = [];
  const readRows: (string | number)[][] = [];
  let baseWrite = 0;
  let baseRead = 0;
  try {
    for (const cfg of configs) {
      const writes: number[] = [];
      const reads: number[] = [];
      const exports: number[] = [];
      for (let r = 0; r < repeats; r++) {
        const store = await cfg.open(dir);
        writes.push(await writeAll(store, sessions));
        let t0 = performance.now();
        let seen = 0;
        for await (const t of store.trajectories()) seen += t.calls.length;
        reads.push(performance.now() - t0);
        if (seen !== calls) throw new Error(`replay saw ${seen} calls, wrote ${calls}`);
        t0 = performance.now();
        await exportJsonl(store, join(dir, 'export.jsonl'));
        exports.push(performance.now() - t0);
        await store.close();
      }
      const med = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
      const w = med(writes);
      const rd = med(reads);
      const ex = med(exports);
      const callsPerS = calls / (w / 1000);
      const replayPerS = calls / (rd / 1000);
      if (!baseWrite) {
        baseWrite = callsPerS;
        baseRead = replayPerS;
      }
      log(`${cfg.name}: write ${fmt(callsPerS)} calls/s, replay ${fmt(replayPerS)} calls/s, export ${fmt(calls / (ex / 1000))} calls/s`);
      writeRows.push([cfg.name, fmt(callsPerS), fmt(nSessions / (w / 1000)), fmt(bytes / 2 ** 20 / (w / 1000)), fmt(callsPerS / baseWrite)]);
      readRows.push([cfg.name, fmt(replayPerS), fmt(tokens / (rd / 1000) / 1e6), fmt(replayPerS / baseRead), fmt(calls / (ex / 1000))]);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const sections: BenchSection[] = [
    {
      title: 'Data pool: write throughput',
      description: `${nSessions} sessions × ${CALLS_PER_SESSION} calls (~${Math.round(tokens / calls)} tokens per call: prompt + 256 completion tokens with logprobs and versions), one durable write per call as the gateway makes them, each session closed; median of ${repeats}; ratio against the in-memory store in the same run.`,
      columns: ['store', 'calls/s', 'sessions/s', 'payload MiB/s', 'vs memory'],
      rows: writeRows,
      notes: [
        'NORMAL survives a killed process (the SIGKILL test); fsync at close also makes every completed session survive a power cut, FULL every call.',
      ],
    },
    {
      title: 'Data pool: replay and export throughput',
      description: 'Reading the same sessions back in completion order (trajectories(): session, calls with their typed arrays, rewards), and exporting them to JSONL; ratio against the in-memory store.',
      columns: ['store', 'replay calls/s', 'replay Mtokens/s', 'vs memory', 'JSONL export calls/s'],
      rows: readRows,
    },
  ];
  return sections;
};
