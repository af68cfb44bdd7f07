/**
 * Database writes never freeze the bot, and a store error is never a job outcome: another process
 * (an operator's sqlite3 shell, a backup) holds the write lock of the service's real SQLite file.
 */
import { afterEach, expect, test } from 'vitest';
import { failedText } from '../../src/bots/shared/texts.js';
import { ErrorCode, UserError } from '../../src/errors.js';
import { JobService } from '../../src/jobs/job-service.js';
import type { JobEvent } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';
import { openDatabase, type Db } from '../../src/store/db.js';
import { admin, alice, bob, isType, removeDir, startService, tempDir, testConfig, video, type Harness } from '../helpers/harness.js';

const admins = { admins: { discord: ['admin-1'], slack: [] } };
let h: Harness | undefined;
let foreign: Db | undefined;
let own: { service: JobService; db: Db; dir: string } | undefined;
afterEach(async () => {
  if (foreign?.inTransaction) foreign.exec('ROLLBACK');
  foreign?.close();
  foreign = undefined;
  await h?.close();
  if (h) removeDir(h.dir);
  h = undefined;
  if (own) {
    await own.service.shutdown(0);
    own.db.close();
    removeDir(own.dir);
    own = undefined;
  }
});

/** Counts timer ticks and the longest gap between two: a synchronous wait inside SQLite shows as a long gap. */
function loopWatch(): { stop(): { ticks: number; maxGapMs: number } } {
  let ticks = 0;
  let last = performance.now();
  let maxGapMs = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    ticks++;
  }, 10);
  return {
    stop() {
      clearInterval(timer);
      return { ticks, maxGapMs };
    },
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('while another process holds the write lock the event loop keeps ticking; the finish, settle, pause, cancel and ban wait, then complete', async () => {
  h = startService(tempDir(), admins);
  const running = await h.service.submit(video(alice, { ms: 200 }));
  const queued = await h.service.submit(video(bob, { ms: 1 }));
  await h.waitFor(isType('started', running.job.id));
  foreign = openDatabase(h.config.dbPath);
  foreign.exec('BEGIN IMMEDIATE');
  const watch = loopWatch();
  const writes = Promise.all([
    h.service.pauseQueue(admin),
    h.service.cancel(admin, queued.job.id),
    h.service.setBanned(admin, { platform: 'discord', externalId: 'carol' }, true, 'spam'),
  ]);
  // The job finishes during the lock; its result cannot be stored yet.
  await sleep(1500);
  expect(h.events.some(isType('succeeded', running.job.id))).toBe(false);
  expect(foreign.prepare(`SELECT state FROM jobs WHERE id = ?`).pluck().get(running.job.id)).toBe('running');
  foreign.exec('COMMIT');
  const [, cancelled] = await writes;
  const succeeded = await h.waitFor(isType('succeeded', running.job.id));
  const { ticks, maxGapMs } = watch.stop();
  // A synchronous busy wait would have stopped the timer for seconds (busy_timeout is 5 s); 1 s
  // leaves room for a loaded CI machine.
  expect(maxGapMs).toBeLessThan(1000);
  expect(ticks).toBeGreaterThan(50);
  expect(cancelled.outcome).toBe('cancelled');
  expect(succeeded.job).toMatchObject({ state: 'succeeded' });
  const entries = h.db.prepare(`SELECT job_id, entry FROM quota_ledger WHERE entry != 'reserve' ORDER BY job_id`).all();
  expect(entries).toEqual([
    { job_id: running.job.id, entry: 'settle' },
    { job_id: queued.job.id, entry: 'refund' },
  ]);
  expect(h.service.queue().paused).toBe(true);
  expect(h.db.prepare(`SELECT action FROM admin_audit ORDER BY id`).pluck().all()).toEqual(expect.arrayContaining(['queue.pause', 'job.cancel', 'user.ban']));
});

test('an admin change that cannot get the lock in time is refused with "try again", and nothing is half-written', async () => {
  h = startService(tempDir(), admins);
  foreign = openDatabase(h.config.dbPath);
  foreign.exec('BEGIN IMMEDIATE');
  const watch = loopWatch();
  const error = await h.service.pauseQueue(admin).catch((thrown: unknown) => thrown);
  const { maxGapMs } = watch.stop();
  foreign.exec('ROLLBACK');
  expect(error).toBeInstanceOf(UserError);
  expect(error).toMatchObject({ code: ErrorCode.DatabaseBusy });
  expect(maxGapMs).toBeLessThan(1000);
  expect(h.db.prepare(`SELECT count(*) FROM admin_audit`).pluck().get()).toBe(0);
  expect(h.db.prepare(`SELECT count(*) FROM settings`).pluck().get()).toBe(0);
  expect(h.service.queue().paused).toBe(false);
}, 15_000);

/** A service whose connection waits only 200 ms for a lock, so that a lock held for a second makes its writes fail (and be retried). */
function impatientService(): { service: JobService; db: Db; events: JobEvent[]; config: ReturnType<typeof testConfig> } {
  const dir = tempDir();
  const config = testConfig(dir);
  const db = openDatabase(config.dbPath, { busyTimeoutMs: 200 });
  const service = new JobService({ config, db, logger: createLogger('silent') });
  const events: JobEvent[] = [];
  service.onEvent((event) => events.push(event));
  service.start();
  own = { service, db, dir };
  return { service, db, events, config };
}

async function until(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(20);
  }
}

test('a store error after a successful run is retried, never turned into a failure: the video is kept and charged once', async () => {
  const { service, db, events, config } = impatientService();
  const { job } = await service.submit(video(alice, { ms: 400 }));
  // The engine is running (its worker has booted): the run ends while the lock below is held.
  await until(() => events.some(isType('progress', job.id)));
  foreign = openDatabase(config.dbPath);
  foreign.exec('BEGIN IMMEDIATE');
  // The run ends, and several of the service's 200 ms waits fail with SQLITE_BUSY meanwhile.
  await sleep(1500);
  expect(events.some((event) => event.job.id === job.id && (event.type === 'failed' || event.type === 'succeeded'))).toBe(false);
  foreign.exec('COMMIT');
  await until(() => events.some(isType('succeeded', job.id)));
  expect(events.some(isType('failed', job.id))).toBe(false);
  expect(db.prepare(`SELECT state FROM jobs WHERE id = ?`).pluck().get(job.id)).toBe('succeeded');
  expect(db.prepare(`SELECT entry FROM quota_ledger WHERE job_id = ? ORDER BY id`).pluck().all(job.id)).toEqual(['reserve', 'settle']);
});

test('any store error (not only a busy lock) on a job outcome is retried until the write succeeds', async () => {
  const { service, db, events, config } = impatientService();
  foreign = openDatabase(config.dbPath);
  // The store refuses to record a success for a while (as a full disk or a broken trigger would).
  foreign.exec(`CREATE TRIGGER refuse_success BEFORE UPDATE OF state ON jobs WHEN NEW.state = 'succeeded' BEGIN SELECT RAISE(ABORT, 'disk says no'); END`);
  const { job } = await service.submit(video(alice, { ms: 40 }));
  // The last step is done: the success is being stored (and refused) from here on.
  await until(() => events.some((event) => event.type === 'progress' && event.job.id === job.id && event.progress.step === event.progress.total));
  await sleep(800);
  expect(db.prepare(`SELECT state FROM jobs WHERE id = ?`).pluck().get(job.id)).toBe('running');
  expect(events.some(isType('failed', job.id))).toBe(false);
  foreign.exec(`DROP TRIGGER refuse_success`);
  await until(() => events.some(isType('succeeded', job.id)));
  expect(db.prepare(`SELECT entry FROM quota_ledger WHERE job_id = ? ORDER BY id`).pluck().all(job.id)).toEqual(['reserve', 'settle']);
});

test('a stop while an outcome cannot be stored ends within its bounds; the next start recovers the job', async () => {
  const { service, config } = impatientService();
  const { job } = await service.submit(video(alice, { ms: 100 }));
  foreign = openDatabase(config.dbPath);
  await until(() => foreign!.prepare(`SELECT state FROM jobs WHERE id = ?`).pluck().get(job.id) === 'running');
  foreign.exec('BEGIN IMMEDIATE');
  await sleep(400);
  const started = Date.now();
  await service.shutdown(0);
  expect(Date.now() - started).toBeLessThan(9000);
  foreign.exec('COMMIT');
  own!.db.close();
  // The row still says running: a restart runs it again (its first attempt was not recorded as finished).
  h = startService(own!.dir);
  own = undefined;
  const again = await h.waitFor(isType('succeeded', job.id));
  expect(again.job.attempts).toBe(2);
}, 20_000);

test('a failure message says once whether the job was charged', async () => {
  h = startService(tempDir());
  const engine = await h.service.submit(video(alice, { mode: 'fail' }));
  const crash = await h.service.submit(video(alice, { mode: 'crash' }));
  for (const id of [engine.job.id, crash.job.id]) {
    const failed = (await h.waitFor(isType('failed', id))) as Extract<JobEvent, { type: 'failed' }>;
    expect(failed.refunded).toBe(true);
    const text = failedText('discord', { jobId: id, message: failed.message, refunded: failed.refunded });
    expect(text.match(/charged|count against your quota/g)).toEqual(['count against your quota']);
  }
});
