/**
 * Honest costs (issue 12, "Costs and abuse"): estimates from the parameters, learned from history
 * per kind, device and model; refusals past the timeout or the quota left, saying what to lower;
 * no retry of a timeout, charged when the job's settings caused it; tier caps on frames and steps;
 * a cooldown; direct messages off unless allowed. Real SQLite files and real worker processes.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { ErrorCode, UserError } from '../../src/errors.js';
import { CostModel, lowerHint, workOf } from '../../src/jobs/cost-model.js';
import type { Actor } from '../../src/jobs/types.js';
import { admin, alice, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  if (h) removeDir(h.dir);
  h = undefined;
});

const unlimited = { jobsPerDay: null, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 100 };
const tiers = (free: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  quota: { defaultTier: 'free', tiers: { free: { ...unlimited, ...free } }, ...extra },
  admins: { discord: ['admin-1'], slack: [] },
});
const operator: Actor = { platform: 'cli', externalId: 'operator' };

async function refusal(promise: Promise<unknown>): Promise<UserError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(UserError);
  return error as UserError;
}

function reserved(harness: Harness, jobId: number): number {
  return harness.db.prepare(`SELECT gpu_seconds FROM quota_ledger WHERE job_id = ? AND entry = 'reserve'`).pluck().get(jobId) as number;
}

function jobCount(harness: Harness): number {
  return harness.db.prepare('SELECT count(*) FROM jobs').pluck().get() as number;
}

test('the reservation follows the parameters: 64 frames × 150 steps reserve 24 times a default job', async () => {
  h = startService(tempDir(), { ...tiers(), jobs: { timeoutSeconds: 3600 } });
  await h.service.pauseQueue(admin);
  const small = await h.service.submit(video(alice));
  const big = await h.service.submit(video(alice, { numFrames: 64, numInferenceSteps: 150 }));
  const wide = await h.service.submit(video(alice, { width: 1024, height: 512 }));
  expect(reserved(h, small.job.id)).toBeCloseTo(60, 6);
  expect(reserved(h, big.job.id)).toBeCloseTo(60 * 24, 6);
  expect(big.job.estimatedGpuSeconds).toBeCloseTo(1440, 6);
  expect(reserved(h, wide.job.id)).toBeCloseTo(120, 6);
  // An edit: steps × (clip frames + anchors).
  const edit = await h.service.submit({ actor: alice, kind: 'edit', params: { instruction: 'make it snowy', inputFile: '/nowhere.mp4', numInferenceSteps: 20 } });
  expect(reserved(h, edit.job.id)).toBeCloseTo(90 * 2, 6); // twice the default 10 steps
  // ETAs come from the same estimates: the big job's own share is 24 default jobs.
  expect(big.etaMs - small.etaMs).toBeGreaterThan(1400_000);
});

test('an edit is costed by its clip\'s frames, read at submit and recorded with the job', async () => {
  h = startService(tempDir(), { ...tiers(), jobs: { timeoutSeconds: 900 } });
  await h.service.pauseQueue(admin);
  const clips = join(h.dir, 'clips');
  mkdirSync(clips);
  const file = join(clips, 'clip.mp4');
  const { ffmpeg } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
  const run = spawnSync(ffmpeg, ['-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=96x64:rate=24:duration=4', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', file]);
  expect(run.status).toBe(0);
  const edit = await h.service.submit({ actor: alice, kind: 'edit', params: { instruction: 'make it snowy', inputFile: file } });
  // 4 s at the 12 fps cap: 48 frames; 10 steps × (48 + 3 anchors) at the default rate 90 / (10 × (24 + 3)).
  expect(edit.job.params.clipFrames).toBe(48);
  expect(edit.job.estimatedGpuSeconds).toBeCloseTo((90 / 270) * 510, 6);
});

test('the rate is learned from succeeded jobs of the same kind and model, kept across a restart', async () => {
  const dir = tempDir();
  h = startService(dir, tiers());
  const first = await h.service.submit(video(alice, { ms: 400 }));
  const done = await h.waitFor(isType('succeeded', first.job.id));
  const measured = done.type === 'succeeded' ? done.gpuSeconds : NaN;
  expect(measured).toBeGreaterThan(0.3);
  const twice = await h.service.submit(video(alice, { numFrames: 16, ms: 1 }));
  expect(twice.job.estimatedGpuSeconds).toBeCloseTo(2 * measured, 6);
  await h.waitFor(isType('succeeded', twice.job.id));
  await h.close();

  // A restart reads the history back from the database.
  h = startService(dir, tiers());
  await h.service.pauseQueue(admin);
  const again = await h.service.submit(video(alice, { numFrames: 8 }));
  expect(again.job.estimatedGpuSeconds).toBeLessThan(1);
  expect(again.job.estimatedGpuSeconds).toBeGreaterThan(0);
  // Edits have no history: their default stands.
  const edit = await h.service.submit({ actor: alice, kind: 'edit', params: { instruction: 'make it snowy', inputFile: '/nowhere.mp4' } });
  expect(edit.job.estimatedGpuSeconds).toBeCloseTo(90, 6);
  await h.close();

  // Another model has no history: back to the configured default.
  h = startService(dir, { ...tiers(), modelDir: '/models/other' });
  await h.service.pauseQueue(admin);
  const otherModel = await h.service.submit(video(alice));
  expect(otherModel.job.estimatedGpuSeconds).toBeCloseTo(60, 6);
});

test('a job estimated past the job timeout is refused at submit, saying what to lower, and nothing is written', async () => {
  h = startService(tempDir(), { ...tiers(), jobs: { timeoutSeconds: 600 } });
  const before = jobCount(h);
  const error = await refusal(h.service.submit(video(alice, { numFrames: 64, numInferenceSteps: 150 })));
  expect(error.code).toBe(ErrorCode.JobTooLong);
  expect(error.userMessage).toBe(
    'This job would take about 24 min to make, longer than the 10 min a job may run on this bot. Lower the frames from 64 to about 24, or the steps from 150 to about 56.',
  );
  expect(jobCount(h)).toBe(before);
  // Following the advice fits.
  await h.service.submit(video(alice, { numFrames: 24, ms: 1 }));
});

test('a job costing more than the quota left is refused with what to lower to fit', async () => {
  h = startService(tempDir(), tiers({ gpuSecondsPerDay: 100 }));
  const error = await refusal(h.service.submit(video(alice, { numFrames: 16 })));
  expect(error.code).toBe(ErrorCode.QuotaGpuPerDay);
  expect(error.userMessage).toMatch(/^This job needs about 120 GPU-seconds and you have 100 left today\. Lower the frames from 16 to about 13, or the steps from 50 to about 41\. Your quota resets/);
});

test('a timeout caused by the job\'s own settings is not retried and is charged the time it ran', async () => {
  h = startService(tempDir(), { ...tiers(), jobs: { timeoutSeconds: 1, heartbeatIntervalMs: 100, heartbeatTimeoutMs: 5000, defaultGpuSeconds: { text2video: 0.01, edit: 0.01 } } });
  const slow = await h.service.submit(video(alice, { numFrames: 16, ms: 6000 }));
  const failed = await h.waitFor(isType('failed', slow.job.id));
  expect(failed).toMatchObject({ code: ErrorCode.JobTimedOut, refunded: false, job: { attempts: 1 } });
  expect(failed.type === 'failed' && failed.message).toMatch(/^This job ran past the 1 s a job may take and was stopped\. Its settings ask for more work than the defaults, so the 1 GPU-seconds it ran were counted\. Try fewer frames or steps\.$/);
  const ledger = h.db.prepare(`SELECT entry, jobs, gpu_seconds AS gpu FROM quota_ledger WHERE job_id = ? ORDER BY id`).all(slow.job.id) as { entry: string; jobs: number; gpu: number }[];
  expect(ledger.map((row) => row.entry)).toEqual(['reserve', 'settle']);
  const charged = ledger.reduce((sum, row) => sum + row.gpu, 0);
  expect(charged).toBeGreaterThan(0.9);
  expect(charged).toBeLessThanOrEqual(1);
  expect(h.service.usage(alice).today.jobs).toBe(1);
  const row = h.db.prepare('SELECT attempts, gpu_seconds FROM jobs WHERE id = ?').get(slow.job.id) as { attempts: number; gpu_seconds: number };
  expect(row).toEqual({ attempts: 1, gpu_seconds: charged });
});

test('tier caps on frames and steps apply to every platform user; the CLI operator is not capped', async () => {
  h = startService(tempDir(), { admins: { discord: ['admin-1'], slack: [] }, jobs: { timeoutSeconds: 900 } }); // the default tiers
  const frames = await refusal(h.service.submit(video(alice, { numFrames: 32 })));
  expect(frames.code).toBe(ErrorCode.QuotaWorkTooLarge);
  expect(frames.userMessage).toBe('Videos of up to 16 frames can be made with your quota; this one asks for 32. Lower the frames to 16 or fewer.');
  const steps = await refusal(h.service.submit(video({ platform: 'slack', externalId: 'U1' }, { numInferenceSteps: 80 })));
  expect(steps.userMessage).toBe('Up to 50 steps can be used with your quota; this job asks for 80. Lower the steps to 50 or fewer.');
  const editSteps = await refusal(h.service.submit({ actor: alice, kind: 'edit', params: { instruction: 'snow', inputFile: '/nowhere.mp4', numInferenceSteps: 60 } }));
  expect(editSteps.code).toBe(ErrorCode.QuotaWorkTooLarge);
  await h.service.pauseQueue(admin);
  await h.service.submit(video(alice, { numFrames: 16 }));
  // The pro tier allows more.
  await h.service.setQuota(admin, alice, { tier: 'pro' });
  await h.service.submit(video(alice, { numFrames: 32 }));
  await h.service.submit(video(operator, { numFrames: 64, numInferenceSteps: 80 })); // within the timeout, which applies to every job
});

test('a per-user cooldown between submits, off by default', async () => {
  let now = Date.UTC(2026, 10, 25, 12, 0);
  h = startService(tempDir(), tiers({ cooldownSeconds: 30 }), { now: () => now });
  await h.service.pauseQueue(admin);
  await h.service.submit(video(alice));
  now += 10_000;
  const error = await refusal(h.service.submit(video(alice)));
  expect(error.code).toBe(ErrorCode.QuotaCooldown);
  expect(error.userMessage).toBe('Please wait 20 s before your next video (one every 30 s).');
  await h.service.submit(video(admin)); // other users are not held back
  now += 20_000;
  await h.service.submit(video(alice));
  await h.close();
  removeDir(h.dir);
  h = startService(tempDir(), tiers(), { now: () => now });
  await h.service.pauseQueue(admin);
  await h.service.submit(video(alice));
  await h.service.submit(video(alice));
});

test('direct messages are refused unless allowed; when allowed, the user\'s own limits apply there', async () => {
  h = startService(tempDir(), tiers({ jobsPerDay: 2 }));
  const before = jobCount(h);
  const error = await refusal(h.service.submit(video(alice, {}, { directMessage: true })));
  expect(error.code).toBe(ErrorCode.DirectMessagesOff);
  expect(error.userMessage).toBe('Videos cannot be made in direct messages with this bot. Use the command in a server channel where the bot is.');
  expect(jobCount(h)).toBe(before);
  await h.close();
  removeDir(h.dir);

  h = startService(tempDir(), tiers({ jobsPerDay: 2 }, { allowDirectMessages: true, group: { jobsPerDay: 100 } }));
  await h.service.pauseQueue(admin);
  await h.service.submit(video(alice, {}, { groupId: 'guild-1' }));
  await h.service.submit(video(alice, {}, { directMessage: true }));
  const dm = await refusal(h.service.submit(video(alice, {}, { directMessage: true })));
  expect(dm.code).toBe(ErrorCode.QuotaJobsPerDay);
  const guild = await refusal(h.service.submit(video(alice, {}, { groupId: 'guild-1' })));
  expect(guild.code).toBe(ErrorCode.QuotaJobsPerDay);
});

describe('cost model', () => {
  const config = { devices: ['cpu', 'cuda:0'], editSteps: 10, modelDir: '', editModelDir: '', jobs: { defaultGpuSeconds: { text2video: 60, edit: 90 }, etaWindow: 20 } };

  test('work units: frames × steps × pixels; edits steps × (clip frames + anchors)', () => {
    expect(workOf('text2video', {}, 10).units).toBe(8 * 50);
    expect(workOf('text2video', { numFrames: 64, numInferenceSteps: 150, width: 256, height: 256 }, 10).units).toBe(64 * 150 * 0.25);
    expect(workOf('edit', { clipFrames: 40, anchors: 4, numInferenceSteps: 20 }, 10).units).toBe(20 * 44);
  });

  test('rates per device: its own history, else the other devices\', else the configured default', () => {
    const history = new Map([['text2video|cuda:0', [{ device: 'cuda:0', params: { numFrames: 8 }, gpuSeconds: 4 }]]]);
    const model = new CostModel({ config, history: (kind, device) => history.get(`${kind}|${device}`) ?? [] });
    expect(model.rate('text2video', 'cuda:0')).toBeCloseTo(4 / 400, 9);
    expect(model.rate('text2video', 'cpu')).toBeCloseTo(4 / 400, 9); // no history of its own: the kind's
    expect(model.rate('edit', 'cpu')).toBeCloseTo(90 / (10 * 27), 9); // none at all: the default
    model.record('text2video', 'cpu', { numFrames: 16 }, 80);
    expect(model.rate('text2video', 'cpu')).toBeCloseTo(80 / 800, 9);
    // Not yet on a device: the mean of the two.
    expect(model.estimate('text2video', {}).gpuSeconds).toBeCloseTo(((0.01 + 0.1) / 2) * 400, 6);
  });

  test('the hint says how far to lower frames or steps', () => {
    const estimate = { work: workOf('text2video', { numFrames: 64, numInferenceSteps: 150 }, 10), gpuSeconds: 1000 };
    expect(lowerHint(estimate, 500)).toBe('Lower the frames from 64 to about 32, or the steps from 150 to about 75.');
    expect(lowerHint(estimate, 2000)).toBe('');
    const edit = { work: workOf('edit', { numInferenceSteps: 20 }, 10), gpuSeconds: 100 };
    expect(lowerHint(edit, 50)).toBe('Lower the steps from 20 to about 10, or edit a shorter clip.');
  });
});
