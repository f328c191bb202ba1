// In-process rollouts: a scaffold's conversation driven straight by a token generator (the engine),
// with no HTTP in between. The demo uses it to evaluate a policy on held-out tasks quickly and
// reproducibly (fixed sampling seeds); the agent programs and the gateway produce the training
// data. The conversation rules are the scaffold's (scaffolds.ts), so both paths see the same prompts.
import type { TokenGenerator } from '../gateway/engineUpstream.js';
import { nanoChatTemplate, toAssistantMessage } from '../model/chatTemplate.js';
import { ScaffoldConversation, type ScaffoldSpec } from './scaffolds.js';
import { toolResult, verify, type AgentResult, type DemoTask, type Verdict } from './tasks.js';

export interface LocalCall {
  promptIds: Int32Array;
  completionIds: Int32Array;
  logprobs: Float64Array;
  versions: Int32Array;
  /** Malformed tool calls and other format errors in the reply. */
  parseErrors: number;
}

export interface LocalRollout {
  task: DemoTask;
  calls: LocalCall[];
  result: AgentResult;
  verdict: Verdict;
  /** Wall-clock seconds of the whole run. */
  seconds: number;
}

export interface LocalRolloutOptions {
  temperature?: number;
  /** Seed of the first call's sampling; later calls use seed + k. */
  seed?: number;
}

/** Runs one agent run of `task` under `spec` against `generator`. */
export async function runLocalRollout(
  generator: TokenGenerator,
  spec: ScaffoldSpec,
  task: DemoTask,
  options: LocalRolloutOptions = {},
): Promise<LocalRollout> {
  const t0 = performance.now();
  const conv = new ScaffoldConversation(spec, task);
  const calls: LocalCall[] = [];
  let toolCalls = 0;
  let answer: string | null = null;
  for (let turn = 0; turn < spec.maxTurns; turn++) {
    const promptIds = nanoChatTemplate.render(conv.messages(), conv.tools, { addGenerationPrompt: true });
    const r = await generator.generate(promptIds, {
      temperature: options.temperature ?? 1,
      maxTokens: spec.maxTokens,
      stop: nanoChatTemplate.stopTokens,
      seed: options.seed === undefined ? undefined : options.seed + turn,
    }).result;
    const parsed = nanoChatTemplate.parse(r.completionIds, { tools: conv.tools });
    calls.push({ promptIds, completionIds: r.completionIds, logprobs: r.logprobs, versions: r.versions, parseErrors: parsed.errors.length });
    if (parsed.toolCalls.length === 0) {
      // An empty reply (e.g. only a malformed tool call) is asked again, as the agents do.
      if (parsed.content.trim() === '') continue;
      answer = parsed.content;
      break;
    }
    const reply = toAssistantMessage(parsed, (k) => `call_${turn}_${k}`);
    const results = parsed.toolCalls.map((c) => toolResult(task, c.name, c.arguments));
    toolCalls += results.length;
    conv.observe(reply, results);
  }
  const result: AgentResult = { answer, toolCalls, turns: calls.length };
  return { task, calls, result, verdict: verify(task, result), seconds: (performance.now() - t0) / 1000 };
}
