// The task runner's side of one agent run, through the gateway's admin API as any external task
// runner would use it: open a session (in a group, for training), hand the agent program its base
// URL and key, close the session when the program reports, verify the answer, and post the reward —
// the outcome (1 or 0) and a process reward of -1 on every call whose tool call did not parse. What
// the run did (calls, forks, policy versions) is read back from the data pool.
import type { PoolStore } from '../pool/types.js';
import type { AgentPool } from './agentPool.js';
import { scaffoldSpec, type ScaffoldName } from './scaffolds.js';
import { agentTask, verify, type AgentResult, type DemoTask, type Verdict } from './tasks.js';

/** The process reward of a call whose tool call was malformed. */
export const MALFORMED_CALL_REWARD = -1;

/** A small client of the gateway's admin routes (sessions, tasks, rewards). */
export class GatewayAdmin {
  constructor(readonly baseUrl: string, private readonly adminToken: string) {}

  async post<T = Record<string, unknown>>(path: string, body: unknown): Promise<T> {
    const res = await fetch(`${this.baseUrl}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`gateway ${path}: ${res.status} ${text.slice(0, 300)}`);
    return JSON.parse(text) as T;
  }

  /** Registers the task with its spec (POST /v1/tasks); one already registered is fine. */
  async ensureTask(task: DemoTask): Promise<void> {
    const res = await fetch(`${this.baseUrl}/v1/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: task.id, spec: task }),
    });
    if (!res.ok && res.status !== 409) throw new Error(`gateway /v1/tasks: ${res.status} ${(await res.text()).slice(0, 300)}`);
    else await res.arrayBuffer();
  }
}

export interface SessionRun {
  sessionId: string;
  scaffold: ScaffoldName;
  task: DemoTask;
  result: AgentResult;
  verdict: Verdict;
  /** Wall-clock seconds from opening the session to the agent's report. */
  seconds: number;
  /** Process reward summed over the calls (MALFORMED_CALL_REWARD per malformed tool call). */
  process: number;
  /** Calls recorded, forks among them, malformed tool calls. */
  calls: number;
  forks: number;
  malformed: number;
  /** Distinct policy versions of the completion tokens, ascending. */
  versions: number[];
  /** false when the run failed (the session is marked failed, no reward posted). */
  ok: boolean;
  error?: string;
}

export interface RunSessionOptions {
  admin: GatewayAdmin;
  pool: PoolStore;
  agents: AgentPool;
  scaffold: ScaffoldName;
  task: DemoTask;
  /** The pool group of a training rollout; none for an evaluation run. */
  groupId?: string;
  /** Stored with the session (e.g. the phase). */
  metadata?: Record<string, unknown>;
}

/** Runs one session end to end; never throws for an agent failure (the run comes back with ok false). */
export async function runSession(o: RunSessionOptions): Promise<SessionRun> {
  const body: Record<string, unknown> = { task_id: o.task.id, scaffold: o.scaffold, metadata: o.metadata ?? {} };
  if (o.groupId !== undefined) body.group_id = o.groupId;
  const session = await o.admin.post<{ id: string; key: string; base_url: string }>('/v1/sessions', body);
  const t0 = performance.now();
  let result: AgentResult;
  try {
    result = await o.agents.run(o.scaffold, { baseURL: `${o.admin.baseUrl}${session.base_url}`, apiKey: session.key, task: agentTask(o.task) });
  } catch (e) {
    result = { answer: null, toolCalls: 0, turns: 0, error: (e as Error).message };
  }
  const seconds = (performance.now() - t0) / 1000;
  const base = { sessionId: session.id, scaffold: o.scaffold, task: o.task, result, seconds };
  if (result.error !== undefined) {
    // The program could not finish the run (an HTTP error, a crash): nothing to score.
    await o.admin.post(`/v1/sessions/${session.id}/fail`, { reason: `agent: ${result.error}`.slice(0, 500) });
    return { ...base, verdict: verify(o.task, result), process: 0, calls: 0, forks: 0, malformed: 0, versions: [], ok: false, error: result.error };
  }
  await o.admin.post(`/v1/sessions/${session.id}/close`, {});
  const verdict = verify(o.task, result);
  const calls = await o.pool.getCalls(session.id);
  const malformedCalls = calls.filter((c) => c.toolParseFailed);
  const versions = new Set<number>();
  for (const c of calls) for (const v of c.versions) versions.add(v);
  await o.admin.post(`/v1/sessions/${session.id}/reward`, {
    outcome: verdict.reward,
    process: malformedCalls.map((c) => ({ call_id: c.id, value: MALFORMED_CALL_REWARD, source: 'gateway: malformed tool call' })),
    details: { scaffold: o.scaffold, expected: verdict.expected, got: verdict.got, toolCalls: result.toolCalls, turns: result.turns, maxTurns: scaffoldSpec(o.scaffold).maxTurns },
  });
  return {
    ...base,
    verdict,
    process: malformedCalls.length * MALFORMED_CALL_REWARD,
    calls: calls.length,
    forks: calls.filter((c) => c.relation === 'fork').length,
    malformed: malformedCalls.length,
    versions: [...versions].sort((a, b) => a - b),
    ok: true,
  };
}
