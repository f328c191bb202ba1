// Sessions: one agent run each. The task runner creates one with the admin token and hands the agent
// its key; the agent reaches its session with `Authorization: Bearer <key>` (or `x-api-key: <key>`,
// what the Anthropic SDK sends), or through the base URL /sessions/<id>/v1 for clients that cannot
// set a header. A key reaches its own session and nothing else.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CallTree } from './callTree.js';
import { GatewayErrorCode, gatewayError } from './errors.js';
import type { CallRecorder, SessionInfo } from './recorder.js';

export interface Session {
  info: SessionInfo;
  key: string;
  closed: boolean;
  inFlight: number;
  calls: number;
  tree: CallTree;
  /** Tool-call id the gateway issued -> the exact argument text the model wrote (to re-render it verbatim). */
  toolArguments: Map<string, string>;
}

function token(prefix: string, bytes: number): string {
  return prefix + randomBytes(bytes).toString('base64url');
}

export class SessionStore {
  private readonly byId = new Map<string, Session>();
  private readonly byKey = new Map<string, Session>();

  constructor(private readonly recorder: CallRecorder) {}

  async create(fields: Omit<SessionInfo, 'id' | 'createdAt'>): Promise<Session> {
    const info: SessionInfo = { id: token('sess_', 12), createdAt: Date.now(), ...fields };
    const session: Session = {
      info, key: token('fk-', 24), closed: false, inFlight: 0, calls: 0, tree: new CallTree(), toolArguments: new Map(),
    };
    this.byId.set(info.id, session);
    this.byKey.set(session.key, session);
    await this.recorder.sessionCreated(info);
    return session;
  }

  get(id: string): Session | undefined {
    return this.byId.get(id);
  }

  async close(session: Session): Promise<void> {
    if (session.closed) return;
    session.closed = true;
    session.info.closedAt = Date.now();
    await this.recorder.sessionClosed(session.info);
  }

  /**
   * The session an agent request reaches. With a path id, the id (random, unguessable) is the
   * credential, and a key that belongs to ANOTHER session is refused; any other presented value is
   * ignored (clients that cannot set headers still send placeholder keys). Without one, the key must
   * be a session's key.
   */
  resolve(request: FastifyRequest): Session {
    const presented = presentedKey(request);
    const pathId = (request.params as { sessionId?: string } | undefined)?.sessionId;
    let session: Session | undefined;
    if (pathId !== undefined) {
      session = this.byId.get(pathId);
      if (session === undefined) throw gatewayError(GatewayErrorCode.SESSION_NOT_FOUND, `no session ${JSON.stringify(pathId)}`);
      const owner = presented === undefined ? undefined : this.byKey.get(presented);
      if (owner !== undefined && owner !== session)
        throw gatewayError(GatewayErrorCode.UNAUTHORIZED, 'this key belongs to another session');
    } else {
      if (presented === undefined)
        throw gatewayError(GatewayErrorCode.UNAUTHORIZED, 'no session key: send Authorization: Bearer <key>, or use the base URL /sessions/<id>/v1');
      session = this.byKey.get(presented);
      if (session === undefined) throw gatewayError(GatewayErrorCode.UNAUTHORIZED, 'invalid session key');
    }
    if (session.closed) throw gatewayError(GatewayErrorCode.SESSION_CLOSED, `session ${session.info.id} is closed`);
    return session;
  }
}

function presentedKey(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (typeof auth === 'string' && /^Bearer\s+/i.test(auth)) return auth.replace(/^Bearer\s+/i, '').trim();
  const apiKey = request.headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.length > 0) return apiKey;
  return undefined;
}

function equalSecret(a: string, b: string): boolean {
  const x = Buffer.from(a), y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const createSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      task_id: { type: 'string' },
      group_id: { type: 'string' },
      scaffold: { type: 'string' },
      metadata: { type: 'object' },
    },
  },
} as const;

function view(s: Session): Record<string, unknown> {
  const i = s.info;
  return {
    id: i.id, task_id: i.taskId ?? null, group_id: i.groupId ?? null, scaffold: i.scaffold ?? null,
    metadata: i.metadata ?? {}, created_at: i.createdAt, closed_at: i.closedAt ?? null,
    closed: s.closed, calls: s.calls, in_flight: s.inFlight,
  };
}

/** Admin routes: create, inspect and close sessions (admin token required). */
export function sessionRoutes(store: SessionStore, adminToken: string) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', async (request) => {
      const key = presentedKey(request);
      if (key === undefined || !equalSecret(key, adminToken))
        throw gatewayError(GatewayErrorCode.FORBIDDEN, 'this endpoint needs the admin token');
    });
    app.post('/v1/sessions', { schema: createSchema }, async (request, reply) => {
      const b = (request.body ?? {}) as { task_id?: string; group_id?: string; scaffold?: string; metadata?: Record<string, unknown> };
      const s = await store.create({ taskId: b.task_id, groupId: b.group_id, scaffold: b.scaffold, metadata: b.metadata });
      reply.code(201);
      return { ...view(s), key: s.key, base_url: `/sessions/${s.info.id}/v1` };
    });
    app.get('/v1/sessions/:id', async (request) => {
      const s = store.get((request.params as { id: string }).id);
      if (s === undefined) throw gatewayError(GatewayErrorCode.SESSION_NOT_FOUND, `no session ${JSON.stringify((request.params as { id: string }).id)}`);
      return view(s);
    });
    app.post('/v1/sessions/:id/close', async (request) => {
      const s = store.get((request.params as { id: string }).id);
      if (s === undefined) throw gatewayError(GatewayErrorCode.SESSION_NOT_FOUND, `no session ${JSON.stringify((request.params as { id: string }).id)}`);
      await store.close(s);
      return view(s);
    });
  };
}
