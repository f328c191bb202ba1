// createGateway: the fastify instance that serves agents (OpenAI and Anthropic protocols) and the task
// runner (sessions), recording every call. Embeddable: register it in a bigger app, or call listen.
import Fastify, { type FastifyInstance } from 'fastify';
import { DEFAULT_LIMITS, type GatewayContext, type GatewayLimits } from './callRunner.js';
import { anthropicRoutes } from './anthropicMessages.js';
import { GatewayErrorCode, errorBody, gatewayError, protocolOf, toGatewayError } from './errors.js';
import { openaiRoutes } from './openaiChat.js';
import { MemoryRecorder, type CallRecorder } from './recorder.js';
import { SessionStore, sessionRoutes } from './sessions.js';
import type { Upstream } from './upstream.js';

export interface GatewayOptions {
  upstream: Upstream;
  /** Bearer token of the task runner (session admin). Required, non-empty. */
  adminToken: string;
  /** Where sessions and calls go. Default: a MemoryRecorder (exposed as gateway.recorder). */
  recorder?: CallRecorder;
  limits?: Partial<GatewayLimits>;
  /** fastify's logger option. Default false. */
  logger?: boolean;
}

export interface Gateway {
  app: FastifyInstance;
  sessions: SessionStore;
  recorder: CallRecorder;
  limits: Readonly<GatewayLimits>;
  /** Listens (port 0 = any free port) and returns the base URL, e.g. http://127.0.0.1:40123. */
  listen(options?: { port?: number; host?: string }): Promise<string>;
  close(): Promise<void>;
}

export function createGateway(options: GatewayOptions): Gateway {
  if (typeof options !== 'object' || options === null) throw new TypeError('options: expected { upstream, adminToken, ... }');
  if (typeof options.adminToken !== 'string' || options.adminToken.length === 0)
    throw new TypeError('options.adminToken: expected a non-empty string');
  if (typeof options.upstream?.complete !== 'function') throw new TypeError('options.upstream: expected an Upstream');
  const limits: GatewayLimits = { ...DEFAULT_LIMITS, ...options.limits };
  for (const [k, v] of Object.entries(limits))
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`options.limits.${k}: expected a positive integer, got ${v}`);
  const recorder = options.recorder ?? new MemoryRecorder();
  const sessions = new SessionStore(recorder);
  const ctx: GatewayContext = { upstream: options.upstream, recorder, limits };

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.bodyBytes,
    // Types are checked, not coerced: "1" is not a number for a sampling parameter.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
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

  app.get('/healthz', async () => ({ status: 'ok', upstream: options.upstream.name }));
  app.register(sessionRoutes(sessions, options.adminToken));
  // The same agent routes twice: key in a header, or the session in the base URL.
  for (const prefix of ['', '/sessions/:sessionId']) {
    app.register(openaiRoutes(ctx, sessions), { prefix });
    app.register(anthropicRoutes(ctx, sessions), { prefix });
  }

  return {
    app,
    sessions,
    recorder,
    limits,
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
