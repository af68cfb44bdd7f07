/**
 * Migration runner. `migrations/NNN_name.sql` files are applied in order, each in its own
 * transaction, and recorded with a SHA-256 checksum. A migration that was applied and then edited
 * (or removed) stops the start: merged migrations are append-only.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.js';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

const FILE_PATTERN = /^(\d{3})_([a-z0-9_]+)\.sql$/;

export interface MigrationFile {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export interface MigrationStatus {
  version: number;
  name: string;
  state: 'applied' | 'pending' | 'edited' | 'missing';
  appliedAt?: number;
}

export class MigrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationError';
  }
}

/** Reads the migration files in version order; rejects odd names and duplicate versions. */
export function readMigrations(dir: string = MIGRATIONS_DIR): MigrationFile[] {
  const files: MigrationFile[] = [];
  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.sql')) continue;
    const match = FILE_PATTERN.exec(file);
    if (!match) throw new MigrationError(`${dir}/${file}: migration files must be named NNN_name.sql (lower case)`);
    const sql = readFileSync(`${dir}/${file}`, 'utf8');
    const version = Number(match[1]);
    if (files.some((other) => other.version === version)) {
      throw new MigrationError(`${dir}/${file}: version ${match[1]} is used twice`);
    }
    files.push({ version, name: match[2]!, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return files;
}

function ensureTable(db: Db): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
}

/** Applied, pending, edited and missing migrations, in version order. */
export function migrationStatus(db: Db, dir: string = MIGRATIONS_DIR): MigrationStatus[] {
  const files = readMigrations(dir);
  const tableExists = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).get();
  const applied = tableExists
    ? (db.prepare('SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version').all() as {
        version: number;
        name: string;
        checksum: string;
        applied_at: number;
      }[])
    : [];
  const byVersion = new Map(applied.map((row) => [row.version, row]));
  const status: MigrationStatus[] = files.map((file) => {
    const row = byVersion.get(file.version);
    if (!row) return { version: file.version, name: file.name, state: 'pending' };
    return {
      version: file.version,
      name: file.name,
      state: row.checksum === file.checksum ? 'applied' : 'edited',
      appliedAt: row.applied_at,
    };
  });
  for (const row of applied) {
    if (!files.some((file) => file.version === row.version)) {
      status.push({ version: row.version, name: row.name, state: 'missing', appliedAt: row.applied_at });
    }
  }
  return status.sort((a, b) => a.version - b.version);
}

/**
 * Applies every pending migration. Refuses, changing nothing, when an applied one was edited or
 * removed. Returns the versions applied now.
 */
export function migrate(db: Db, dir: string = MIGRATIONS_DIR): number[] {
  ensureTable(db);
  const status = migrationStatus(db, dir);
  const broken = status.filter((entry) => entry.state === 'edited' || entry.state === 'missing');
  if (broken.length > 0) {
    const lines = broken.map((entry) =>
      entry.state === 'edited'
        ? `${String(entry.version).padStart(3, '0')}_${entry.name}.sql was edited after it was applied`
        : `${String(entry.version).padStart(3, '0')}_${entry.name}.sql was applied but its file is gone`,
    );
    throw new MigrationError(
      `Refusing to start: ${lines.join('; ')}. Applied migrations are append-only: restore the original file and put the change in a new migration.`,
    );
  }
  const files = new Map(readMigrations(dir).map((file) => [file.version, file]));
  const record = db.prepare('INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)');
  const applied: number[] = [];
  for (const entry of status) {
    if (entry.state !== 'pending') continue;
    const file = files.get(entry.version)!;
    db.transaction(() => {
      db.exec(file.sql);
      record.run(file.version, file.name, file.checksum, Date.now());
    }).immediate();
    applied.push(file.version);
  }
  return applied;
}
