// The demo's loop against an external OpenAI-compatible server: no warm start and no in-process
// training; each batch is exported as JSONL for an external trainer. The server is a FAKE vLLM
// (test/fakes/fakeVllmServer.ts: a real HTTP server speaking vLLM's protocol; it stands in for a GPU
// server) whose script plays a lookup policy that answers right or wrong at random. Checked: every
// exported line is token-exact with what the gateway stored in the pool (prompt and completion ids,
// logprobs, per-token versions), advantages are group-normalised (each group's first-call advantages
// sum to zero), and the run log, report and evaluations are written as in the embedded mode.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { runDemo } from '../lib/demo/run.js';
import type { AssistantMessage } from '../lib/model/chatTemplate.js';
import { decode } from '../lib/model/tokenizer.js';
import { SqliteStore } from '../lib/pool/sqliteStore.js';
import { eventsOf, readRunLog } from '../lib/report/runLog.js';
import { FakeVllmServer } from './fakes/fakeVllmServer.js';
import { makeRng, seededRun } from './helpers/random.js';

const { seed, why } = seededRun();
const rand = makeRng(seed);
const lookup = (k: string): AssistantMessage => ({ role: 'assistant', content: null, tool_calls: [{ function: { name: 'get', arguments: JSON.stringify({ k }) } }] });

/** Looks the asked key up, follows references, and answers the value — or a wrong one, a third of the time. */
function lookupPolicy(promptIds: Int32Array): AssistantMessage {
  const text = decode(promptIds);
  const result = /<\|tool\|>get\n([^<]*)<\|end\|><\|assistant\|>$/.exec(text);
  if (result && result[1].startsWith('@')) return lookup(result[1].slice(1));
  if (result) return { role: 'assistant', content: rand() < 0.34 ? '00' : result[1] };
  return lookup(/Get the value of (\w+)\./.exec(text)?.[1] ?? 'a1');
}

let fake: FakeVllmServer, url: string;
beforeAll(async () => {
  fake = new FakeVllmServer({ script: lookupPolicy, seed });
  url = await fake.start();
});
afterAll(async () => {
  await fake.close();
});

describe('the demo with an external upstream', () => {
  it('exports token-exact, group-normalised batches instead of training', async () => {
    const out = mkdtempSync(join(tmpdir(), 'forge-demo-external-'));
    const result = await runDemo(
      { seed: seed % 1000, minutes: 1, out, upstreamUrl: url, upstreamModel: fake.model, scaffolds: ['kv-lookup'], groupSize: 4, groupsPerStep: 2, capacity: 4, rlSteps: 3, evalTasks: 6, concurrency: 16 },
      { output: false },
    );
    expect(result.steps).toBe(3);
    const lines = readFileSync(join(out, 'batches.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.length).toBeGreaterThan(0);
    expect(new Set(lines.map((l) => l.step))).toEqual(new Set([1, 2, 3]));
    const pool = await SqliteStore.open(join(out, 'pool.sqlite'));
    try {
      const firstCallAdvantage = new Map<string, number>();
      for (const l of lines) {
        const calls = await pool.getCalls(l.session_id);
        const c = calls.find((x) => x.id === l.call_id)!;
        expect(c, why(l.call_id)).toBeDefined();
        expect(l.prompt_ids).toEqual(Array.from(c.promptIds));
        expect(l.completion_ids).toEqual(Array.from(c.completionIds));
        expect(l.logprobs).toEqual(Array.from(c.logprobs));
        expect(l.versions).toEqual(Array.from(c.versions));
        expect(l.versions.every((v: number) => v === 0)).toBe(true); // nobody pushed weights
        if (l.call_index === 0) firstCallAdvantage.set(l.group_id, (firstCallAdvantage.get(l.group_id) ?? 0) + l.advantage);
      }
      for (const [group, sum] of firstCallAdvantage) expect(Math.abs(sum), why(group)).toBeLessThan(1e-3);
    } finally {
      await pool.close();
    }
    const events = readRunLog(result.logPath).events;
    expect(eventsOf(events, 'eval').map((e) => e.phase)).toEqual(['eval-initial', 'eval-final']);
    expect(eventsOf(events, 'step')).toHaveLength(3);
    expect(eventsOf(events, 'phase').some((p) => p.name === 'warm-start')).toBe(false);
    expect(eventsOf(events, 'end')[0]).toMatchObject({ status: 'completed' });
    expect(eventsOf(events, 'end')[0].checkpoint).toBeUndefined();
    rmSync(out, { recursive: true, force: true });
  }, 90_000);
});
