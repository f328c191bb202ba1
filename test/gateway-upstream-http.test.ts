// The HTTP layer of OpenAICompatibleUpstream: the SSE decoder against bodies cut into random pieces,
// the keep-alive transport against real loopback servers (connections reused, capped, a request on a
// connection the server closed while idle sent again, UTF-8 split across packets), and the upstream
// over the FAKE vLLM server (no GPU server runs here) reusing one connection call after call.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayErrorCode } from '../lib/gateway/errors.js';
import { OpenAICompatibleUpstream } from '../lib/gateway/openaiUpstream.js';
import { SseDecoder } from '../lib/gateway/sseReader.js';
import { bodyText, KeepAliveTransport } from '../lib/gateway/upstreamHttp.js';
import { FakeVllmServer } from './fakes/fakeVllmServer.js';
import { seededRun, type Rng } from './helpers/random.js';

const run = seededRun();

/** A random SSE body and the data of its complete events, built side by side (no parser involved). */
function sseBody(rng: Rng): { body: string; events: string[] } {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rng() * xs.length)];
  const text = () => Array.from({ length: Math.floor(rng() * 12) }, () => pick(['a', 'b', ' ', '{', '"', ':', 'é', '日', '🙂', 'data:'])).join('');
  let body = '';
  const events: string[] = [];
  const count = 1 + Math.floor(rng() * 8);
  for (let e = 0; e < count; e++) {
    // One line ending per event, so a "\r" ending is never followed by a blank line ending in "\n".
    const eol = pick(['\n', '\r\n', '\r']);
    const lines: string[] = [];
    const data: string[] = [];
    if (rng() < 0.3) lines.push(`: keep-alive ${text()}`);
    if (rng() < 0.3) lines.push(`event: ${pick(['message', 'delta'])}`);
    for (let k = 0, n = 1 + Math.floor(rng() * 3); k < n; k++) {
      const value = text();
      data.push(value);
      // "data:" without the space only where the value does not start with one (the decoder strips one).
      lines.push(rng() < 0.5 || value.startsWith(' ') ? `data: ${value}` : `data:${value}`);
      if (rng() < 0.2) lines.push(`id: ${k}`);
    }
    const cut = e === count - 1 && rng() < 0.3; // the stream ends inside its last event
    body += lines.map((l) => l + eol).join('') + (cut ? '' : eol);
    if (!cut) events.push(data.join('\n'));
  }
  return { body, events };
}

describe(`SSE decoder (seed ${run.seed})`, () => {
  it('any chunking of a random body gives the data of each complete event, in order', () => {
    const rng = run.rng();
    for (let trial = 0; trial < 300; trial++) {
      const { body, events } = sseBody(rng);
      const got: string[] = [];
      const decoder = new SseDecoder();
      for (let at = 0; at < body.length;) {
        const len = rng() < 0.2 ? 1 : 1 + Math.floor(rng() * 40); // single characters split "\r\n" often
        decoder.push(body.slice(at, at + len), (d) => got.push(d));
        at += len;
      }
      expect(got, `trial ${trial}: ${JSON.stringify(body)}`).toEqual(events);
    }
  });
});

/** A loopback HTTP server that counts its connections. */
async function countingServer(handler: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void) {
  const server = createHttpServer(handler);
  let connections = 0;
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { server, url, connections: () => connections, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

const post = (t: KeepAliveTransport, url: string, body = '{}') =>
  t.post({ url, headers: { 'content-type': 'application/json' }, body, signal: new AbortController().signal });

describe('keep-alive transport (loopback servers)', () => {
  it('reuses connections, opens at most maxConnections, queues the rest', async () => {
    let inFlight = 0, peak = 0;
    const srv = await countingServer((req, res) => {
      peak = Math.max(peak, ++inFlight);
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => setTimeout(() => {
        inFlight--;
        res.end(`echo ${body}`);
      }, 5));
    });
    const t = new KeepAliveTransport(srv.url, { maxConnections: 2 });
    try {
      for (let i = 0; i < 5; i++) expect(await bodyText(await post(t, srv.url, `"seq ${i}"`))).toBe(`echo "seq ${i}"`);
      expect(srv.connections()).toBe(1);
      const answers = await Promise.all(Array.from({ length: 6 }, async (_, i) => bodyText(await post(t, srv.url, `"par ${i}"`))));
      expect(answers).toEqual(Array.from({ length: 6 }, (_, i) => `echo "par ${i}"`));
      expect(srv.connections()).toBe(2);
      expect(peak).toBe(2);
    } finally {
      t.close();
      await srv.close();
    }
  });

  it('decodes UTF-8 split across packets', async () => {
    const text = 'naïve 日本語 🙂 '.repeat(50);
    const bytes = Buffer.from(text, 'utf8');
    const srv = await countingServer((req, res) => {
      req.resume().on('end', async () => {
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
        for (let at = 0; at < bytes.length; at += 7) {
          res.write(bytes.subarray(at, at + 7)); // 7 bytes: cuts through multi-byte characters
          await new Promise((r) => setImmediate(r));
        }
        res.end();
      });
    });
    const t = new KeepAliveTransport(srv.url, { maxConnections: 4 });
    try {
      const res = await post(t, srv.url);
      expect(res.status).toBe(200);
      expect(await bodyText(res)).toBe(text);
    } finally {
      t.close();
      await srv.close();
    }
  });

  it('a request on a kept connection the server has just closed is sent once more on a new one; on a fresh connection it fails', async () => {
    // A raw server: on each connection it answers the first request (keep-alive) and drops the
    // connection when a second one arrives, as a server does that closed it while it sat idle.
    const requests: number[] = [];
    let connections = 0;
    const server = createTcpServer((socket: Socket) => {
      const n = ++connections;
      let seen = 0, buffer = '';
      socket.setEncoding('utf8').on('data', (d: string) => {
        buffer += d;
        for (let end; (end = buffer.indexOf('\r\n\r\n')) >= 0;) {
          const length = Number(/content-length: (\d+)/i.exec(buffer.slice(0, end))?.[1] ?? 0);
          if (buffer.length < end + 4 + length) return;
          buffer = buffer.slice(end + 4 + length);
          requests.push(n);
          if (++seen > 1) return void socket.destroy();
          socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: keep-alive\r\n\r\nok ${n}`);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const t = new KeepAliveTransport(url, { maxConnections: 4 });
    try {
      expect(await bodyText(await post(t, url))).toBe('ok 1');
      expect(await bodyText(await post(t, url))).toBe('ok 2'); // sent on connection 1, dropped, sent again on 2
      expect(requests).toEqual([1, 1, 2]);
    } finally {
      t.close();
    }
    // Without a kept connection nothing is retried: a drop is the caller's error.
    const dropAll = createTcpServer((socket) => socket.once('data', () => socket.destroy()));
    await new Promise<void>((r) => dropAll.listen(0, '127.0.0.1', r));
    const url2 = `http://127.0.0.1:${(dropAll.address() as AddressInfo).port}`;
    const t2 = new KeepAliveTransport(url2, { maxConnections: 4 });
    try {
      await expect(post(t2, url2)).rejects.toMatchObject({ code: 'ECONNRESET' });
      // Through the upstream: a 502 that says what happened.
      const up = new OpenAICompatibleUpstream({ baseURL: `${url2}/v1`, model: 'm', version: () => 0 });
      await expect(up.complete({ model: 'm', messages: [{ role: 'user', content: 'x' }], sampling: {}, signal: new AbortController().signal }, () => {}))
        .rejects.toMatchObject({ code: GatewayErrorCode.UPSTREAM_ERROR, status: 502, message: expect.stringMatching(/closed the connection before answering: ECONNRESET$/) });
      up.close();
    } finally {
      t2.close();
      await new Promise((r) => dropAll.close(r));
      await new Promise((r) => server.close(r));
    }
  });
});

describe(`OpenAICompatibleUpstream over keep-alive (fake vLLM, seed ${run.seed})`, () => {
  let fake: FakeVllmServer;
  let connections = 0;
  beforeAll(async () => {
    fake = new FakeVllmServer({ script: () => ({ role: 'assistant', content: 'Short answer.' }), seed: run.seed });
    await fake.start();
    // The fake's node:http server is private; the test only listens to it.
    (fake as unknown as { server: Server }).server.on('connection', () => connections++);
  });
  afterAll(() => fake.close());

  it('streamed calls one after another share one connection (the body is read past [DONE] to its end)', async () => {
    const up = new OpenAICompatibleUpstream({ baseURL: fake.url, model: fake.model, version: () => 1 });
    const req = () => up.complete({ model: 'm', messages: [{ role: 'user', content: 'hi' }], sampling: {}, signal: new AbortController().signal }, () => {});
    const before = connections;
    try {
      for (let i = 0; i < 8; i++) {
        const r = await req();
        expect(r).toMatchObject({ trainable: true, content: 'Short answer.' });
        expect(Array.from(r.completionIds!)).toEqual(Array.from(fake.calls.at(-1)!.generated!.ids));
      }
      expect(connections - before).toBe(1);
      // A call cancelled mid-stream closes its connection (the server stops); the next opens a new one.
      fake.nextFaults.push({ tokenDelayMs: 30 });
      const controller = new AbortController();
      const cancelled = up.complete({ model: 'm', messages: [{ role: 'user', content: 'hi' }], sampling: {}, signal: controller.signal }, (e) => {
        if (e.type === 'token') controller.abort();
      });
      expect(await cancelled).toMatchObject({ finishReason: 'abort' });
      expect((await req()).trainable).toBe(true);
      expect(connections - before).toBe(2);
    } finally {
      up.close();
    }
  });
});
