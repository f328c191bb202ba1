// Sessions: one agent run each. The task runner creates one with the admin token and hands the agent
// its key; the agent reaches its session with `Authorization: Bearer <key>` (or `x-api-key: <key>`,
// what the Anthropic SDK sends), or through the base URL /sessions/<id>/v1 for clients that cannot
// set a header. A key reaches its own session and nothing else. Closing (or failing) a session stops
// new requests at once, waits for the calls in flight, then tells the recorder with the number of
// calls recorded, so a recorder (the data pool) can check that none was lost.
//
// Memory on a long-running gateway: once the recorder took a session's close (or failure), its call
// tree, tool-argument map and returned turns are dropped and the session moves to a bounded record
// of ended sessions (least recently used first out, `endedSessionsKept`), so its key and id still
// answer "session closed" rather than "unknown key", and the admin routes still show it. counts() reads counters kept
// up to date on every change (metrics call it per scrape), not a pass over the sessions.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CallTree } from './callTree.js';
import { GatewayErrorCode, gatewayError } from './errors.js';
import type { CallRecorder, SessionInfo } from './recorder.js';

export interface Session {
  info: SessionInfo;
  key: string;
  /** No new requests (set as soon as closing or failing starts). */
  closed: boolean;
  /** Set once the recorder took the close or the failure. */
  ended?: 'closed' | 'failed';
  /** A close or fail under way (concurrent ones wait for it). */
  ending?: Promise<void>;
  /** Requests in flight; every change is counted in SessionStore.counts(). */
  inFlight: number;
  calls: number;
  /** The session's calls as a tree; null once the session ended (dropped with it). */
  tree: CallTree | null;
  /** Tool-call id the gateway issued -> the exact argument text the model wrote (to re-render it
   *  verbatim); null once the session ended. */
  toolArguments: Map<string, string> | null;
  /** Key of an assistant message the gateway returned (callRunner's turnKey) -> the ids of the
   *  turns returned with that text, in order (UpstreamResult.turnIds), to render a resent one
   *  verbatim; null once the session ended. */
  turns: Map<string, Int32Array[]> | null;
}

function token(prefix: string, bytes: number): string {
  return prefix + randomBytes(bytes).toString('base64url');
}

export interface SessionStoreOptions {
  /** How long close / fail wait for the session's calls in flight, ms. Default 10 minutes. */
  drainTimeoutMs?: number;
  /**
   * Ended (closed or failed) sessions remembered, without their calls, so that their keys get
   * "session closed": the least recently used are forgotten past this number (their keys are then
   * unknown). Default 100 000.
   */
  endedSessionsKept?: number;
}

export interface SessionCounts {
  open: number;
  /** Closing or failing started, the recorder has not taken it yet. */
  closing: number;
  /** Sessions closed (failed) since the store was created, forgotten ones included. */
  closed: number;
  failed: number;
  /** Agent requests running, over all sessions. */
  inFlight: number;
}

/** What the store holds now: live sessions (with their calls) and remembered ended ones. */
export interface SessionsHeld {
  live: number;
  ended: number;
}

export class SessionStore {
  /** Open and closing sessions, with their call trees. */
  private readonly live = new Map<string, Session>();
  private readonly liveKeys = new Map<string, Session>();
  /** Ended sessions without their calls, least recently used first (Map order). */
  private readonly ended = new Map<string, Session>();
  /** Key of an ended session -> its id (entries leave with the session). */
  private readonly endedKeys = new Map<string, string>();
  private readonly totals: SessionCounts = { open: 0, closing: 0, closed: 0, failed: 0, inFlight: 0 };
  private readonly drainTimeoutMs: number;
  private readonly endedSessionsKept: number;

  constructor(private readonly recorder: CallRecorder, options: SessionStoreOptions = {}) {
    this.drainTimeoutMs = options.drainTimeoutMs ?? 600_000;
    const kept = options.endedSessionsKept ?? 100_000;
    if (!Number.isInteger(kept) || kept < 0) throw new RangeError(`options.endedSessionsKept: expected an integer >= 0, got ${kept}`);
    this.endedSessionsKept = kept;
  }

  async create(fields: Omit<SessionInfo, 'id' | 'createdAt'>): Promise<Session> {
    const info: SessionInfo = { id: token('sess_', 12), createdAt: Date.now(), ...fields };
    const totals = this.totals;
    let inFlight = 0;
    const session: Session = {
      info, key: token('fk-', 24), closed: false, calls: 0, tree: new CallTree(), toolArguments: new Map(), turns: new Map(),
      // An accessor, so whoever counts requests in and out (callRunner) keeps the total right too.
      get inFlight() {
        return inFlight;
      },
      set inFlight(n: number) {
        totals.inFlight += n - inFlight;
        inFlight = n;
      },
    };
    // Registered only once the recorder took it: a refused session (e.g. a full group) never existed.
    await this.recorder.sessionCreated(info);
    this.live.set(info.id, session);
    this.liveKeys.set(session.key, session);
    totals.open++;
    return session;
  }

  /** A live session, or a remembered ended one (without its calls). */
  get(id: string): Session | undefined {
    return this.live.get(id) ?? this.touchEnded(id);
  }

  /** Closes the session (idempotent); a failed session cannot be closed. */
  async close(session: Session): Promise<void> {
    await this.end(session, 'closed');
  }

  /** Marks the agent run failed; a closed session cannot fail. */
  async fail(session: Session, reason: string): Promise<void> {
    await this.end(session, 'failed', reason);
  }

  private async end(session: Session, how: 'closed' | 'failed', reason?: string): Promise<void> {
    while (session.ending) await session.ending.catch(() => undefined);
    if (session.ended === how) return;
    if (session.ended !== undefined)
      throw gatewayError(GatewayErrorCode.CONFLICT, `session ${session.info.id} is ${session.ended}; it cannot be ${how === 'closed' ? 'closed' : 'failed'}`);
    if (!session.closed) {
      this.totals.open--;
      this.totals.closing++;
    }
    session.closed = true;
    const run = async () => {
      await this.drain(session);
      session.info.closedAt = Date.now();
      session.info.calls = session.calls;
      if (how === 'failed') {
        session.info.failReason = reason;
        await this.recorder.sessionFailed?.(session.info);
      } else await this.recorder.sessionClosed(session.info);
      session.ended = how;
      this.totals.closing--;
      this.totals[how]++;
      this.retire(session);
    };
    session.ending = run();
    try {
      await session.ending;
    } finally {
      session.ending = undefined;
    }
  }

  /** Drops an ended session's calls and moves it to the bounded record of ended sessions. */
  private retire(session: Session): void {
    if (this.live.get(session.info.id) !== session) return;
    this.live.delete(session.info.id);
    this.liveKeys.delete(session.key);
    session.tree = null;
    session.toolArguments = null;
    session.turns = null;
    if (this.endedSessionsKept === 0) return;
    this.ended.set(session.info.id, session);
    this.endedKeys.set(session.key, session.info.id);
    for (const [id, old] of this.ended) {
      if (this.ended.size <= this.endedSessionsKept) break;
      this.ended.delete(id);
      this.endedKeys.delete(old.key);
    }
  }

  /** An ended session by id, marked as just used. */
  private touchEnded(id: string): Session | undefined {
    const s = this.ended.get(id);
    if (s !== undefined) {
      this.ended.delete(id);
      this.ended.set(id, s);
    }
    return s;
  }

  /** Waits until the session has no request in flight (calls run to their end or their timeout). */
  private async drain(session: Session): Promise<void> {
    const deadline = Date.now() + this.drainTimeoutMs;
    while (session.inFlight > 0) {
      if (Date.now() >= deadline)
        throw gatewayError(GatewayErrorCode.CONFLICT, `session ${session.info.id} still has ${session.inFlight} requests in flight after ${this.drainTimeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Sessions by state and requests in flight (kept counters: O(1), for metrics). */
  counts(): SessionCounts {
    return { ...this.totals };
  }

  /** How many sessions the store holds in memory now (live ones with their calls, ended ones without). */
  held(): SessionsHeld {
    return { live: this.live.size, ended: this.ended.size };
  }

  /**
   * The session an agent request reaches. With a path id, the id (random, unguessable) is the
   * credential, and a key that belongs to ANOTHER session is refused; any other presented value is
   * ignored (clients that cannot set headers still send placeholder keys). Without one, the key must
   * be a session's key. An ended session (remembered) answers "session closed".
   */
  resolve(request: FastifyRequest): Session {
    const presented = presentedKey(request);
    const pathId = (request.params as { sessionId?: string } | undefined)?.sessionId;
    let session: Session | undefined;
    if (pathId !== undefined) {
      session = this.get(pathId);
      if (session === undefined) throw gatewayError(GatewayErrorCode.SESSION_NOT_FOUND, `no session ${JSON.stringify(pathId)}`);
      const owner = presented === undefined ? undefined : this.liveKeys.get(presented)?.info.id ?? this.endedKeys.get(presented);
      if (owner !== undefined && owner !== session.info.id)
        throw gatewayError(GatewayErrorCode.UNAUTHORIZED, 'this key belongs to another session');
    } else {
      if (presented === undefined)
        throw gatewayError(GatewayErrorCode.UNAUTHORIZED, 'no session key: send Authorization: Bearer <key>, or use the base URL /sessions/<id>/v1');
      session = this.liveKeys.get(presented);
      if (session === undefined) {
        const endedId = this.endedKeys.get(presented);
        session = endedId === undefined ? undefined : this.touchEnded(endedId);
      }
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

/** An onRequest hook refusing (403) any request without the admin token (for admin plugins). */
export function adminGuard(adminToken: string) {
  return async function requireAdmin(request: FastifyRequest): Promise<void> {
    const key = presentedKey(request);
    if (key === undefined || !equalSecret(key, adminToken))
      throw gatewayError(GatewayErrorCode.FORBIDDEN, 'this endpoint needs the admin token');
  };
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
      /** With a group_id the pool does not know: create the group with this size. */
      group_size: { type: 'integer', minimum: 1 },
    },
  },
} as const;

const failSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['reason'],
    properties: { reason: { type: 'string', minLength: 1 } },
  },
} as const;

function view(s: Session): Record<string, unknown> {
  const i = s.info;
  return {
    id: i.id, task_id: i.taskId ?? null, group_id: i.groupId ?? null, scaffold: i.scaffold ?? null,
    metadata: i.metadata ?? {}, created_at: i.createdAt, closed_at: i.closedAt ?? null,
    closed: s.closed, status: s.ended ?? (s.closed ? 'closing' : 'open'), fail_reason: i.failReason ?? null,
    calls: s.calls, in_flight: s.inFlight,
  };
}

/** Admin routes: create, inspect, close and fail sessions (admin token required). */
export function sessionRoutes(store: SessionStore, adminToken: string) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', adminGuard(adminToken));
    // Every field of these bodies is optional: no body means {}.
    app.addHook('preValidation', async (request) => {
      if (request.body === undefined || request.body === null) request.body = {};
    });
    app.post('/v1/sessions', { schema: createSchema }, async (request, reply) => {
      const b = (request.body ?? {}) as {
        task_id?: string; group_id?: string; scaffold?: string; metadata?: Record<string, unknown>; group_size?: number;
      };
      if (b.group_size !== undefined && b.group_id === undefined)
        throw gatewayError(GatewayErrorCode.INVALID_REQUEST, 'group_size: only meaningful with a group_id', 'group_size');
      const s = await store.create({
        taskId: b.task_id, groupId: b.group_id, groupSize: b.group_size, scaffold: b.scaffold, metadata: b.metadata,
      });
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
    app.post('/v1/sessions/:id/fail', { schema: failSchema }, async (request) => {
      const s = store.get((request.params as { id: string }).id);
      if (s === undefined) throw gatewayError(GatewayErrorCode.SESSION_NOT_FOUND, `no session ${JSON.stringify((request.params as { id: string }).id)}`);
      await store.fail(s, (request.body as { reason: string }).reason);
      return view(s);
    });
  };
}
