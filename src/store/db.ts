/**
 * Opens the SQLite database: WAL, foreign keys, busy timeout, migrations applied.
 * better-sqlite3 is synchronous; callers prepare statements once and keep every
 * check-and-write in one transaction with no `await` inside.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { migrate, MIGRATIONS_DIR } from './migrate.js';

export type Db = Database.Database;

export interface OpenDatabaseOptions {
  /** Apply pending migrations (default true). `reelbot db status` opens without. */
  migrate?: boolean;
  migrationsDir?: string;
  /** How long a writer waits for another process's lock before SQLITE_BUSY. */
  busyTimeoutMs?: number;
}

/** @example const db = openDatabase('./data/reelbot.db'); */
export function openDatabase(path: string, options: OpenDatabaseOptions = {}): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    // With WAL, NORMAL keeps every commit across a process crash; only an OS crash can lose the last ones.
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
    if (options.migrate ?? true) migrate(db, options.migrationsDir ?? MIGRATIONS_DIR);
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}

/**
 * Opens an existing database file for reading only: nothing is migrated or written (a command
 * line beside a running coordinator looks at the file this way).
 */
export function openDatabaseReadOnly(path: string, options: { busyTimeoutMs?: number } = {}): Db {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  return db;
}

/** Whether SQLite gave up waiting for another connection's lock. */
export function isBusyError(error: unknown): boolean {
  return error instanceof Database.SqliteError && error.code.startsWith('SQLITE_BUSY');
}

/**
 * Runs a synchronous write transaction without holding the event loop while another process has
 * the write lock: better-sqlite3 waits out `busy_timeout` synchronously, so each try here waits at
 * most `tryMs` inside SQLite and the next try comes after an asynchronous pause (5 ms, doubling to
 * 100 ms). After `deadlineMs` (default: the connection's busy timeout), or as soon as `stop()` says
 * so, the SQLITE_BUSY error is thrown. `busyTimeoutMs` is the connection's own busy timeout, put
 * back after each try (read from the connection when not given).
 */
export async function writeWithoutBlocking<T>(
  db: Db,
  write: () => T,
  options: { deadlineMs?: number; tryMs?: number; stop?: () => boolean; busyTimeoutMs?: number } = {},
): Promise<T> {
  // The caller that knows the connection's busy timeout (the writer queue) saves reading it back.
  const saved = options.busyTimeoutMs ?? Number(db.pragma('busy_timeout', { simple: true }));
  const deadline = Date.now() + (options.deadlineMs ?? saved);
  for (let pause = 5; ; pause = Math.min(pause * 2, 100)) {
    try {
      return withBusyTimeout(db, options.tryMs ?? 20, saved, write);
    } catch (error) {
      if (!isBusyError(error) || Date.now() >= deadline || options.stop?.() === true) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

/**
 * Runs `run` with the connection's busy timeout set to `tryMs` (the longest a write may wait inside
 * SQLite, blocking the thread), then puts back `savedMs`, the connection's own.
 */
export function withBusyTimeout<T>(db: Db, tryMs: number, savedMs: number, run: () => T): T {
  // SQLite applies PRAGMA busy_timeout when the statement is prepared, so a cached statement
  // would not set it again: db.pragma() prepares it each time, as it must.
  db.pragma(`busy_timeout = ${tryMs}`);
  try {
    return run();
  } finally {
    db.pragma(`busy_timeout = ${savedMs}`);
  }
}
