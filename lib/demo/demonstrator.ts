// The noisy scripted demonstrator of the warm start. It plays a scaffold's conversation on a task the
// way a sloppy agent would: at each decision it draws a behaviour — use the tool correctly, guess an
// answer without the tool, write a malformed tool call, or repeat a call it already made — so a
// policy that imitates it succeeds only part of the time and wastes calls. The RL phase must then take the
// policy beyond its demonstrator. Demonstrations are rendered with the nano chat template into
// token-exact samples whose trainable tokens are the assistant replies.
import type { Random } from '../engine/sampler.js';
import { nanoChatTemplate, type AssistantMessage, type ChatMessage, type ToolDefinition } from '../model/chatTemplate.js';
import type { Sample } from '../prefixTree.js';
import { typeError } from '../errors.js';
import { ScaffoldConversation, toolArgs, type ScaffoldSpec } from './scaffolds.js';
import { TOOL_ARG, toolResult, type DemoTask } from './tasks.js';

/**
 * Probabilities of the behaviours (normalised over those that apply at a decision; absent = 0).
 * When a tool call is needed: good (the right call), guess (answer a random number without the
 * tool) or malformed (the right call with arguments that are not JSON: the agent gets neither a tool
 * call nor an answer, and asks again). When the final result is in: good (answer it), wasted (repeat
 * the last call, at most twice) or sloppy (answer a
 * random number although the result is in). Every key or expression the demonstrator writes is the right one, so the
 * copying the policy learns is clean; the noise is in the decisions, which RL can sharpen.
 */
export interface DemonstratorMix {
  good: number;
  guess: number;
  malformed: number;
  wasted: number;
  sloppy: number;
}

/** The default mix: a warm-started nano policy lands near 30% success with many wasted calls. */
export const DEFAULT_MIX: Readonly<DemonstratorMix> = Object.freeze({ good: 0.55, guess: 0.1, malformed: 0.35, wasted: 0.35, sloppy: 0.15 });

/** One model call of a demonstration: the messages sent and the reply the demonstrator gave. */
export interface DemoCall {
  messages: ChatMessage[];
  tools: ToolDefinition[];
  reply: AssistantMessage;
}

export interface Demonstration {
  calls: DemoCall[];
  /** The final answer (null: ended without one, e.g. after a malformed call). */
  answer: string | null;
  /** Behaviours drawn, in order. */
  behaviours: Behaviour[];
  toolCalls: number;
}

export type Behaviour = keyof DemonstratorMix;
const CALL_STATE: Behaviour[] = ['good', 'guess', 'malformed'];
const ANSWER_STATE: Behaviour[] = ['good', 'wasted', 'sloppy'];
/** Repeats of a call at most (then the demonstrator answers). */
const MAX_REPEATS = 2;

function draw(rand: Random, mix: DemonstratorMix, options: Behaviour[]): Behaviour {
  const weights = options.map((b) => Math.max(0, mix[b] ?? 0));
  const total = weights.reduce((a, b) => a + b, 0);
  if (!(total > 0)) return 'good';
  let r = rand() * total;
  for (let i = 0; i < options.length; i++) if ((r -= weights[i]) < 0) return options[i];
  return 'good';
}

const twoDigits = (rand: Random) => String(10 + Math.floor(rand() * 90));

let callCounter = 0;
function toolCall(name: string, args: string): AssistantMessage {
  return { role: 'assistant', content: null, tool_calls: [{ id: `call_demo${callCounter++}`, type: 'function', function: { name, arguments: args } }] };
}

/** Plays one demonstration of `task` under `spec` with behaviours drawn from `mix`. */
export function demonstrate(spec: ScaffoldSpec, task: DemoTask, rand: Random, mix: DemonstratorMix = DEFAULT_MIX): Demonstration {
  const conv = new ScaffoldConversation(spec, task);
  const { name: tool, arg } = TOOL_ARG[task.family];
  const calls: DemoCall[] = [];
  const behaviours: Behaviour[] = [];
  let toolCalls = 0;
  let repeats = 0;
  // What the next call must ask: the expression, or the kv key (the start, then each reference).
  let want = task.family === 'kv' ? task.start : task.expression;
  let lastArg = want;
  let lastResult: string | undefined;
  const reply = (message: AssistantMessage) => calls.push({ messages: conv.messages(), tools: conv.tools, reply: message });
  const done = (answer: string | null): Demonstration => ({ calls, answer, behaviours, toolCalls });
  for (let turn = 0; turn < spec.maxTurns; turn++) {
    const final = lastResult !== undefined && (task.family === 'calc' || !lastResult.startsWith('@'));
    if (task.family === 'kv' && lastResult?.startsWith('@')) want = lastResult.slice(1);
    const b = draw(rand, mix, final ? (repeats >= MAX_REPEATS ? ['good', 'sloppy'] : ANSWER_STATE) : CALL_STATE);
    behaviours.push(b);
    if (final && b === 'good') {
      reply({ role: 'assistant', content: lastResult! });
      return done(lastResult!);
    }
    if (b === 'guess' || b === 'sloppy') {
      const text = twoDigits(rand);
      reply({ role: 'assistant', content: text });
      return done(text);
    }
    if (b === 'malformed') {
      // The agent gets neither a tool call nor an answer and asks again (same messages).
      reply(toolCall(tool, `{"${arg}":${want}}`));
      continue;
    }
    if (b === 'wasted') repeats++;
    const value = b === 'wasted' ? lastArg : want;
    const message = toolCall(tool, JSON.stringify(toolArgs(task.family, value)));
    reply(message);
    toolCalls++;
    lastArg = value;
    lastResult = toolResult(task, tool, { [arg]: value });
    conv.observe(message, [lastResult]);
  }
  return done(null);
}

/**
 * The training samples of a demonstration: one per call, prompt (with the generation prompt) then
 * the reply; only the reply's tokens are trainable. Calls that continue each other share their
 * prefix, which the prefix-tree batch computes once.
 */
export function demoSamples(demo: Demonstration): Sample[] {
  if (!demo || !Array.isArray(demo.calls)) throw typeError('demo: expected a Demonstration { calls }');
  return demo.calls.map((c) => {
    const prompt = nanoChatTemplate.render(c.messages, c.tools, { addGenerationPrompt: true });
    const body = nanoChatTemplate.assistantIds(c.reply);
    const tokens = new Int32Array(prompt.length + body.length);
    tokens.set(prompt);
    tokens.set(body, prompt.length);
    const trainable = new Uint8Array(tokens.length).fill(1, prompt.length);
    return { tokens, trainable, advantage: 1 };
  });
}
