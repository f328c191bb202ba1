// Loads forge.node (built by `npm install` through cmake-js) and types what it exports.
// Other modules call the addon only through this file.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
// lib/ (sources, run by vitest and tsx) and dist/ (compiled) both sit one level below the package root.
const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface NativeInfo {
  /** FORGE_ABI_VERSION of the loaded libforge_kernels. */
  abiVersion: number;
  /** Threads of the kernel pool (the caller's thread included). */
  numThreads: number;
  /** Whether this build compiled cuda/. */
  cudaCompiled: boolean;
  /** Usable GPUs; 0 means every kernel runs on the CPU. */
  cudaDevices: number;
  /** Why cudaDevices is 0 ('' otherwise). */
  cudaReason: string;
}

/** FORGE_ADDON_PATH names another build of forge.node to load instead of the package's own: the
 * tests use it for the CPU emulator build of the CUDA kernels (build-simt/, see cuda/simt/). */
function loadAddon(): unknown {
  const override = process.env.FORGE_ADDON_PATH;
  if (!override) return require('node-gyp-build')(packageRoot);
  const path = resolve(packageRoot, override);
  if (!existsSync(path)) throw new Error(`FORGE_ADDON_PATH: no addon at ${path}`);
  return require(path);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const addon: any = loadAddon();

/** Facts about the loaded native library. */
export function nativeInfo(): NativeInfo {
  return addon.info() as NativeInfo;
}

/** Sets the kernel thread pool size; 0 restores the default. Returns the new size. */
export function setNumThreads(threads: number): number {
  return addon.setNumThreads(threads) as number;
}
