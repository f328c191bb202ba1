// Re-tokenization drift (audit M2): the text an agent gets back need not encode to the ids the policy
// sampled (special tokens dropped from the content, bytes that are not UTF-8 turned into U+FFFD), so
// re-rendering a resent assistant message from its text would fork every call. The gateway renders a
// resent completion from its recorded ids. Checked with the real `openai` / `@anthropic-ai/sdk`
// clients on loopback:
//  - the REAL NanoEngine with random weights (its output is noise, full of such drift): an agent that
//    resends exactly what it received continues its branch on every turn, OpenAI and Anthropic,
//    streaming and not; the next prompt is exactly prompt + completion (+ the end token of a turn cut
//    by max_tokens) + the new user turn; the text alone would have rendered differently (counted);
//  - an agent that edits the assistant text forks, its prompt rendered from its text;
//  - n = 2: resending the second choice continues that choice's call;
//  - a scripted FAKE generator (named so; it stands in for a policy that writes a tool call) writing
//    drifted reasoning and content around a tool call: both protocols continue through the tool turn;
//  - answers with the same text but other ids each render their own ids; the remembered turns are
//    dropped when the session ends.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NanoEngine } from '../lib/engine/engine.js';
import { createGateway, EngineUpstream, MemoryRecorder, ScriptedFakeGenerator, toChatMessages, type CallRecord, type Gateway } from '../lib/gateway/index.js';
import { render, type ChatMessage } from '../lib/model/chatTemplate.js';
import { NanoPolicy, type NanoPolicyConfig } from '../lib/model/policy.js';
import { decode, encode, SpecialToken } from '../lib/model/tokenizer.js';
import { seededRun } from './helpers/random.js';

const run = seededRun();
const SMALL: Partial<NanoPolicyConfig> = { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 96 };
const ADMIN = 'admin';
const TURNS = 5;
const { THINK, THINK_END, TOOL_CALL, TOOL_CALL_END, END, EOS, BOS } = SpecialToken;
const cat = (...parts: ArrayLike<number>[]) => Int32Array.from(parts.flatMap((p) => Array.from(p)));
/** The ids a user turn adds, then the generation prompt (the template's layout, BOS dropped). */
const userTail = (text: string) => render([{ role: 'user', content: text }], undefined, { addGenerationPrompt: true }).slice(1);

let engine: NanoEngine, gw: Gateway, base: string, recorder: MemoryRecorder;
let fakeGw: Gateway, fakeBase: string, fakeRecorder: MemoryRecorder;

async function session(at: string) {
  const r = await fetch(`${at}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{}' });
  return (await r.json()) as { id: string; key: string };
}

/** The FAKE policy's turns: drifted reasoning and content around a well-formed tool call, then an answer. */
function toolScript(promptIds: Int32Array): Int32Array {
  if (decode(promptIds).lastIndexOf('<|tool|>') > decode(promptIds).lastIndexOf('<|user|>'))
    return cat(encode('Done'), [0xe2, 0x82], encode('.'), [EOS]); // a cut character, ended by EOS
  return cat([THINK], encode('plan'), [0xc3], [THINK_END], encode('Reading'), [BOS], [0xff], encode(' now'),
    [TOOL_CALL], encode('read_file\n{ "path" : "a.txt" }'), [TOOL_CALL_END], [END]);
}

beforeAll(async () => {
  const params = new NanoPolicy(SMALL).init(run.seed % 100_000);
  engine = new NanoEngine({ config: SMALL, params, cacheTokens: 8192, version: 2 });
  recorder = new MemoryRecorder();
  gw = createGateway({ upstream: new EngineUpstream({ generator: engine, model: 'nano' }), adminToken: ADMIN, recorder });
  base = await gw.listen();
  fakeRecorder = new MemoryRecorder();
  fakeGw = createGateway({ upstream: new EngineUpstream({ generator: new ScriptedFakeGenerator(toolScript), model: 'nano' }), adminToken: ADMIN, recorder: fakeRecorder });
  fakeBase = await fakeGw.listen();
});
afterAll(async () => {
  await gw.close();
  await fakeGw.close();
  engine.close();
});

type Agent = (history: unknown[], seed: number) => Promise<unknown>;

/**
 * An assistant message assembled from OpenAI stream chunks, reasoning_content included (the SDK's
 * stream helper keeps only the last reasoning delta, so an agent built on it resends something else).
 */
async function streamedMessage(stream: AsyncIterable<OpenAI.Chat.ChatCompletionChunk>): Promise<OpenAI.Chat.ChatCompletionAssistantMessageParam & { reasoning_content?: string }> {
  let content = '', reasoning: string | undefined;
  const calls: { id: string; type: 'function'; function: { name: string; arguments: string } }[] = [];
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta as (OpenAI.Chat.ChatCompletionChunk.Choice.Delta & { reasoning_content?: string }) | undefined;
    content += delta?.content ?? '';
    if (delta?.reasoning_content !== undefined) reasoning = (reasoning ?? '') + delta.reasoning_content;
    for (const t of delta?.tool_calls ?? []) {
      calls[t.index] ??= { id: '', type: 'function', function: { name: '', arguments: '' } };
      calls[t.index].id += t.id ?? '';
      calls[t.index].function.name += t.function?.name ?? '';
      calls[t.index].function.arguments += t.function?.arguments ?? '';
    }
  }
  return {
    role: 'assistant', content: calls.length > 0 && content === '' ? null : content,
    ...(reasoning === undefined ? {} : { reasoning_content: reasoning }), ...(calls.length > 0 ? { tool_calls: calls } : {}),
  };
}

/** OpenAI agents: the assistant message as received (non-streaming), or assembled from the deltas. */
function openaiAgent(key: string, stream: boolean): Agent {
  const client = new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0 });
  return async (history, seed) => {
    const body = { model: 'nano', messages: history as OpenAI.Chat.ChatCompletionMessageParam[], max_tokens: 24, seed };
    if (!stream) return (await client.chat.completions.create(body)).choices[0].message;
    return streamedMessage(await client.chat.completions.create({ ...body, stream: true }));
  };
}

/** Anthropic agents: the content blocks as received, or as the SDK's stream assembles them. */
function anthropicAgent(key: string, stream: boolean): Agent {
  const client = new Anthropic({ apiKey: key, baseURL: base, maxRetries: 0 });
  return async (history) => {
    const body = { model: 'nano', messages: history as Anthropic.MessageParam[], max_tokens: 24 };
    const m = stream ? await client.messages.stream(body).finalMessage() : await client.messages.create(body);
    return { role: 'assistant', content: m.content };
  };
}

/** The prompt the text alone renders to (what the gateway sent before verbatim turns). */
function textRendering(protocol: 'openai' | 'anthropic', history: unknown[]): Int32Array {
  const messages = protocol === 'openai' ? history as ChatMessage[] : toChatMessages({ max_tokens: 1, messages: history as never });
  return render(messages, undefined, { addGenerationPrompt: true });
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((x, i) => x === b[i]);
let drifted = 0;

describe(`verbatim turns (seed ${run.seed})`, () => {
  for (const protocol of ['openai', 'anthropic'] as const)
    for (const stream of [false, true])
      it(`${protocol}${stream ? ' streaming' : ''}: resending what it received continues the branch on every turn`, async () => {
        const s = await session(base);
        const agent = (protocol === 'openai' ? openaiAgent : anthropicAgent)(s.key, stream);
        const history: unknown[] = [{ role: 'user', content: 'Say something.' }];
        for (let turn = 0; turn < TURNS; turn++) {
          const textPrompt = textRendering(protocol, history);
          history.push(await agent(history, run.seed % 1000 + turn), { role: 'user', content: `more ${turn}` });
          const call = recorder.callsOf(s.id)[turn];
          if (!same(call.promptIds!, textPrompt)) drifted++;
        }
        const calls = recorder.callsOf(s.id);
        expect(calls.length).toBe(TURNS);
        expect(calls[0].link.relation).toBe('root');
        for (let k = 0; k + 1 < TURNS; k++) {
          const prev = calls[k], next = calls[k + 1];
          expect(prev.trainable, run.why(`call ${k} trainable`)).toBe(true);
          expect(next.link, run.why(`call ${k + 1}`)).toEqual({ relation: 'continue', parent: prev.id, forkTokens: prev.promptIds!.length + prev.completionIds!.length });
          // Exactly: the previous prompt and completion, the end token a cut turn lacks, the new user turn.
          const c = prev.completionIds!;
          const ended = c.length > 0 && (c[c.length - 1] === END || c[c.length - 1] === EOS);
          expect(Array.from(next.promptIds!), run.why(`prompt ${k + 1}`)).toEqual(Array.from(cat(prev.promptIds!, c, ended ? [] : [END], userTail(`more ${k}`))));
        }
      });

  it('the runs above met drift: the text alone would have rendered other prompts', () => {
    // A random policy writes special tokens and stray bytes all the time (the audit: 12 of 12 sessions).
    expect(drifted, run.why('prompts whose text rendering differs from the verbatim one')).toBeGreaterThan(0);
  });

  it('an agent that edits the assistant text forks, and its prompt is its text\'s rendering', async () => {
    const s = await session(base);
    const client = new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 });
    const history: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Say something.' }];
    const first = await client.chat.completions.create({ model: 'nano', messages: history, max_tokens: 24, seed: 7 });
    const got = first.choices[0].message;
    const edited = { role: 'assistant' as const, content: `[edited] ${got.content ?? ''}` };
    history.push(edited, { role: 'user', content: 'more' });
    await client.chat.completions.create({ model: 'nano', messages: history, max_tokens: 4 });
    const [a, b] = recorder.callsOf(s.id);
    expect(b.link.relation).toBe('fork');
    expect(b.link.parent).toBe(a.id);
    expect(b.link.forkTokens).toBeGreaterThanOrEqual(a.promptIds!.length);
    expect(b.link.forkTokens).toBeLessThan(a.promptIds!.length + a.completionIds!.length);
    expect(Array.from(b.promptIds!)).toEqual(Array.from(render(history as ChatMessage[], undefined, { addGenerationPrompt: true })));
  });

  it('n = 2: resending the second choice continues that choice\'s call', async () => {
    const s = await session(base);
    const client = new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 });
    const history: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Two answers.' }];
    const r = await client.chat.completions.create({ model: 'nano', messages: history, max_tokens: 24, n: 2, seed: run.seed % 1000 });
    history.push(r.choices[1].message as OpenAI.Chat.ChatCompletionMessageParam, { role: 'user', content: 'go on' });
    await client.chat.completions.create({ model: 'nano', messages: history, max_tokens: 4 });
    const calls = recorder.callsOf(s.id);
    const second = calls.find((c) => c.id === (r as unknown as { forge: { call_ids: string[] } }).forge.call_ids[1])!;
    expect(calls[2].link.relation).toBe('continue');
    expect(calls[2].link.parent).toBe(second.id);
  });

  for (const protocol of ['openai', 'anthropic'] as const)
    for (const stream of [false, true])
      it(`${protocol}${stream ? ' streaming' : ''}: drifted reasoning and content around a tool call (FAKE generator) continue through the tool turn`, async () => {
        const s = await session(fakeBase);
        let calls: CallRecord[];
        if (protocol === 'openai') {
          const client = new OpenAI({ apiKey: s.key, baseURL: `${fakeBase}/v1`, maxRetries: 0 });
          const tools: OpenAI.Chat.ChatCompletionFunctionTool[] = [{ type: 'function', function: { name: 'read_file', parameters: { type: 'object' } } }];
          const history: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Read a.txt' }];
          for (let turn = 0; turn < 2; turn++) {
            const body = { model: 'nano', messages: history, tools };
            const message = stream
              ? await streamedMessage(await client.chat.completions.create({ ...body, stream: true }))
              : (await client.chat.completions.create(body)).choices[0].message as OpenAI.Chat.ChatCompletionAssistantMessageParam;
            history.push(message);
            const call = message.tool_calls?.[0];
            history.push(call ? { role: 'tool', tool_call_id: call.id, content: 'hi' } : { role: 'user', content: 'thanks' });
          }
          await client.chat.completions.create({ model: 'nano', messages: history, tools });
          calls = fakeRecorder.callsOf(s.id);
          // The agent got the text without the stray special token, with U+FFFD for the bad bytes.
          expect(calls[0].content).toBe('Reading\uFFFD now');
          expect(calls[0].reasoning).toBe('plan\uFFFD');
        } else {
          const client = new Anthropic({ apiKey: s.key, baseURL: fakeBase, maxRetries: 0 });
          const tools: Anthropic.Tool[] = [{ name: 'read_file', input_schema: { type: 'object' } }];
          const history: Anthropic.MessageParam[] = [{ role: 'user', content: 'Read a.txt' }];
          for (let turn = 0; turn < 2; turn++) {
            const body = { model: 'nano', messages: history, tools, max_tokens: 64 };
            const m = stream ? await client.messages.stream(body).finalMessage() : await client.messages.create(body);
            history.push({ role: 'assistant', content: m.content as Anthropic.ContentBlockParam[] });
            const use = m.content.find((b) => b.type === 'tool_use');
            history.push({ role: 'user', content: use ? [{ type: 'tool_result', tool_use_id: use.id, content: 'hi' }] : 'thanks' });
          }
          await client.messages.create({ model: 'nano', messages: history, tools, max_tokens: 64 });
          calls = fakeRecorder.callsOf(s.id);
        }
        expect(calls.length).toBe(3);
        expect(calls[0].toolCalls.length).toBe(1);
        for (let k = 1; k < 3; k++) expect(calls[k].link, `call ${k}`).toEqual({ relation: 'continue', parent: calls[k - 1].id, forkTokens: calls[k - 1].promptIds!.length + calls[k - 1].completionIds!.length });
      });

  it('answers with the same text but other ids (FAKE generator): each resent one renders its own ids, in order', async () => {
    // Two empty answers: one holds a stray special token the text drops, the other is just the end token.
    const answers = [Int32Array.of(BOS, END), Int32Array.of(END), cat(encode('ok'), [END])];
    const g = createGateway({ upstream: new EngineUpstream({ generator: new ScriptedFakeGenerator((_p, call) => answers[Math.min(call, 2)]) }), adminToken: ADMIN, recorder: fakeRecorder });
    const at = await g.listen();
    try {
      const s = await session(at);
      const client = new OpenAI({ apiKey: s.key, baseURL: `${at}/v1`, maxRetries: 0 });
      const history: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'a' }];
      for (const next of ['b', 'c', 'd']) {
        const m = (await client.chat.completions.create({ model: 'nano', messages: history })).choices[0].message;
        history.push(m as OpenAI.Chat.ChatCompletionMessageParam, { role: 'user', content: next });
      }
      const calls = fakeRecorder.callsOf(s.id);
      expect(calls.map((c) => c.content)).toEqual(['', '', 'ok']);
      for (let k = 1; k < 3; k++) expect(calls[k].link, `call ${k}`).toMatchObject({ relation: 'continue', parent: calls[k - 1].id });
    } finally {
      await g.close();
    }
  });

  it('the remembered turns go with the session when it ends', async () => {
    const s = await session(base);
    await new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'nano', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
    expect(gw.sessions.get(s.id)!.turns!.size).toBe(1);
    await fetch(`${base}/v1/sessions/${s.id}/close`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(gw.sessions.get(s.id)!.turns).toBeNull();
  });
});
