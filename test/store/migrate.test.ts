import { cpSync, writeFileSync, appendFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { openDatabase } from '../../src/store/db.js';
import { MIGRATIONS_DIR, MigrationError, migrate, migrationStatus, readMigrations } from '../../src/store/migrate.js';
import { removeDir, tempDir } from '../helpers/harness.js';

let dir: string;
let migrations: string;
beforeEach(() => {
  dir = tempDir();
  migrations = join(dir, 'migrations');
  cpSync(MIGRATIONS_DIR, migrations, { recursive: true });
});
afterEach(() => removeDir(dir));


test('opening a new file applies every migration with WAL and foreign keys on', () => {
  const db = openDatabase(join(dir, 'nested', 'reelbot.db'), { migrationsDir: migrations });
  expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
  expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
  expect(migrationStatus(db, migrations).map((m) => m.state)).toEqual(readMigrations().map(() => 'applied'));
  const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).pluck().all();
  expect(tables).toEqual(expect.arrayContaining(['users', 'jobs', 'quota_ledger', 'processed_events', 'handled_notices', 'admin_audit', 'instance_leases', 'schema_migrations']));
  expect(() => db.prepare(`INSERT INTO jobs (kind, params, state, user_id, platform, seed, estimated_gpu_s, queued_at)
    VALUES ('text2video', '{}', 'queued', 999, 'discord', 1, 1, 1)`).run()).toThrow(/FOREIGN KEY/);
  db.close();
});

test('pending migrations are applied in order, each once, and status shows them', () => {
  const path = join(dir, 'reelbot.db');
  openDatabase(path, { migrationsDir: migrations }).close();
  writeFileSync(join(migrations, '902_add_notes.sql'), 'ALTER TABLE jobs ADD COLUMN notes TEXT;');
  writeFileSync(join(migrations, '903_more.sql'), 'CREATE TABLE extra (id INTEGER PRIMARY KEY);');
  const db = openDatabase(path, { migrate: false, migrationsDir: migrations });
  const shipped = readMigrations().map((m) => `${m.version}:applied`);
  expect(migrationStatus(db, migrations).map((m) => `${m.version}:${m.state}`)).toEqual([...shipped, '902:pending', '903:pending']);
  expect(migrate(db, migrations)).toEqual([902, 903]);
  expect(migrate(db, migrations)).toEqual([]);
  expect(migrationStatus(db, migrations).every((m) => m.state === 'applied')).toBe(true);
  db.close();
});

test('a failing migration is rolled back entirely and not recorded', () => {
  const path = join(dir, 'reelbot.db');
  openDatabase(path, { migrationsDir: migrations }).close();
  writeFileSync(join(migrations, '902_broken.sql'), 'CREATE TABLE half (id INTEGER); INSERT INTO nowhere VALUES (1);');
  expect(() => openDatabase(path, { migrationsDir: migrations })).toThrow(/nowhere/);
  const db = openDatabase(path, { migrate: false, migrationsDir: migrations });
  expect(db.prepare(`SELECT count(*) FROM sqlite_master WHERE name = 'half'`).pluck().get()).toBe(0);
  expect(migrationStatus(db, migrations).map((m) => m.state)).toEqual([...readMigrations().map(() => 'applied'), 'pending']);
  db.close();
});

test('an applied migration that was edited or removed stops the start', () => {
  const path = join(dir, 'reelbot.db');
  openDatabase(path, { migrationsDir: migrations }).close();
  appendFileSync(join(migrations, '001_init.sql'), '\n-- a harmless looking edit\n');
  expect(() => openDatabase(path, { migrationsDir: migrations })).toThrow(MigrationError);
  expect(() => openDatabase(path, { migrationsDir: migrations })).toThrow(/001_init.sql was edited after it was applied/);
  const db = openDatabase(path, { migrate: false, migrationsDir: migrations });
  expect(migrationStatus(db, migrations)[0]?.state).toBe('edited');
  db.close();

  rmSync(join(migrations, '001_init.sql'));
  expect(() => openDatabase(path, { migrationsDir: migrations })).toThrow(/001_init.sql was applied but its file is gone/);
});

test('badly named migration files are refused', () => {
  writeFileSync(join(migrations, '2_oops.sql'), 'SELECT 1;');
  expect(() => openDatabase(':memory:', { migrationsDir: migrations })).toThrow(/must be named NNN_name.sql/);
});

test('004 counts the jobs that finished before it as delivered; later ones wait in the outbox', () => {
  const path = join(dir, 'reelbot.db');
  rmSync(join(migrations, '004_delivery_outbox.sql'));
  for (const name of readdirSync(migrations).filter((file) => Number(file.slice(0, 3)) > 4)) rmSync(join(migrations, name));
  const old = openDatabase(path, { migrationsDir: migrations });
  old.prepare(`INSERT INTO users (id, platform, external_id, created_at) VALUES (1, 'discord', 'alice', 1)`).run();
  const insert = old.prepare(`INSERT INTO jobs (kind, params, state, user_id, platform, seed, estimated_gpu_s, queued_at, finished_at)
    VALUES ('text2video', '{}', ?, 1, 'discord', 1, 1, 1, ?)`);
  insert.run('succeeded', 5);
  insert.run('failed', 6);
  insert.run('queued', null);
  old.close();
  const db = openDatabase(path);
  expect(db.prepare(`SELECT state, delivered_at FROM jobs ORDER BY id`).all()).toEqual([
    { state: 'succeeded', delivered_at: 5 },
    { state: 'failed', delivered_at: 6 },
    { state: 'queued', delivered_at: null },
  ]);
  db.close();
});
