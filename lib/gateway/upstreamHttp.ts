// The HTTP client of OpenAICompatibleUpstream. By default node:http(s) requests on a keep-alive
// Agent: against a server on the same machine the global fetch (undici) spent about twice the CPU
// per request, and that was most of what the gateway added on the vLLM path. Any fetch-compatible
// function can stand in instead (fetchTransport), so a test can fake the server as a function.
//
// A transport answers with the status line and the body as UTF-8 text in the chunks it arrived in.
// Stopping the iteration early (or aborting the request's signal) closes the connection, which is
// how the server learns that the request was cancelled.
import http from 'node:http';
import https from 'node:https';

export interface TransportRequest {
  url: string;
  headers: Readonly<Record<string, string>>;
  body: string;
  /** Aborting it cancels the request: the connection is closed. */
  signal: AbortSignal;
}

export interface TransportResponse {
  status: number;
  /** The body as text, chunk by chunk as it arrives (multi-byte characters never split). */
  chunks: AsyncIterable<string>;
}

/** Sends one POST; rejects (with the system error, e.g. code ECONNREFUSED) when no response came. */
export interface UpstreamTransport {
  post(request: TransportRequest): Promise<TransportResponse>;
  /** Closes the idle connections; requests in flight are not affected. */
  close(): void;
}

/** The whole body of a response as text. */
export async function bodyText(res: TransportResponse): Promise<string> {
  let text = '';
  for await (const chunk of res.chunks) text += chunk;
  return text;
}

export interface KeepAliveTransportOptions {
  /** Connections open to the server at most (a request beyond waits for one); also how many idle ones are kept. */
  maxConnections: number;
}

/** Errors of a write to a connection the server had already closed while it sat idle. */
const STALE_CONNECTION = new Set(['ECONNRESET', 'EPIPE']);

/** node:http(s) on one keep-alive Agent for one server. */
export class KeepAliveTransport implements UpstreamTransport {
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;

  constructor(baseURL: string, { maxConnections }: KeepAliveTransportOptions) {
    const secure = new URL(baseURL).protocol === 'https:';
    // lifo: the most recently used connection is reused first, so idle ones age out on the server's
    // side instead of all staying half-warm.
    const agentOptions: http.AgentOptions = { keepAlive: true, maxSockets: maxConnections, maxFreeSockets: maxConnections, scheduling: 'lifo' };
    this.agent = secure ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.request = secure ? https.request : http.request;
  }

  post(r: TransportRequest): Promise<TransportResponse> {
    return this.send(r, String(Buffer.byteLength(r.body, 'utf8')), true);
  }

  private send(r: TransportRequest, contentLength: string, mayRetry: boolean): Promise<TransportResponse> {
    return new Promise((resolve, reject) => {
      const req = this.request(r.url, {
        method: 'POST', agent: this.agent, signal: r.signal,
        headers: { ...r.headers, 'content-length': contentLength },
      });
      let responded = false;
      req.on('response', (res) => {
        responded = true;
        res.setEncoding('utf8');
        resolve({ status: res.statusCode ?? 0, chunks: res });
      });
      // Kept for the request's whole life: a later error (the connection breaks mid-body) reaches the
      // reader through the response stream; this only keeps it from being an unhandled 'error'.
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (responded) return;
        // A server closes idle keep-alive connections (uvicorn after 5 s); a request sent on one just
        // closed fails before any response. It never reached the server: send it once more, on a new one.
        if (mayRetry && req.reusedSocket && STALE_CONNECTION.has(e.code ?? '') && !r.signal.aborted)
          return void this.send(r, contentLength, false).then(resolve, reject);
        reject(e);
      });
      // A string body goes out in one write with the headers (a Buffer would be a second one).
      req.end(r.body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** A fetch-compatible function as a transport (the default fetch, or a fake server in a test). */
export function fetchTransport(fetchFn: typeof fetch): UpstreamTransport {
  return {
    async post(r) {
      const res = await fetchFn(r.url, { method: 'POST', headers: r.headers, body: r.body, signal: r.signal });
      const body = res.body;
      return {
        status: res.status,
        chunks: body === null ? (async function* () {})() : body.pipeThrough(new TextDecoderStream()),
      };
    },
    close() {},
  };
}
