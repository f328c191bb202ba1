// The CPU emulator of the CUDA kernels (cuda/simt/) checked on its own: test/simt/selftest.cu, built
// into build-simt/ by the emulator build, runs small kernels against independent answers (tensor-core
// fragments vs a float64 matmul, warp operations, deadlock / divergence / out-of-bounds detection,
// cp.async timing, launch limits, device memory, thread order) and prints one line per check.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { seededRun } from './helpers/random.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const selftest = join(root, 'build-simt', 'Release', 'forge_simt_selftest');
const built = existsSync(selftest);

// One line per check of the program; each must print "ok <name>".
const mmaChecks = ['bf16', 'f16'].flatMap((t) => [
  `mma_tile.${t}.a_mk.b_nk`,
  `mma_tile.${t}.a_mk.b_kn`,
  `mma_tile.${t}.a_km.b_nk`,
  `mma_tile.${t}.a_km.b_kn`,
  `mma_tile_reg_a.${t}.pack_a_pv`,
]);
const checks = [
  ...mmaChecks,
  'warp.shfl_xor',
  'warp.ballot',
  'block.syncthreads_and',
  'detect.deadlock',
  'detect.divergent_warp_ops',
  'detect.out_of_bounds',
  'cp_async.deferred',
  'launch.limits',
  'memory.device',
  'order.reverse',
];

const title = built
  ? 'CPU emulator self-test (build-simt/Release/forge_simt_selftest)'
  : 'CPU emulator self-test: skipped, build-simt/Release/forge_simt_selftest is not built ' +
    '(npx cmake-js compile --out build-simt --CDFORGE_SIMT=on)';

describe.skipIf(!built)(title, () => {
  const run = seededRun();

  function runSelftest(args: string[] = [], env: Record<string, string> = {}) {
    const result = spawnSync(selftest, args, {
      encoding: 'utf8',
      timeout: 60_000,  // a deadlock the emulator failed to detect would hang here
      env: { ...process.env, FORGE_TEST_SEED: String(run.seed), ...env },
    });
    const lines = (result.stdout ?? '').split('\n').filter((line) => line.length > 0);
    const why = run.why(`exit ${result.status} signal ${result.signal}\n${result.stdout}${result.stderr}`);
    return { result, lines, why };
  }

  it('passes every check', () => {
    const { result, lines, why } = runSelftest();
    expect(result.error, why).toBeUndefined();
    expect(lines.filter((line) => line.startsWith('FAIL')), why).toEqual([]);
    expect(result.status, why).toBe(0);
    for (const name of checks) expect(lines, why).toContain(`ok ${name}`);
    // Nothing runs that this list does not know of: a new check gets named here too.
    expect(lines.filter((line) => line.startsWith('ok ')).length, why).toBe(checks.length);
  });

  it('passes every check when the environment asks for another schedule (the checks pin their own)', () => {
    const { result, lines, why } = runSelftest([], { FORGE_SIMT_ORDER: 'reverse', FORGE_SIMT_CP_ASYNC: 'eager' });
    expect(result.status, why).toBe(0);
    for (const name of checks) expect(lines, why).toContain(`ok ${name}`);
  });

  it('runs only the checks a filter names, and fails when none matches', () => {
    const some = runSelftest(['detect.']);
    expect(some.result.status, some.why).toBe(0);
    expect(some.lines.filter((line) => line.startsWith('ok ')), some.why).toEqual(
      checks.filter((name) => name.startsWith('detect.')).map((name) => `ok ${name}`),
    );
    const none = runSelftest(['no-such-check']);
    expect(none.result.status, none.why).toBe(1);
    expect(none.lines, none.why).toContain('FAIL no check matches "no-such-check"');
  });
});
