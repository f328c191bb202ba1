// A FAKE token generator for tests and examples: it "samples" scripted completions (ids, or an
// assistant message rendered with the template) instead of running a model, behind the same
// TokenGenerator interface as the NanoEngine, so the gateway can be driven through deterministic
// multi-turn tool-calling loops. Logprobs are made up (a fixed function of the token); never train on it.
import type { GenerateOptions, GenerateResult, Generation, TokenEvent } from '../engine/types.js';
import { assistantIds, type AssistantMessage } from '../model/chatTemplate.js';
import { encode } from '../model/tokenizer.js';
import type { TokenGenerator } from './engineUpstream.js';

/** The scripted completion for a prompt; `call` counts the generator's calls from 0. */
export type FakeScript = (promptIds: Int32Array, call: number) => Int32Array | AssistantMessage;

export class ScriptedFakeGenerator implements TokenGenerator {
  version = 0;
  calls = 0;
  /** Every prompt it was asked to complete, in order. */
  readonly prompts: Int32Array[] = [];

  constructor(private readonly script: FakeScript) {}

  generate(promptIds: Int32Array, options: GenerateOptions = {}): Generation {
    this.prompts.push(promptIds.slice());
    const scripted = this.script(promptIds, this.calls++);
    const ids = scripted instanceof Int32Array ? scripted : assistantIds(scripted);
    const stopIds = new Set<number>();
    const stopStrings: [string, Int32Array][] = [];
    for (const s of options.stop ?? []) {
      if (typeof s === 'number') stopIds.add(s);
      else stopStrings.push([s, encode(s)]);
    }
    const maxTokens = options.maxTokens ?? 256;
    const out: number[] = [];
    let finishReason: GenerateResult['finishReason'] = 'length';
    let stoppedBy: number | string | undefined;
    for (let i = 0; i < ids.length && out.length < maxTokens; i++) {
      if (options.signal?.aborted) {
        finishReason = 'abort';
        break;
      }
      out.push(ids[i]);
      if (stopIds.has(ids[i])) {
        finishReason = 'stop';
        stoppedBy = ids[i];
        break;
      }
      const hit = stopStrings.find(([, s]) => s.length <= out.length && s.every((v, k) => out[out.length - s.length + k] === v));
      if (hit) {
        finishReason = 'stop';
        stoppedBy = hit[0];
        break;
      }
    }
    if (out.length === ids.length && finishReason === 'length' && out.length < maxTokens) finishReason = 'stop';
    const version = this.version;
    const completionIds = Int32Array.from(out);
    const logprobs = Float64Array.from(out, (t) => -((t % 7) + 1) / 8);
    const result: GenerateResult = {
      completionIds,
      logprobs,
      versions: new Int32Array(out.length).fill(version),
      finishReason,
      promptTokens: promptIds.length,
      cachedPromptTokens: 0,
      seed: options.seed ?? 0,
      timings: { queueMs: 0, prefillMs: 0, decodeMs: 0, totalMs: 0 },
    };
    if (stoppedBy !== undefined) result.stoppedBy = stoppedBy;
    const events: TokenEvent[] = out.map((token, i) => ({ token, logprob: logprobs[i], version }));
    return {
      result: Promise.resolve(result),
      async *[Symbol.asyncIterator]() {
        for (const e of events) {
          await Promise.resolve(); // tokens arrive asynchronously, as from a real engine
          yield e;
        }
      },
    };
  }
}
