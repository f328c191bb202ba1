// Agent-like sessions for the pool tests, and the child process of the SIGKILL test.
//
// sessionPlan(seed) deterministically generates one session's calls: a conversation whose calls
// extend each other (prompt = previous prompt + completion + tool output), sometimes forking from an
// earlier call after truncating its context, sometimes an untrainable call without token ids. The
// tests regenerate a plan from the seed kept in the session's metadata and compare it with what the
// store holds.
//
// Run as a script (node --import tsx test/helpers/pool-writer.ts <db> <prefix> <seed>), it opens the
// SQLite pool and writes sessions in a loop, printing "open <id>" before a session starts, "closed
// <id>" once closeSession resolved and "rewarded <id>" once addReward resolved, until it is killed.
import { pathToFileURL } from 'node:url';

import { makeRng, type Rng } from './random.js';
import type { NewCall } from '../../lib/pool/types.js';

const VOCAB = 50_000;

export interface PlannedCall {
  call: NewCall & { id: string; promptIds: number[]; completionIds: number[]; logprobs: number[]; versions: number[] };
  /** The plan's parent index (-1 at a root), for the test's own prefix reference. */
  parent: number;
}

export interface PlanOptions {
  maxCalls?: number;
  /** Longest system prompt / completion / tool output, in tokens. */
  maxTokens?: number;
}

const int = (rand: Rng, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const tokens = (rand: Rng, n: number) => Array.from({ length: n }, () => int(rand, 0, VOCAB - 1));

export function sessionPlan(seed: number, idPrefix: string, options: PlanOptions = {}): PlannedCall[] {
  const rand = makeRng(seed);
  const maxTokens = options.maxTokens ?? 300;
  const n = int(rand, 1, options.maxCalls ?? 6);
  const version = int(rand, 0, 5);
  const out: PlannedCall[] = [];
  const contexts: number[][] = []; // prompt + completion of each call
  let context = tokens(rand, int(rand, 1, maxTokens));
  let parent = -1;
  for (let k = 0; k < n; k++) {
    if (k > 0 && rand() < 0.25) {
      // Context management: fork from an earlier call, keeping a prefix of its context.
      parent = int(rand, 0, k - 1);
      const base = contexts[parent];
      context = [...base.slice(0, int(rand, 0, base.length)), ...tokens(rand, int(rand, 1, 50))];
    }
    const untrainable = rand() < 0.1;
    const completionIds = untrainable ? [] : tokens(rand, int(rand, 1, maxTokens));
    const promptIds = untrainable ? [] : context;
    const t0 = 1_700_000_000_000 + seed * 10 + k * 1000 + rand();
    out.push({
      parent,
      call: {
        id: `${idPrefix}/c${k}`,
        parentId: parent < 0 ? null : `${idPrefix}/c${parent}`,
        promptIds,
        completionIds,
        logprobs: completionIds.map(() => -rand() * 8),
        // Mostly one version per call; sometimes the weights changed mid-generation.
        versions: completionIds.map((_, i) => version + (k > 1 && i > completionIds.length / 2 ? 1 : 0)),
        timings: { queuedAt: t0, admittedAt: rand() < 0.5 ? t0 + 1 : null, firstTokenAt: rand() < 0.9 ? t0 + 5 : null, doneAt: t0 + 10 + rand() },
        finishReason: rand() < 0.5 ? 'stop' : 'tool_calls',
        toolCalls: rand() < 0.5 ? [{ name: 'bash', arguments: { cmd: `ls ${k}` } }] : null,
        toolParseFailed: rand() < 0.1,
        trainable: !untrainable,
        untrainableReason: untrainable ? 'upstream returned no token ids' : null,
        request: { model: 'nano', messages: [{ role: 'user', content: `turn ${k} «ü»` }] },
        response: { text: `answer ${k}` },
      },
    });
    contexts.push([...promptIds, ...completionIds]);
    // The next call continues this one: its context plus a tool's output.
    context = [...promptIds, ...completionIds, ...tokens(rand, int(rand, 1, 100))];
    parent = k;
  }
  return out;
}

async function main(): Promise<void> {
  const [dbPath, prefix, seedText] = process.argv.slice(2);
  const { SqliteStore } = await import('../../lib/pool/sqliteStore.js');
  const store = await SqliteStore.open(dbPath, { owner: `writer-${prefix}` });
  const rand = makeRng(Number(seedText));
  await store.addTask({ id: 'crash-task', spec: { prompt: 'write forever' } }).catch(() => {});
  const say = (line: string) => process.stdout.write(`${line}\n`); // synchronous on a pipe (Linux)
  say(`ready ${store.owner}`);
  for (let i = 0; ; i++) {
    const id = `${prefix}-${i}`;
    const seed = (Number(seedText) * 7919 + i) >>> 0;
    say(`open ${id}`);
    await store.openSession({ id, taskId: 'crash-task', scaffold: 'crash-writer', metadata: { seed } });
    const plan = sessionPlan(seed, id, { maxTokens: 2000 });
    for (const { call } of plan) await store.appendCall(id, call);
    if (rand() < 0.1) {
      await store.failSession(id, { reason: 'agent crashed' });
      say(`failed ${id}`);
      continue;
    }
    await store.closeSession(id, { expectedCalls: plan.length });
    say(`closed ${id}`);
    if (rand() < 0.5) {
      await store.addReward({ sessionId: id, outcome: seed % 2, process: [{ callId: plan[0].call.id, value: -0.5, source: 'gateway' }] });
      say(`rewarded ${id}`);
    }
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error) => {
    process.stderr.write(`${(error as Error).stack ?? error}\n`);
    process.exit(1);
  });
}
