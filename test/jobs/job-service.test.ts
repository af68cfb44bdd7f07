import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, expect, test } from 'vitest';
import { ErrorCode, UserError } from '../../src/errors.js';
import type { JobEvent } from '../../src/jobs/types.js';
import { admin, alice, bob, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

const admins = { admins: { discord: ['admin-1'], slack: [] } };
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  if (h) removeDir(h.dir);
  h = undefined;
});

const startOrder = (events: JobEvent[]) => events.filter(isType('started')).map((event) => event.job.id);

async function refusal(promise: Promise<unknown>): Promise<UserError> {
  const error = await promise.then(() => undefined, (thrown: unknown) => thrown);
  expect(error).toBeInstanceOf(UserError);
  return error as UserError;
}

test('fairness: a user with many queued jobs does not block a user with one', async () => {
  h = startService(tempDir(), { ...admins, quota: { tiers: { free: { maxPendingJobs: 30 } } } });
  const a: number[] = [];
  for (let i = 0; i < 6; i++) a.push((await h.service.submit(video(alice, { ms: 30 }))).job.id);
  const b = await h.service.submit(video(bob, { ms: 30 }));
  // A's first job is already running; B is next in line.
  expect(b.position).toBe(1);
  expect(h.service.queue().waiting.map((entry) => entry.job.id)).toEqual([b.job.id, ...a.slice(1)]);
  const urgent = await h.service.submit(video(admin, { ms: 30 }, { priority: 'high' }));
  expect(urgent.position).toBe(1);
  await h.waitFor(isType('succeeded', a[5]));
  expect(startOrder(h.events)).toEqual([a[0], urgent.job.id, b.job.id, ...a.slice(1)]);
  // Each job's stream starts with `queued`, even when it starts at once.
  const first = h.events.filter((event) => event.job.id === a[0]).map((event) => event.type);
  expect(first.slice(0, 2)).toEqual(['queued', 'started']);
});

test('a listener that throws does not keep job events from the other listeners, nor break the job', async () => {
  h = startService(tempDir());
  const seenByOther: string[] = [];
  h.service.onEvent(() => {
    throw new Error('adapter bug');
  });
  h.service.onEvent((event) => seenByOther.push(event.type));
  const { job } = await h.service.submit(video(alice, { ms: 10 }));
  await h.waitFor(isType('succeeded', job.id));
  expect(seenByOther).toEqual(expect.arrayContaining(['queued', 'started', 'succeeded']));
  expect(h.service.status(job.id)?.job.state).toBe('succeeded');
});

test('queue positions and ETAs come from the moving average of recent durations', async () => {
  h = startService(tempDir(), { jobs: { defaultGpuSeconds: { text2video: 10, edit: 20 } } });
  const first = await h.service.submit(video(alice, { ms: 300 }));
  // Starts at once: its own duration, less the millisecond or two it may already have run.
  expect(first.position).toBe(0);
  expect(first.etaMs).toBeGreaterThan(9_900);
  expect(first.etaMs).toBeLessThanOrEqual(10_000);
  const second = await h.service.submit(video(bob));
  const third = await h.service.submit({ actor: { platform: 'slack', externalId: 'U1' }, kind: 'edit', params: { instruction: 'make it snowy' } });
  expect(second.position).toBe(1);
  expect(third.position).toBe(2);
  // Nothing measured yet: 10 s for a video, 20 s for an edit, minus what the running job has done.
  expect(second.etaMs).toBeGreaterThan(19_000);
  expect(second.etaMs).toBeLessThanOrEqual(20_000);
  expect(third.etaMs).toBeGreaterThan(39_000);
  await h.waitFor(isType('succeeded', third.job.id));
  // After measured runs the estimate follows them: now a few hundred ms, not 10 s.
  const later = await h.service.submit(video(alice, { ms: 2000 }));
  await h.waitFor(isType('started', later.job.id));
  const after = await h.service.submit(video(bob));
  expect(h.service.status(after.job.id)?.position).toBe(1);
  expect(after.etaMs).toBeLessThan(2_000);
  await h.service.cancel(alice, later.job.id);
});

test('cancel: queued (refunded, never starts), running (stopped), finished (refused), and only by owner or admin', async () => {
  h = startService(tempDir(), admins);
  const running = await h.service.submit(video(alice, { ms: 5000, steps: 50 }));
  const queued = await h.service.submit(video(alice, { ms: 10 }));
  await h.waitFor(isType('started', running.job.id));

  expect((await refusal(h.service.cancel(bob, queued.job.id))).code).toBe(ErrorCode.NotJobOwner);
  expect((await refusal(h.service.cancel(bob, 9999))).userMessage).toBe('There is no job #9999.');

  expect(await h.service.cancel(alice, queued.job.id)).toMatchObject({ outcome: 'cancelled', job: { state: 'cancelled' } });
  expect(await h.service.cancel(admin, running.job.id)).toMatchObject({ outcome: 'cancelling' });
  const cancelled = await h.waitFor(isType('cancelled', running.job.id));
  expect(cancelled).toMatchObject({ refunded: true, job: { state: 'cancelled' } });
  expect(h.service.status(running.job.id)?.job.finishedAt).not.toBeNull();

  const done = await h.service.submit(video(alice, { ms: 1 }));
  await h.waitFor(isType('succeeded', done.job.id));
  expect((await refusal(h.service.cancel(alice, done.job.id))).userMessage).toBe(`Job #${done.job.id} has already finished, so there is nothing to cancel.`);
  expect((await refusal(h.service.cancel(alice, queued.job.id))).code).toBe(ErrorCode.JobAlreadyFinished);
  // The cancelled queued job never started.
  expect(startOrder(h.events)).toEqual([running.job.id, done.job.id]);
  expect(h.service.usage(alice).today.jobs).toBe(1);
});

test('a running job that ignores cancel is killed after the grace period; the next job gets a fresh worker', async () => {
  h = startService(tempDir());
  const stubborn = await h.service.submit(video(alice, { ms: 20_000, steps: 4, mode: 'ignore-cancel' }));
  const next = await h.service.submit(video(bob, { ms: 1 }));
  await h.waitFor(isType('started', stubborn.job.id));
  const asked = Date.now();
  await h.service.cancel(alice, stubborn.job.id);
  await h.waitFor(isType('cancelled', stubborn.job.id));
  expect(Date.now() - asked).toBeGreaterThanOrEqual(450); // cancelGraceMs = 500
  const succeeded = await h.waitFor(isType('succeeded', next.job.id));
  expect(succeeded.type === 'succeeded' && succeeded.result).toMatchObject({ attempt: 1 });
});

test('a job cancelled while its worker still boots: the worker is killed, and its exit does not fail the next job', async () => {
  h = startService(tempDir(), { jobs: { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 3000, cancelGraceMs: 0, timeoutSeconds: 120 } });
  const first = await h.service.submit(video(alice, { ms: 5000 }));
  const next = await h.service.submit(video(alice, { ms: 1 }));
  await h.waitFor(isType('started', first.job.id));
  await h.service.cancel(alice, first.job.id); // no grace: the booting worker is killed at once
  await h.waitFor(isType('cancelled', first.job.id));
  const done = await h.waitFor(isType('succeeded', next.job.id));
  expect(done.type === 'succeeded' && done.result).toMatchObject({ attempt: 1 });
  expect(h.events.filter(isType('started', next.job.id))).toHaveLength(1);
});

test('workers run below the bot process priority (niceness 10), so acks and heartbeats come first on a busy CPU', async () => {
  h = startService(tempDir());
  const { job } = await h.service.submit(video(alice, { ms: 1 }));
  const done = await h.waitFor(isType('succeeded', job.id));
  expect(done.type === 'succeeded' && done.result).toMatchObject({ niceness: 10 });
});

test('a redelivered event id never makes a second job', async () => {
  h = startService(tempDir());
  const request = video(alice, { ms: 1 }, { eventId: 'interaction-123' });
  const [first, again] = await Promise.all([h.service.submit(request), h.service.submit(request)]);
  expect(first.duplicate).toBe(false);
  expect(again).toMatchObject({ duplicate: true, job: { id: first.job.id } });
  await h.waitFor(isType('succeeded', first.job.id));
  const later = await h.service.submit(request);
  expect(later).toMatchObject({ duplicate: true, job: { id: first.job.id, state: 'succeeded' } });
  // Same id on another platform is another event.
  const slack = await h.service.submit({ ...request, actor: { platform: 'slack', externalId: 'U1' } });
  expect(slack.duplicate).toBe(false);
  expect(h.db.prepare(`SELECT count(*) FROM jobs`).pluck().get()).toBe(2);
  expect(h.db.prepare(`SELECT count(*) FROM quota_ledger WHERE entry = 'reserve'`).pluck().get()).toBe(2);
  expect(h.events.filter(isType('queued'))).toHaveLength(2);
});

test('a worker crash is retried once on a fresh worker; a second crash fails the job with a refund', async () => {
  const dir = tempDir();
  h = startService(dir);
  const flaky = await h.service.submit(video(alice, { mode: 'crash-once', marker: join(dir, 'crashed-once') }));
  const broken = await h.service.submit(video(alice, { mode: 'crash' }));
  const after = await h.service.submit(video(bob, { ms: 1 }));
  const ok = await h.waitFor(isType('succeeded', flaky.job.id));
  expect(ok.job.attempts).toBe(2);
  const failed = await h.waitFor(isType('failed', broken.job.id));
  expect(failed).toMatchObject({ code: ErrorCode.WorkerCrashed, refunded: true, job: { attempts: 2, state: 'failed' } });
  expect(failed.type === 'failed' && failed.message).toBe('The video worker crashed twice on this job. Please try again, perhaps with other settings.');
  await h.waitFor(isType('succeeded', after.job.id));
  expect(h.events.filter(isType('started', broken.job.id)).map((e) => e.attempt)).toEqual([1, 2]);
  expect(h.service.usage(alice).today.jobs).toBe(1);
});

test('a hung worker (no heartbeats: the whole process stopped) is killed, retried once, then failed; the queue does not stall', async () => {
  h = startService(tempDir(), { jobs: { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 1000 } });
  const hung = await h.service.submit(video(alice, { mode: 'freeze' }));
  const after = await h.service.submit(video(bob, { ms: 1 }));
  const failed = await h.waitFor(isType('failed', hung.job.id));
  expect(failed).toMatchObject({ code: ErrorCode.WorkerHung, refunded: true, job: { attempts: 2 } });
  await h.waitFor(isType('succeeded', after.job.id));
});

test('a job past its timeout is killed and failed, not retried; default-sized work is refunded', async () => {
  h = startService(tempDir(), { jobs: { timeoutSeconds: 1, heartbeatIntervalMs: 100, heartbeatTimeoutMs: 5000, defaultGpuSeconds: { text2video: 1, edit: 1 } } });
  const slow = await h.service.submit(video(alice, { ms: 4000 }));
  const failed = await h.waitFor(isType('failed', slow.job.id));
  expect(failed).toMatchObject({ code: ErrorCode.JobTimedOut, refunded: true, job: { attempts: 1 } });
  expect(failed.type === 'failed' && failed.message).toBe('This job ran past the 1 s a job may take and was stopped. Please try again.');
});

test('engine errors fail the job at once with the engine\'s message and a refund', async () => {
  h = startService(tempDir());
  const job = await h.service.submit(video(alice, { mode: 'user-error' }));
  const failed = await h.waitFor(isType('failed', job.job.id));
  expect(failed).toMatchObject({ code: ErrorCode.EngineFailed, message: 'The clip could not be read.', job: { attempts: 1 } });
});

test('the built-in engine refuses an edit without a clip with a clear message', async () => {
  h = startService(tempDir(), { engineModule: '' });
  const edit = await h.service.submit({ actor: alice, kind: 'edit', params: { instruction: 'make it snowy' } });
  const failed = await h.waitFor(isType('failed', edit.job.id));
  expect(failed).toMatchObject({ code: ErrorCode.InvalidRequest, refunded: true });
  expect(failed.type === 'failed' && failed.message).toBe('The clip to edit is missing.');
});

test('a missing engine module fails the job with a clear message that keeps the raw error out', async () => {
  h = startService(tempDir(), { engineModule: '/nonexistent/engine.ts' });
  const job = await h.service.submit(video(alice));
  const failed = await h.waitFor(isType('failed', job.job.id));
  expect(failed).toMatchObject({ code: ErrorCode.EngineUnavailable, refunded: true });
  expect(failed.type === 'failed' && failed.message).toMatch(/^The video engine on this server could not start\. The operator can see why in the bot's log\./);
  expect(failed.type === 'failed' && failed.message).not.toMatch(/nonexistent|Cannot find|ERR_/);
});

test('prompt policy and bans refuse with a clear message and write nothing', async () => {
  h = startService(tempDir(), { ...admins, prompt: { maxLength: 20, blocklist: ['\\bgore\\b'] } });
  expect((await refusal(h.service.submit(video(alice, { prompt: '   ' })))).userMessage).toBe('The prompt is empty. Describe what you want to see.');
  expect((await refusal(h.service.submit(video(alice, { prompt: 'x'.repeat(21) })))).userMessage).toMatch(/21 characters long; the limit on this server is 20/);
  expect((await refusal(h.service.submit(video(alice, { prompt: 'lots of GORE' })))).code).toBe(ErrorCode.PromptBlocked);
  expect((await refusal(h.service.submit(video(alice, { negativePrompt: 'gore' })))).code).toBe(ErrorCode.PromptBlocked);
  expect((await refusal(h.service.submit(video(alice, {}, { seed: -1 })))).code).toBe(ErrorCode.InvalidRequest);
  expect(h.db.prepare(`SELECT count(*) FROM jobs`).pluck().get()).toBe(0);

  await h.service.pauseQueue(admin);
  const queued = await h.service.submit(video(bob));
  await h.service.setBanned(admin, bob, true, 'spam');
  expect((await refusal(h.service.submit(video(bob)))).userMessage).toBe('You are not allowed to make videos on this bot: spam');
  await h.waitFor(isType('cancelled', queued.job.id));
  await h.service.setBanned(admin, bob, false);
  await h.service.submit(video(bob));
  expect(h.db.prepare(`SELECT action FROM admin_audit ORDER BY id`).pluck().all()).toEqual(['queue.pause', 'user.ban', 'user.unban']);
});

test('admin pause survives a restart; clear cancels everything queued', async () => {
  const dir = tempDir();
  h = startService(dir, admins);
  await h.service.pauseQueue(admin);
  const ids = [];
  for (const actor of [alice, bob, admin]) ids.push((await h.service.submit(video(actor, { ms: 1 }))).job.id);
  expect(h.service.queue()).toMatchObject({ paused: true, running: [] });
  await h.close();

  h = startService(dir, admins);
  expect(h.service.queue().paused).toBe(true);
  expect(h.service.queue().waiting.map((entry) => entry.job.id)).toEqual(ids);
  expect(await h.service.clearQueue(admin)).toBe(3);
  expect(h.service.queue().waiting).toEqual([]);
  await h.service.resumeQueue(admin);
  const fresh = await h.service.submit(video(alice, { ms: 1 }));
  await h.waitFor(isType('succeeded', fresh.job.id));
  expect(h.service.usage(alice).today.jobs).toBe(1);
});

// ---- restarts: a real process killed mid-run ------------------------------------------------

const SERVICE_CHILD = fileURLToPath(new URL('../fixtures/service-child.ts', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

function spawnService(dir: string, requests: unknown[]): { child: ChildProcess; seen: { type: string; jobId?: number }[]; until(type: string, jobId?: number): Promise<void> } {
  const child = fork(SERVICE_CHILD, [dir, JSON.stringify(requests)], { execArgv: ['--import', TSX] });
  const seen: { type: string; jobId?: number }[] = [];
  const waiting: (() => void)[] = [];
  child.on('message', (message: { type: string; jobId?: number }) => {
    seen.push(message);
    for (const wake of waiting.splice(0)) wake();
  });
  const until = (type: string, jobId?: number) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (seen.some((m) => m.type === type && (jobId === undefined || m.jobId === jobId))) resolve();
        else if (child.exitCode !== null || child.signalCode !== null) reject(new Error(`service exited before ${type}`));
        else waiting.push(check);
      };
      check();
    });
  return { child, seen, until };
}

test('restart recovery: a killed process loses no job and charges none twice; queued jobs keep their fair order', async () => {
  const dir = tempDir();
  const requests = [
    video(alice, { ms: 30_000, steps: 100 }), // job 1: running when the process dies
    video(alice, { ms: 1 }), // 2
    video(alice, { ms: 1 }), // 3
    video(bob, { ms: 1 }), // 4: goes before alice's other jobs
  ];
  const first = spawnService(dir, requests);
  await first.until('submitted');
  await first.until('progress', 1);
  first.child.kill('SIGKILL');
  await new Promise((resolve) => first.child.once('exit', resolve));

  h = startService(dir);
  // Job 1 was requeued once (attempt 2). Alice was served last before the crash, so bob goes first.
  expect(h.service.queue().running.map((entry) => entry.job.id)).toEqual([4]);
  expect(h.service.queue().waiting.map((entry) => entry.job.id)).toEqual([1, 2, 3]);
  const restarted = await h.waitFor(isType('started', 1));
  expect(restarted).toMatchObject({ attempt: 2 });
  await h.service.cancel(alice, 1); // it would take 30 s: stop it, the point is that it ran again
  await h.waitFor(isType('succeeded', 3));
  expect(startOrder(h.events)).toEqual([4, 1, 2, 3]);
  const ledger = h.db.prepare(`SELECT job_id, group_concat(entry) AS entries FROM quota_ledger GROUP BY job_id ORDER BY job_id`).all();
  expect(ledger).toEqual([
    { job_id: 1, entries: 'reserve,refund' },
    { job_id: 2, entries: 'reserve,settle' },
    { job_id: 3, entries: 'reserve,settle' },
    { job_id: 4, entries: 'reserve,settle' },
  ]);
});

test('restart recovery: a job that was already retried is failed with a refund and a notice', async () => {
  const dir = tempDir();
  const first = spawnService(dir, [video(alice, { ms: 30_000 })]);
  await first.until('started', 1);
  first.child.kill('SIGKILL');
  await new Promise((resolve) => first.child.once('exit', resolve));
  const second = spawnService(dir, []);
  await second.until('started', 1);
  second.child.kill('SIGKILL');
  await new Promise((resolve) => second.child.once('exit', resolve));

  h = startService(dir);
  const failed = h.events.find(isType('failed', 1));
  expect(failed).toMatchObject({ code: ErrorCode.Interrupted, refunded: true, job: { state: 'failed', attempts: 2 } });
  expect(h.service.usage(alice).today.jobs).toBe(0);
});

test('SIGTERM drains: running jobs get their grace period, queued jobs wait for the next start', async () => {
  const dir = tempDir();
  const svc = spawnService(dir, [video(alice, { ms: 600 }), video(bob, { ms: 1 }), video(alice, { ms: 1 })]);
  // The signal comes once job 1 computes (its worker is up), so the grace period is the job's, not a slow boot's.
  await svc.until('progress', 1);
  svc.child.kill('SIGTERM');
  await svc.until('drained');
  expect(svc.seen.filter((m) => m.type === 'succeeded').map((m) => m.jobId)).toEqual([1]);
  expect(svc.seen.filter((m) => m.type === 'started').map((m) => m.jobId)).toEqual([1]);

  h = startService(dir);
  await h.waitFor(isType('succeeded', 3));
  expect(startOrder(h.events)).toEqual([2, 3]);
});

test('SIGTERM past the grace period: the running job goes back to the queue without losing an attempt', async () => {
  const dir = tempDir();
  const svc = spawnService(dir, [video(alice, { ms: 30_000, steps: 100 })]);
  await svc.until('started', 1);
  svc.child.kill('SIGTERM'); // shutdownGraceMs is 2 s in tests
  await svc.until('drained');
  h = startService(dir);
  const started = await h.waitFor(isType('started', 1));
  expect(started).toMatchObject({ attempt: 1 });
  await h.service.cancel(alice, 1);
});
