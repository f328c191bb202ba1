// The gateway with the real `@anthropic-ai/sdk` client on loopback, driven by a scripted FAKE
// generator: a tool_use / tool_result loop streaming and not, both auth styles. tool_use inputs come
// back as objects; the gateway re-renders the exact argument text the model wrote, so the second
// call continues the first instead of forking.
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, EngineUpstream, MemoryRecorder, ScriptedFakeGenerator, toChatMessages, type Gateway } from '../lib/gateway/index.js';
import { assistantIds, render } from '../lib/model/chatTemplate.js';
import { decode } from '../lib/model/tokenizer.js';

const ADMIN = 'admin-secret';
const TOOLS = [{ name: 'read_file', description: 'Reads a file', input_schema: { type: 'object' as const, properties: { path: { type: 'string' } } } }];

function script(promptIds: Int32Array) {
  const text = decode(promptIds);
  if (text.lastIndexOf('<|tool|>') > text.lastIndexOf('<|user|>'))
    return { role: 'assistant' as const, content: 'The file says hi.' };
  return {
    role: 'assistant' as const,
    reasoning_content: 'I should read it.',
    content: 'Reading.',
    tool_calls: [{ function: { name: 'read_file', arguments: '{ "path" : "a.txt" }' } }],
  };
}

let gw: Gateway;
let base: string;
let recorder: MemoryRecorder;

async function newSession(): Promise<{ id: string; key: string }> {
  const r = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{}' });
  return (await r.json()) as { id: string; key: string };
}

type Block = Anthropic.ContentBlock;

async function turn(c: Anthropic, messages: Anthropic.MessageParam[], stream: boolean): Promise<{ content: Block[]; stop: string | null }> {
  const body = { model: 'forge-nano', max_tokens: 200, system: 'You read files.', tools: TOOLS, messages };
  if (!stream) {
    const m = await c.messages.create(body);
    return { content: m.content, stop: m.stop_reason };
  }
  const s = c.messages.stream(body);
  const m = await s.finalMessage();
  return { content: m.content, stop: m.stop_reason };
}

async function loop(c: Anthropic, stream: boolean) {
  const messages: Anthropic.MessageParam[] = [{ role: 'user', content: 'read a.txt' }];
  const first = await turn(c, messages, stream);
  expect(first.stop).toBe('tool_use');
  expect(first.content.map((b) => b.type)).toEqual(['thinking', 'text', 'tool_use']);
  const use = first.content[2] as Anthropic.ToolUseBlock;
  expect(use.input).toEqual({ path: 'a.txt' });
  expect((first.content[0] as Anthropic.ThinkingBlock).thinking).toBe('I should read it.');
  messages.push({ role: 'assistant', content: first.content as never });
  messages.push({ role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'hi' }] });
  const second = await turn(c, messages, stream);
  expect(second.stop).toBe('end_turn');
  expect(second.content).toEqual([{ type: 'text', text: 'The file says hi.' }]);
  messages.push({ role: 'assistant', content: second.content as never });
  return messages;
}

beforeAll(async () => {
  recorder = new MemoryRecorder();
  gw = createGateway({ upstream: new EngineUpstream({ generator: new ScriptedFakeGenerator(script), model: 'forge-nano' }), adminToken: ADMIN, recorder });
  base = await gw.listen();
});
afterAll(async () => {
  await gw.close();
});

describe('gateway / Anthropic messages (scripted fake generator)', () => {
  for (const stream of [false, true])
    it(`tool_use loop ${stream ? 'streamed' : 'not streamed'}: calls continue their branch, ids re-render`, async () => {
      const s = await newSession();
      const c = stream
        ? new Anthropic({ apiKey: 'placeholder', baseURL: `${base}/sessions/${s.id}`, maxRetries: 0 })
        : new Anthropic({ apiKey: s.key, baseURL: base, maxRetries: 0 });
      const messages = await loop(c, stream);
      const calls = recorder.callsOf(s.id);
      expect(calls.length).toBe(2);
      expect(calls[1].link).toEqual({ relation: 'continue', parent: calls[0].id, forkTokens: calls[0].promptIds!.length + calls[0].completionIds!.length });
      // The agent's messages, converted, re-render to the recorded prompt; the tool_use input object
      // renders back as the exact text the model wrote.
      const chat = toChatMessages({ max_tokens: 1, system: 'You read files.', messages: messages as never });
      const asChat = chat.map((m) => m.role === 'assistant' && m.tool_calls
        ? { ...m, tool_calls: m.tool_calls.map((t) => ({ ...t, function: { ...t.function, arguments: calls[0].toolCalls[0].argumentsText } })) }
        : m);
      expect(Array.from(calls[1].promptIds!)).toEqual(Array.from(render(asChat.slice(0, 4), TOOLS, { addGenerationPrompt: true })));
      expect(Array.from(calls[0].completionIds!)).toEqual(Array.from(assistantIds(asChat[2] as never)));
      expect(calls[0].toolCalls[0].argumentsText).toBe('{ "path" : "a.txt" }');
      expect(calls[0].reasoning).toBe('I should read it.');
    });

  it('stop_sequences: stop_reason stop_sequence, text trimmed', async () => {
    const s = await newSession();
    const c = new Anthropic({ apiKey: s.key, baseURL: base, maxRetries: 0 });
    const m = await c.messages.create({ model: 'x', max_tokens: 50, messages: [{ role: 'user', content: 'go' }], stop_sequences: ['ing'] });
    expect(m.stop_reason).toBe('stop_sequence');
    expect(m.stop_sequence).toBe('ing');
    expect(m.content[0]).toMatchObject({ type: 'thinking' });
    expect(recorder.callsOf(s.id)[0].finishReason).toBe('stop');
  });
});
