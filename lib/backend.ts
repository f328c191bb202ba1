// Where a host-array kernel call runs (issue 7: "everything falls back to the CPU kernels, with one
// clear line saying so"). Each kernel of lib/attention.ts, lib/cispo.ts and lib/prefixTree.ts takes an
// optional `backend`: 'cpu' (the CPU kernels), 'cuda' (upload, run the device kernel in float32,
// download, free; an error without a GPU) or 'auto' (the GPU when one is usable, else the CPU after the
// one line selectBackend() prints). The default is 'cpu' unless setDefaultBackend() or the environment
// variable FORGE_BACKEND says otherwise, so existing callers see no change.
import { device, selectBackend } from './device.js';
import { KernelErrorCode, rangeError, typeError, type CodedError } from './errors.js';

/** Where a kernel call runs. */
export type Backend = 'cpu' | 'cuda' | 'auto';

/** The option every host-array kernel takes. */
export interface BackendOption {
  /**
   * 'cpu', 'cuda' (device kernels in float32; throws FORGE_ERR_DEVICE without a GPU, and
   * FORGE_ERR_UNSUPPORTED for a call the device kernels do not serve, e.g. head dim 32) or 'auto' (the
   * GPU when usable, else the CPU, saying so once). Default: getDefaultBackend().
   */
  backend?: Backend;
}

const BACKENDS: readonly string[] = ['cpu', 'cuda', 'auto'];
const NAMES = "'cpu', 'cuda' or 'auto'";

let configured: Backend | undefined;

function expectBackend(name: string, value: unknown): Backend {
  if (typeof value !== 'string') throw typeError(`${name}: expected ${NAMES}, got ${value === null ? 'null' : typeof value}`);
  if (!BACKENDS.includes(value)) throw rangeError(`${name}: expected ${NAMES}, got '${value}'`, KernelErrorCode.INVALID_ARGUMENT);
  return value as Backend;
}

/**
 * Sets the backend of calls that name none. `undefined` goes back to the environment variable
 * FORGE_BACKEND (cpu | cuda | auto), else 'cpu'.
 */
export function setDefaultBackend(backend: Backend | undefined): void {
  configured = backend === undefined ? undefined : expectBackend('backend', backend);
}

/** The backend of calls that name none: setDefaultBackend's, else FORGE_BACKEND's, else 'cpu'. */
export function getDefaultBackend(): Backend {
  if (configured !== undefined) return configured;
  const env = process.env.FORGE_BACKEND;
  return env === undefined || env === '' ? 'cpu' : expectBackend('FORGE_BACKEND', env);
}

let gpuMissing: string | null | undefined;  // why no GPU is usable; null when one is (asked once)

function missingGpu(): string | null {
  if (gpuMissing === undefined) {
    const report = device();
    gpuMissing = report.available ? null : report.reason;
  }
  return gpuMissing;
}

const explained = new Set<string>();

/**
 * Decides where the call `what` runs: 'cuda' or 'cpu'. `requested` is the caller's options.backend;
 * `unsupported` says why the device kernels cannot serve this call (undefined when they can): 'auto'
 * then runs it on the CPU with one console line per distinct reason, 'cuda' throws
 * FORGE_ERR_UNSUPPORTED. 'cuda' without a GPU throws FORGE_ERR_DEVICE naming the reason.
 */
export function chooseBackend(what: string, requested: unknown, unsupported?: string): 'cpu' | 'cuda' {
  const backend = requested === undefined ? getDefaultBackend() : expectBackend('options.backend', requested);
  if (backend === 'cpu') return 'cpu';
  if (backend === 'cuda') {
    const missing = missingGpu();
    if (missing !== null)
      throw Object.assign(new Error(`${what}: backend 'cuda': no usable GPU (${missing})`), { code: KernelErrorCode.DEVICE }) as CodedError;
    if (unsupported !== undefined) throw rangeError(`${what}: backend 'cuda': ${unsupported}`, KernelErrorCode.UNSUPPORTED);
    return 'cuda';
  }
  if (selectBackend() === 'cpu') return 'cpu';  // it has said why, once
  if (unsupported === undefined) return 'cuda';
  const line = `forge-rl: ${what} runs on the CPU (${unsupported})`;
  if (!explained.has(line)) {
    explained.add(line);
    console.warn(line);
  }
  return 'cpu';
}
