import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, expect, test } from 'vitest';
import { ErrorCode, UserError } from '../../src/errors.js';
import { QuotaLedger } from '../../src/store/quota-ledger.js';
import { openDatabase } from '../../src/store/db.js';
import { admin, alice, bob, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  if (h) removeDir(h.dir);
  h = undefined;
});

const unlimited = { jobsPerDay: null, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 100 };
const quota = (free: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  quota: { defaultTier: 'free', tiers: { free: { ...unlimited, ...free }, pro: unlimited }, ...extra },
  admins: { discord: ['admin-1'], slack: [] },
});

async function refusal(promise: Promise<unknown>): Promise<UserError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(UserError);
  return error as UserError;
}

function ledgerSums(harness: Harness, userExternalId: string) {
  return harness.db
    .prepare(`SELECT coalesce(sum(jobs), 0) AS jobs, coalesce(sum(gpu_seconds), 0) AS gpu FROM quota_ledger
      JOIN users ON users.id = quota_ledger.user_id WHERE users.external_id = ?`)
    .get(userExternalId) as { jobs: number; gpu: number };
}

test('reserve on submit, settle with measured GPU-seconds, refund on failure and cancel: usage is the sum', async () => {
  h = startService(tempDir(), quota({}));
  const ok = await h.service.submit(video(alice, { ms: 200 }));
  const failing = await h.service.submit(video(alice, { mode: 'fail' }));
  const waiting = await h.service.submit(video(alice, { ms: 10 }));
  // While queued/running every job holds its reservation (60 s estimate each by default).
  expect(ledgerSums(h, 'alice')).toEqual({ jobs: 3, gpu: 180 });
  expect(ok.quotaLeft.pendingSlots).toBe(99);

  await h.service.cancel(alice, waiting.job.id);
  const succeeded = await h.waitFor(isType('succeeded', ok.job.id));
  const failed = await h.waitFor(isType('failed', failing.job.id));
  expect(failed).toMatchObject({ refunded: true, code: ErrorCode.EngineFailed });

  const measured = succeeded.type === 'succeeded' ? succeeded.gpuSeconds : NaN;
  expect(measured).toBeGreaterThan(0.15);
  const sums = ledgerSums(h, 'alice');
  expect(sums.jobs).toBe(1);
  expect(sums.gpu).toBeCloseTo(measured, 6);
  expect(h.service.usage(alice).today).toEqual({ jobs: 1, gpuSeconds: sums.gpu });

  const entries = h.db.prepare(`SELECT job_id, entry FROM quota_ledger ORDER BY id`).all();
  expect(entries).toEqual([
    { job_id: ok.job.id, entry: 'reserve' },
    { job_id: failing.job.id, entry: 'reserve' },
    { job_id: waiting.job.id, entry: 'reserve' },
    { job_id: waiting.job.id, entry: 'refund' },
    expect.objectContaining({ entry: 'settle' }),
    expect.objectContaining({ entry: 'refund' }),
  ]);
  // The ledger refuses a second close of a job: no double charge, no double refund.
  const ledger = new QuotaLedger(h.db);
  expect(ledger.settle(ok.job.id, 999, Date.now())).toBe(false);
  expect(ledger.refund(ok.job.id, Date.now())).toBe(false);
  expect(ledger.refund(waiting.job.id, Date.now())).toBe(false);
  expect(ledgerSums(h, 'alice').jobs).toBe(1);
});

test('50 concurrent submits against a limit of 10: exactly 10 are accepted', async () => {
  h = startService(tempDir(), quota({ jobsPerDay: 10 }));
  await h.service.pauseQueue(admin);
  const outcomes = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => h!.service.submit(video(alice, { n: i }))));
  expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(10);
  const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
  expect(refused).toHaveLength(40);
  expect(refused.every((o) => (o.reason as UserError).code === ErrorCode.QuotaJobsPerDay)).toBe(true);
  expect((refused[0]!.reason as UserError).userMessage).toMatch(/You have used all 10 videos of your daily quota. Your quota resets at 00:00 UTC \(in /);
  expect(ledgerSums(h, 'alice').jobs).toBe(10);
});

test('submits racing from 5 processes on one database file never pass the limit together', async () => {
  const dir = tempDir();
  const dbPath = `${dir}/race.db`;
  openDatabase(dbPath).close();
  const child = fileURLToPath(new URL('../fixtures/admit-child.ts', import.meta.url));
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const tiers = JSON.stringify({ free: { ...unlimited, jobsPerDay: 10 } });
  const children = Array.from({ length: 5 }, () => fork(child, [dbPath, '10', 'racer', tiers], { execArgv: ['--import', tsx] }));
  try {
    await Promise.all(children.map((c) => new Promise((resolve) => c.once('message', resolve))));
    const results = children.map((c) => new Promise<{ accepted: number; refused: number }>((resolve) => c.once('message', resolve)));
    for (const c of children) c.send('go');
    const counts = await Promise.all(results);
    expect(counts.reduce((sum, c) => sum + c.accepted, 0)).toBe(10);
    expect(counts.reduce((sum, c) => sum + c.refused, 0)).toBe(40);
    const db = openDatabase(dbPath);
    expect(db.prepare(`SELECT count(*) FROM jobs`).pluck().get()).toBe(10);
    expect(db.prepare(`SELECT sum(jobs) FROM quota_ledger`).pluck().get()).toBe(10);
    db.close();
  } finally {
    for (const c of children) c.kill();
    removeDir(dir);
  }
});

test('limits: pending jobs, GPU-seconds per day and month, guild caps, admin override, periods roll over', async () => {
  let now = Date.UTC(2026, 10, 25, 23, 0);
  h = startService(tempDir(), quota({ jobsPerDay: 3, gpuSecondsPerDay: 150, gpuSecondsPerMonth: 200, maxPendingJobs: 2 }, { group: { jobsPerDay: 4 } }), {
    now: () => now,
  });
  await h.service.pauseQueue(admin);
  await h.service.submit(video(alice));
  await h.service.submit(video(alice));
  expect((await refusal(h.service.submit(video(alice)))).code).toBe(ErrorCode.QuotaPending);

  const first = h.service.queue().waiting[0]!.job;
  await h.service.cancel(alice, first.id); // refund, frees a pending slot
  await h.service.submit(video(alice)); // the cancelled job gave its pending slot and its daily job back
  const pending = await refusal(h.service.submit(video(alice)));
  expect(pending.userMessage).toBe(
    `You already have 2 jobs waiting or running (the limit is 2). Wait for one to finish or cancel one. Your jobs now: job #${first.id + 1} next in line, job #${first.id + 2} at position 2 in the queue.`,
  );

  // Next day: the daily counts reset, the month's GPU-seconds (2 × 60 reserved) do not.
  now = Date.UTC(2026, 10, 26, 1, 0);
  await h.service.setQuota(admin, alice, { override: { maxPendingJobs: 10 } });
  await h.service.submit(video(alice, { ms: 1 }));
  const month = await refusal(h.service.submit(video(alice)));
  expect(month.code).toBe(ErrorCode.QuotaGpuPerMonth);
  expect(month.userMessage).toMatch(/you have 20 left this month\. Lower the frames from 8 to about 2, or the steps from 50 to about 16\. It resets on the 1st of next month/);

  // The admin override lifts the monthly cap for alice only.
  await h.service.setQuota(admin, alice, { override: { maxPendingJobs: 10, gpuSecondsPerMonth: null } });
  await h.service.submit(video(alice));
  expect((await refusal(h.service.submit(video(alice)))).code).toBe(ErrorCode.QuotaGpuPerDay);
  expect(h.service.usage(alice).left).toMatchObject({ tier: 'free', jobsToday: 1, gpuSecondsToday: 30, gpuSecondsThisMonth: null });

  // Guild cap: 4 jobs a day for everyone in the guild together.
  for (let i = 0; i < 3; i++) await h.service.submit(video({ platform: 'discord', externalId: `member${i}` }, {}, { groupId: 'guild-1' }));
  await h.service.submit(video(bob, {}, { groupId: 'guild-1' }));
  const guild = await refusal(h.service.submit(video(bob, {}, { groupId: 'guild-1' })));
  expect(guild.code).toBe(ErrorCode.GroupQuotaJobsPerDay);
  await h.service.submit(video(bob, {}, { groupId: 'guild-2' }));

  // A tier change applies at once.
  await h.service.setQuota(admin, bob, { tier: 'pro' });
  expect(h.service.usage(bob).limits.tier).toBe('pro');
  await expect(h!.service.setQuota(admin, bob, { tier: 'gold' })).rejects.toThrow(/Unknown tier "gold"/);
  await expect(h!.service.setQuota(bob, alice, { tier: 'pro' })).rejects.toThrow(/Only the bot admins/);
  const audit = h.db.prepare(`SELECT action, target FROM admin_audit ORDER BY id`).all();
  expect(audit).toEqual([
    { action: 'queue.pause', target: null },
    { action: 'quota.set', target: 'discord:alice' },
    { action: 'quota.set', target: 'discord:alice' },
    { action: 'quota.set', target: 'discord:bob' },
  ]);
});
