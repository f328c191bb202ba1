// The demo's agent scaffolds as specifications: which task family each works on and how it builds
// the messages of its next model call from what happened so far. The agent programs in agents/
// implement these rules on their own (they are black boxes that only speak HTTP); the demonstrator
// and the in-process rollouts use this file, and a test checks that an agent program's recorded
// prompts equal the ones this file predicts, token for token.
//
//   react-calculator    calc tasks; the whole history every call (each call continues the last).
//   kv-lookup           kv tasks (1-2 hops); the whole history.
//   context-truncating  kv tasks (1-3 hops); keeps the task and only the latest call + tool result,
//                       so its later calls fork (unannounced: the gateway sees a plain fork).
//   sdk-agent           kv tasks (1-3 hops), written with forge-rl's SDK: after a reference it
//                       summarises the history into a fresh question about the referenced key and
//                       registers that step with the gateway before the next call.
import { typeError } from '../errors.js';
import type { AssistantMessage, ChatMessage, ToolDefinition } from '../model/chatTemplate.js';
import { TOOLS, TOOL_ARG, makeTask, type DemoTask, type TaskFamily, type TaskOptions } from './tasks.js';

export type ScaffoldName = 'react-calculator' | 'kv-lookup' | 'context-truncating' | 'sdk-agent';
export const SCAFFOLDS: readonly ScaffoldName[] = Object.freeze(['react-calculator', 'kv-lookup', 'context-truncating', 'sdk-agent']);

export type ContextPolicy = 'full' | 'last-exchange' | 'summarize';

export interface ScaffoldSpec {
  name: ScaffoldName;
  family: TaskFamily;
  taskOptions: TaskOptions;
  context: ContextPolicy;
  /** Model calls at most; the agent gives up (answer null) after that. */
  maxTurns: number;
  /** max_tokens of every call. */
  maxTokens: number;
  /** The program, relative to the package root. */
  program: string;
}

const SPECS: Readonly<Record<ScaffoldName, ScaffoldSpec>> = Object.freeze({
  'react-calculator': { name: 'react-calculator', family: 'calc', taskOptions: {}, context: 'full', maxTurns: 4, maxTokens: 32, program: 'agents/react-calculator.mjs' },
  'kv-lookup': { name: 'kv-lookup', family: 'kv', taskOptions: { maxHops: 2 }, context: 'full', maxTurns: 5, maxTokens: 32, program: 'agents/kv-lookup.mjs' },
  'context-truncating': { name: 'context-truncating', family: 'kv', taskOptions: { maxHops: 3 }, context: 'last-exchange', maxTurns: 6, maxTokens: 32, program: 'agents/context-truncating.mjs' },
  'sdk-agent': { name: 'sdk-agent', family: 'kv', taskOptions: { maxHops: 3 }, context: 'summarize', maxTurns: 6, maxTokens: 32, program: 'agents/sdk-agent.ts' },
});

export function scaffoldSpec(name: ScaffoldName): ScaffoldSpec {
  const spec = SPECS[name];
  if (!spec) throw typeError(`scaffold: expected one of ${SCAFFOLDS.join(', ')}, got ${JSON.stringify(name)}`);
  return spec;
}

/** Where a task is drawn for: warm-start demonstrations, the warm start's held-out probe, RL, evaluation. */
export type TaskStream = 'warm' | 'probe' | 'train' | 'eval';
const STREAMS: readonly TaskStream[] = ['warm', 'probe', 'train', 'eval'];

/**
 * Task `index` of `stream` for scaffold `name`: each (scaffold, stream) pair draws from its own
 * seed, so evaluation tasks never coincide with training ones, and its id names all four.
 */
export function scaffoldTask(name: ScaffoldName, stream: TaskStream, seed: number, index: number): DemoTask {
  const spec = scaffoldSpec(name);
  const s = STREAMS.indexOf(stream), k = SCAFFOLDS.indexOf(name);
  if (s < 0) throw typeError(`stream: expected one of ${STREAMS.join(', ')}, got ${JSON.stringify(stream)}`);
  const streamSeed = ((seed % 2 ** 26) * 16 + s * 4 + k) % 2 ** 32;
  return { ...makeTask(spec.family, streamSeed, index, spec.taskOptions), id: `${name}/${stream}/${seed}/${index}` };
}

/** The question a kv agent asks about `key` (the summarize policy restates the task with it). */
export const kvQuestion = (key: string) => `Get the value of ${key}.`;

/** One tool call and its result, as the agent saw them. */
export interface Exchange {
  call: AssistantMessage;
  results: { id: string; content: string }[];
}

/** A context-management step the agent took before a call (the SDK agent announces these). */
export interface ContextStep {
  kind: 'truncate' | 'summarize';
  detail: string;
}

/**
 * One agent run's conversation under a scaffold's context policy. Every scaffold ends at the first
 * reply with text and no tool call (its text is the answer), and asks again, with the same messages,
 * after a reply with neither (e.g. only a malformed tool call), until maxTurns calls are made. `next()` gives the messages of the
 * next call; `observe()` takes the model's reply and the executed tool results.
 */
export class ScaffoldConversation {
  readonly tools: ToolDefinition[];
  private readonly exchanges: Exchange[] = [];
  private question: string;
  /** Set by observe() when the last step changed the context (summarize / truncate). */
  pendingStep: ContextStep | undefined;

  constructor(readonly spec: ScaffoldSpec, readonly task: DemoTask) {
    if (spec.family !== task.family) throw typeError(`task: scaffold ${spec.name} runs ${spec.family} tasks, got a ${task.family} task`);
    this.tools = [TOOLS[spec.family]];
    this.question = task.prompt;
  }

  /** The messages of the next model call. */
  messages(): ChatMessage[] {
    const out: ChatMessage[] = [{ role: 'user', content: this.question }];
    // 'summarize' drops the exchanges at each summary (observe), so what is left is all since the last one.
    const kept = this.spec.context === 'last-exchange' ? this.exchanges.slice(-1) : this.exchanges;
    for (const ex of kept) {
      out.push(ex.call);
      for (const r of ex.results) out.push({ role: 'tool', tool_call_id: r.id, content: r.content });
    }
    return out;
  }

  /** Records a reply that made tool calls, with their results (same order as reply.tool_calls). */
  observe(reply: AssistantMessage, results: string[]): void {
    const calls = reply.tool_calls ?? [];
    if (calls.length !== results.length) throw typeError(`results: expected ${calls.length} tool results, got ${results.length}`);
    const ex: Exchange = { call: reply, results: calls.map((c, i) => ({ id: c.id ?? `call_${i}`, content: results[i] })) };
    this.pendingStep = undefined;
    if (this.spec.context === 'summarize') {
      // A reference "@key" is progress: the context becomes the question about the referenced key.
      const ref = results.find((r) => r.startsWith('@'));
      if (ref !== undefined) {
        const key = ref.slice(1);
        this.pendingStep = { kind: 'summarize', detail: `${this.question} -> ${kvQuestion(key)}` };
        this.question = kvQuestion(key);
        this.exchanges.length = 0;
        return;
      }
    } else if (this.spec.context === 'last-exchange' && this.exchanges.length > 0) {
      this.pendingStep = { kind: 'truncate', detail: `dropped ${this.exchanges.length} earlier exchange(s)` };
    }
    this.exchanges.push(ex);
  }
}

/** The argument object of the family's tool. */
export function toolArgs(family: TaskFamily, value: string): Record<string, string> {
  return { [TOOL_ARG[family].arg]: value };
}
