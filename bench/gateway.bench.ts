// Gateway overhead and call-linking cost.
//   1. The gateway against calling the upstream directly, in one run, with autocannon: requests/s
//      and p50/p99 latency at 1, 64 and 1024 concurrent sessions (connections; through the gateway
//      each connection uses its own session, through /sessions/<id>/v1), non-streaming and
//      streaming, on two paths. vLLM: the FAKE vLLM server of the tests (test/fakes/fakeVllmServer.ts:
//      a real HTTP server speaking vLLM's protocol with token ids, answering at once with a fixed
//      short completion; no GPU here) called directly, and through the gateway's
//      OpenAICompatibleUpstream. Embedded: the embedded upstream over a FAKE instant generator behind
//      a bare fastify route, and the gateway over the same upstream (the gateway's own cost, without
//      the extra hop). Servers and the load generator are separate processes (this file, run as a
//      child with FORGE_GATEWAY_BENCH_ROLE set, serves one role), so the client's work does not
//      queue behind the servers' on one event loop.
//   2. Linking a call into its session's call tree (lib/gateway/callTree.ts, a radix trie) against the
//      previous implementation (compare the prompt with every earlier call), over sessions of 1..1000
//      calls: a growing history (each call continues the last) and a bounded context (the agent
//      truncates its history: every call forks from the system prompt).
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

import { type Bench, type BenchSection, fmt, rng } from './harness.js';
import { CallTree } from '../lib/gateway/callTree.js';

const ROLE = process.env.FORGE_GATEWAY_BENCH_ROLE;
const ADMIN = 'bench-admin';
const BODY = { model: 'policy', messages: [{ role: 'user', content: 'Say done.' }], max_tokens: 16 };

// ---- the server roles (child processes) ---------------------------------------------------------

/** The embedded path's upstream: the nano chat template over a FAKE generator answering "Done." at once. */
async function instantUpstream() {
  const { EngineUpstream } = await import('../lib/gateway/engineUpstream.js');
  const { ScriptedFakeGenerator } = await import('../lib/gateway/fakeGenerator.js');
  const generator = new ScriptedFakeGenerator(() => ({ role: 'assistant', content: 'Done.' }));
  setInterval(() => (generator.prompts.length = 0), 1000).unref(); // it keeps every prompt; not here
  return new EngineUpstream({ generator });
}

/** The baseline of the embedded path: the same upstream behind one bare fastify route, no gateway. */
async function bareServer(): Promise<string> {
  const { default: Fastify } = await import('fastify');
  const upstream = await instantUpstream();
  const app = Fastify();
  app.post('/v1/chat/completions', async (request, reply) => {
    const body = request.body as { messages: never[]; max_tokens?: number; stream?: boolean };
    const head = { id: 'bare', object: 'chat.completion', created: 0, model: 'policy' };
    const signal = new AbortController().signal;
    if (!body.stream) {
      const r = await upstream.complete({ model: 'policy', messages: body.messages, sampling: { maxTokens: body.max_tokens }, signal }, () => {});
      return { ...head, choices: [{ index: 0, message: { role: 'assistant', content: r.content }, finish_reason: r.finishReason }] };
    }
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
    const r = await upstream.complete({ model: 'policy', messages: body.messages, sampling: { maxTokens: body.max_tokens }, signal }, (e) => {
      if (e.type === 'content') reply.raw.write(`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: { content: e.text } }] })}\n\n`);
    });
    reply.raw.end(`data: ${JSON.stringify({ ...head, choices: [{ index: 0, delta: {}, finish_reason: r.finishReason }] })}\n\ndata: [DONE]\n\n`);
  });
  return app.listen({ port: 0, host: '127.0.0.1' });
}

/**
 * The extra hop alone, the floor of the vLLM path: a bare node:http pass-through to the server
 * (keep-alive connections, the body piped both ways, nothing parsed or recorded). It answers the
 * session-creating POST itself so the load code drives it like the gateway.
 */
async function proxyServer(target: string): Promise<string> {
  const http = await import('node:http');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1024, maxFreeSockets: 1024 });
  let sessions = 0;
  const server = http.createServer((req, res) => {
    if (req.url === '/v1/sessions') {
      req.resume();
      res.writeHead(201, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ id: `proxy-${sessions++}` }));
    }
    const headers = { 'content-type': 'application/json', 'content-length': req.headers['content-length'] ?? '0' };
    const up = http.request(`${target}/chat/completions`, { method: 'POST', agent, headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, { 'content-type': r.headers['content-type'] ?? 'application/json' });
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

async function serveRole(role: string): Promise<void> {
  let url: string;
  if (role === 'vllm') {
    const { FakeVllmServer } = await import('../test/fakes/fakeVllmServer.js');
    const fake = new FakeVllmServer({ script: () => ({ role: 'assistant', content: 'Done.' }) });
    url = await fake.start();
    setInterval(() => (fake.calls.length = 0), 1000).unref(); // the fake keeps every call; not here
  } else if (role === 'bare') url = await bareServer();
  else if (role === 'proxy') url = await proxyServer(process.env.UPSTREAM_URL!);
  else {
    const { OpenAICompatibleUpstream } = await import('../lib/gateway/openaiUpstream.js');
    const { createGateway } = await import('../lib/gateway/server.js');
    const upstream = role === 'gateway-vllm'
      ? new OpenAICompatibleUpstream({ baseURL: process.env.UPSTREAM_URL!, model: 'fake/nano-vllm', version: () => 0 })
      : await instantUpstream();
    url = await createGateway({ upstream, adminToken: ADMIN }).listen({ port: 0 });
  }
  process.stdout.write(`${JSON.stringify({ url })}\n`);
}

if (ROLE !== undefined) await serveRole(ROLE);

function startRole(role: string, env: Record<string, string> = {}): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    env: { ...process.env, ...env, FORGE_GATEWAY_BENCH_ROLE: role }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench ${role} server exited with ${code}`)));
    createInterface({ input: child.stdout! }).once('line', (line) => resolve({ child, url: JSON.parse(line).url as string }));
  });
}

// ---- load ------------------------------------------------------------------------------------------

interface Load {
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

/** autocannon for `seconds`: one connection per URL of `urls`, or `connections` over a single URL. */
async function load(urls: string[], connections: number, stream: boolean, seconds: number): Promise<Load> {
  const latencies: number[] = [];
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({
      url: (urls.length === 1 ? urls[0] : urls) as string, connections, duration: seconds, method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer unused' },
      body: JSON.stringify({ ...BODY, stream }), timeout: 30,
    }, (err, res) => (err ? reject(err) : resolve(res)));
    // Per-response times in float ms (autocannon's own histogram keeps whole milliseconds).
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status === 200) latencies.push(ms);
    });
  });
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { rps: latencies.length / result.duration, p50: at(0.5), p99: at(0.99), errors: result.errors + result.timeouts + result.non2xx };
}

async function sessionUrls(base: string, count: number): Promise<string[]> {
  const urls: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${base}/v1/sessions`, {
      method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ task_id: `bench-${i}` }),
    });
    if (res.status !== 201) throw new Error(`creating a session: ${res.status} ${await res.text()}`);
    urls.push(`${base}/sessions/${((await res.json()) as { id: string }).id}/v1/chat/completions`);
  }
  return urls;
}

/** Rows comparing `direct` (one URL) with the gateway (one session URL per connection). */
async function compare(path: string, direct: string, gatewayBase: string, seconds: number, warmSeconds: number,
  log: (line: string) => void, notes: string[]) {
  const rows: (string | number)[][] = [];
  const sessions = await sessionUrls(gatewayBase, 1024);
  for (const stream of [false, true]) {
    for (const c of [1, 64, 1024]) {
      // Warm both paths at this concurrency first (JIT, every connection and upstream socket open),
      // so the measured window holds no connection set-up.
      await load([direct], c, stream, warmSeconds);
      await load(sessions.slice(0, c), c, stream, warmSeconds);
      const a = await load([direct], c, stream, seconds);
      const b = await load(sessions.slice(0, c), c, stream, seconds);
      const mode = stream ? 'streaming' : 'non-streaming';
      log(`${path} ${mode} x${c}: direct ${fmt(a.rps)} rps p50 ${fmt(a.p50)} ms; gateway ${fmt(b.rps)} rps p50 ${fmt(b.p50)} ms`);
      if (a.errors + b.errors > 0) notes.push(`${path}, ${mode} x${c}: ${a.errors} errors direct, ${b.errors} through the gateway.`);
      rows.push([
        path, mode, c, fmt(a.rps), fmt(b.rps), `**${fmt(b.rps / a.rps)}x**`,
        fmt(a.p50), fmt(b.p50), `**${fmt(b.p50 - a.p50)}**`, fmt(a.p99), fmt(b.p99), fmt(b.p99 - a.p99),
      ]);
    }
  }
  return rows;
}

async function overhead(quick: boolean, log: (line: string) => void): Promise<BenchSection> {
  const seconds = quick ? 1 : 3, warm = quick ? 0.5 : 1;
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  const children: ChildProcess[] = [];
  try {
    const vllm = await startRole('vllm');
    const viaVllm = await startRole('gateway-vllm', { UPSTREAM_URL: vllm.url });
    children.push(vllm.child, viaVllm.child);
    rows.push(...await compare('vLLM (fake)', `${vllm.url}/chat/completions`, viaVllm.url, seconds, warm, log, notes));
    viaVllm.child.kill();
    const proxy = await startRole('proxy', { UPSTREAM_URL: vllm.url });
    children.push(proxy.child);
    rows.push(...await compare('vLLM (fake), bare proxy', `${vllm.url}/chat/completions`, proxy.url, seconds, warm, log, notes));
    for (const c of children.splice(0)) c.kill();
    const bare = await startRole('bare');
    const embedded = await startRole('gateway-embedded');
    children.push(bare.child, embedded.child);
    rows.push(...await compare('embedded', `${bare.url}/v1/chat/completions`, embedded.url, seconds, warm, log, notes));
  } finally {
    for (const c of children) c.kill();
  }
  return {
    title: 'Gateway overhead against calling the upstream directly',
    description:
      `autocannon, ${seconds} s per row after ${warm} s of warm-up at the same concurrency, POST /v1/chat/completions (max_tokens 16, answer "Done.": 6 tokens with the end token). ` +
      'vLLM path: a FAKE vLLM server answering at once with token ids (test/fakes/fakeVllmServer.ts), called directly, and ' +
      'through the gateway (OpenAICompatibleUpstream, vLLM dialect: it streams from the server with return_token_ids and logprobs ' +
      'over keep-alive node:http connections, and checks the ids; the direct client asks for neither). "bare proxy" rows: a bare ' +
      'node:http pass-through in the gateway\'s place (keep-alive, bodies piped, nothing parsed or recorded): the cost of the extra ' +
      'hop alone, the floor for any gateway in front of a server. Embedded path: the gateway\'s embedded upstream (chat template + a FAKE generator answering at once) behind a ' +
      'bare fastify route, and the gateway over the same upstream. The gateway links each call into its session tree and records ' +
      'it in memory; each connection is its own session (/sessions/<id>/v1). Upstream, gateway and client are separate ' +
      'processes on one machine. Latencies in ms.',
    columns: ['path', 'mode', 'sessions', 'direct rps', 'gateway rps', 'rps ratio', 'direct p50', 'gateway p50', 'added p50',
      'direct p99', 'gateway p99', 'added p99'],
    rows,
    notes: [
      'At 1 session the added p50 is the per-call cost of the gateway; on the vLLM path it includes the extra HTTP hop to the ' +
        'server (a loopback request and a streamed response: system calls that, on a shared 2-core machine, cost about as much ' +
        'as the gateway\'s own work). At 64 and 1024 sessions latency is queueing behind the throughput of each path: the ' +
        'processes share the same cores, so every CPU-second the gateway spends is taken from the server and the load generator.',
      ...notes,
    ],
  };
}

// ---- linking cost ---------------------------------------------------------------------------------

/** The previous callTree.ts (a linear scan over every earlier call): the baseline. */
class LinearScanTree {
  private readonly nodes: { id: string; ids: Int32Array }[] = [];
  link(prompt: Int32Array): { parent: string | null; forkTokens: number } {
    let best: { id: string; ids: Int32Array } | undefined, bestShared = -1, ext: { id: string; ids: Int32Array } | undefined;
    for (let k = this.nodes.length - 1; k >= 0; k--) {
      const node = this.nodes[k];
      const n = Math.min(node.ids.length, prompt.length);
      let i = 0;
      while (i < n && node.ids[i] === prompt[i]) i++;
      if (i === node.ids.length && (ext === undefined || i > ext.ids.length)) ext = node;
      if (i > bestShared) [best, bestShared] = [node, i];
    }
    if (ext) return { parent: ext.id, forkTokens: ext.ids.length };
    return { parent: best?.id ?? null, forkTokens: Math.max(0, bestShared) };
  }
  add(id: string, prompt: Int32Array, completion: Int32Array): void {
    const ids = new Int32Array(prompt.length + completion.length);
    ids.set(prompt);
    ids.set(completion, prompt.length);
    this.nodes.push({ id, ids });
  }
}

/** A session's prompts and completions: growing (each call continues the last) or bounded. */
function sessionTrace(calls: number, growing: boolean, seed: number): { prompt: Int32Array; completion: Int32Array }[] {
  const r = rng(seed);
  const tok = (n: number) => Int32Array.from({ length: n }, () => Math.floor(r() * 50_000));
  const system = tok(500);
  let history = system;
  const out: { prompt: Int32Array; completion: Int32Array }[] = [];
  for (let i = 0; i < calls; i++) {
    // Growing: the history plus a 40-token tool result. Bounded: the system prompt plus the last
    // ~2000 tokens (a sliding window), so the prompt forks from the system prompt every call.
    const fresh = tok(40);
    const kept = growing ? history : history.subarray(Math.max(system.length, history.length - 2000));
    const prompt = new Int32Array((growing ? 0 : system.length) + kept.length + fresh.length);
    if (!growing) prompt.set(system);
    prompt.set(kept, growing ? 0 : system.length);
    prompt.set(fresh, prompt.length - fresh.length);
    const completion = tok(60);
    out.push({ prompt, completion });
    history = new Int32Array(prompt.length + completion.length);
    history.set(prompt);
    history.set(completion, prompt.length);
  }
  return out;
}

/**
 * µs per call (link + add) at the calls in `at`: over `reps` fresh sessions, each call of the
 * `window` calls ending at a checkpoint is timed (the others are only added), the median over the
 * reps per call, then the median over the window (these machines are noisy).
 */
function perCallMicros(make: () => { link(p: Int32Array): unknown; add(id: string, p: Int32Array, c: Int32Array): void },
  trace: { prompt: Int32Array; completion: Int32Array }[], at: number[], window: number, reps = 3): number[] {
  const timed = new Map<number, number[]>();
  for (const n of at) for (let i = Math.max(0, n - window); i < n; i++) timed.set(i, []);
  for (let rep = 0; rep < reps; rep++) {
    const tree = make();
    trace.forEach((c, i) => {
      const samples = timed.get(i);
      if (samples === undefined) return tree.add(`c${i}`, c.prompt, c.completion);
      const t0 = performance.now();
      tree.link(c.prompt);
      tree.add(`c${i}`, c.prompt, c.completion);
      samples.push((performance.now() - t0) * 1000);
    });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return at.map((n) => {
    const perCall: number[] = [];
    for (let i = Math.max(0, n - window); i < n; i++) perCall.push(median(timed.get(i)!));
    return median(perCall);
  });
}

function linking(quick: boolean, log: (line: string) => void): BenchSection {
  const calls = quick ? 300 : 1000;
  const at = [1, 10, 100, calls].filter((n, k, a) => a.indexOf(n) === k);
  const rows: (string | number)[][] = [];
  const warm = sessionTrace(60, true, 3); // JIT both implementations before measuring
  perCallMicros(() => new CallTree(), warm, [1, 60], 60);
  perCallMicros(() => new LinearScanTree(), warm, [1, 60], 60);
  for (const growing of [true, false]) {
    const trace = sessionTrace(calls, growing, growing ? 1 : 2);
    const radix = perCallMicros(() => new CallTree(), trace, at, 9);
    const scan = perCallMicros(() => new LinearScanTree(), trace, at, 9);
    at.forEach((n, k) => {
      rows.push([growing ? 'growing history' : 'bounded context', n, trace[n - 1].prompt.length, fmt(scan[k]), fmt(radix[k]), `**${fmt(scan[k] / radix[k])}x**`,
        fmt((radix[k] * 1000) / trace[n - 1].prompt.length)]);
    });
    log(`${growing ? 'growing' : 'bounded'}: call ${calls}: scan ${fmt(scan[at.length - 1])} µs, radix ${fmt(radix[at.length - 1])} µs`);
  }
  return {
    title: 'Call linking cost per call against session length',
    description:
      `One session of ${calls} calls; per call, link the prompt into the session's call tree and add prompt + completion ` +
      '(what the gateway does for every call): median over 3 sessions, then over the 9 calls up to the one named. Growing history: 500-token system ' +
      'prompt, each call resends everything plus 40 new tokens and gets 60 back (a continue). Bounded context: the system prompt ' +
      'plus the last ~2000 tokens (a fork every call). Baseline: the previous implementation, a scan over every earlier call.',
    columns: ['session', 'call', 'prompt tokens', 'linear scan µs', 'radix trie µs', 'speed-up', 'radix ns per prompt token'],
    rows,
    notes: [
      'The radix trie walks the prompt once (a memcmp of the latest call\'s sequence when the prompt extends it), so its cost ' +
        'follows the prompt length, not the number of earlier calls: flat under a bounded context; in a growing history it grows ' +
        'with the prompt only, at memcmp speed, while the scan compares against every earlier sequence.',
    ],
  };
}

export const bench: Bench = async ({ quick, log }) => [await overhead(quick, log), linking(quick, log)];
