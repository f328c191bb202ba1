// Loads forge.node (built by `npm install` through cmake-js) and types what it exports.
// Other modules call the addon only through this file.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
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

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const addon: any = require('node-gyp-build')(packageRoot);

/** Facts about the loaded native library. */
export function nativeInfo(): NativeInfo {
  return addon.info() as NativeInfo;
}

/** Sets the kernel thread pool size; 0 restores the default. Returns the new size. */
export function setNumThreads(threads: number): number {
  return addon.setNumThreads(threads) as number;
}
