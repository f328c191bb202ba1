// The C ABI binds without the N-API layer: a C99 program compiled here against forge.h and
// libforge_kernels alone builds a tree, runs attention and CISPO, and checks bad input gives a status.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const libDir = join(root, 'build', 'Release');

describe('C ABI', () => {
  it('is built as a shared library beside the addon', () => {
    expect(existsSync(join(libDir, 'libforge_kernels.so'))).toBe(true);
  });

  it('exports only forge_ symbols', () => {
    const out = execFileSync('nm', ['-D', '--defined-only', join(libDir, 'libforge_kernels.so')]).toString();
    const symbols = out
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter((parts) => parts.length === 3 && /[TDBRW]/.test(parts[1]))
      .map((parts) => parts[2]);
    expect(symbols.length).toBeGreaterThan(10);
    expect(symbols.filter((s) => !s.startsWith('forge_'))).toEqual([]);
  });

  it('binds from a C program compiled against forge.h alone', () => {
    const exe = join(mkdtempSync(join(tmpdir(), 'forge-abi-')), 'abi_check');
    execFileSync('cc', [
      '-std=c99', '-Wall', '-Wextra', '-Werror', '-pedantic',
      '-I', join(root, 'native', 'include'),
      join(root, 'test', 'c', 'abi_check.c'),
      '-L', libDir, '-lforge_kernels', `-Wl,-rpath,${libDir}`, '-lm',
      '-o', exe,
    ]);
    const out = execFileSync(exe, { env: { ...process.env, FORGE_NUM_THREADS: '2' } }).toString();
    expect(out).toContain('ok');
  });

  it('the header also compiles as C++', () => {
    execFileSync('c++', ['-std=c++17', '-fsyntax-only', '-x', 'c++', '-I', join(root, 'native', 'include'), '-'], {
      input: '#include <forge/forge.h>\nint main() { return forge_abi_version(); }\n',
    });
  });
});
