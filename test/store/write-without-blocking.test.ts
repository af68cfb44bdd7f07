import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { isBusyError, openDatabase, writeWithoutBlocking, type Db } from '../../src/store/db.js';
import { removeDir, tempDir } from '../helpers/harness.js';

let dir: string;
const open: Db[] = [];
afterEach(() => {
  for (const db of open.splice(0)) db.close();
  removeDir(dir);
});

function twoConnections(): [Db, Db] {
  dir = tempDir();
  const path = join(dir, 'reelbot.db');
  const a = openDatabase(path);
  const b = openDatabase(path);
  open.push(a, b);
  return [a, b];
}

const write = (db: Db) => () => db.prepare(`INSERT OR REPLACE INTO settings (key, value) VALUES ('k', 'v')`).run().changes;

test('waits for another connection’s write lock with the event loop free, then writes; busy_timeout is restored', async () => {
  const [a, b] = twoConnections();
  b.exec('BEGIN IMMEDIATE');
  setTimeout(() => b.exec('COMMIT'), 400);
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 10);
  const started = Date.now();
  try {
    expect(await writeWithoutBlocking(a, write(a), { deadlineMs: 3000 })).toBe(1);
  } finally {
    clearInterval(ticker);
  }
  expect(Date.now() - started).toBeGreaterThanOrEqual(350);
  // The loop ran throughout: a synchronous 400 ms wait would have allowed no ticks at all.
  expect(ticks).toBeGreaterThan(10);
  expect(a.pragma('busy_timeout', { simple: true })).toBe(5000);
});

test('gives up with SQLITE_BUSY after the deadline, and other errors pass straight through', async () => {
  const [a, b] = twoConnections();
  b.exec('BEGIN IMMEDIATE');
  const started = Date.now();
  const error = await writeWithoutBlocking(a, write(a), { deadlineMs: 300 }).catch((thrown: unknown) => thrown);
  expect(isBusyError(error)).toBe(true);
  expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  b.exec('ROLLBACK');
  await expect(writeWithoutBlocking(a, () => a.prepare('INSERT INTO nowhere VALUES (1)').run())).rejects.toThrow(/no such table/);
  expect(a.pragma('busy_timeout', { simple: true })).toBe(5000);
});
