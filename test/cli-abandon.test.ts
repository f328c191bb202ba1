// `forge-rl gateway --pool`: sessions that an earlier, killed gateway left open are counted at start,
// and with --abandon-open marked abandoned (freeing their group slots); the live gateway's own are not.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { gatewayOptionsFrom, startGatewayServer } from '../lib/cli/gateway.js';
import { SqliteStore } from '../lib/pool/sqliteStore.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

async function poolWithDeadWriter(): Promise<{ path: string; sessionId: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'forge-abandon-'));
  dirs.push(dir);
  const path = join(dir, 'pool.sqlite');
  const dead = await SqliteStore.open(path);
  const task = await dead.addTask({ spec: { prompt: 'x' } });
  await dead.addGroup({ id: 'g', taskId: task.id, size: 1 });
  const session = await dead.openSession({ taskId: task.id, groupId: 'g', scaffold: 'test' });
  await dead.close(); // the writer "dies" with its session open
  return { path, sessionId: session.id };
}

describe('forge-rl gateway --pool with sessions left open by a dead gateway', () => {
  it('counts them without --abandon-open and leaves them open', async () => {
    const { path, sessionId } = await poolWithDeadWriter();
    const running = await startGatewayServer(gatewayOptionsFrom({ pool: path, port: '0', 'cache-tokens': '256' }, {}, 0));
    try {
      expect(running.staleOpenSessions).toEqual({ count: 1, abandoned: false });
    } finally {
      await running.close(0);
    }
    const store = await SqliteStore.open(path);
    expect((await store.getSession(sessionId)).status).toBe('open');
    await store.close();
  });

  it('marks them abandoned with --abandon-open, which lets the group take a retry', async () => {
    const { path, sessionId } = await poolWithDeadWriter();
    const running = await startGatewayServer(gatewayOptionsFrom({ pool: path, port: '0', 'cache-tokens': '256', 'abandon-open': true }, {}, 0));
    try {
      expect(running.staleOpenSessions).toEqual({ count: 1, abandoned: true });
      const res = await fetch(`${running.baseUrl}/v1/sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${running.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ group_id: 'g', scaffold: 'retry' }),
      });
      expect(res.status).toBe(201);
    } finally {
      await running.close(0);
    }
    const store = await SqliteStore.open(path);
    const s = await store.getSession(sessionId);
    expect(s.status).toBe('abandoned');
    expect(s.failReason).toMatch(/abandoned at restart/);
    await store.close();
  });
});
