// The build without Node and without CUDA: plain CMake with FORGE_CUDA=off builds libforge_kernels,
// and the C ABI check program passes against it with the CUDA entry points reporting "not compiled".
// (The npm install build, with CUDA when nvcc is found, is what every other test runs on.)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('build options', () => {
  it('FORGE_CUDA=off builds a CPU-only library that passes the C ABI check', () => {
    const build = mkdtempSync(join(tmpdir(), 'forge-cpu-build-'));
    execFileSync('cmake', ['-S', root, '-B', build, '-DFORGE_CUDA=off', '-DCMAKE_BUILD_TYPE=Release'], { stdio: 'pipe' });
    execFileSync('cmake', ['--build', build, '--parallel', String(cpus().length)], { stdio: 'pipe' });
    const exe = join(build, 'abi_check');
    execFileSync('cc', [
      '-std=c99', '-I', join(root, 'native', 'include'), join(root, 'test', 'c', 'abi_check.c'),
      '-L', build, '-lforge_kernels', `-Wl,-rpath,${build}`, '-lm', '-o', exe,
    ]);
    const out = execFileSync(exe).toString();
    expect(out).toContain('cuda compiled 0, devices 0');
    expect(out).toContain('ok');
  }, 300_000);

  it('rejects an unknown FORGE_CUDA value with a message naming it', () => {
    const build = mkdtempSync(join(tmpdir(), 'forge-bad-option-'));
    const result = spawnSync('cmake', ['-S', root, '-B', build, '-DFORGE_CUDA=maybe'], { encoding: 'utf8' });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain("FORGE_CUDA must be auto, on or off, got 'maybe'");
  });
});
