// The demo's synthetic task families: small enough that a nano policy learns them on a CPU in
// minutes, impossible to solve without the tool (so using it well is what the policy must learn).
//
//   calc: "What is 47+38?"      tool calc({"e": "47+38"}) -> "85"; the answer is "85".
//   kv:   "Get the value of c4." tool get({"k": "c4"}) -> "@a7" (a reference: look that key up next)
//         ... -> "61"; the answer is the first value that is not a reference.
//
// The tools run inside the agent programs (agents/tools.mjs implements the same rules; a test
// checks they agree); `toolResult` here is what the demonstrator and the verifier need. Generation is
// seeded: the same (seed, index) gives the same task on every machine.
import { seededRandom, type Random } from '../engine/sampler.js';
import type { ToolDefinition } from '../model/chatTemplate.js';
import { typeError } from '../errors.js';
import { expectInt } from '../validate.js';

export type TaskFamily = 'calc' | 'kv';
export const TASK_FAMILIES: readonly TaskFamily[] = Object.freeze(['calc', 'kv']);

export interface CalcTask {
  family: 'calc';
  id: string;
  /** The user message. */
  prompt: string;
  /** "a+b" or "a-b": two-digit operands, a two-digit result. */
  expression: string;
  answer: string;
}

export interface KvTask {
  family: 'kv';
  id: string;
  prompt: string;
  /** The key the prompt names. */
  start: string;
  /** The agent's key-value tool: values are two-digit numbers or references "@key". */
  store: Record<string, string>;
  /** The keys an efficient agent looks up, in order (start first). */
  path: string[];
  answer: string;
}

export type DemoTask = CalcTask | KvTask;

/** The tool each family offers; kept tiny because the template renders it into every prompt. */
export const TOOLS: Readonly<Record<TaskFamily, ToolDefinition>> = Object.freeze({
  calc: { type: 'function', function: { name: 'calc', parameters: { type: 'object', properties: { e: { type: 'string' } } } } },
  kv: { type: 'function', function: { name: 'get', parameters: { type: 'object', properties: { k: { type: 'string' } } } } },
});

/** The name of the family's tool and of its one string argument. */
export const TOOL_ARG: Readonly<Record<TaskFamily, { name: string; arg: string }>> = Object.freeze({
  calc: { name: 'calc', arg: 'e' },
  kv: { name: 'get', arg: 'k' },
});

/** What the tools answer when the input is not usable. */
export const TOOL_ERROR = 'error';
export const KV_MISSING = 'none';

const KEY_LETTERS = 'abcdefgh';
const int = (rand: Random, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));

/** A random key "c4": one of 8 letters and a digit 1..9. */
export function randomKey(rand: Random): string {
  return `${KEY_LETTERS[int(rand, 0, KEY_LETTERS.length - 1)]}${int(rand, 1, 9)}`;
}

export interface TaskOptions {
  /** kv: hops at most (references followed + 1), >= 1. Default 2. */
  maxHops?: number;
}

/** One task of `family`, fully determined by (seed, index). */
export function makeTask(family: TaskFamily, seed: number, index: number, options: TaskOptions = {}): DemoTask {
  expectInt('seed', seed, 0, 2 ** 32 - 1);
  expectInt('index', index, 0, 2 ** 20);
  // One generator per task: tasks do not depend on which others were drawn before them.
  const rand = seededRandom(seed * 2 ** 20 + index);
  const id = `${family}-${seed}-${index}`;
  if (family === 'calc') {
    // Two-digit operands and a two-digit result: every answer has the same length, so the answer's
    // digits sit at a fixed distance from the tool result they are copied from.
    const op = rand() < 0.5 ? '+' : '-';
    const c = int(rand, 20, 99), a = op === '+' ? int(rand, 10, c - 10) : c, b = op === '+' ? c - a : int(rand, 10, c - 10);
    const expression = `${a}${op}${b}`;
    return { family, id, prompt: `What is ${expression}?`, expression, answer: String(op === '+' ? a + b : a - b) };
  }
  if (family === 'kv') {
    const maxHops = expectInt('options.maxHops', options.maxHops ?? 2, 1, 8);
    const hops = int(rand, 1, maxHops);
    const path: string[] = [];
    while (path.length < hops) {
      const k = randomKey(rand);
      if (!path.includes(k)) path.push(k);
    }
    const store: Record<string, string> = {};
    path.forEach((k, i) => (store[k] = i + 1 < hops ? `@${path[i + 1]}` : String(int(rand, 10, 99))));
    // Distractors: keys that hold values too, so a wrong lookup can return a plausible number.
    for (let d = 0; d < 3; d++) {
      const k = randomKey(rand);
      if (!(k in store)) store[k] = String(int(rand, 10, 99));
    }
    const start = path[0];
    return { family, id, prompt: `Get the value of ${start}.`, start, store, path, answer: store[path[hops - 1]] };
  }
  throw typeError(`family: expected one of ${TASK_FAMILIES.join(', ')}, got ${JSON.stringify(family)}`);
}

/** Evaluates "a+b" / "a-b" (integers); anything else is TOOL_ERROR. */
export function calcTool(expression: unknown): string {
  if (typeof expression !== 'string') return TOOL_ERROR;
  const m = /^\s*(-?\d{1,6})\s*([+-])\s*(-?\d{1,6})\s*$/.exec(expression);
  if (!m) return TOOL_ERROR;
  const a = Number(m[1]), b = Number(m[3]);
  return String(m[2] === '+' ? a + b : a - b);
}

/** The store's value of `key`, KV_MISSING when absent. */
export function kvTool(store: Readonly<Record<string, string>>, key: unknown): string {
  if (typeof key !== 'string') return TOOL_ERROR;
  return Object.prototype.hasOwnProperty.call(store, key) ? store[key] : KV_MISSING;
}

/** What the task's tool returns for a call with these parsed arguments (a wrong tool name: TOOL_ERROR). */
export function toolResult(task: DemoTask, name: string, args: Record<string, unknown>): string {
  const spec = TOOL_ARG[task.family];
  if (name !== spec.name) return TOOL_ERROR;
  return task.family === 'calc' ? calcTool(args[spec.arg]) : kvTool(task.store, args[spec.arg]);
}

/** What the agent reported at the end of a run (agents print it as one JSON line). */
export interface AgentResult {
  /** The final answer text; null when the agent gave up (turn limit, error). */
  answer: string | null;
  /** Tool calls the agent executed. */
  toolCalls: number;
  /** Model calls the agent made. */
  turns: number;
  error?: string;
}

export interface Verdict {
  /** r_perf: 1 for the right answer, else 0. */
  reward: number;
  correct: boolean;
  expected: string;
  got: string | null;
  /** Tool calls beyond the efficient number (the task's path length; 1 for calc). */
  wastedCalls: number;
}

/** The fewest tool calls that solve the task. */
export function minimalToolCalls(task: DemoTask): number {
  return task.family === 'calc' ? 1 : task.path.length;
}

/** Scores an agent's result: the answer must equal the expected text (surrounding spaces ignored). */
export function verify(task: DemoTask, result: AgentResult): Verdict {
  const got = typeof result.answer === 'string' ? result.answer.trim() : null;
  const correct = got === task.answer;
  return {
    reward: correct ? 1 : 0,
    correct,
    expected: task.answer,
    got,
    wastedCalls: Math.max(0, result.toolCalls - minimalToolCalls(task)),
  };
}

/** What an agent program is given: the prompt, and the store its key-value tool reads. */
export function agentTask(task: DemoTask): Record<string, unknown> {
  return task.family === 'kv' ? { prompt: task.prompt, store: task.store } : { prompt: task.prompt };
}
