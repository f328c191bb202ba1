// The gateway's error registry: every error an agent can get has a code here, an HTTP status, and its
// type in each protocol's own error shape (OpenAI: { error: { message, type, param, code } };
// Anthropic: { type: 'error', error: { type, message } }). Routes throw GatewayError; one error
// handler (server.ts) writes it in the shape of the protocol the route speaks. The data pool's errors
// (lib/pool/errors.ts) map onto codes here with the HTTP status the pool's registry gives them.
import { PoolErrorCode, isPoolError } from '../pool/errors.js';

export type Protocol = 'openai' | 'anthropic';

interface ErrorSpec {
  status: number;
  openai: string;
  anthropic: string;
}

export const GatewayErrorCode = {
  /** The body does not match the endpoint's schema, or a field has a value the gateway rejects. */
  INVALID_REQUEST: 'FORGE_GW_INVALID_REQUEST',
  /** The body is not JSON. */
  INVALID_JSON: 'FORGE_GW_INVALID_JSON',
  /** A parameter the gateway does not implement (e.g. tool_choice of type "allowed_tools"). */
  UNSUPPORTED_PARAMETER: 'FORGE_GW_UNSUPPORTED_PARAMETER',
  /** Prompt or completion over the configured token limits. */
  CONTEXT_LENGTH_EXCEEDED: 'FORGE_GW_CONTEXT_LENGTH_EXCEEDED',
  /** No key, or a key that reaches no session (or not this one). */
  UNAUTHORIZED: 'FORGE_GW_UNAUTHORIZED',
  /** An admin endpoint without the admin token. */
  FORBIDDEN: 'FORGE_GW_FORBIDDEN',
  SESSION_NOT_FOUND: 'FORGE_GW_SESSION_NOT_FOUND',
  SESSION_CLOSED: 'FORGE_GW_SESSION_CLOSED',
  ROUTE_NOT_FOUND: 'FORGE_GW_ROUTE_NOT_FOUND',
  BODY_TOO_LARGE: 'FORGE_GW_BODY_TOO_LARGE',
  /** The session already has limits.maxConcurrentCalls requests in flight. */
  TOO_MANY_CONCURRENT: 'FORGE_GW_TOO_MANY_CONCURRENT',
  /** The upstream failed (error, 5xx, disconnect). */
  UPSTREAM_ERROR: 'FORGE_GW_UPSTREAM_ERROR',
  UPSTREAM_TIMEOUT: 'FORGE_GW_UPSTREAM_TIMEOUT',
  INTERNAL: 'FORGE_GW_INTERNAL',
  /** A data-pool endpoint on a gateway created without a pool. */
  POOL_NOT_CONFIGURED: 'FORGE_GW_POOL_NOT_CONFIGURED',
  TASK_NOT_FOUND: 'FORGE_GW_TASK_NOT_FOUND',
  GROUP_NOT_FOUND: 'FORGE_GW_GROUP_NOT_FOUND',
  /** A call id (e.g. a process reward's call_id) that is not in the session. */
  CALL_NOT_FOUND: 'FORGE_GW_CALL_NOT_FOUND',
  /** A reward for (or an export of) a session that is not closed yet. */
  SESSION_NOT_CLOSED: 'FORGE_GW_SESSION_NOT_CLOSED',
  /** The session already has a reward under that reward version (never overwritten). */
  ALREADY_REWARDED: 'FORGE_GW_ALREADY_REWARDED',
  /** The group already has its `size` open or closed sessions. */
  GROUP_FULL: 'FORGE_GW_GROUP_FULL',
  /** The request conflicts with stored state: a taken id, a failed or closed session, a policy
   *  version not above the latest, calls still in flight at close. */
  CONFLICT: 'FORGE_GW_CONFLICT',
  /** The data pool cannot be written or read now (closed store, storage failure). */
  POOL_UNAVAILABLE: 'FORGE_GW_POOL_UNAVAILABLE',
} as const;
export type GatewayErrorCode = (typeof GatewayErrorCode)[keyof typeof GatewayErrorCode];

export const ERROR_SPECS: Readonly<Record<GatewayErrorCode, ErrorSpec>> = Object.freeze({
  FORGE_GW_INVALID_REQUEST: { status: 400, openai: 'invalid_request_error', anthropic: 'invalid_request_error' },
  FORGE_GW_INVALID_JSON: { status: 400, openai: 'invalid_request_error', anthropic: 'invalid_request_error' },
  FORGE_GW_UNSUPPORTED_PARAMETER: { status: 400, openai: 'invalid_request_error', anthropic: 'invalid_request_error' },
  FORGE_GW_CONTEXT_LENGTH_EXCEEDED: { status: 400, openai: 'invalid_request_error', anthropic: 'invalid_request_error' },
  FORGE_GW_UNAUTHORIZED: { status: 401, openai: 'invalid_request_error', anthropic: 'authentication_error' },
  FORGE_GW_FORBIDDEN: { status: 403, openai: 'invalid_request_error', anthropic: 'permission_error' },
  FORGE_GW_SESSION_NOT_FOUND: { status: 404, openai: 'invalid_request_error', anthropic: 'not_found_error' },
  FORGE_GW_SESSION_CLOSED: { status: 404, openai: 'invalid_request_error', anthropic: 'not_found_error' },
  FORGE_GW_ROUTE_NOT_FOUND: { status: 404, openai: 'invalid_request_error', anthropic: 'not_found_error' },
  FORGE_GW_BODY_TOO_LARGE: { status: 413, openai: 'invalid_request_error', anthropic: 'request_too_large' },
  FORGE_GW_TOO_MANY_CONCURRENT: { status: 429, openai: 'rate_limit_error', anthropic: 'rate_limit_error' },
  FORGE_GW_UPSTREAM_ERROR: { status: 502, openai: 'api_error', anthropic: 'api_error' },
  FORGE_GW_UPSTREAM_TIMEOUT: { status: 504, openai: 'api_error', anthropic: 'api_error' },
  FORGE_GW_INTERNAL: { status: 500, openai: 'api_error', anthropic: 'api_error' },
  FORGE_GW_POOL_NOT_CONFIGURED: { status: 501, openai: 'invalid_request_error', anthropic: 'invalid_request_error' },
  FORGE_GW_TASK_NOT_FOUND: { status: 404, openai: 'invalid_request_error', anthropic: 'not_found_error' },
  FORGE_GW_GROUP_NOT_FOUND: { status: 404, openai: 'invalid_request_error', anthropic: 'not_found_error' },
  FORGE_GW_CALL_NOT_FOUND: { status: 404, openai: 'invalid_request_error', anthropic: 'not_found_error' },
  FORGE_GW_SESSION_NOT_CLOSED: { status: 409, openai: 'invalid_request_error', anthropic: 'invalid_request_error' },
  FORGE_GW_ALREADY_REWARDED: { status: 409, openai: 'invalid_request_error', anthropic: 'invalid_request_error' },
  FORGE_GW_GROUP_FULL: { status: 409, openai: 'invalid_request_error', anthropic: 'invalid_request_error' },
  FORGE_GW_CONFLICT: { status: 409, openai: 'invalid_request_error', anthropic: 'invalid_request_error' },
  FORGE_GW_POOL_UNAVAILABLE: { status: 503, openai: 'api_error', anthropic: 'overloaded_error' },
});

/** The gateway code of each data-pool error. The statuses agree with the pool's poolErrorStatus but
 *  for two: a prefix mismatch or corrupt data met while the gateway records is the gateway's (or the
 *  disk's) fault, not the client's, so it is a 500. */
export const POOL_ERROR_CODES: Readonly<Record<PoolErrorCode, GatewayErrorCode>> = Object.freeze({
  FORGE_POOL_UNKNOWN_TASK: GatewayErrorCode.TASK_NOT_FOUND,
  FORGE_POOL_UNKNOWN_GROUP: GatewayErrorCode.GROUP_NOT_FOUND,
  FORGE_POOL_UNKNOWN_SESSION: GatewayErrorCode.SESSION_NOT_FOUND,
  FORGE_POOL_UNKNOWN_CALL: GatewayErrorCode.CALL_NOT_FOUND,
  FORGE_POOL_DUPLICATE_ID: GatewayErrorCode.CONFLICT,
  FORGE_POOL_SESSION_CLOSED: GatewayErrorCode.CONFLICT,
  FORGE_POOL_SESSION_FAILED: GatewayErrorCode.CONFLICT,
  FORGE_POOL_SESSION_NOT_CLOSED: GatewayErrorCode.SESSION_NOT_CLOSED,
  FORGE_POOL_ALREADY_REWARDED: GatewayErrorCode.ALREADY_REWARDED,
  FORGE_POOL_GROUP_FULL: GatewayErrorCode.GROUP_FULL,
  FORGE_POOL_GROUP_TASK_MISMATCH: GatewayErrorCode.INVALID_REQUEST,
  FORGE_POOL_PREFIX_MISMATCH: GatewayErrorCode.INTERNAL,
  FORGE_POOL_CALL_COUNT_MISMATCH: GatewayErrorCode.CONFLICT,
  FORGE_POOL_VERSION_NOT_INCREASING: GatewayErrorCode.CONFLICT,
  FORGE_POOL_STORE_CLOSED: GatewayErrorCode.POOL_UNAVAILABLE,
  FORGE_POOL_CORRUPT: GatewayErrorCode.INTERNAL,
  FORGE_POOL_STORAGE: GatewayErrorCode.POOL_UNAVAILABLE,
});

export class GatewayError extends Error {
  readonly status: number;
  constructor(
    readonly code: GatewayErrorCode,
    message: string,
    /** The request field at fault (OpenAI's `param`), e.g. "messages[2].content". */
    readonly param: string | null = null,
  ) {
    super(message);
    this.name = 'GatewayError';
    this.status = ERROR_SPECS[code].status;
  }
}

export function gatewayError(code: GatewayErrorCode, message: string, param: string | null = null): GatewayError {
  return new GatewayError(code, message, param);
}

/** The error body in `protocol`'s shape. */
export function errorBody(protocol: Protocol, e: GatewayError): Record<string, unknown> {
  const spec = ERROR_SPECS[e.code];
  if (protocol === 'anthropic') return { type: 'error', error: { type: spec.anthropic, message: e.message, code: e.code } };
  return { error: { message: e.message, type: spec.openai, param: e.param, code: e.code } };
}

/** The protocol an URL speaks: the Anthropic Messages routes, OpenAI for everything else. */
export function protocolOf(url: string): Protocol {
  const path = url.split('?', 1)[0];
  return /\/v1\/messages(\/|$)/.test(path) ? 'anthropic' : 'openai';
}

/** Any thrown value as a GatewayError (fastify's own errors mapped by their code). */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  if (isPoolError(err)) return gatewayError(POOL_ERROR_CODES[err.code], err.message);
  const e = err as { code?: string; statusCode?: number; message?: string; validation?: unknown[]; validationContext?: string };
  const message = e?.message ?? String(err);
  if (e?.validation) {
    const first = e.validation[0] as { instancePath?: string; params?: { missingProperty?: string; additionalProperty?: string } } | undefined;
    const path = first?.instancePath ? first.instancePath.slice(1).replace(/\//g, '.') : '';
    // A missing or unexpected property is named: the path alone points at its parent object.
    const leaf = first?.params?.missingProperty ?? first?.params?.additionalProperty;
    const param = leaf === undefined ? path || null : path ? `${path}.${leaf}` : leaf;
    const extra = first?.params?.additionalProperty === undefined ? '' : `: ${JSON.stringify(first.params.additionalProperty)}`;
    return gatewayError(GatewayErrorCode.INVALID_REQUEST, message + extra, param);
  }
  switch (e?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return gatewayError(GatewayErrorCode.BODY_TOO_LARGE, message);
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return gatewayError(GatewayErrorCode.INVALID_JSON, message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return gatewayError(GatewayErrorCode.INVALID_REQUEST, message);
  }
  if (err instanceof SyntaxError || (e?.statusCode === 400 && /JSON/i.test(message)))
    return gatewayError(GatewayErrorCode.INVALID_JSON, message);
  if (e?.statusCode === 413) return gatewayError(GatewayErrorCode.BODY_TOO_LARGE, message);
  if (e?.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500)
    return gatewayError(GatewayErrorCode.INVALID_REQUEST, message);
  return gatewayError(GatewayErrorCode.INTERNAL, `internal error: ${message}`);
}
