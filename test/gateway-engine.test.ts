// The gateway on the REAL embedded NanoEngine (a small random model): the model's output is noise,
// so the checks are recording invariants: prompt ids are the template's rendering of the request,
// the recorded completion ids parse to exactly the text the agent got, logprobs and versions cover
// every completion token (and match the logprobs the agent was sent), streaming == non-streaming
// for the same seed, and concurrent sessions on one engine each keep their own calls.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NanoEngine } from '../lib/engine/engine.js';
import { createGateway, EngineUpstream, MemoryRecorder, type Gateway } from '../lib/gateway/index.js';
import { parse, render } from '../lib/model/chatTemplate.js';
import { NanoPolicy, type NanoPolicyConfig } from '../lib/model/policy.js';

const SMALL: Partial<NanoPolicyConfig> = { dim: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, ffnDim: 96 };
const ADMIN = 'admin';
const SEED = Math.floor(Math.random() * 2 ** 31);
const MESSAGES = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Say something.' }];

let engine: NanoEngine, gw: Gateway, base: string, recorder: MemoryRecorder;

async function session() {
  const r = await fetch(`${base}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{}' });
  return (await r.json()) as { id: string; key: string };
}

beforeAll(async () => {
  const params = new NanoPolicy(SMALL).init(SEED % 1000);
  engine = new NanoEngine({ config: SMALL, params, cacheTokens: 8192, version: 3 });
  recorder = new MemoryRecorder();
  gw = createGateway({ upstream: new EngineUpstream({ generator: engine, model: 'nano' }), adminToken: ADMIN, recorder });
  base = await gw.listen();
});
afterAll(async () => {
  await gw.close();
  engine.close();
});

describe(`gateway / real NanoEngine (seed ${SEED})`, () => {
  it('records token-exact calls: ids parse to the agent\'s text, logprobs cover the completion, stream == non-stream', async () => {
    const a = await session(), b = await session();
    const body = { model: 'nano', messages: MESSAGES, max_tokens: 40, temperature: 1, seed: SEED % 100000, logprobs: true, top_logprobs: 1 };
    const plain = await new OpenAI({ apiKey: a.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create(body as never) as OpenAI.Chat.ChatCompletion;
    const stream = await new OpenAI({ apiKey: 'EMPTY', baseURL: `${base}/sessions/${b.id}/v1`, maxRetries: 0 }).chat.completions.create({ ...body, stream: true } as never) as unknown as AsyncIterable<OpenAI.Chat.ChatCompletionChunk>;
    let streamedText = '';
    const streamedLogprobs: number[] = [];
    for await (const chunk of stream)
      for (const ch of chunk.choices) {
        streamedText += ch.delta.content ?? '';
        for (const l of ch.logprobs?.content ?? []) streamedLogprobs.push(l.logprob);
      }
    const [pa] = recorder.callsOf(a.id), [pb] = recorder.callsOf(b.id);
    for (const call of [pa, pb]) {
      expect(call.trainable).toBe(true);
      expect(Array.from(call.promptIds!)).toEqual(Array.from(render(MESSAGES, undefined, { addGenerationPrompt: true })));
      const n = call.completionIds!.length;
      expect(n).toBeGreaterThan(0);
      expect(n).toBeLessThanOrEqual(40);
      expect(call.logprobs!.length).toBe(n);
      expect(Array.from(call.versions!)).toEqual(new Array(n).fill(3));
      for (const lp of call.logprobs!) expect(lp).toBeLessThanOrEqual(0);
    }
    expect(Array.from(pb.completionIds!)).toEqual(Array.from(pa.completionIds!));
    expect(Array.from(pb.logprobs!)).toEqual(Array.from(pa.logprobs!));
    // What the agent got is what the recorded ids parse to (random output: usually plain content,
    // but a tool-call block or reasoning would also be parsed the same way on both sides).
    const parsed = parse(pa.completionIds!);
    expect(plain.choices[0].message.content ?? '').toBe(parsed.content);
    expect(streamedText).toBe(parsed.content);
    expect(plain.choices[0].logprobs!.content!.map((l) => l.logprob)).toEqual(Array.from(pa.logprobs!));
    expect(streamedLogprobs).toEqual(Array.from(pa.logprobs!));
    expect(plain.choices[0].finish_reason).toBe(parsed.finishedTurn ? 'stop' : 'length');
  });

  it('concurrent sessions on one engine, both protocols, second turns continue their branch', async () => {
    const sessions = await Promise.all(Array.from({ length: 6 }, () => session()));
    await Promise.all(sessions.map(async (s, i) => {
      const history: { role: 'user' | 'assistant'; content: string }[] = [{ role: 'user', content: `task ${i}` }];
      for (let turn = 0; turn < 2; turn++) {
        let text: string;
        if (i % 2 === 0) {
          const r = await new OpenAI({ apiKey: s.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'nano', messages: history, max_tokens: 12, seed: i * 10 + turn });
          text = r.choices[0].message.content ?? '';
        } else {
          const r = await new Anthropic({ apiKey: s.key, baseURL: base, maxRetries: 0 }).messages.create({ model: 'nano', messages: history, max_tokens: 12 });
          text = r.content.map((blk) => (blk.type === 'text' ? blk.text : '')).join('');
        }
        history.push({ role: 'assistant', content: text }, { role: 'user', content: 'more' });
      }
      const calls = recorder.callsOf(s.id);
      expect(calls.length).toBe(2);
      expect(calls.every((c) => c.trainable && c.logprobs!.length === c.completionIds!.length)).toBe(true);
      // Random output may hold a malformed tool call or cut a character: the next prompt then does
      // not extend the completion and the call forks. Either way the link is consistent with the ids.
      const prev = calls[0], next = calls[1];
      const seq = [...prev.promptIds!, ...prev.completionIds!];
      const extendsPrev = seq.every((t, k) => next.promptIds![k] === t);
      const exact = parse(prev.completionIds!).exact;
      if (exact) expect(extendsPrev).toBe(true);
      expect(next.link.relation).toBe(extendsPrev ? 'continue' : 'fork');
      expect(next.link.parent).toBe(prev.id);
    }));
  });
});
