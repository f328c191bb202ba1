// The policy version an external inference server (vLLM, SGLang) serves now. Neither server reports
// it, so the gateway holds it: set at start (forge-rl gateway --upstream-version), then advanced by
// whoever pushes new weights to the server, through the admin route POST /v1/policy-versions
// (poolRoutes.ts). OpenAICompatibleUpstream reads it (its `version` option: `served.read`) as each
// token arrives, so every token after a push carries the new version.
import { GatewayErrorCode, gatewayError } from './errors.js';

export const MAX_POLICY_VERSION = 2 ** 31 - 1;

function checkVersion(name: string, v: unknown): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > MAX_POLICY_VERSION)
    throw new RangeError(`${name}: expected an integer in [0, ${MAX_POLICY_VERSION}], got ${String(v)}`);
  return v as number;
}

export class ServedVersion {
  private value: number;

  constructor(initial = 0) {
    this.value = checkVersion('initial', initial);
  }

  /** The version served now; a bound function, to pass as OpenAICompatibleUpstream's `version`. */
  readonly read = (): number => this.value;

  get current(): number {
    return this.value;
  }

  /**
   * Refuses (CONFLICT, 409) a version that does not move forward: versions only increase, as the
   * pool's do, so a late or repeated push never takes the served version back.
   */
  checkAdvance(version: number): void {
    checkVersion('version', version);
    if (version <= this.value)
      throw gatewayError(GatewayErrorCode.CONFLICT, `policy version ${version} is not above the version served now (${this.value})`, 'version');
  }

  /** Serves `version` from now on (checked like checkAdvance). */
  advance(version: number): void {
    this.checkAdvance(version);
    this.value = version;
  }
}
