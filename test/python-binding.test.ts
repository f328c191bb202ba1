// The PyTorch binding (python/forge_kernels, ctypes over libforge_kernels' C ABI): runs its unittest
// suite (python/tests: tree attention, CISPO, merges and the prefix tree against float64 references in
// plain torch, the merged-tree exactness of a small PyTorch model, argument errors, the ABI description
// against forge.h, the device launches on the CUDA emulator build, the external-trainer example) with
// the first python that has torch: /usr/bin/python3 (Debian's python3-torch), then python3 on PATH.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { seededRun } from './helpers/random.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const candidates = ['/usr/bin/python3', 'python3'];
const python = candidates.find((exe) => spawnSync(exe, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 }).status === 0);
const { seed, why } = seededRun();

describe.skipIf(!python)(
  python ? `PyTorch binding (python/forge_kernels) under ${python}` : `PyTorch binding: skipped, no python with torch (${candidates.join(', ')})`,
  () => {
    it('passes its unittest suite', () => {
      const run = spawnSync(python!, ['-m', 'unittest', 'discover', '-s', 'python/tests', '-v'], {
        cwd: root,
        env: { ...process.env, FORGE_TEST_SEED: String(seed), FORGE_NUM_THREADS: '2' },
        encoding: 'utf8',
        timeout: 120_000,
      });
      const output = `${run.stdout}\n${run.stderr}`;
      expect(run.error, why(output.slice(-4000))).toBeUndefined();
      expect(run.status, why(output.slice(-8000))).toBe(0);
      const ran = /Ran (\d+) tests? in/.exec(output);
      expect(Number(ran?.[1] ?? 0), why('tests discovered')).toBeGreaterThanOrEqual(30);
      expect(output).toMatch(/\nOK( \(skipped=\d+\))?\n/);
    }, 150_000);
  },
);
