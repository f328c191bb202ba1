// Prometheus metrics of one gateway, on its own prom-client Registry (not the global default, so
// several gateways in one process never clash). HTTP requests are counted by a fastify onResponse
// hook; calls are observed by MetricsRecorder, a CallRecorder wrapper that sees every record on its
// way to the real recorder; sessions and requests in flight are read from the session store at
// scrape time. Every label has a bounded set of values (route patterns, never session ids or keys).
//
// GET /metrics serves the text exposition format. Access (`metrics.auth`): true needs the admin
// token; false is open; the default is open to loopback clients and needs the admin token from any
// other address (scrapers on the same host need no secret; nothing is exposed on a public bind).
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CallRecord, CallRecorder, SessionInfo } from './recorder.js';
import { adminGuard, type SessionCounts } from './sessions.js';

export interface MetricsOptions {
  /** Count and serve GET /metrics. Default true. */
  enabled?: boolean;
  /** true: admin token required; false: open; default: open to loopback clients only. */
  auth?: boolean;
}

const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const SHORT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Why a call is not trainable, as a bounded label. */
export function untrainableReason(rec: CallRecord): 'failed' | 'aborted' | 'no_token_ids' | 'other' {
  if (rec.status === 'failed') return 'failed';
  if (rec.status === 'aborted') return 'aborted';
  if (rec.promptIds === undefined || rec.completionIds === undefined) return 'no_token_ids';
  return 'other';
}

/** The protocol label of a route pattern. */
export function routeProtocol(route: string): 'openai' | 'anthropic' | 'admin' | 'other' {
  if (/\/v1\/messages(\/|$)/.test(route)) return 'anthropic';
  if (/\/v1\/(chat\/completions|completions|models)(\/|$)/.test(route)) return 'openai';
  if (route.startsWith('/v1/')) return 'admin';
  return 'other';
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'protocol' | 'route' | 'method' | 'status'>;
  readonly calls: Counter<'protocol' | 'status' | 'trainable'>;
  readonly untrainable: Counter<'reason'>;
  readonly callSeconds: Histogram<'protocol'>;
  readonly firstTokenSeconds: Histogram<'protocol'>;
  readonly queueSeconds: Histogram<'protocol'>;
  readonly promptTokens: Counter<'protocol'>;
  readonly completionTokens: Counter<'protocol'>;
  readonly cachedPromptTokens: Counter<'protocol'>;
  readonly parseErrors: Counter<'protocol' | 'kind'>;
  readonly links: Counter<'relation'>;
  readonly recorderFailures: Counter<'event'>;

  constructor(sessionCounts?: () => SessionCounts) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'forge_gateway_http_requests_total', help: 'HTTP requests answered, by protocol, route pattern, method and status', labelNames: ['protocol', 'route', 'method', 'status'], registers });
    this.calls = new Counter({ name: 'forge_gateway_calls_total', help: 'Calls recorded (one per choice), by status and trainability', labelNames: ['protocol', 'status', 'trainable'], registers });
    this.untrainable = new Counter({ name: 'forge_gateway_untrainable_calls_total', help: 'Calls recorded as not trainable, by reason', labelNames: ['reason'], registers });
    this.callSeconds = new Histogram({ name: 'forge_gateway_call_duration_seconds', help: 'Call time from request received to last token', labelNames: ['protocol'], buckets: LATENCY_BUCKETS, registers });
    this.firstTokenSeconds = new Histogram({ name: 'forge_gateway_time_to_first_token_seconds', help: 'Time from request received to the first token', labelNames: ['protocol'], buckets: SHORT_BUCKETS, registers });
    this.queueSeconds = new Histogram({ name: 'forge_gateway_upstream_queue_seconds', help: 'Time from request received to admission by the upstream', labelNames: ['protocol'], buckets: SHORT_BUCKETS, registers });
    this.promptTokens = new Counter({ name: 'forge_gateway_prompt_tokens_total', help: 'Prompt tokens of recorded calls', labelNames: ['protocol'], registers });
    this.completionTokens = new Counter({ name: 'forge_gateway_completion_tokens_total', help: 'Completion tokens of recorded calls', labelNames: ['protocol'], registers });
    this.cachedPromptTokens = new Counter({ name: 'forge_gateway_cached_prompt_tokens_total', help: 'Prompt tokens served from the upstream prefix cache', labelNames: ['protocol'], registers });
    this.parseErrors = new Counter({ name: 'forge_gateway_parse_errors_total', help: 'Format errors in completions (malformed tool calls and others), by kind', labelNames: ['protocol', 'kind'], registers });
    this.links = new Counter({ name: 'forge_gateway_call_links_total', help: 'How calls hang in their session tree: root, continue, fork, unknown (no token ids)', labelNames: ['relation'], registers });
    this.recorderFailures = new Counter({ name: 'forge_gateway_recorder_failures_total', help: 'Recorder writes that failed (e.g. the data pool was unavailable)', labelNames: ['event'], registers });
    if (sessionCounts !== undefined) {
      new Gauge({
        name: 'forge_gateway_sessions', help: 'Sessions of this gateway by state', labelNames: ['state'], registers,
        collect() {
          const c = sessionCounts();
          for (const state of ['open', 'closing', 'closed', 'failed'] as const) this.set({ state }, c[state]);
        },
      });
      new Gauge({
        name: 'forge_gateway_requests_in_flight', help: 'Agent requests running on the upstream', registers,
        collect() {
          this.set(sessionCounts().inFlight);
        },
      });
    }
  }

  /** Observes one recorded call. */
  observeCall(rec: CallRecord): void {
    const protocol = rec.protocol;
    this.calls.inc({ protocol, status: rec.status, trainable: String(rec.trainable) });
    if (!rec.trainable) this.untrainable.inc({ reason: untrainableReason(rec) });
    const t = rec.timings;
    this.callSeconds.observe({ protocol }, Math.max(0, t.doneAt - t.receivedAt) / 1000);
    if (t.firstTokenAt !== null) this.firstTokenSeconds.observe({ protocol }, Math.max(0, t.firstTokenAt - t.receivedAt) / 1000);
    if (t.admittedAt !== null) this.queueSeconds.observe({ protocol }, Math.max(0, t.admittedAt - t.receivedAt) / 1000);
    this.promptTokens.inc({ protocol }, rec.usage.promptTokens);
    this.completionTokens.inc({ protocol }, rec.usage.completionTokens);
    this.cachedPromptTokens.inc({ protocol }, rec.usage.cachedPromptTokens);
    for (const e of rec.parseErrors) this.parseErrors.inc({ protocol, kind: e.kind });
    this.links.inc({ relation: rec.link.relation });
  }

  /** A recorder that observes every call, then hands it to `inner`. */
  wrap(inner: CallRecorder): MetricsRecorder {
    return new MetricsRecorder(inner, this);
  }

  /** Counts every response and serves GET /metrics on `app` (call before registering routes). */
  install(app: FastifyInstance, options: { adminToken: string; auth?: boolean }): void {
    app.addHook('onResponse', async (request, reply) => {
      const route = request.routeOptions?.url ?? 'unmatched';
      this.requests.inc({ protocol: routeProtocol(route), route, method: request.method, status: String(reply.statusCode) });
    });
    const requireAdmin = adminGuard(options.adminToken);
    app.get('/metrics', {
      onRequest: async (request: FastifyRequest) => {
        if (options.auth === true || (options.auth === undefined && !isLoopback(request.socket.remoteAddress))) await requireAdmin(request);
      },
    }, async (_request, reply) => {
      reply.type(this.registry.contentType);
      return this.registry.metrics();
    });
  }
}

/** Observes each call, then delegates; a failing delegate is counted and rethrown. */
export class MetricsRecorder implements CallRecorder {
  constructor(readonly inner: CallRecorder, private readonly metrics: GatewayMetrics) {}

  private async counted(event: string, fn: () => void | Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      // A refusal (a full group, an unknown id: a 4xx) is the caller's, not a recorder failure.
      const status = (e as { status?: number; statusCode?: number })?.status ?? (e as { statusCode?: number })?.statusCode;
      if (!(typeof status === 'number' && status < 500)) this.metrics.recorderFailures.inc({ event });
      throw e;
    }
  }

  sessionCreated(session: SessionInfo): Promise<void> {
    return this.counted('session_created', () => this.inner.sessionCreated(session));
  }
  callRecorded(call: CallRecord): Promise<void> {
    this.metrics.observeCall(call);
    return this.counted('call', () => this.inner.callRecorded(call));
  }
  sessionClosed(session: SessionInfo): Promise<void> {
    return this.counted('session_closed', () => this.inner.sessionClosed(session));
  }
  sessionFailed(session: SessionInfo): Promise<void> {
    return this.counted('session_failed', () => this.inner.sessionFailed?.(session));
  }
}

function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  return address === '::1' || /^(::ffff:)?127\./.test(address);
}
