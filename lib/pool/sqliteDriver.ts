// The thin layer between the SQLite store and better-sqlite3: the few driver calls it uses (typed
// here: the package ships no types and the project installs none), loading the addon on first use
// (so the rest of forge-rl, the memory store included, works without it), opening a pool file with
// its pragmas and schema, and turning the driver's errors into PoolErrors.
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

/** Opens (creating when absent) a pool file in WAL mode with the schema in place; refuses a file of
 * another schema version, or one that is not a database (CORRUPT). */
export function openDatabase(path: string, options: { busyTimeoutMs: number; synchronous: 'NORMAL' | 'FULL' }): Database {
  if (os.endianness() !== 'LE') throw new PoolError(PoolErrorCode.STORAGE, 'the SQLite pool stores little-endian arrays; this host is big-endian');
  let handle: Database | undefined;
  try {
    Sqlite ??= createRequire(import.meta.url)('better-sqlite3') as DatabaseCtor;
    const h = (handle = new Sqlite(path, { timeout: options.busyTimeoutMs }));
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
