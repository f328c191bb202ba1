import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// The CUDA kernels' tests run a second time on the CPU emulator build (cuda/simt/, built into
// build-simt/ by `npm test`'s pretest) when it exists: there they run instead of being skipped.
// Launches cycle through thread orders and cp.async landing times (cuda/simt/scheduler.cpp), so a
// missing barrier, a read before cp.async.wait_group or an order-dependent result shows up.
const emulatorAddon = 'build-simt/Release/forge.node';
const cudaTests = ['test/cuda.test.ts', 'test/cuda-attention.test.ts', 'test/backend.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    // Kernels use their own thread pool; one test file per process keeps runs independent.
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'cpu', include: ['test/**/*.test.ts'] } },
      ...(existsSync(emulatorAddon)
        ? [{ extends: true as const, test: { name: 'cuda-emulator', include: cudaTests, env: { FORGE_ADDON_PATH: emulatorAddon, FORGE_SIMT_ORDER: 'alternate', FORGE_SIMT_CP_ASYNC: 'alternate' } } }]
        : []),
    ],
  },
});
