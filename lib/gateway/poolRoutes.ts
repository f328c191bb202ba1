// Admin routes over the data pool (admin token required): tasks, groups, rewards, a session's
// trajectory, the JSONL export, policy versions. They read and write the pool directly, so they also
// serve sessions of an earlier gateway process (a reward posted after a restart). A gateway created
// without a pool registers the same paths answering 501 FORGE_GW_POOL_NOT_CONFIGURED.
//
// POST /v1/policy-versions also advances the version the gateway reports for an external upstream
// (`served`, servedVersion.ts), with or without a pool: the trainer that pushed weights to vLLM says
// so here, and every token after that carries the new version. A version not above the served one is
// refused (409) before the pool is written, so the pool and the served version never disagree.
//
// Shapes: bodies and records are snake_case like the session routes; a trajectory is exactly one line
// of the export (lib/pool/export.ts's TrajectoryJson: task, group, session, calls with token ids as
// arrays, rewards), so one parser reads both.
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { callToJson, exportJsonl, type TrajectoryJson } from '../pool/export.js';
import type { GroupRecord, GroupStatus, PolicyVersionRecord, PoolStore, RewardRecord, TaskRecord, TrajectoryQuery } from '../pool/types.js';
import { GatewayErrorCode, gatewayError } from './errors.js';
import { ensureTask } from './poolRecorder.js';
import type { ServedVersion } from './servedVersion.js';
import { adminGuard } from './sessions.js';

const id = { type: 'string', minLength: 1, maxLength: 256 } as const;
const seq = { type: 'string', pattern: '^[0-9]{1,15}$' } as const;

const schemas = {
  task: {
    body: {
      type: 'object', additionalProperties: false, required: ['spec'],
      properties: { id, spec: {}, difficulty: { type: ['number', 'null'] } },
    },
  },
  group: {
    body: {
      type: 'object', additionalProperties: false, required: ['task_id', 'size'],
      properties: { id, task_id: id, size: { type: 'integer', minimum: 1, maximum: 1 << 20 } },
    },
  },
  groupStatus: { querystring: { type: 'object', additionalProperties: false, properties: { reward_version: id } } },
  reward: {
    body: {
      type: 'object', additionalProperties: false, required: ['outcome'],
      properties: {
        outcome: { type: 'number' },
        process: {
          type: 'array',
          items: {
            type: 'object', additionalProperties: false, required: ['call_id', 'value'],
            properties: { call_id: id, value: { type: 'number' }, source: { type: ['string', 'null'] } },
          },
        },
        reward_version: id,
        details: {},
      },
    },
  },
  export: {
    querystring: {
      type: 'object', additionalProperties: false,
      properties: { after_seq: seq, until_seq: seq, reward_version: id, rewarded: { enum: ['true', 'false'] }, task_id: id, group_id: id },
    },
  },
  policyVersion: {
    body: {
      type: 'object', additionalProperties: false, required: ['version'],
      properties: { version: { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 }, metadata: {} },
    },
  },
} as const;

export const taskView = (t: TaskRecord) => ({ id: t.id, spec: t.spec, difficulty: t.difficulty, created_at: t.createdAt });
export const groupView = (g: GroupRecord) => ({ id: g.id, task_id: g.taskId, size: g.size, created_at: g.createdAt });
export const groupStatusView = (s: GroupStatus) => ({
  ...groupView(s.group), open: s.open, closed: s.closed, failed: s.failed, complete: s.complete, rewarded: s.rewarded,
});
export const rewardView = (r: RewardRecord) => ({
  session_id: r.sessionId, reward_version: r.rewardVersion, outcome: r.outcome,
  process: r.process.map((p) => ({ call_id: p.callId, value: p.value, source: p.source })), details: r.details, created_at: r.createdAt,
});
export const policyVersionView = (p: PolicyVersionRecord) => ({ version: p.version, metadata: p.metadata, created_at: p.createdAt });

/**
 * A pool argument error (TypeError / RangeError naming e.g. "reward.process[0].callId") as a 400
 * naming the body field ("process[0].call_id"); anything else unchanged.
 */
export function asRequestError(e: unknown): unknown {
  if (!(e instanceof TypeError || e instanceof RangeError)) return e;
  const name = e.message.split(':', 1)[0];
  const field = name.split('.').slice(1).join('.').replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  return gatewayError(GatewayErrorCode.INVALID_REQUEST, e.message, field || null);
}

async function pooled<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw asRequestError(e);
  }
}

const param = (request: { params: unknown }) => (request.params as { id: string }).id;

export async function trajectoryJson(pool: PoolStore, sessionId: string): Promise<TrajectoryJson> {
  const session = await pool.getSession(sessionId);
  // A closed session is read in one go; an open one (a live view) call by call.
  const { calls, rewards } = session.status === 'closed'
    ? await pool.getTrajectory(sessionId)
    : { calls: await pool.getCalls(sessionId), rewards: await pool.listRewards(sessionId) };
  const task = await pool.getTask(session.taskId);
  const group = session.groupId === null ? null : await pool.getGroup(session.groupId);
  return { task, group, session, calls: calls.map(callToJson), rewards };
}

/** The pool routes (`pool` given) or their 501 stand-ins; `served`: the version an external upstream serves. */
export function poolRoutes(pool: PoolStore | undefined, adminToken: string, served?: ServedVersion) {
  return async function plugin(app: FastifyInstance): Promise<void> {
    app.addHook('onRequest', adminGuard(adminToken));
    if (pool === undefined) {
      const missing = async () => {
        throw gatewayError(GatewayErrorCode.POOL_NOT_CONFIGURED, 'this gateway has no data pool: create it with createGateway({ pool })');
      };
      for (const path of ['/v1/tasks', '/v1/groups', '/v1/sessions/:id/reward']) app.post(path, missing);
      if (served === undefined) app.post('/v1/policy-versions', missing);
      else {
        // Nothing to record: only the served version moves.
        app.post('/v1/policy-versions', { schema: schemas.policyVersion }, async (request, reply) => {
          const b = request.body as { version: number; metadata?: unknown };
          served.advance(b.version);
          reply.code(201);
          return { version: b.version, metadata: b.metadata ?? null, created_at: Date.now() };
        });
      }
      for (const path of ['/v1/tasks/:id', '/v1/groups/:id', '/v1/sessions/:id/trajectory', '/v1/export', '/v1/policy-versions']) app.get(path, missing);
      return;
    }

    app.post('/v1/tasks', { schema: schemas.task }, async (request, reply) => {
      const b = request.body as { id?: string; spec: unknown; difficulty?: number | null };
      const task = await pooled(() => pool.addTask({ id: b.id, spec: b.spec, difficulty: b.difficulty }));
      reply.code(201);
      return taskView(task);
    });
    app.get('/v1/tasks/:id', async (request) => taskView(await pooled(() => pool.getTask(param(request)))));

    app.post('/v1/groups', { schema: schemas.group }, async (request, reply) => {
      const b = request.body as { id?: string; task_id: string; size: number };
      const group = await pooled(async () => {
        await ensureTask(pool, b.task_id, null);
        return pool.addGroup({ id: b.id, taskId: b.task_id, size: b.size });
      });
      reply.code(201);
      return groupView(group);
    });
    app.get('/v1/groups/:id', { schema: schemas.groupStatus }, async (request) => {
      const q = request.query as { reward_version?: string };
      return groupStatusView(await pooled(() => pool.groupStatus(param(request), { rewardVersion: q.reward_version })));
    });

    app.post('/v1/sessions/:id/reward', { schema: schemas.reward }, async (request, reply) => {
      const b = request.body as {
        outcome: number; process?: { call_id: string; value: number; source?: string | null }[]; reward_version?: string; details?: unknown;
      };
      const reward = await pooled(() => pool.addReward({
        sessionId: param(request),
        rewardVersion: b.reward_version,
        outcome: b.outcome,
        process: (b.process ?? []).map((p) => ({ callId: p.call_id, value: p.value, source: p.source ?? null })),
        details: b.details ?? null,
      }));
      reply.code(201);
      return rewardView(reward);
    });
    app.get('/v1/sessions/:id/trajectory', async (request) => pooled(() => trajectoryJson(pool, param(request))));

    app.get('/v1/export', { schema: schemas.export }, async (request, reply) => {
      const q = request.query as Record<string, string | undefined>;
      const query: TrajectoryQuery = {};
      if (q.after_seq !== undefined) query.afterSeq = Number(q.after_seq);
      if (q.until_seq !== undefined) query.untilSeq = Number(q.until_seq);
      if (q.reward_version !== undefined) query.rewardVersion = q.reward_version;
      if (q.rewarded !== undefined) query.rewarded = q.rewarded === 'true';
      if (q.task_id !== undefined) query.taskId = q.task_id;
      if (q.group_id !== undefined) query.groupId = q.group_id;
      // Fail before the status line where we can: a closed store answers 503, not a cut stream.
      await pooled(() => pool.latestPolicyVersion());
      const out = new PassThrough();
      // A failure after the first line cuts the chunked body short (the client sees an error, never
      // a silently shorter file).
      exportJsonl(pool, out, query).then(() => out.end(), (e: unknown) => {
        request.log.error(e);
        out.destroy(e as Error);
      });
      reply.type('application/x-ndjson');
      return reply.send(out);
    });

    app.post('/v1/policy-versions', { schema: schemas.policyVersion }, async (request, reply) => {
      const b = request.body as { version: number; metadata?: unknown };
      served?.checkAdvance(b.version);
      const v = await pooled(() => pool.addPolicyVersion({ version: b.version, metadata: b.metadata ?? null }));
      // Two pushes racing: the pool took both in order; the served version is the higher.
      if (served !== undefined && v.version > served.current) served.advance(v.version);
      reply.code(201);
      return policyVersionView(v);
    });
    app.get('/v1/policy-versions', async () => ({
      data: (await pooled(() => pool.listPolicyVersions())).map(policyVersionView),
      ...(served !== undefined ? { served_version: served.current } : {}),
    }));
  };
}
