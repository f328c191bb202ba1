// The thin layer between the SQLite store and better-sqlite3: the few driver calls it uses (typed
// here: the package ships no types and the project installs none), loading the addon on first use
// (so the rest of forge-rl, the memory store included, works without it), opening a pool file with
// its pragmas and schema, and turning the driver's errors into PoolErrors.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';

import { PoolError, PoolErrorCode } from './errors.js';
import { SCHEMA, SCHEMA_VERSION } from './sqliteSchema.js';

export interface Statement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
}

export interface Database {
  prepare(sql: string): Statement;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  exec(sql: string): void;
  transaction<A extends unknown[], R>(fn: (...args: A) => R): { immediate: (...args: A) => R; (...args: A): R };
  close(): void;
}

type DatabaseCtor = new (path: string, options?: { timeout?: number }) => Database;

let Sqlite: DatabaseCtor | undefined;

/** Turns whatever the driver throws into a PoolError; lets the pool's own and argument errors through. */
export function storageError(error: unknown): unknown {
  if (error instanceof PoolError || error instanceof TypeError || error instanceof RangeError) return error;
  const code = (error as { code?: string })?.code ?? '';
  const message = (error as Error)?.message ?? String(error);
  const corrupt = code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB';
  return new PoolError(corrupt ? PoolErrorCode.CORRUPT : PoolErrorCode.STORAGE, `pool database: ${message} (${code || 'no code'})`, { cause: error });
}

/** Opens (creating when absent, unless create is false) a pool file in WAL mode with the schema in
 * place; refuses a file of another schema version, or one that is not a database (CORRUPT), and with
 * create false a missing file (STORAGE) or a database that is not a pool (CORRUPT). */
export function openDatabase(path: string, options: { busyTimeoutMs: number; synchronous: 'NORMAL' | 'FULL'; create?: boolean }): Database {
  if (os.endianness() !== 'LE') throw new PoolError(PoolErrorCode.STORAGE, 'the SQLite pool stores little-endian arrays; this host is big-endian');
  const create = options.create ?? true;
  if (!create && (path === ':memory:' || !existsSync(path))) throw new PoolError(PoolErrorCode.STORAGE, `no pool file at ${path}`);
  let handle: Database | undefined;
  try {
    Sqlite ??= createRequire(import.meta.url)('better-sqlite3') as DatabaseCtor;
    const h = (handle = new Sqlite(path, { timeout: options.busyTimeoutMs }));
    if (!create && !h.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pool_meta'").get())
      throw new PoolError(PoolErrorCode.CORRUPT, `${path} is not a forge-rl pool (no pool_meta table)`);
    // A new file gets incremental auto-vacuum (settable only before its first table), so that pruning
    // gives space back to the file system; an existing file keeps its mode (a VACUUM can change it).
    if ((h.pragma('page_count', { simple: true }) as number) === 0) h.pragma('auto_vacuum = INCREMENTAL');
    h.pragma('journal_mode = WAL');
    h.pragma('foreign_keys = ON');
    h.pragma(`synchronous = ${options.synchronous}`);
    h.transaction(() => {
      h.exec(SCHEMA);
      const row = h.prepare("SELECT value FROM pool_meta WHERE key = 'schema'").get() as { value: string } | undefined;
      if (row === undefined) h.prepare("INSERT INTO pool_meta (key, value) VALUES ('schema', ?)").run(String(SCHEMA_VERSION));
      else if (row.value !== String(SCHEMA_VERSION))
        throw new PoolError(PoolErrorCode.CORRUPT, `pool database ${path}: schema version ${row.value}, this forge-rl reads ${SCHEMA_VERSION}`);
    }).immediate();
    return h;
  } catch (error) {
    handle?.close();
    throw storageError(error);
  }
}
