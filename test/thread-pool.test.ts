// The kernel thread pool under resizes: a region started right after setNumThreads must complete
// (run in a child process with a deadline, so a deadlock fails this test instead of hanging the run).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));

describe('thread pool', () => {
  it('finishes every region started right after a resize (2000 resizes)', () => {
    const child = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'fixtures/thread-pool-resize.ts'), '2000'], {
      encoding: 'utf8',
      timeout: 45_000,
    });
    expect(child.error?.message ?? '', 'the child hung (deadlocked pool) or could not start').toBe('');
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout.trim()).toBe('done');
  });
});
