// The agent programs (agents/*.mjs, agents/sdk-agent.ts) are black boxes that build their own
// prompts; the warm start trains on prompts the demonstrator builds from lib/demo/scaffolds.ts. This
// checks they are the same, token for token: each program is run (as the demo runs it, in serve
// mode through AgentPool, over loopback HTTP with the official `openai` client or the SDK) against a
// gateway whose model is a FAKE that replays a noisy demonstration's replies (malformed calls,
// repeats, guesses included), and every prompt the program sent must equal the demonstration's, its
// answer, tool calls and turns likewise. The SDK agent's summarize steps must also be announced.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { AgentPool } from '../lib/demo/agentPool.js';
import { DEFAULT_MIX, demonstrate, type Demonstration } from '../lib/demo/demonstrator.js';
import { SCAFFOLDS, scaffoldSpec, scaffoldTask } from '../lib/demo/scaffolds.js';
import { GatewayAdmin, runSession } from '../lib/demo/sessionRunner.js';
import { seededRandom } from '../lib/engine/sampler.js';
import { createGateway, EngineUpstream, ScriptedFakeGenerator, type Gateway } from '../lib/gateway/index.js';
import { nanoChatTemplate } from '../lib/model/chatTemplate.js';
import { decode, SpecialToken } from '../lib/model/tokenizer.js';
import { MemoryStore } from '../lib/pool/memoryStore.js';
import { seededRun } from './helpers/random.js';

const { seed, why } = seededRun();
const ADMIN = 'admin';

/** The demonstration the fake replays now, and where it is in it. */
let current: { demo: Demonstration; next: number; mismatches: string[] } | undefined;

let gw: Gateway, admin: GatewayAdmin, pool: MemoryStore, agents: AgentPool;

beforeAll(async () => {
  const fake = new ScriptedFakeGenerator((prompt) => {
    const c = current!;
    const call = c.demo.calls[c.next++];
    if (!call) {
      c.mismatches.push(`call ${c.next - 1}: the program made more calls than the demonstration`);
      return Int32Array.of(SpecialToken.END);
    }
    const want = nanoChatTemplate.render(call.messages, call.tools, { addGenerationPrompt: true });
    if (want.length !== prompt.length || want.some((t, i) => t !== prompt[i]))
      c.mismatches.push(`call ${c.next - 1}: the program sent\n${decode(prompt)}\nthe demonstration has\n${decode(want)}`);
    return call.reply;
  });
  pool = new MemoryStore();
  gw = createGateway({ upstream: new EngineUpstream({ generator: fake }), adminToken: ADMIN, pool });
  admin = new GatewayAdmin(await gw.listen(), ADMIN);
  agents = new AgentPool({ maxConcurrent: 1 });
  await agents.start(SCAFFOLDS);
}, 30_000);

afterAll(async () => {
  await agents.close();
  await gw.close();
});

describe('agent programs send the prompts the scaffold specs predict', () => {
  for (const name of SCAFFOLDS) {
    it(`${name}: prompts, answers, tool calls and turns match noisy demonstrations`, async () => {
      const rand = seededRandom(seed + SCAFFOLDS.indexOf(name));
      let malformed = 0, repeats = 0;
      for (let i = 0; i < 10; i++) {
        const task = scaffoldTask(name, 'warm', seed % 100000, i);
        const demo = demonstrate(scaffoldSpec(name), task, rand, DEFAULT_MIX);
        malformed += demo.behaviours.filter((b) => b === 'malformed').length;
        repeats += demo.behaviours.filter((b) => b === 'wasted').length;
        current = { demo, next: 0, mismatches: [] };
        const run = await runSession({ admin, pool, agents, scaffold: name, task });
        expect(current.mismatches, why(`${task.id}`)).toEqual([]);
        expect(current.next).toBe(demo.calls.length);
        expect(run.ok, run.error).toBe(true);
        expect(run.result.answer).toBe(demo.answer === null ? null : demo.answer.trim());
        expect(run.result.toolCalls).toBe(demo.toolCalls);
        expect(run.result.turns).toBe(demo.calls.length);
        expect(run.malformed).toBe(demo.behaviours.filter((b) => b === 'malformed').length);
        if (name === 'sdk-agent' || name === 'context-truncating') {
          const calls = await pool.getCalls(run.sessionId);
          for (const c of calls.filter((x) => x.relation === 'fork')) {
            const notes = (c.response as { notes: string[] }).notes.join(' ');
            // A fork is the scaffold's context management, or a retry of the same prompt after a malformed reply.
            const retry = c.promptIds.length === c.sharedTokens;
            expect(notes, why(`${task.id}`)).toMatch(retry ? /asked again/ : name === 'sdk-agent' ? /fork intended: context step summarize/ : /fork unannounced/);
          }
        }
      }
      // The demonstrations exercised the noise the warm start teaches (over all scaffolds, each run
      // draws some; a scaffold's 10 tasks may miss one kind).
      expect(malformed + repeats, why(name)).toBeGreaterThan(0);
    }, 60_000);
  }
});
