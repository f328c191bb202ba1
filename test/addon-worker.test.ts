// The addon in several environments at once: the engine on the main thread and in a worker thread of
// one process (run in a child with a deadline, so a crash fails this test instead of the test run).
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));

describe('addon in a worker thread', () => {
  it('serves the engine on the main thread and in a worker of the same process', () => {
    const child = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'fixtures/engine-in-worker.ts')], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(child.error?.message ?? '', 'the child hung or could not start').toBe('');
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(child.stdout.trim()).toMatch(/^done [1-8] [1-8] [1-8]$/);
  });
});
