import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { isBusyError, openDatabase, type Db } from '../../src/store/db.js';
import { StoreClosedError, StoreWriter } from '../../src/store/writer.js';
import { removeDir, tempDir } from '../helpers/harness.js';

let dir: string;
const open: Db[] = [];
afterEach(() => {
  for (const db of open.splice(0)) {
    if (db.inTransaction) db.exec('ROLLBACK');
    db.close();
  }
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

const put = (db: Db, key: string) => () => db.prepare(`INSERT OR REPLACE INTO settings (key, value) VALUES (?, 'v')`).run(key).changes;
const keys = (db: Db) => db.prepare(`SELECT key FROM settings ORDER BY rowid`).pluck().all();

test('writes waiting for a foreign lock run in the order they were asked for, and only one of them tries at a time', async () => {
  const [a, b] = twoConnections();
  const writer = new StoreWriter(a);
  b.exec('BEGIN IMMEDIATE');
  let tries = 0;
  const counted = (key: string) => () => {
    tries++;
    return put(a, key)();
  };
  const writes = ['first', 'second', 'third'].map((key) => writer.write(counted(key), { deadlineMs: 3000 }));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const triesWhileLocked = tries;
  b.exec('COMMIT');
  await Promise.all(writes);
  expect(keys(a)).toEqual(['first', 'second', 'third']);
  // The head write tried (and met the lock) again and again; the others waited their turn without trying.
  expect(tries - triesWhileLocked).toBe(3);
});

test('writeUntilDone retries any SQLite error until the write succeeds; a bug in the write is not retried', async () => {
  const [a, b] = twoConnections();
  const writer = new StoreWriter(a, { retryPauseMs: { first: 10, max: 40 } });
  b.exec(`CREATE TRIGGER refuse BEFORE INSERT ON settings BEGIN SELECT RAISE(ABORT, 'no space left'); END`);
  const done = writer.writeUntilDone('store a setting', put(a, 'k'));
  await new Promise((resolve) => setTimeout(resolve, 200));
  b.exec('DROP TRIGGER refuse');
  expect(await done).toBe(1);
  await expect(
    writer.writeUntilDone('run buggy code', () => {
      throw new TypeError('a bug');
    }),
  ).rejects.toThrow(TypeError);
});

test('a write gives up with SQLITE_BUSY after its deadline; close rejects the writes still waiting', async () => {
  const [a, b] = twoConnections();
  const writer = new StoreWriter(a);
  b.exec('BEGIN IMMEDIATE');
  const busy = await writer.write(put(a, 'k'), { deadlineMs: 200 }).catch((error: unknown) => error);
  expect(isBusyError(busy)).toBe(true);
  const retried = writer.writeUntilDone('store a setting', put(a, 'k')).catch((error: unknown) => error);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const closedAt = Date.now();
  writer.close();
  expect(await retried).toBeInstanceOf(StoreClosedError);
  expect(Date.now() - closedAt).toBeLessThan(500);
  await expect(writer.write(put(a, 'k'))).rejects.toBeInstanceOf(StoreClosedError);
  b.exec('ROLLBACK');
  expect(keys(a)).toEqual([]);
});

test('a burst of writes leaves the event loop a turn every few milliseconds, so what arrives meanwhile is not held up by all of them', async () => {
  const [a] = twoConnections();
  const writer = new StoreWriter(a, { batchMs: 4 });
  const done: string[] = [];
  // Writes of about 1 ms each: 50 of them hold the thread for 50 ms in all.
  const slowPut = (key: string) => () => {
    const until = performance.now() + 1;
    while (performance.now() < until);
    return put(a, key)();
  };
  const writes = Array.from({ length: 50 }, (_, i) => writer.write(slowPut(`burst-${i}`)).then(() => done.push(`write-${i}`)));
  // What an incoming message would be: a callback of a later turn of the event loop.
  setImmediate(() => done.push('arrived'));
  await Promise.all(writes);
  expect(keys(a)).toHaveLength(50);
  const arrivedAt = done.indexOf('arrived');
  expect(arrivedAt).toBeGreaterThanOrEqual(0);
  // Before, all 50 ran in one microtask drain and the callback came after the last of them.
  expect(arrivedAt).toBeLessThan(10);
});

test('quick writes queued together run in a few turns of the event loop, not one turn each', async () => {
  const [a] = twoConnections();
  const writer = new StoreWriter(a);
  let turns = 0;
  let counting = true;
  const countTurns = () => {
    turns++;
    if (counting) setImmediate(countTurns);
  };
  setImmediate(countTurns);
  await Promise.all(Array.from({ length: 200 }, (_, i) => writer.write(put(a, `quick-${i}`))));
  counting = false;
  expect(keys(a)).toHaveLength(200);
  // One write per turn took 200 turns; in batches of 4 ms, 200 one-row writes take a handful.
  expect(turns).toBeLessThan(50);
});
