// createGateway: the fastify instance that serves agents (OpenAI and Anthropic protocols) and the task
// runner (sessions), recording every call. Embeddable: register it in a bigger app, or call listen.
import Fastify, { type FastifyInstance } from 'fastify';
import { DEFAULT_LIMITS, type GatewayContext, type GatewayLimits } from './callRunner.js';
import { anthropicRoutes } from './anthropicMessages.js';
import { contextStepRoutes } from './contextSteps.js';
import { GatewayErrorCode, errorBody, gatewayError, protocolOf, toGatewayError } from './errors.js';
import { GatewayMetrics, type MetricsOptions } from './metrics.js';
import { PoolRecorder } from './poolRecorder.js';
import { poolRoutes } from './poolRoutes.js';
import type { PoolStore } from '../pool/types.js';
import { openaiRoutes } from './openaiChat.js';
import { openaiCompletionsRoutes } from './openaiCompletions.js';
import { MemoryRecorder, type CallRecorder } from './recorder.js';
import type { ServedVersion } from './servedVersion.js';
import { SessionStore, sessionRoutes, type SessionCounts } from './sessions.js';
import type { Upstream } from './upstream.js';

export interface GatewayOptions {
  upstream: Upstream;
  /** Bearer token of the task runner (session admin). Required, non-empty. */
  adminToken: string;
  /** Where sessions and calls go. Default: a PoolRecorder over `pool` when given, else a
   *  MemoryRecorder (exposed as gateway.recorder). */
  recorder?: CallRecorder;
  /** The data pool: enables the task, group, reward, trajectory, export and policy-version routes
   *  (poolRoutes.ts). The caller owns it: gateway.close() does not close it, and sessions left open
   *  stay open (abandonOpenSessions is the pool owner's call, who knows which writers are dead). */
  pool?: PoolStore;
  /** The policy version an external upstream serves (give the same holder to its `version` option):
   *  POST /v1/policy-versions advances it, with or without a pool. */
  servedVersion?: ServedVersion;
  /** Prometheus metrics at GET /metrics (metrics.ts). Default on, open to loopback clients only. */
  metrics?: MetricsOptions;
  limits?: Partial<GatewayLimits>;
  /** fastify's logger option. Default false. */
  logger?: boolean;
}

export interface Gateway {
  app: FastifyInstance;
  sessions: SessionStore;
  recorder: CallRecorder;
  /** Undefined when created with metrics: { enabled: false }. */
  metrics?: GatewayMetrics;
  limits: Readonly<GatewayLimits>;
  /** The holder given as options.servedVersion. */
  servedVersion?: ServedVersion;
  /** Listens (port 0 = any free port) and returns the base URL, e.g. http://127.0.0.1:40123. */
  listen(options?: { port?: number; host?: string }): Promise<string>;
  close(): Promise<void>;
}

export function createGateway(options: GatewayOptions): Gateway {
  if (typeof options !== 'object' || options === null) throw new TypeError('options: expected { upstream, adminToken, ... }');
  if (typeof options.adminToken !== 'string' || options.adminToken.length === 0)
    throw new TypeError('options.adminToken: expected a non-empty string');
  if (typeof options.upstream?.complete !== 'function') throw new TypeError('options.upstream: expected an Upstream');
  // The prompt limit defaults to the upstream's context length when it reports one.
  const contextLength = options.upstream.models()[0]?.contextLength;
  const limits: GatewayLimits = { ...DEFAULT_LIMITS, ...(contextLength ? { maxPromptTokens: contextLength } : {}), ...options.limits };
  for (const [k, v] of Object.entries(limits))
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`options.limits.${k}: expected a positive integer, got ${v}`);
  if (options.pool !== undefined && typeof options.pool?.appendCall !== 'function') throw new TypeError('options.pool: expected a PoolStore');
  if (options.servedVersion !== undefined && typeof options.servedVersion?.advance !== 'function')
    throw new TypeError('options.servedVersion: expected a ServedVersion');
  const recorder = options.recorder ?? (options.pool ? new PoolRecorder(options.pool) : new MemoryRecorder());
  const metrics = options.metrics?.enabled === false ? undefined : new GatewayMetrics((): SessionCounts => sessions.counts());
  const recording = metrics ? metrics.wrap(recorder) : recorder;
  // Close waits for calls in flight, which end by the call timeout at the latest.
  const sessions = new SessionStore(recording, { drainTimeoutMs: limits.callTimeoutMs + 5_000 });
  const ctx: GatewayContext = { upstream: options.upstream, recorder: recording, limits };

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.bodyBytes,
    // Types are checked, not coerced: "1" is not a number for a sampling parameter.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });
  // An empty body with a JSON content type (curl -X POST -H 'content-type: application/json') is no
  // body, not malformed JSON: admin routes whose fields are all optional then take {}; routes that
  // need a body still fail their schema. Everything else goes to fastify's own (poisoning-safe) parser.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, undefined);
    parseJson(request, body as string, done);
  });

  app.setErrorHandler((err, request, reply) => {
    const e = toGatewayError(err);
    if (e.code === GatewayErrorCode.INTERNAL) request.log.error(err);
    reply.code(e.status).send(errorBody(protocolOf(request.url), e));
  });
  app.setNotFoundHandler((request, reply) => {
    const e = gatewayError(GatewayErrorCode.ROUTE_NOT_FOUND, `no route ${request.method} ${request.url.split('?', 1)[0]}`);
    reply.code(e.status).send(errorBody(protocolOf(request.url), e));
  });

  metrics?.install(app, { adminToken: options.adminToken, auth: options.metrics?.auth });
  app.get('/healthz', async () => ({ status: 'ok', upstream: options.upstream.name }));
  app.register(sessionRoutes(sessions, options.adminToken));
  app.register(poolRoutes(options.pool, options.adminToken, options.servedVersion));
  app.register(contextStepRoutes(ctx, sessions));
  // The same agent routes twice: key in a header, or the session in the base URL.
  for (const prefix of ['', '/sessions/:sessionId']) {
    app.register(openaiRoutes(ctx, sessions), { prefix });
    app.register(openaiCompletionsRoutes(ctx, sessions), { prefix });
    app.register(anthropicRoutes(ctx, sessions), { prefix });
  }

  return {
    app,
    sessions,
    recorder,
    metrics,
    limits,
    servedVersion: options.servedVersion,
    async listen({ port = 0, host = '127.0.0.1' } = {}) {
      await app.listen({ port, host });
      const addr = app.server.address();
      if (addr === null || typeof addr === 'string') return String(addr);
      return `http://${host}:${addr.port}`;
    },
    async close() {
      await app.close();
      await options.upstream.close?.();
    },
  };
}
