// `forge-rl pool`: look after a data pool file. `pool stats` tells what the pool holds and how much
// of it is call payload (the bulk: token arrays, requests, responses); `pool prune` removes what
// training has used (PoolStore.prune: ended before a time, given groups, or complete and rewarded
// groups; keep a summary or nothing) and gives the space back.
//
// Running next to a live gateway is fine: the pool is SQLite in WAL mode, readers never wait, and a
// prune is a series of short transactions (one per batch of sessions), so a gateway's write waits
// for at most one batch. A prune never touches an open session or a group with one. --vacuum is the
// exception: it rebuilds the file under the write lock, so a gateway's write waits up to its busy
// timeout (5 s) and then fails; run it when no gateway is writing.
import type { PoolStats, PruneQuery, PruneResult } from '../pool/types.js';
import type { SqliteStore } from '../pool/sqliteStore.js';
import { CliUsageError, type CliIO, type FlagTable, type FlagValues, helpText, intFlag, parseFlags, processIO, stringFlag } from './args.js';

const POOL_FLAG = { type: 'string', value: '<file.sqlite>', help: 'the pool file (it must exist)' } as const;

export const STATS_FLAGS: FlagTable = {
  pool: POOL_FLAG,
  json: { type: 'boolean', help: 'print JSON instead of a table' },
};

export const PRUNE_FLAGS: FlagTable = {
  pool: POOL_FLAG,
  'ended-before': { type: 'string', value: '<time>', help: 'sessions that ended before this time: ISO 8601 (2025-06-01, 2025-06-01T12:00:00Z) or a duration ago (90s, 30m, 12h, 7d, 2w)' },
  group: { type: 'string', multiple: true, value: '<id>', help: 'sessions of this group, e.g. one the trainer has consumed (repeat the flag for several)' },
  rewarded: { type: 'boolean', help: 'sessions of groups that are complete, with every session rewarded' },
  'reward-version': { type: 'string', value: '<v>', help: 'with --rewarded: the reward version that counts (default "default")' },
  keep: { type: 'string', value: '<summary|nothing>', help: 'summary (default): keep sessions, rewards and calls but drop the token arrays; nothing: remove them, and the groups and tasks left empty' },
  vacuum: { type: 'boolean', help: 'rebuild the file afterwards (VACUUM): shrinks pools created before retention existed; holds the write lock throughout' },
  'dry-run': { type: 'boolean', help: 'count what would be pruned; change nothing' },
  'batch-size': { type: 'string', value: '<n>', help: 'sessions per transaction (default 64)' },
  json: { type: 'boolean', help: 'print the result as JSON' },
};

const STATS_USAGE = 'forge-rl pool stats --pool <file.sqlite> [--json]';
const PRUNE_USAGE = 'forge-rl pool prune --pool <file.sqlite> [--ended-before <time>] [--group <id> ...] [--rewarded] [--keep summary|nothing] [--vacuum] [--dry-run]';
const PRUNE_ABOUT = [
  'Removes what training has used. The criteria narrow each other; at least one is required. A group is',
  'pruned whole or not at all: never while one of its sessions is open, nor when only some match (it is',
  'listed as skipped). Each batch is one transaction: a prune that is killed leaves the pool consistent,',
  'and running it again finishes the job. Safe next to a live gateway (WAL: it waits for one batch at',
  'most), except --vacuum, which holds the write lock for the whole rebuild.',
].join('\n');

export const POOL_HELP = [
  'usage: forge-rl pool <stats|prune> --pool <file.sqlite> [flags]',
  '',
  'Inspect a data pool file and prune what training has used.',
  '',
  helpText(STATS_USAGE, 'What the pool holds: counts, call payload bytes, the ended-time range, the file size.', STATS_FLAGS),
  '',
  helpText(PRUNE_USAGE, PRUNE_ABOUT, PRUNE_FLAGS),
].join('\n');

const DURATION_MS: Record<string, number> = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3 };

/** --ended-before as ms since the epoch: an ISO 8601 time, or a duration before `now`. */
export function parseEndedBefore(raw: string, now: number): number {
  const duration = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(raw.trim());
  if (duration) return now - Number(duration[1]) * DURATION_MS[duration[2]];
  const t = /^\d{4}-\d{2}-\d{2}/.test(raw.trim()) ? Date.parse(raw.trim()) : NaN;
  if (!Number.isFinite(t))
    throw new CliUsageError(`--ended-before: expected an ISO 8601 time (2025-06-01T12:00:00Z) or a duration ago (90s, 30m, 12h, 7d, 2w), got ${JSON.stringify(raw)}`);
  return t;
}

/** The PruneQuery of the prune flags (without the progress callback). */
export function pruneQueryFrom(values: FlagValues, now: number): PruneQuery {
  const query: PruneQuery = {};
  const ended = stringFlag(values, 'ended-before');
  if (ended !== undefined) query.endedBefore = parseEndedBefore(ended, now);
  const groups = values.group as string[] | undefined;
  if (groups !== undefined) {
    for (const g of groups) if (g.length === 0) throw new CliUsageError('--group: expected a group id, got an empty value');
    query.groupIds = groups;
  }
  if (values.rewarded === true) query.rewardedGroups = true;
  const version = stringFlag(values, 'reward-version');
  if (version !== undefined) {
    if (!query.rewardedGroups) throw new CliUsageError('--reward-version: only meaningful with --rewarded');
    query.rewardVersion = version;
  }
  if (query.endedBefore === undefined && query.groupIds === undefined && !query.rewardedGroups)
    throw new CliUsageError('pool prune: give at least one of --ended-before, --group, --rewarded (see forge-rl help pool)');
  const keep = stringFlag(values, 'keep') ?? 'summary';
  if (keep !== 'summary' && keep !== 'nothing') throw new CliUsageError(`--keep: expected summary or nothing, got ${JSON.stringify(keep)}`);
  query.keep = keep;
  if (values.vacuum === true) query.vacuum = true;
  if (values['dry-run'] === true) query.dryRun = true;
  query.batchSize = intFlag(values, 'batch-size', 64, 1, 1 << 20);
  return query;
}

function requirePool(values: FlagValues): string {
  const path = stringFlag(values, 'pool');
  if (path === undefined) throw new CliUsageError('--pool: required (the pool file)');
  return path;
}

async function openPool(path: string): Promise<SqliteStore> {
  const { SqliteStore } = await import('../pool/sqliteStore.js');
  return SqliteStore.open(path, { create: false });
}

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const [value, unit] = n < 1e6 ? [n / 1e3, 'kB'] : n < 1e9 ? [n / 1e6, 'MB'] : [n / 1e9, 'GB'];
  return `${value.toFixed(1)} ${unit}`;
}

const iso = (t: number | null | undefined) => (t === null || t === undefined ? '-' : new Date(t).toISOString());

export function statsTable(path: string, s: PoolStats): string[] {
  const rows: [string, string][] = [
    ['file', `${formatBytes(s.fileBytes ?? 0)} (free pages ${formatBytes(s.freeBytes ?? 0)}, auto-vacuum ${s.autoVacuum ?? '-'})`],
    ['tasks', String(s.tasks)],
    ['groups', String(s.groups)],
    ['sessions', `${Object.values(s.sessions).reduce((a, b) => a + b, 0)} (open ${s.sessions.open}, closed ${s.sessions.closed}, failed ${s.sessions.failed}, abandoned ${s.sessions.abandoned})`],
    ['calls', `${s.calls} (token arrays pruned: ${s.prunedCalls ?? 0})`],
    ['rewards', String(s.rewards)],
    ['policy versions', String(s.policyVersions)],
    ['call payload', `${formatBytes(s.callPayloadBytes ?? 0)} (token arrays ${formatBytes(s.tokenArrayBytes ?? 0)})`],
    ['sessions ended', s.oldestEndedAt === null || s.oldestEndedAt === undefined ? '-' : `${iso(s.oldestEndedAt)} .. ${iso(s.newestEndedAt)}`],
  ];
  return [`pool ${path}`, ...rows.map(([k, v]) => `  ${k.padEnd(17)}${v}`)];
}

export function pruneSummary(r: PruneResult): string[] {
  const verb = r.dryRun ? 'would prune' : 'pruned';
  const lines = [
    `${verb} ${r.sessions} sessions (keep ${r.keep}): ${r.calls} calls, ${formatBytes(r.payloadBytes)} of call payload` +
      (r.keep === 'nothing' ? `; ${r.rewards} rewards, ${r.groups} groups, ${r.tasks} tasks` : ''),
  ];
  if (r.skipped.length > 0) {
    const shown = r.skipped.slice(0, 10).map((s) =>
      s.reason === 'open-session' ? `${s.groupId} (${s.open} open)` : `${s.groupId} (${s.matched} sessions match, not all)`);
    lines.push(`left ${r.skipped.length} groups whole: ${shown.join(', ')}${r.skipped.length > 10 ? ', ...' : ''}`);
  }
  if (r.file) lines.push(`file ${formatBytes(r.file.bytesBefore)} -> ${formatBytes(r.file.bytesAfter)} (${r.file.reclaim === 'none' ? 'freed pages are reused by later writes; --vacuum shrinks the file' : r.file.reclaim})`);
  return lines;
}

async function statsCommand(argv: readonly string[], io: CliIO): Promise<number> {
  const { values } = parseFlags('pool stats', argv, STATS_FLAGS);
  if (values.help) {
    io.out(helpText(STATS_USAGE, 'What the pool holds: counts, call payload bytes, the ended-time range, the file size.', STATS_FLAGS));
    return 0;
  }
  const path = requirePool(values);
  const store = await openPool(path);
  try {
    const stats = await store.stats({ storage: true });
    if (values.json) io.out(JSON.stringify({ pool: path, ...stats }));
    else statsTable(path, stats).forEach((l) => io.out(l));
    return 0;
  } finally {
    await store.close();
  }
}

async function pruneCommand(argv: readonly string[], io: CliIO, now: () => number): Promise<number> {
  const { values } = parseFlags('pool prune', argv, PRUNE_FLAGS);
  if (values.help) {
    io.out(helpText(PRUNE_USAGE, PRUNE_ABOUT, PRUNE_FLAGS));
    return 0;
  }
  const path = requirePool(values);
  const query = pruneQueryFrom(values, now());
  const store = await openPool(path);
  try {
    for (const g of query.groupIds ?? []) {
      try {
        await store.getGroup(g);
      } catch (e) {
        if ((e as { code?: string }).code === 'FORGE_POOL_UNKNOWN_GROUP') throw new CliUsageError(`--group: no group ${JSON.stringify(g)} in ${path}`);
        throw e;
      }
    }
    // Progress on stderr: after the first batch, then at most once a second.
    let last = 0;
    query.onBatch = (p) => {
      const t = Date.now();
      if (p.batches > 1 && t - last < 1000 && p.sessions < p.plannedSessions) return;
      last = t;
      io.err(`pool prune: batch ${p.batches}, ${p.sessions}/${p.plannedSessions} sessions${query.dryRun ? ' (dry run)' : ''}`);
      if (p.sessions === p.plannedSessions && query.vacuum && !query.dryRun) io.err('pool prune: rebuilding the file (VACUUM)');
    };
    const result = await store.prune(query);
    if (values.json) io.out(JSON.stringify(result));
    else pruneSummary(result).forEach((l) => io.out(l));
    return 0;
  } finally {
    await store.close();
  }
}

export async function poolCommand(argv: readonly string[], io: CliIO = processIO, now: () => number = Date.now): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === '--help' || sub === '-h') {
    io.out(POOL_HELP);
    return 0;
  }
  if (sub === 'stats') return statsCommand(rest, io);
  if (sub === 'prune') return pruneCommand(rest, io, now);
  throw new CliUsageError(sub === undefined
    ? 'pool: expected a subcommand, stats or prune (see forge-rl help pool)'
    : `pool: unknown subcommand ${JSON.stringify(sub)} (stats, prune; see forge-rl help pool)`);
}
