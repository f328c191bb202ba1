// Where the gateway writes sessions and calls. The data pool (lib/pool/) is being built alongside;
// until it lands this minimal CallRecorder interface is the seam, with an in-memory implementation
// for tests and embedding. A recorder may be async; the gateway awaits it before answering, so a
// call the agent has seen is always stored.
import type { ParseError, ParsedToolCall } from '../model/chatTemplate.js';
import type { Protocol } from './errors.js';

export interface SessionInfo {
  id: string;
  taskId?: string;
  groupId?: string;
  scaffold?: string;
  metadata?: Record<string, unknown>;
  createdAt: number;
  closedAt?: number;
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
  sessionCreated(session: SessionInfo): void | Promise<void>;
  callRecorded(call: CallRecord): void | Promise<void>;
  sessionClosed(session: SessionInfo): void | Promise<void>;
}

/** Keeps everything in memory (tests, embedding, until the data pool store is joined). */
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
  callsOf(sessionId: string): CallRecord[] {
    return this.calls.filter((c) => c.sessionId === sessionId);
  }
}
