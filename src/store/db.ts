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
