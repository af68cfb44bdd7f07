/** Bounded disk and database: the retention sweep, `reelbot db prune` and `reelbot db backup`, on real files. */
import { existsSync, mkdirSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { main } from '../../src/cli.js';
import { loadConfig, type Config } from '../../src/config.js';
import { RetentionSweep } from '../../src/jobs/retention.js';
import type { JobKind } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';
import { openDatabase, type Db } from '../../src/store/db.js';
import { JobRepo } from '../../src/store/job-repo.js';
import { ProcessedEvents } from '../../src/store/processed-events.js';
import { QuotaLedger } from '../../src/store/quota-ledger.js';
import { UserRepo } from '../../src/store/user-repo.js';
import { removeDir, tempDir } from '../helpers/harness.js';

const DAY = 24 * 60 * 60 * 1000;
let dir: string;
let config: Config;
let db: Db;
const now = Date.now();

beforeEach(() => {
  dir = tempDir();
  config = loadConfig({ env: {}, overrides: { dbPath: join(dir, 'reelbot.db'), outputDir: join(dir, 'outputs') } });
  db = openDatabase(config.dbPath);
});
afterEach(() => {
  db.close();
  removeDir(dir);
});

const jobs = () => new JobRepo(db);
const user = () => new UserRepo(db).upsert('discord', 'alice', null, now);

/** A job row, finished `finishedDaysAgo` days ago (or left queued), with an output folder holding a file. */
function job(kind: JobKind, options: { finishedDaysAgo?: number; params?: Record<string, unknown> } = {}): number {
  const id = jobs().insert({
    kind,
    params: { prompt: 'x', ...options.params },
    userId: user().id,
    platform: 'discord',
    groupId: 'guild-1',
    channelId: 'chan-1',
    messageRefs: {},
    seed: 1,
    priority: 0,
    estimatedGpuSeconds: 60,
    queuedAt: now - 40 * DAY,
  });
  new QuotaLedger(db).reserve({ jobId: id, userId: user().id, groupId: 'guild-1', gpuSeconds: 60, chargedAt: now - 40 * DAY, now: now - 40 * DAY });
  mkdirSync(join(config.outputDir, String(id)), { recursive: true });
  writeFileSync(join(config.outputDir, String(id), 'out.mp4'), Buffer.alloc(1000));
  if (options.finishedDaysAgo !== undefined) jobs().finish(id, 'succeeded', { now: now - options.finishedDaysAgo * DAY, gpuSeconds: 1, result: {} });
  return id;
}

/** A downloaded clip `daysOld` days old. */
function clip(name: string, daysOld: number): string {
  const folder = join(config.outputDir, 'clips', 'discord');
  mkdirSync(folder, { recursive: true });
  const file = join(folder, name);
  writeFileSync(file, Buffer.alloc(500));
  const time = new Date(now - daysOld * DAY);
  utimesSync(file, time, time);
  return file;
}

const state = (id: number) => db.prepare(`SELECT state, files_removed_at AS removed FROM jobs WHERE id = ?`).get(id) as { state: string; removed: number | null };

test('the sweep removes old outputs and clips, keeps the rows, and skips what a queued edit still needs', async () => {
  const old = job('text2video', { finishedDaysAgo: 8 });
  const recent = job('text2video', { finishedDaysAgo: 1 });
  // An old video that a queued edit ("Edit" on the result) reads, and an old clip a queued edit reads.
  const edited = job('text2video', { finishedDaysAgo: 9 });
  const neededClip = clip('clip-needed.mp4', 9);
  const queuedEdit = job('edit', { params: { instruction: 'snow', inputFile: neededClip } });
  const queuedEditOfResult = job('edit', { params: { instruction: 'rain', inputFile: join(config.outputDir, String(edited), 'out.mp4') } });
  const staleClip = clip('clip-stale.mp4', 8);
  const freshClip = clip('clip-fresh.mp4', 0);
  const events = new ProcessedEvents(db);
  events.record('discord', 'old-event', old, now - 8 * DAY);
  events.record('discord', 'new-event', recent, now - 1000);

  const report = await new RetentionSweep({ db, config, logger: createLogger('silent') }).run();

  expect(report.outputJobIds).toEqual([old]);
  expect(report.clips).toEqual([staleClip]);
  expect(report.bytes).toBe(1500);
  expect(report.processedEvents).toBe(1);
  expect(report.keptForWaitingJobs).toBe(2);
  expect(existsSync(join(config.outputDir, String(old)))).toBe(false);
  expect(state(old)).toMatchObject({ state: 'succeeded', removed: expect.any(Number) });
  for (const kept of [recent, edited, queuedEdit, queuedEditOfResult]) expect(existsSync(join(config.outputDir, String(kept), 'out.mp4'))).toBe(true);
  expect(state(edited).removed).toBeNull();
  expect(existsSync(neededClip)).toBe(true);
  expect(existsSync(freshClip)).toBe(true);
  expect(events.jobFor('discord', 'old-event')).toBeUndefined();
  expect(events.jobFor('discord', 'new-event')).toBe(recent);
  // Rows are kept by default (history, stats, quota).
  expect(db.prepare(`SELECT count(*) FROM jobs`).pluck().get()).toBe(5);

  // A second sweep finds nothing more to do.
  const again = await new RetentionSweep({ db, config, logger: createLogger('silent') }).run();
  expect(again).toMatchObject({ outputJobIds: [], clips: [], processedEvents: 0 });
});

test('jobRowDays deletes old finished jobs with their ledger rows; queued jobs and recent rows stay', async () => {
  const ancient = job('text2video', { finishedDaysAgo: 40 });
  const recent = job('text2video', { finishedDaysAgo: 2 });
  const queued = job('text2video');
  new ProcessedEvents(db).record('discord', 'e1', ancient, now - 1000);
  const withRows = { ...config, retention: { ...config.retention, jobRowDays: 32 } };
  const report = await new RetentionSweep({ db, config: withRows, logger: createLogger('silent') }).run();
  expect(report.jobRows).toBe(1);
  expect(db.prepare(`SELECT id FROM jobs ORDER BY id`).pluck().all()).toEqual([recent, queued]);
  expect(db.prepare(`SELECT DISTINCT job_id FROM quota_ledger ORDER BY job_id`).pluck().all()).toEqual([recent, queued]);
  expect(() => loadConfig({ env: {}, overrides: { retention: { jobRowDays: 10 } } })).toThrow(/jobRowDays/);
});

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'reelbot', ...args], {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: { REELBOT_DB_PATH: config.dbPath, REELBOT_OUTPUT_DIR: config.outputDir },
  });
  return { code, stdout, stderr };
}

test('reelbot db prune runs the sweep now and says what it removed', async () => {
  const old = job('text2video', { finishedDaysAgo: 30 });
  clip('clip-stale.mp4', 30);
  const run = await cli(['db', 'prune']);
  expect(run).toMatchObject({ code: 0, stderr: '' });
  expect(run.stdout).toContain(`Removed the output folders of 1 job (#${old}) and 1 downloaded clip: 1 KB freed.`);
  expect(run.stdout).toContain('Forgot 0 processed event ids; deleted 0 old job rows.');
  expect(existsSync(join(config.outputDir, String(old)))).toBe(false);
});

test('reelbot db backup copies the database online, refuses to overwrite, and leaves nothing half-written', async () => {
  const id = job('text2video', { finishedDaysAgo: 1 });
  // Another connection (the running bot) is in the middle of a write: the backup neither waits for it nor copies it.
  const bot = openDatabase(config.dbPath);
  bot.exec('BEGIN IMMEDIATE');
  bot.prepare(`UPDATE jobs SET error = 'uncommitted' WHERE id = ?`).run(id);
  const target = join(dir, 'backup.db');
  const started = Date.now();
  const run = await cli(['db', 'backup', target]);
  bot.exec('ROLLBACK');
  bot.close();
  expect(run).toMatchObject({ code: 0, stderr: '' });
  expect(Date.now() - started).toBeLessThan(3000);
  expect(run.stdout).toMatch(/^Backed up to .*backup\.db \(\d+ KB\)\.\n$/);
  const copy = openDatabase(target, { migrate: false });
  expect(copy.prepare(`SELECT id, state, error FROM jobs`).all()).toEqual([{ id, state: 'succeeded', error: null }]);
  copy.close();

  const before = readFileSync(target);
  const again = await cli(['db', 'backup', target]);
  expect(again.code).toBe(1);
  expect(again.stderr).toContain('already exists; the backup never overwrites a file');
  expect(readFileSync(target).equals(before)).toBe(true);

  const nowhere = await cli(['db', 'backup', join(dir, 'no-such-folder', 'b.db')]);
  expect(nowhere.code).toBe(1);
  expect(nowhere.stderr).toContain('does not exist');
  expect(readdirSync(dir).filter((name) => name.includes('partial'))).toEqual([]);
});
