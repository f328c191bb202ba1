// Context-management steps: a white-box agent (lib/agents/sdk.ts) tells the gateway, before its next
// call, that it truncated or summarised its history. A call whose prompt does not extend an earlier
// call forks the session's call tree; with a step announced, the gateway records that fork as
// intended (the step's kind and detail go into the call's notes), a fork that only asks an earlier
// prompt again is noted as a retry, and any other fork as unannounced, so a reader of the pool can
// tell context management from a confused agent.
//
// Route (agent-facing, the session's key or the /sessions/<id>/v1 base URL, like the chat routes):
//   POST /v1/forge/context-steps   { kind: 'truncate' | 'summarize', detail?: string }  -> 201
// Steps wait for the session's next recorded call and are consumed by it.
import type { FastifyInstance } from 'fastify';
import type { GatewayContext } from './callRunner.js';
import type { CallRecord, CallRecorder, SessionInfo } from './recorder.js';
import type { SessionStore } from './sessions.js';

export type ContextStepKind = 'truncate' | 'summarize';

export interface ContextStep {
  kind: ContextStepKind;
  detail: string;
  /** ms since the epoch, when the gateway received it. */
  at: number;
}

/** Steps kept per session, and sessions with steps, not yet consumed by a call (oldest dropped). */
const MAX_PENDING = 16;
const MAX_SESSIONS = 10_000;

/** The note written on a call that forks after an announced step. */
export const intendedForkNote = (s: ContextStep) => `fork intended: context step ${s.kind}${s.detail ? ` (${s.detail})` : ''}`;
export const UNANNOUNCED_FORK_NOTE = 'fork unannounced: no context step was registered before this call';
/** A fork whose whole prompt an earlier call already had (the agent asked again, e.g. after a malformed reply). */
export const RETRY_FORK_NOTE = 'fork: the prompt repeats an earlier context (the agent asked again)';

/** A CallRecorder wrapper that writes the announced steps into the next call's notes. */
export class ContextStepRecorder implements CallRecorder {
  private readonly pending = new Map<string, ContextStep[]>();

  constructor(private readonly inner: CallRecorder) {}

  announce(sessionId: string, step: ContextStep): number {
    const list = this.pending.get(sessionId) ?? [];
    // A runaway agent cannot grow the list without bound: the oldest steps go.
    if (list.length >= MAX_PENDING) list.shift();
    list.push(step);
    this.pending.set(sessionId, list);
    // Steps of sessions that ended without another call are never consumed: bound them too.
    if (this.pending.size > MAX_SESSIONS) this.pending.delete(this.pending.keys().next().value!);
    return list.length;
  }

  sessionCreated(session: SessionInfo): void | Promise<void> {
    return this.inner.sessionCreated(session);
  }

  callRecorded(call: CallRecord): void | Promise<void> {
    const steps = this.pending.get(call.sessionId);
    if (steps !== undefined) this.pending.delete(call.sessionId);
    const notes: string[] = [];
    if (call.link.relation === 'fork') {
      if (steps && steps.length > 0) notes.push(...steps.map(intendedForkNote));
      else if (call.promptIds !== undefined && call.link.forkTokens === call.promptIds.length) notes.push(RETRY_FORK_NOTE);
      else notes.push(UNANNOUNCED_FORK_NOTE);
    } else if (steps && steps.length > 0) {
      // Announced, but the prompt still extends an earlier call: nothing was forked.
      notes.push(...steps.map((s) => `context step ${s.kind} announced, but this call did not fork`));
    }
    if (notes.length > 0) call.notes = [...(call.notes ?? []), ...notes];
    return this.inner.callRecorded(call);
  }

  sessionClosed(session: SessionInfo): void | Promise<void> {
    this.pending.delete(session.id);
    return this.inner.sessionClosed(session);
  }

  sessionFailed(session: SessionInfo): void | Promise<void> {
    this.pending.delete(session.id);
    return this.inner.sessionFailed?.(session);
  }
}

const stepSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['kind'],
    properties: {
      kind: { enum: ['truncate', 'summarize'] },
      detail: { type: 'string', maxLength: 2000 },
    },
  },
} as const;

/**
 * The context-step route, under both agent base URLs. Wraps ctx.recorder (the calls go through the
 * wrapper from then on), so register it once per gateway.
 */
export function contextStepRoutes(ctx: GatewayContext, store: SessionStore) {
  const recorder = new ContextStepRecorder(ctx.recorder);
  ctx.recorder = recorder;
  return async function plugin(app: FastifyInstance): Promise<void> {
    for (const prefix of ['', '/sessions/:sessionId']) {
      app.post(`${prefix}/v1/forge/context-steps`, { schema: stepSchema }, async (request, reply) => {
        const session = store.resolve(request);
        const b = request.body as { kind: ContextStepKind; detail?: string };
        const step: ContextStep = { kind: b.kind, detail: b.detail ?? '', at: Date.now() };
        const pending = recorder.announce(session.info.id, step);
        reply.code(201);
        return { session_id: session.info.id, kind: step.kind, detail: step.detail, pending };
      });
    }
  };
}
