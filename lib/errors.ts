// The kernel surface's error registry. Validation failures are plain TypeError / RangeError (what a
// caller would catch for a bad argument) carrying a `code` from this table, so callers can match on
// the code without parsing messages. Errors raised by the native library carry the same codes
// (the names of forge.h's forge_status values).

export const KernelErrorCode = {
  /** Wrong type or shape of an argument; a malformed tree. */
  INVALID_ARGUMENT: 'FORGE_ERR_INVALID_ARGUMENT',
  /** An index, token id or size outside its valid range. */
  OUT_OF_RANGE: 'FORGE_ERR_OUT_OF_RANGE',
  /** NaN or Inf where a finite number is required. */
  NON_FINITE: 'FORGE_ERR_NON_FINITE',
  OUT_OF_MEMORY: 'FORGE_ERR_OUT_OF_MEMORY',
  UNSUPPORTED: 'FORGE_ERR_UNSUPPORTED',
  DEVICE: 'FORGE_ERR_DEVICE',
  INTERNAL: 'FORGE_ERR_INTERNAL',
} as const;
export type KernelErrorCode = (typeof KernelErrorCode)[keyof typeof KernelErrorCode];

export interface CodedError extends Error {
  code: KernelErrorCode;
}

export function typeError(message: string): TypeError & CodedError {
  return Object.assign(new TypeError(message), { code: KernelErrorCode.INVALID_ARGUMENT });
}

export function rangeError(
  message: string,
  code: KernelErrorCode = KernelErrorCode.OUT_OF_RANGE,
): RangeError & CodedError {
  return Object.assign(new RangeError(message), { code });
}
