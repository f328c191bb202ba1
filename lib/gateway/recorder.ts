// Where the gateway writes sessions and calls: the CallRecorder seam, with an in-memory
// implementation for tests and embedding; PoolRecorder (poolRecorder.ts) writes into the data pool.
// A recorder may be async; the gateway awaits it before answering, so a call the agent has seen is
// always stored.
import type { ParseError, ParsedToolCall } from '../model/chatTemplate.js';
import type { Protocol } from './errors.js';

export interface SessionInfo {
  id: string;
  /** The task the session runs; a recorder that assigns one (PoolRecorder) fills it in at creation. */
  taskId?: string;
  groupId?: string;
  /** The group's size when the task runner lets session creation create the group. */
  groupSize?: number;
  scaffold?: string;
  metadata?: Record<string, unknown>;
  createdAt: number;
  /** When it was closed or failed. */
  closedAt?: number;
  /** At close or fail: the calls the gateway recorded (a recorder can check none was lost). */
  calls?: number;
  /** Set when the task runner failed the session (POST /v1/sessions/:id/fail). */
  failReason?: string;
}

/** How a call's prompt relates to the session's earlier calls (see callTree.ts). */
export interface CallLink {
  /** root: the session's first call with ids; continue: extends `parent`'s prompt+completion;
   *  fork: extends none, shares `forkTokens` leading tokens with `parent`; unknown: no prompt ids. */
  relation: 'root' | 'continue' | 'fork' | 'unknown';
  /** The call continued (continue) or the one sharing the longest prefix (fork). */
  parent: string | null;
  /** Tokens shared with `parent`'s prompt+completion: all of them for continue, the fork point for fork. */
  forkTokens: number;
}

export interface CallRecord {
  id: string;
  sessionId: string;
  protocol: Protocol;
  /** The request body as the agent sent it. */
  request: unknown;
  /** Which of the request's n choices this call is. */
  choice: number;
  status: 'ok' | 'failed' | 'aborted';
  error?: string;
  promptIds?: Int32Array;
  completionIds?: Int32Array;
  logprobs?: Float64Array;
  versions?: Int32Array;
  trainable: boolean;
  notTrainableReason?: string;
  finishReason?: string;
  content?: string;
  reasoning?: string;
  /** The well-formed tool calls with the ids the gateway gave them. */
  toolCalls: (ParsedToolCall & { id: string })[];
  /** Tool-call parse failures and other format errors (process-reward signal). */
  parseErrors: ParseError[];
  link: CallLink;
  /** Gateway observations that are not parse errors (e.g. tool calls withheld under tool_choice "none"). */
  notes?: string[];
  /** Epoch milliseconds: received, admitted by the upstream, first token, done. */
  timings: { receivedAt: number; admittedAt: number | null; firstTokenAt: number | null; doneAt: number };
  usage: { promptTokens: number; completionTokens: number; cachedPromptTokens: number };
}

export interface CallRecorder {
  /** A throw refuses the session (the gateway forgets it and answers with the error). */
  sessionCreated(session: SessionInfo): void | Promise<void>;
  callRecorded(call: CallRecord): void | Promise<void>;
  /** Every call of the session was handed over before this (the gateway waits for calls in flight). */
  sessionClosed(session: SessionInfo): void | Promise<void>;
  /** The agent run failed (`session.failReason`); a recorder without it is told nothing. */
  sessionFailed?(session: SessionInfo): void | Promise<void>;
}

/** Keeps everything in memory (tests, embedding; PoolRecorder is the durable one). */
export class MemoryRecorder implements CallRecorder {
  readonly sessions = new Map<string, SessionInfo>();
  readonly calls: CallRecord[] = [];

  sessionCreated(session: SessionInfo): void {
    this.sessions.set(session.id, { ...session });
  }
  callRecorded(call: CallRecord): void {
    this.calls.push(call);
  }
  sessionClosed(session: SessionInfo): void {
    this.sessions.set(session.id, { ...session });
  }
  sessionFailed(session: SessionInfo): void {
    this.sessions.set(session.id, { ...session });
  }
  callsOf(sessionId: string): CallRecord[] {
    return this.calls.filter((c) => c.sessionId === sessionId);
  }
}
