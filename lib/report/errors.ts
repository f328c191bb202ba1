// The report surface's error registry (one per surface, as lib/errors.ts is the kernels'). A bad
// argument is a TypeError / RangeError with the kernel surface's FORGE_ERR_* code, like every other
// argument check in forge-rl; a run log that cannot be read is a RunLogError.

export const ReportErrorCode = {
  /** A line of the run log (other than a cut-off last line) is not a JSON event. */
  BAD_LOG: 'FORGE_REPORT_BAD_LOG',
  /** The run log writer was closed. */
  LOG_CLOSED: 'FORGE_REPORT_LOG_CLOSED',
} as const;
export type ReportErrorCode = (typeof ReportErrorCode)[keyof typeof ReportErrorCode];

export class RunLogError extends Error {
  constructor(
    readonly code: ReportErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'RunLogError';
  }
}
