// The demo's tasks, verifiers, scaffold conversations and noisy demonstrator, on fresh seeded tasks:
// task answers against an independent evaluation, the agents' own tool implementations against the
// task module's, what the demonstrator does under a clean and a noisy mix, the rendering of its
// demonstrations into samples (trainable = exactly the assistant replies), and the warm start's
// held-out probe.
import { describe, expect, it } from 'vitest';

// The agent programs' tools (plain JS, what the agents run).
import { calcTool as agentCalc, kvTool as agentKv } from '../agents/common.mjs';
import { DEFAULT_MIX, demonstrate, demoSamples, type DemonstratorMix } from '../lib/demo/demonstrator.js';
import { ScaffoldConversation, SCAFFOLDS, scaffoldSpec, scaffoldTask } from '../lib/demo/scaffolds.js';
import { calcTool, kvTool, makeTask, minimalToolCalls, toolResult, verify, type KvTask } from '../lib/demo/tasks.js';
import { copyProbe } from '../lib/demo/warmStart.js';
import { seededRandom } from '../lib/engine/sampler.js';
import { nanoChatTemplate } from '../lib/model/chatTemplate.js';
import { decode } from '../lib/model/tokenizer.js';
import { seededRun } from './helpers/random.js';

const { seed, rng, why } = seededRun();
const CLEAN: DemonstratorMix = { good: 1, guess: 0, malformed: 0, wasted: 0, sloppy: 0 };

describe('tasks', () => {
  it('calc: two-digit operands and result; the answer is the expression evaluated independently', () => {
    for (let i = 0; i < 300; i++) {
      const t = makeTask('calc', seed % 100000, i);
      if (t.family !== 'calc') throw new Error('family');
      const m = /^(\d\d)([+-])(\d\d)$/.exec(t.expression);
      expect(m, why(t.expression)).not.toBeNull();
      const value = m![2] === '+' ? Number(m![1]) + Number(m![3]) : Number(m![1]) - Number(m![3]);
      expect(t.answer).toBe(String(value));
      expect(value, why(t.expression)).toBeGreaterThanOrEqual(10);
      expect(value).toBeLessThanOrEqual(99);
      expect(t.prompt).toBe(`What is ${t.expression}?`);
    }
  });

  it('kv: following the references from the start reaches the answer in exactly `path` hops', () => {
    for (let i = 0; i < 300; i++) {
      const t = makeTask('kv', seed % 100000, i, { maxHops: 3 }) as KvTask;
      let key = t.start, hops = 0, value: string;
      for (;;) {
        value = t.store[key];
        hops++;
        if (!value.startsWith('@')) break;
        key = value.slice(1);
      }
      expect(value, why(JSON.stringify(t.store))).toBe(t.answer);
      expect(hops).toBe(t.path.length);
      expect(hops).toBeGreaterThanOrEqual(1);
      expect(hops).toBeLessThanOrEqual(3);
      expect(t.answer).toMatch(/^\d\d$/);
    }
  });

  it('the same (seed, index) gives the same task; other indices and streams give other tasks', () => {
    const a = makeTask('kv', 7, 3), b = makeTask('kv', 7, 3), c = makeTask('kv', 7, 4);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
    const train = scaffoldTask('kv-lookup', 'train', seed, 0), evalTask = scaffoldTask('kv-lookup', 'eval', seed, 0);
    expect(train.id).not.toBe(evalTask.id);
    expect({ ...train, id: '' }).not.toEqual({ ...evalTask, id: '' });
    expect(() => makeTask('nope' as never, 1, 1)).toThrow(/family/);
  });

  it("the agents' tools (agents/common.mjs) agree with lib/demo/tasks.ts on random inputs", () => {
    const rand = rng();
    const pieces = ['', ' ', '-', '+', '*', 'x', '12', '7', '999999', '1234567', '0'];
    for (let i = 0; i < 500; i++) {
      const expr = Array.from({ length: Math.floor(rand() * 5) }, () => pieces[Math.floor(rand() * pieces.length)]).join('');
      expect(agentCalc(expr), why(JSON.stringify(expr))).toBe(calcTool(expr));
    }
    for (const bad of [undefined, null, 12, {}]) expect(agentCalc(bad)).toBe(calcTool(bad));
    const t = makeTask('kv', seed % 100000, 1, { maxHops: 3 }) as KvTask;
    for (const key of [...Object.keys(t.store), 'zz', '', 'constructor', '__proto__', 7]) expect(agentKv(t.store, key)).toBe(kvTool(t.store, key));
    expect(calcTool('40 + 28')).toBe('68');
    expect(calcTool('40*28')).toBe('error');
    expect(kvTool(t.store, 'toString')).toBe('none');
  });

  it('verify: exact answer after trimming; wasted calls beyond the minimum', () => {
    const t = makeTask('calc', 3, 3);
    expect(verify(t, { answer: ` ${t.answer}\n`, toolCalls: 1, turns: 2 })).toMatchObject({ reward: 1, correct: true, wastedCalls: 0 });
    expect(verify(t, { answer: `${t.answer}0`, toolCalls: 3, turns: 4 })).toMatchObject({ reward: 0, correct: false, wastedCalls: 2 });
    expect(verify(t, { answer: null, toolCalls: 0, turns: 4 })).toMatchObject({ reward: 0, got: null });
    const kv = makeTask('kv', 3, 3, { maxHops: 3 }) as KvTask;
    expect(minimalToolCalls(kv)).toBe(kv.path.length);
    expect(toolResult(kv, 'calc', { k: kv.start })).toBe('error');
  });
});

describe('scaffold conversations', () => {
  it('last-exchange keeps the task and the latest call; summarize restates the task after a reference', () => {
    const task = makeTask('kv', 11, 0, { maxHops: 3 }) as KvTask;
    const call = (k: string, id: string) => ({ role: 'assistant' as const, content: null, tool_calls: [{ id, type: 'function' as const, function: { name: 'get', arguments: JSON.stringify({ k }) } }] });
    const trunc = new ScaffoldConversation(scaffoldSpec('context-truncating'), task);
    trunc.observe(call('a1', 'c0'), ['@b2']);
    trunc.observe(call('b2', 'c1'), ['42']);
    expect(trunc.messages().map((m) => m.role)).toEqual(['user', 'assistant', 'tool']);
    expect(trunc.messages()[2]).toMatchObject({ role: 'tool', content: '42', tool_call_id: 'c1' });
    expect(trunc.pendingStep?.kind).toBe('truncate');
    const summ = new ScaffoldConversation(scaffoldSpec('sdk-agent'), task);
    summ.observe(call('a1', 'c0'), ['@b2']);
    expect(summ.messages()).toEqual([{ role: 'user', content: 'Get the value of b2.' }]);
    expect(summ.pendingStep).toEqual({ kind: 'summarize', detail: `${task.prompt} -> Get the value of b2.` });
    const full = new ScaffoldConversation(scaffoldSpec('kv-lookup'), task);
    full.observe(call('a1', 'c0'), ['@b2']);
    full.observe(call('b2', 'c1'), ['42']);
    expect(full.messages()).toHaveLength(5);
    expect(() => new ScaffoldConversation(scaffoldSpec('react-calculator'), task)).toThrow(/calc tasks/);
  });
});

describe('demonstrator', () => {
  it('a clean mix solves every task with the fewest tool calls', () => {
    const rand = seededRandom(seed);
    for (const name of SCAFFOLDS) {
      for (let i = 0; i < 40; i++) {
        const task = scaffoldTask(name, 'warm', seed % 1000, i);
        const d = demonstrate(scaffoldSpec(name), task, rand, CLEAN);
        const v = verify(task, { answer: d.answer, toolCalls: d.toolCalls, turns: d.calls.length });
        expect(v.correct, why(`${name} ${task.id}`)).toBe(true);
        expect(d.toolCalls).toBe(minimalToolCalls(task));
        expect(d.calls).toHaveLength(minimalToolCalls(task) + 1);
      }
    }
  });

  it('the default noisy mix fails part of the time and wastes calls; every written key or expression is right', () => {
    const rand = seededRandom(seed + 1);
    for (const name of SCAFFOLDS) {
      const spec = scaffoldSpec(name);
      let solved = 0, wasted = 0, malformed = 0, n = 400;
      for (let i = 0; i < n; i++) {
        const task = scaffoldTask(name, 'warm', seed % 1000, i);
        const d = demonstrate(spec, task, rand, DEFAULT_MIX);
        const v = verify(task, { answer: d.answer, toolCalls: d.toolCalls, turns: d.calls.length });
        solved += v.reward;
        wasted += v.wastedCalls;
        expect(d.calls.length).toBeLessThanOrEqual(spec.maxTurns);
        for (const c of d.calls) {
          for (const tc of c.reply.tool_calls ?? []) {
            const text = tc.function.arguments as string;
            let args: Record<string, unknown>;
            try {
              args = JSON.parse(text);
            } catch {
              malformed++;
              continue;
            }
            const value = String(Object.values(args)[0]);
            const right = task.family === 'calc' ? [task.expression] : task.path;
            expect(right, why(`${name}: ${text}`)).toContain(value);
          }
        }
      }
      // The mix's own arithmetic puts every scaffold between a quarter and three quarters solved.
      expect(solved / n, why(`${name} solved ${solved}/${n}`)).toBeGreaterThan(0.25);
      expect(solved / n, why(`${name} solved ${solved}/${n}`)).toBeLessThan(0.75);
      expect(wasted / n, why(`${name} wasted`)).toBeGreaterThan(0.1);
      expect(malformed / n, why(`${name} malformed`)).toBeGreaterThan(0.1);
    }
  });

  it('samples: prompt rendered with the generation prompt, the reply after it is exactly the trainable part', () => {
    const rand = seededRandom(seed + 2);
    for (const name of SCAFFOLDS) {
      const task = scaffoldTask(name, 'warm', seed % 1000, 5);
      const d = demonstrate(scaffoldSpec(name), task, rand, DEFAULT_MIX);
      const samples = demoSamples(d);
      expect(samples).toHaveLength(d.calls.length);
      samples.forEach((s, k) => {
        const prompt = nanoChatTemplate.render(d.calls[k].messages, d.calls[k].tools, { addGenerationPrompt: true });
        const first = s.trainable!.indexOf(1);
        expect(first).toBe(prompt.length);
        expect(Array.from(s.tokens.subarray(0, first))).toEqual(Array.from(prompt));
        expect(s.trainable!.subarray(first).every((x) => x === 1)).toBe(true);
        const reply = Array.from(s.tokens.subarray(first));
        expect(reply).toEqual(Array.from(nanoChatTemplate.assistantIds(d.calls[k].reply)));
        expect(decode(reply)).toMatch(/<\|end\|>$/);
      });
    }
  });

  it("the warm start's probe skips exactly the first token of each reply", () => {
    const probe = copyProbe(['react-calculator', 'kv-lookup'], seed % 1000, 3);
    const t = probe.tree.terms;
    const firstOf = new Map<number, number>();
    for (let j = 0; j < probe.tree.numTerms; j++) {
      const s = t.sample[j];
      firstOf.set(s, Math.min(firstOf.get(s) ?? Infinity, t.position[j]));
    }
    for (let j = 0; j < probe.tree.numTerms; j++) expect(probe.skip[j]).toBe(t.position[j] === firstOf.get(t.sample[j]) ? 1 : 0);
    expect(new Set(probe.scaffoldOf)).toEqual(new Set([0, 1]));
  });
});
