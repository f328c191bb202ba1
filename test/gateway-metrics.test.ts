// Prometheus metrics of the gateway: after a known mix of calls (a tool loop with a fork, n choices,
// a malformed tool call, an upstream failure, Anthropic and OpenAI), /metrics is scraped, its text
// parsed, and every counter compared with what happened: the requests made here and the records the
// gateway handed to its recorder. Also: access control, metrics off, two gateways in one process.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGateway, EngineUpstream, MemoryRecorder, ScriptedFakeGenerator, type Gateway } from '../lib/gateway/index.js';
import type { ChatMessage } from '../lib/model/chatTemplate.js';
import { decode } from '../lib/model/tokenizer.js';

const ADMIN = 'admin-secret';
const TOOLS = [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];

function script(promptIds: Int32Array) {
  const text = decode(promptIds);
  if (text.includes('boom')) throw new Error('engine exploded');
  if (text.includes('garble')) return { role: 'assistant' as const, content: 'x', tool_calls: [{ function: { name: 'get_weather', arguments: '{"city": ' } }] };
  if (text.lastIndexOf('<|tool|>') > text.lastIndexOf('<|user|>')) return { role: 'assistant' as const, content: 'Sunny.' };
  return { role: 'assistant' as const, content: 'Checking.', tool_calls: [{ function: { name: 'get_weather', arguments: '{"city": "Oslo"}' } }] };
}

/** Parses the text exposition format into `name{k="v",...}` (labels sorted) -> value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels = m[2] ? [...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map(([, k, v]) => `${k}="${v}"`).sort() : [];
    out.set(`${m[1]}{${labels.join(',')}}`, Number(m[3]));
  }
  return out;
}
const key = (name: string, labels: Record<string, string> = {}) =>
  `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')}}`;

let gw: Gateway, base: string, recorder: MemoryRecorder;

async function admin(path: string, body: unknown = {}) {
  const r = await fetch(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return (await r.json()) as { id: string; key: string };
}
async function scrape(url = base, headers: Record<string, string> = {}) {
  const r = await fetch(`${url}/metrics`, { headers });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain/);
  return parseMetrics(await r.text());
}

beforeAll(async () => {
  recorder = new MemoryRecorder();
  gw = createGateway({ upstream: new EngineUpstream({ generator: new ScriptedFakeGenerator(script), model: 'forge-nano' }), adminToken: ADMIN, recorder });
  base = await gw.listen();
});
afterAll(async () => {
  await gw.close();
});

describe('gateway / Prometheus metrics', () => {
  it('counters equal what happened', async () => {
    const a = await admin('/v1/sessions'), b = await admin('/v1/sessions'), c = await admin('/v1/sessions');
    const oa = new OpenAI({ apiKey: a.key, baseURL: `${base}/v1`, maxRetries: 0 });
    // Session a: tool loop (root, continue), a truncated history (fork), then n = 2 (two forks).
    const messages: ChatMessage[] = [{ role: 'user', content: 'city: Oslo' }];
    const first = (await oa.chat.completions.create({ model: 'm', messages: messages as never, tools: TOOLS })).choices[0].message;
    messages.push(first as never, { role: 'tool', tool_call_id: first.tool_calls![0].id, content: '21C' });
    await oa.chat.completions.create({ model: 'm', messages: messages as never, tools: TOOLS });
    await oa.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'city: Oslo again' }], tools: TOOLS });
    await oa.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'city: Oslo, once more' }], tools: TOOLS, n: 2 });
    // Session b: a malformed tool call (Anthropic), then an upstream failure (OpenAI, 502).
    await new Anthropic({ apiKey: b.key, baseURL: base, maxRetries: 0 }).messages.create({ model: 'm', max_tokens: 100, messages: [{ role: 'user', content: 'garble' }] });
    const failed = await new OpenAI({ apiKey: b.key, baseURL: `${base}/v1`, maxRetries: 0 }).chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'boom' }] }).then(() => null, (e) => e);
    expect(failed?.status).toBe(502);
    await admin(`/v1/sessions/${a.id}/close`);
    expect((await fetch(`${base}/v1/nowhere/abc123`)).status).toBe(404);
    await admin(`/v1/sessions/${c.id}/fail`, { reason: 'gave up' });

    const m = await scrape();
    const get = (name: string, labels?: Record<string, string>) => m.get(key(name, labels)) ?? 0;
    const calls = recorder.calls;
    expect(calls.length).toBe(7);
    // Calls by protocol, status, trainability: against the records, and against the script.
    const expected = new Map<string, number>();
    for (const r of calls) {
      const k = key('forge_gateway_calls_total', { protocol: r.protocol, status: r.status, trainable: String(r.trainable) });
      expected.set(k, (expected.get(k) ?? 0) + 1);
    }
    for (const [k, v] of expected) expect([k, m.get(k)]).toEqual([k, v]);
    expect(get('forge_gateway_calls_total', { protocol: 'openai', status: 'ok', trainable: 'true' })).toBe(5);
    expect(get('forge_gateway_calls_total', { protocol: 'anthropic', status: 'ok', trainable: 'true' })).toBe(1);
    expect(get('forge_gateway_calls_total', { protocol: 'openai', status: 'failed', trainable: 'false' })).toBe(1);
    expect(get('forge_gateway_untrainable_calls_total', { reason: 'failed' })).toBe(1);
    const untrainable = [...m].filter(([k]) => k.startsWith('forge_gateway_untrainable_calls_total{')).reduce((s, [, v]) => s + v, 0);
    expect(untrainable).toBe(calls.filter((r) => !r.trainable).length);
    // Tokens: the sums of the records' usage.
    for (const protocol of ['openai', 'anthropic'] as const) {
      const mine = calls.filter((r) => r.protocol === protocol);
      expect(get('forge_gateway_prompt_tokens_total', { protocol })).toBe(mine.reduce((s, r) => s + r.usage.promptTokens, 0));
      expect(get('forge_gateway_completion_tokens_total', { protocol })).toBe(mine.reduce((s, r) => s + r.usage.completionTokens, 0));
      expect(get('forge_gateway_cached_prompt_tokens_total', { protocol })).toBe(mine.reduce((s, r) => s + r.usage.cachedPromptTokens, 0));
      expect(get('forge_gateway_call_duration_seconds_count', { protocol })).toBe(mine.length);
      expect(get('forge_gateway_call_duration_seconds_sum', { protocol })).toBeCloseTo(mine.reduce((s, r) => s + (r.timings.doneAt - r.timings.receivedAt) / 1000, 0), 6);
      expect(get('forge_gateway_time_to_first_token_seconds_count', { protocol })).toBe(mine.filter((r) => r.timings.firstTokenAt !== null).length);
      expect(get('forge_gateway_upstream_queue_seconds_count', { protocol })).toBe(mine.filter((r) => r.timings.admittedAt !== null).length);
    }
    expect(get('forge_gateway_prompt_tokens_total', { protocol: 'openai' })).toBeGreaterThan(0);
    // Tree links: root (a's first, b's Anthropic call), continue, three forks, one unknown (failed).
    expect([...['root', 'continue', 'fork', 'unknown'].map((relation) => get('forge_gateway_call_links_total', { relation }))]).toEqual([2, 1, 3, 1]);
    expect(get('forge_gateway_parse_errors_total', { protocol: 'anthropic', kind: 'bad_json' })).toBe(1);
    // HTTP requests: 4 chat completions answered 200, one 502, one Anthropic message, 5 admin POSTs.
    const route = (r: string, status: string, method = 'POST') => get('forge_gateway_http_requests_total', { protocol: routeProtocolOf(r), route: r, method, status });
    expect(route('/v1/chat/completions', '200')).toBe(4);
    expect(route('/v1/chat/completions', '502')).toBe(1);
    expect(route('/v1/messages', '200')).toBe(1);
    expect(route('/v1/sessions', '201')).toBe(3);
    expect(route('/v1/sessions/:id/close', '200')).toBe(1);
    expect(route('/v1/sessions/:id/fail', '200')).toBe(1);
    // An unknown path is one bounded label, never the raw URL.
    expect(get('forge_gateway_http_requests_total', { protocol: 'other', route: 'unmatched', method: 'GET', status: '404' })).toBe(1);
    expect([...m.keys()].some((k) => k.includes('abc123'))).toBe(false);
    // Sessions and requests in flight, read at scrape time.
    expect(['open', 'closing', 'closed', 'failed'].map((state) => get('forge_gateway_sessions', { state }))).toEqual([1, 0, 1, 1]);
    expect(get('forge_gateway_requests_in_flight')).toBe(0);
    expect(get('forge_gateway_recorder_failures_total', { event: 'call' })).toBe(0);

    // A second scrape counts the first one and nothing else changed.
    const again = await scrape();
    expect(again.get(key('forge_gateway_http_requests_total', { protocol: 'other', route: '/metrics', method: 'GET', status: '200' }))).toBe(1);
    expect(again.get(key('forge_gateway_calls_total', { protocol: 'openai', status: 'ok', trainable: 'true' }))).toBe(5);
  });

  it('access: open on loopback by default, the admin token elsewhere or with auth: true; off when disabled', async () => {
    const remote = await gw.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '10.1.2.3' });
    expect([remote.statusCode, remote.json().error.code]).toEqual([403, 'FORGE_GW_FORBIDDEN']);
    const remoteAdmin = await gw.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '10.1.2.3', headers: { authorization: `Bearer ${ADMIN}` } });
    expect(remoteAdmin.statusCode).toBe(200);
    expect((await gw.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '::ffff:127.0.0.1' })).statusCode).toBe(200);

    const upstream = () => new EngineUpstream({ generator: new ScriptedFakeGenerator(script) });
    const strict = createGateway({ upstream: upstream(), adminToken: ADMIN, metrics: { auth: true } });
    const off = createGateway({ upstream: upstream(), adminToken: ADMIN, metrics: { enabled: false } });
    try {
      const url = await strict.listen();
      expect((await fetch(`${url}/metrics`)).status).toBe(403);
      // Its own registry: none of the first gateway's calls.
      const own = await scrape(url, { authorization: `Bearer ${ADMIN}` });
      expect([...own.keys()].some((k) => k.startsWith('forge_gateway_calls_total'))).toBe(false);
      expect(off.metrics).toBeUndefined();
      expect((await off.app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(404);
    } finally {
      await strict.close();
      await off.close();
    }
  });
});

function routeProtocolOf(route: string): string {
  return route.includes('/v1/messages') ? 'anthropic' : route.includes('/chat/completions') ? 'openai' : 'admin';
}
