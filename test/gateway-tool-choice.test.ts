// tool_choice that forces a call ("required" / a named function; Anthropic "any" / "tool") and
// parallel_tool_calls: false, with the real `openai` and `@anthropic-ai/sdk` clients on loopback:
//  - a random-weight nano policy on the real NanoEngine: the call's opening is in the recorded
//    prompt (checked against ids built here from the tokenizer, and by the engine's logprobs matching
//    a fresh forward over prompt + completion, so the model really was conditioned on it); what the
//    agent gets and the recorded parse errors equal the template's parse of opening + completion;
//    streaming == non-streaming;
//  - a "bigram" policy (random weights with the layers' output projections zeroed and the head set so
//    that each of a few tokens has one likely successor; still the real engine) that writes a
//    well-formed call after the opening: the completion re-renders from the agent's message and the
//    agent's next turn continues the call's branch instead of forking;
//  - bad tool_choice values in each protocol's error shape; the vLLM upstream passes the choice on.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NanoEngine } from '../lib/engine/engine.js';
import { createGateway, EngineUpstream, MemoryRecorder, OpenAICompatibleUpstream, type CallRecord, type Gateway } from '../lib/gateway/index.js';
import { assistantIds, parse, render, type ChatMessage, type ToolDefinition } from '../lib/model/chatTemplate.js';
import { NanoPolicy, type NanoPolicyConfig } from '../lib/model/policy.js';
import { encode, SpecialToken } from '../lib/model/tokenizer.js';
import { FakeVllmServer } from './fakes/fakeVllmServer.js';
import { readChatStream } from './helpers/chatStream.js';
import { gauss, seededRun } from './helpers/random.js';

const run = seededRun();
const SMALL: Partial<NanoPolicyConfig> = { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 96 };
const ADMIN = 'admin';
const OAI_TOOLS: OpenAI.Chat.ChatCompletionFunctionTool[] = [
  { type: 'function', function: { name: 'lookup', description: 'Looks a city up', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
  { type: 'function', function: { name: 'f', description: 'Does f', parameters: { type: 'object', properties: {} } } },
];
const ANT_TOOLS: Anthropic.Tool[] = OAI_TOOLS.map((t) => ({ name: t.function.name, description: t.function.description, input_schema: t.function.parameters as Anthropic.Tool.InputSchema }));
const USER: ChatMessage[] = [{ role: 'user', content: 'Weather in Oslo?' }];
const NL = 0x0a, LBRACE = 0x7b, RBRACE = 0x7d, LETTER_F = 0x66;
const { TOOL_CALL, TOOL_CALL_END, END, ASSISTANT } = SpecialToken;

/** The opening the gateway must force, written out from the template's layout (chatTemplate.ts). */
const opening = (name?: string) => Int32Array.from(name === undefined ? [TOOL_CALL] : [TOOL_CALL, ...encode(`${name}\n`)]);
const cat = (...parts: ArrayLike<number>[]) => Int32Array.from(parts.flatMap((p) => Array.from(p)));
const range = (n: number, from = 0) => Int32Array.from({ length: n }, (_, i) => from + i);

/** float64 log_softmax of each completion token under a fresh forward of prompt + completion. */
function freshLogprobs(policy: NanoPolicy, params: Float32Array, prompt: Int32Array, completion: Int32Array): number[] {
  const full = cat(prompt, completion), L = full.length, V = policy.config.vocabSize;
  const logits = policy.forward(params, full, range(L), { parent: range(L, -1), subtreeEnd: new Int32Array(L).fill(L) });
  return Array.from(completion, (tok, j) => {
    const row = logits.subarray((prompt.length - 1 + j) * V, (prompt.length + j) * V);
    let m = -Infinity;
    for (const z of row) m = Math.max(m, z);
    let s = 0;
    for (const z of row) s += Math.exp(z - m);
    return row[tok] - m - Math.log(s);
  });
}

/**
 * Random weights turned into a bigram model: zero attention and MLP output projections make every
 * layer the identity, so the logits depend on the current token only; the embeddings of the source
 * tokens are made orthogonal and the head gets alpha * (their direction) in the successor's column.
 */
function bigramParams(policy: NanoPolicy, seed: number, next: ReadonlyMap<number, number>, alpha = 6): Float32Array {
  const params = policy.init(seed);
  const info = new Map(policy.paramInfo().map((t) => [t.name, t]));
  for (const [name, t] of info) if (/\.(attn\.wo|mlp\.w_down)$/.test(name)) params.fill(0, t.offset, t.offset + t.size);
  const D = policy.config.dim, V = policy.config.vocabSize;
  const emb = info.get('tok_embeddings')!, out = info.get('output')!;
  const rng = run.rng();
  const basis: Float64Array[] = [];
  for (const [src, dst] of next) {
    // Gram-Schmidt against the earlier sources, then a fresh embedding of norm 1.
    const v = Float64Array.from({ length: D }, () => gauss(rng));
    for (const b of basis) {
      const dot = v.reduce((s, x, d) => s + x * b[d], 0);
      for (let d = 0; d < D; d++) v[d] -= dot * b[d];
    }
    const norm = Math.hypot(...v);
    for (let d = 0; d < D; d++) v[d] /= norm;
    basis.push(v);
    for (let d = 0; d < D; d++) {
      params[emb.offset + src * D + d] = v[d];
      params[out.offset + d * V + dst] += alpha * v[d];
    }
  }
  return params;
}

// '\n' -> '{' -> '}' -> </tool_call> -> <end>; <tool_call> -> 'f' -> '\n'; <assistant> -> <end>.
// Each successor's logit leads by about alpha * sqrt(dim) = 48, so sampling at temperature 1 (the
// Anthropic calls below) picks it as surely as greedy does.
const BIGRAM = new Map<number, number>([[NL, LBRACE], [LBRACE, RBRACE], [RBRACE, TOOL_CALL_END], [TOOL_CALL_END, END], [TOOL_CALL, LETTER_F], [LETTER_F, NL], [ASSISTANT, END]]);

interface Served { gw: Gateway; base: string; recorder: MemoryRecorder }
let policy: NanoPolicy, randomParams: Float32Array;
let randomEngine: NanoEngine, bigramEngine: NanoEngine, fake: FakeVllmServer;
let R: Served, B: Served, F: Served;

async function serve(upstream: EngineUpstream | OpenAICompatibleUpstream): Promise<Served> {
  const recorder = new MemoryRecorder();
  const gw = createGateway({ upstream, adminToken: ADMIN, recorder });
  return { gw, recorder, base: await gw.listen() };
}

async function session(s: Served): Promise<{ id: string; key: string }> {
  const r = await fetch(`${s.base}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{}' });
  return (await r.json()) as { id: string; key: string };
}
const oai = (s: Served, key: string) => new OpenAI({ apiKey: key, baseURL: `${s.base}/v1`, maxRetries: 0 });
const ant = (s: Served, key: string) => new Anthropic({ apiKey: key, baseURL: s.base, maxRetries: 0 });

/** A streamed chat completion assembled into the assistant message agents keep. */
async function streamedChat(c: OpenAI, body: Record<string, unknown>) {
  const stream = await c.chat.completions.create({ ...body, stream: true } as never) as unknown as AsyncIterable<OpenAI.Chat.ChatCompletionChunk>;
  const { content, calls, finish } = await readChatStream(stream);
  return { content, calls, finish };
}

beforeAll(async () => {
  policy = new NanoPolicy(SMALL);
  randomParams = policy.init(run.seed % 100000);
  randomEngine = new NanoEngine({ config: SMALL, params: randomParams, cacheTokens: 8192 });
  bigramEngine = new NanoEngine({ config: SMALL, params: bigramParams(policy, (run.seed + 1) % 100000, BIGRAM), cacheTokens: 8192 });
  fake = new FakeVllmServer({ script: () => ({ role: 'assistant', content: null, tool_calls: [{ function: { name: 'lookup', arguments: '{}' } }] }), seed: run.seed });
  const url = await fake.start();
  R = await serve(new EngineUpstream({ generator: randomEngine, model: 'nano' }));
  B = await serve(new EngineUpstream({ generator: bigramEngine, model: 'nano' }));
  F = await serve(new OpenAICompatibleUpstream({ baseURL: url, model: fake.model, version: () => 0 }));
});
afterAll(async () => {
  for (const s of [R, B, F]) await s.gw.close();
  randomEngine.close();
  bigramEngine.close();
  await fake.close();
});

/** The record against the template's own parse of opening + completion; returns that parse. */
function checkForcedRecord(rec: CallRecord, rendered: Int32Array, forced: Int32Array, forcedName: string | undefined, tools: ToolDefinition[]) {
  expect(rec).toMatchObject({ status: 'ok', trainable: true });
  expect(Array.from(rec.promptIds!)).toEqual(Array.from(cat(rendered, forced)));
  const completion = rec.completionIds!;
  expect(completion.length).toBeGreaterThan(0);
  expect(rec.logprobs!.length).toBe(completion.length);
  // The engine sampled after the opening: its logprobs are those of a fresh forward over it.
  const fresh = freshLogprobs(policy, randomParams, rec.promptIds!, completion);
  fresh.forEach((lp, j) => expect(Math.abs(rec.logprobs![j] - lp), run.why(`logprob ${j}`)).toBeLessThan(1e-4));
  const ref = parse(cat(forced, completion), { tools });
  expect(rec.toolCalls.map((c) => [c.name, c.argumentsText])).toEqual(ref.toolCalls.map((c) => [c.name, c.argumentsText]));
  // Parse errors are placed in the completion (the opening is the prompt's).
  expect(rec.parseErrors).toEqual(ref.errors.map((e) => ({ ...e, at: e.at - forced.length })));
  // The forced call is call 0: either well-formed with the forced name, or a recorded error about it.
  const failed = ref.errors.find((e) => e.toolCall === 0);
  if (failed === undefined) {
    expect(ref.toolCalls.length).toBeGreaterThan(0);
    if (forcedName !== undefined) expect(ref.toolCalls[0].name).toBe(forcedName);
  } else if (forcedName !== undefined) expect(failed.name).toBe(forcedName);
  return ref;
}

describe(`gateway / tool_choice forcing a call (seed ${run.seed})`, () => {
  it('random weights, OpenAI "required" and named: opening in the prompt, completion all sampled, parse as the template parses', async () => {
    for (const [choice, forcedName] of [['required', undefined], [{ type: 'function', function: { name: 'lookup' } }, 'lookup']] as const) {
      const s = await session(R);
      const r = await oai(R, s.key).chat.completions.create({
        model: 'nano', messages: USER as never, tools: OAI_TOOLS, tool_choice: choice as never, max_tokens: 24, temperature: 1, seed: run.seed % 100000,
      });
      const [rec] = R.recorder.callsOf(s.id);
      const ref = checkForcedRecord(rec, render(USER, OAI_TOOLS, { addGenerationPrompt: true }), opening(forcedName), forcedName, OAI_TOOLS);
      const m = r.choices[0].message;
      expect((m.tool_calls ?? []).map((c) => c.type === 'function' && [c.function.name, c.function.arguments])).toEqual(ref.toolCalls.map((c) => [c.name, c.argumentsText]));
      expect(m.content ?? '').toBe(ref.content);
      expect(r.choices[0].finish_reason).toBe(ref.toolCalls.length > 0 && ref.finishedTurn ? 'tool_calls' : ref.finishedTurn ? 'stop' : 'length');
      // An exact completion re-renders from the message the agent got.
      if (ref.exact) expect(Array.from(assistantIds({ role: 'assistant', content: m.content, tool_calls: m.tool_calls as never })).slice(0, rec.completionIds!.length + opening(forcedName).length)).toEqual(Array.from(cat(opening(forcedName), rec.completionIds!)));
    }
  });

  it('random weights, Anthropic "any" and "tool": the same, tool_use blocks are the parsed calls', async () => {
    for (const [choice, forcedName] of [[{ type: 'any' }, undefined], [{ type: 'tool', name: 'lookup' }, 'lookup']] as const) {
      const s = await session(R);
      const m = await ant(R, s.key).messages.create({ model: 'nano', max_tokens: 24, messages: USER as never, tools: ANT_TOOLS, tool_choice: choice });
      const [rec] = R.recorder.callsOf(s.id);
      const ref = checkForcedRecord(rec, render(USER, ANT_TOOLS, { addGenerationPrompt: true }), opening(forcedName), forcedName, ANT_TOOLS);
      const uses = m.content.filter((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use');
      expect(uses.map((u) => [u.name, u.input])).toEqual(ref.toolCalls.map((c) => [c.name, c.arguments]));
      expect(m.stop_reason).toBe(ref.toolCalls.length > 0 && ref.finishedTurn ? 'tool_use' : ref.finishedTurn ? 'end_turn' : 'max_tokens');
    }
  });

  it('streaming == non-streaming for a forced call (same seed)', async () => {
    for (const choice of ['required', { type: 'function', function: { name: 'lookup' } }] as const) {
      const a = await session(R), b = await session(R);
      const body = { model: 'nano', messages: USER, tools: OAI_TOOLS, tool_choice: choice, max_tokens: 20, temperature: 1, seed: (run.seed + 7) % 100000 };
      const plain = await oai(R, a.key).chat.completions.create(body as never) as OpenAI.Chat.ChatCompletion;
      const streamed = await streamedChat(oai(R, b.key), body);
      const [ra] = R.recorder.callsOf(a.id), [rb] = R.recorder.callsOf(b.id);
      expect(Array.from(rb.promptIds!)).toEqual(Array.from(ra.promptIds!));
      expect(Array.from(rb.completionIds!)).toEqual(Array.from(ra.completionIds!));
      expect(Array.from(rb.logprobs!)).toEqual(Array.from(ra.logprobs!));
      expect(rb.parseErrors).toEqual(ra.parseErrors);
      const m = plain.choices[0].message;
      expect(streamed.content).toBe(m.content ?? '');
      expect(streamed.calls.map((c) => c.function)).toEqual((m.tool_calls ?? []).map((c) => c.type === 'function' && c.function));
      expect(streamed.finish).toBe(plain.choices[0].finish_reason);
    }
  });

  it('bigram policy: a named call comes back well-formed, re-renders, and the next turn continues the branch', async () => {
    const s = await session(B);
    const c = oai(B, s.key);
    const messages: ChatMessage[] = [...USER];
    const first = await c.chat.completions.create({ model: 'nano', messages: messages as never, tools: OAI_TOOLS, tool_choice: { type: 'function', function: { name: 'lookup' } }, max_tokens: 16, temperature: 0 });
    expect(first.choices[0].finish_reason).toBe('tool_calls');
    const call = first.choices[0].message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    expect(call.function).toEqual({ name: 'lookup', arguments: '{}' });
    const [r1] = B.recorder.callsOf(s.id);
    expect(Array.from(r1.completionIds!)).toEqual([LBRACE, RBRACE, TOOL_CALL_END, END]);
    const assistant: ChatMessage = { role: 'assistant', content: first.choices[0].message.content, tool_calls: [call] };
    expect(Array.from(cat(opening('lookup'), r1.completionIds!))).toEqual(Array.from(assistantIds(assistant as never)));
    messages.push(assistant, { role: 'tool', tool_call_id: call.id, content: 'Oslo: 4 C' });
    const second = await streamedChat(c, { model: 'nano', messages, tools: OAI_TOOLS, max_tokens: 8, temperature: 0 });
    expect(second.finish).toBe('stop');
    const [, r2] = B.recorder.callsOf(s.id);
    const seq = cat(r1.promptIds!, r1.completionIds!);
    expect(Array.from(r2.promptIds!.subarray(0, seq.length))).toEqual(Array.from(seq));
    expect(r2.link).toEqual({ relation: 'continue', parent: r1.id, forkTokens: seq.length });
  });

  it('parallel_tool_calls false / disable_parallel_tool_use: the completion stops after its call, the turn ends, the next one continues', async () => {
    // OpenAI "required": the model names the tool itself (f), streamed.
    const s = await session(B);
    const c = oai(B, s.key);
    const first = await streamedChat(c, { model: 'nano', messages: USER, tools: OAI_TOOLS, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 16, temperature: 0 });
    expect(first.finish).toBe('tool_calls');
    expect(first.calls.map((k) => k.function)).toEqual([{ name: 'f', arguments: '{}' }]);
    const [r1] = B.recorder.callsOf(s.id);
    // Stopped at </tool_call>: the end of the turn is not sampled, it comes with the next prompt.
    expect(Array.from(r1.completionIds!)).toEqual([LETTER_F, NL, LBRACE, RBRACE, TOOL_CALL_END]);
    expect(r1.finishReason).toBe('tool_calls');
    expect(Array.from(r1.promptIds!.subarray(r1.promptIds!.length - 1))).toEqual([TOOL_CALL]);
    const messages: ChatMessage[] = [...USER, { role: 'assistant', content: null, tool_calls: first.calls }, { role: 'tool', tool_call_id: first.calls[0].id, content: 'done' }];
    await c.chat.completions.create({ model: 'nano', messages: messages as never, tools: OAI_TOOLS, max_tokens: 8, temperature: 0 });
    const [, r2] = B.recorder.callsOf(s.id);
    const seq = cat(r1.promptIds!, r1.completionIds!);
    expect(Array.from(r2.promptIds!.subarray(0, seq.length + 1))).toEqual([...seq, END]);
    expect(r2.link).toEqual({ relation: 'continue', parent: r1.id, forkTokens: seq.length });

    // Anthropic { type: 'tool' } with disable_parallel_tool_use, then the tool_result turn.
    const t = await session(B);
    const a = ant(B, t.key);
    const m1 = await a.messages.create({ model: 'nano', max_tokens: 16, messages: USER as never, tools: ANT_TOOLS, tool_choice: { type: 'tool', name: 'lookup', disable_parallel_tool_use: true } });
    expect(m1.stop_reason).toBe('tool_use');
    const use = m1.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!;
    expect([use.name, use.input]).toEqual(['lookup', {}]);
    const [a1] = B.recorder.callsOf(t.id);
    expect(Array.from(a1.completionIds!)).toEqual([LBRACE, RBRACE, TOOL_CALL_END]);
    await a.messages.create({
      model: 'nano', max_tokens: 8, tools: ANT_TOOLS,
      messages: [...USER as never[], { role: 'assistant', content: m1.content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: '4 C' }] }],
    });
    const [, a2] = B.recorder.callsOf(t.id);
    expect(a2.link).toEqual({ relation: 'continue', parent: a1.id, forkTokens: a1.promptIds!.length + a1.completionIds!.length });
  });

  it('bad tool_choice values are 400s in each protocol\'s shape, nothing recorded', async () => {
    const s = await session(B);
    const c = oai(B, s.key);
    const openaiCases: [Record<string, unknown>, string, RegExp][] = [
      [{ tool_choice: 'required' }, 'FORGE_GW_INVALID_REQUEST', /needs tools/],
      [{ tools: OAI_TOOLS, tool_choice: { type: 'function', function: { name: 'nope' } } }, 'FORGE_GW_INVALID_REQUEST', /no tool named "nope"/],
      [{ tools: OAI_TOOLS, tool_choice: { type: 'function', function: {} } }, 'FORGE_GW_INVALID_REQUEST', /tool_choice.function.name/],
      [{ tools: OAI_TOOLS, tool_choice: 'any' }, 'FORGE_GW_INVALID_REQUEST', /tool_choice: expected/],
      [{ tools: OAI_TOOLS, tool_choice: { type: 'allowed_tools', allowed_tools: { mode: 'auto', tools: [] } } }, 'FORGE_GW_UNSUPPORTED_PARAMETER', /not supported/],
    ];
    for (const [extra, code, message] of openaiCases) {
      const e = await c.chat.completions.create({ model: 'nano', messages: USER as never, max_tokens: 4, ...extra } as never).then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(OpenAI.BadRequestError);
      const err = e as InstanceType<typeof OpenAI.BadRequestError>;
      expect([(err.error as { code: string }).code, err.message]).toEqual([code, expect.stringMatching(message)]);
    }
    const a = ant(B, s.key);
    for (const tool_choice of [{ type: 'any' }, { type: 'tool', name: 'nope' }, { type: 'sometimes' }]) {
      const tools = tool_choice.type === 'any' ? undefined : ANT_TOOLS;
      const e = await a.messages.create({ model: 'nano', max_tokens: 4, messages: USER as never, tools, tool_choice: tool_choice as never }).then(() => undefined, (x: unknown) => x);
      expect(e).toBeInstanceOf(Anthropic.BadRequestError);
      expect(((e as InstanceType<typeof Anthropic.BadRequestError>).error as { error: { type: string } }).error.type).toBe('invalid_request_error');
    }
    expect(B.recorder.callsOf(s.id)).toEqual([]);
  });

  it('the vLLM upstream passes tool_choice and parallel_tool_calls on to the server', async () => {
    const s = await session(F);
    const sent: unknown[] = [];
    for (const [choice, parallel] of [['auto', undefined], ['none', undefined], ['required', false], [{ type: 'function', function: { name: 'f' } }, undefined]] as const) {
      await oai(F, s.key).chat.completions.create({ model: 'x', messages: USER as never, tools: OAI_TOOLS, tool_choice: choice as never, ...(parallel === false ? { parallel_tool_calls: false } : {}) });
      const body = fake.calls.at(-1)!.body;
      sent.push([body.tool_choice, body.parallel_tool_calls]);
    }
    await ant(F, s.key).messages.create({ model: 'x', max_tokens: 10, messages: USER as never, tools: ANT_TOOLS, tool_choice: { type: 'tool', name: 'lookup', disable_parallel_tool_use: true } });
    const body = fake.calls.at(-1)!.body;
    sent.push([body.tool_choice, body.parallel_tool_calls]);
    expect(sent).toEqual([
      ['auto', undefined], ['auto', undefined], ['required', false],
      [{ type: 'function', function: { name: 'f' } }, undefined],
      [{ type: 'function', function: { name: 'lookup' } }, false],
    ]);
  });
});
