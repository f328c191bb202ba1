// The data pool's error registry (one per surface, as lib/errors.ts is the kernels'). State errors
// (unknown ids, a session in the wrong state, a second reward) are PoolErrors with a FORGE_POOL_* code
// and the HTTP status the gateway answers with; a malformed argument is a TypeError / RangeError
// carrying the kernel surface's FORGE_ERR_INVALID_ARGUMENT / FORGE_ERR_OUT_OF_RANGE code, like every
// other argument check in forge-rl. Every store raises the same codes for the same cases (the contract
// suite in test/pool.test.ts runs against each).

export const PoolErrorCode = {
  /** No task with that id. */
  UNKNOWN_TASK: 'FORGE_POOL_UNKNOWN_TASK',
  UNKNOWN_GROUP: 'FORGE_POOL_UNKNOWN_GROUP',
  UNKNOWN_SESSION: 'FORGE_POOL_UNKNOWN_SESSION',
  /** A parent call or a process reward's call that is not in the session. */
  UNKNOWN_CALL: 'FORGE_POOL_UNKNOWN_CALL',
  /** A task, group, session or call id that is already taken. */
  DUPLICATE_ID: 'FORGE_POOL_DUPLICATE_ID',
  /** A write to a session that was closed (completed). */
  SESSION_CLOSED: 'FORGE_POOL_SESSION_CLOSED',
  /** A write to a session that was marked failed or abandoned. */
  SESSION_FAILED: 'FORGE_POOL_SESSION_FAILED',
  /** A reward for, or a trajectory read of, a session that is not closed. */
  SESSION_NOT_CLOSED: 'FORGE_POOL_SESSION_NOT_CLOSED',
  /** The session already has a reward under that reward version (rewards are never overwritten). */
  ALREADY_REWARDED: 'FORGE_POOL_ALREADY_REWARDED',
  /** The group already has `size` open or closed sessions. */
  GROUP_FULL: 'FORGE_POOL_GROUP_FULL',
  /** A session's group belongs to another task. */
  GROUP_TASK_MISMATCH: 'FORGE_POOL_GROUP_TASK_MISMATCH',
  /** A call's claimed shared prefix differs from its parent's tokens. */
  PREFIX_MISMATCH: 'FORGE_POOL_PREFIX_MISMATCH',
  /** closeSession({ expectedCalls }) found another number of calls stored. */
  CALL_COUNT_MISMATCH: 'FORGE_POOL_CALL_COUNT_MISMATCH',
  /** A policy version not above the latest one. */
  VERSION_NOT_INCREASING: 'FORGE_POOL_VERSION_NOT_INCREASING',
  /** The store was closed. */
  STORE_CLOSED: 'FORGE_POOL_STORE_CLOSED',
  /** Stored data that cannot be decoded, or a database of another schema version. */
  CORRUPT: 'FORGE_POOL_CORRUPT',
  /** The storage engine failed (disk full, database locked past the busy timeout, I/O error). */
  STORAGE: 'FORGE_POOL_STORAGE',
} as const;
export type PoolErrorCode = (typeof PoolErrorCode)[keyof typeof PoolErrorCode];

/** The HTTP status a server answers each code with (the gateway's rewards API). */
export const poolErrorStatus: Record<PoolErrorCode, number> = {
  FORGE_POOL_UNKNOWN_TASK: 404,
  FORGE_POOL_UNKNOWN_GROUP: 404,
  FORGE_POOL_UNKNOWN_SESSION: 404,
  FORGE_POOL_UNKNOWN_CALL: 404,
  FORGE_POOL_DUPLICATE_ID: 409,
  FORGE_POOL_SESSION_CLOSED: 409,
  FORGE_POOL_SESSION_FAILED: 409,
  FORGE_POOL_SESSION_NOT_CLOSED: 409,
  FORGE_POOL_ALREADY_REWARDED: 409,
  FORGE_POOL_GROUP_FULL: 409,
  FORGE_POOL_GROUP_TASK_MISMATCH: 400,
  FORGE_POOL_PREFIX_MISMATCH: 400,
  FORGE_POOL_CALL_COUNT_MISMATCH: 409,
  FORGE_POOL_VERSION_NOT_INCREASING: 409,
  FORGE_POOL_STORE_CLOSED: 503,
  FORGE_POOL_CORRUPT: 500,
  FORGE_POOL_STORAGE: 503,
};

export class PoolError extends Error {
  readonly code: PoolErrorCode;
  readonly statusCode: number;

  constructor(code: PoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PoolError';
    this.code = code;
    this.statusCode = poolErrorStatus[code];
  }
}

export function isPoolError(error: unknown, code?: PoolErrorCode): error is PoolError {
  return error instanceof PoolError && (code === undefined || error.code === code);
}
