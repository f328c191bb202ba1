// Checks shared by the pool tests: a stored call against the plan it was written from (with a plain
// longest-common-prefix reference for the tree link), writing a planned session, and small helpers.
import { expect } from 'vitest';

import { type PlannedCall, sessionPlan } from './pool-writer.js';
import type { CallRecord, PoolStore } from '../../lib/pool/types.js';

/** The reference: longest common prefix of a prompt and the parent's prompt + completion. */
export function refShared(prompt: readonly number[], parentContext: readonly number[]): number {
  let n = 0;
  while (n < prompt.length && n < parentContext.length && prompt[n] === parentContext[n]) n++;
  return n;
}

/** Checks a stored call against its plan: exact tokens, float32-rounded logprobs, the tree link. */
export function checkCall(got: CallRecord, plan: PlannedCall[], k: number, sessionId: string, why: (what: string) => string): void {
  const { call, parent } = plan[k];
  const w = (s: string) => why(`session ${sessionId} call ${k}: ${s}`);
  expect(got.id, w('id')).toBe(call.id);
  expect(got.index, w('index')).toBe(k);
  expect(got.sessionId, w('session')).toBe(sessionId);
  expect(Array.from(got.promptIds), w('promptIds')).toEqual(call.promptIds);
  expect(Array.from(got.completionIds), w('completionIds')).toEqual(call.completionIds);
  expect(Array.from(got.logprobs), w('logprobs')).toEqual(call.logprobs.map(Math.fround));
  expect(Array.from(got.versions), w('versions')).toEqual(call.versions);
  expect(got.timings, w('timings')).toEqual(call.timings);
  expect([got.finishReason, got.toolCalls, got.toolParseFailed, got.trainable, got.untrainableReason, got.request, got.response], w('fields')).toEqual([
    call.finishReason, call.toolCalls, call.toolParseFailed, call.trainable, call.untrainableReason, call.request, call.response,
  ]);
  if (parent < 0) {
    expect([got.parentId, got.sharedTokens, got.relation], w('root')).toEqual([null, 0, 'root']);
  } else {
    const ctx = [...plan[parent].call.promptIds, ...plan[parent].call.completionIds];
    const shared = refShared(call.promptIds, ctx);
    expect([got.parentId, got.sharedTokens, got.relation], w('tree link')).toEqual([plan[parent].call.id, shared, shared === ctx.length ? 'continue' : 'fork']);
  }
}

/** Writes a planned session (optionally closing it); returns its plan. */
export async function writeSession(store: PoolStore, id: string, seed: number, opts: { taskId?: string; groupId?: string; close?: boolean } = {}) {
  const plan = sessionPlan(seed, id);
  await store.openSession({ id, taskId: opts.taskId ?? 't', groupId: opts.groupId, scaffold: 'test', metadata: { seed } });
  // The same data in each accepted array type (stored as int32 / float32 all the same).
  for (const { call } of plan)
    await store.appendCall(id, seed % 3 === 0 ? call : seed % 3 === 1
      ? { ...call, promptIds: Int32Array.from(call.promptIds), completionIds: Int32Array.from(call.completionIds), logprobs: Float64Array.from(call.logprobs), versions: Int32Array.from(call.versions) }
      : { ...call, logprobs: Float32Array.from(call.logprobs) });
  if (opts.close ?? true) await store.closeSession(id, { expectedCalls: plan.length });
  return plan;
}

/** What a promise rejects with, as [class name, code, message], for comparing stores. */
export async function failure(p: Promise<unknown>): Promise<[string, string, string]> {
  try {
    await p;
  } catch (e) {
    const err = e as Error & { code?: string };
    return [err.constructor.name, err.code ?? '', err.message];
  }
  throw new Error('expected a rejection');
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
