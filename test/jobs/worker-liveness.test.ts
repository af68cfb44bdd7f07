/**
 * Workers stay alive through real-size engine calls and still catch a stuck engine. Every test runs
 * real worker processes with the fake engine on the worker's engine thread: its calls block that
 * thread synchronously, as onnxruntime-node's `run` and model loading do.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, test } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { alice, bob, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

const ORT_ENGINE = fileURLToPath(new URL('../fakes/ort-engine.ts', import.meta.url));
/** The harness's quick heartbeats and grace periods; a test adds the deadline it is about. */
const QUICK = { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 3000, cancelGraceMs: 500, shutdownGraceMs: 2000, timeoutSeconds: 120 };

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  if (h) removeDir(h.dir);
  h = undefined;
});

function gpuSecondsOf(job: number): number {
  return h!.db.prepare(`SELECT gpu_seconds FROM jobs WHERE id = ?`).pluck().get(job) as number;
}

async function succeeded(job: number, timeoutMs?: number): Promise<{ pid: number; attempt: number }> {
  const done = await h!.waitFor(isType('succeeded', job), timeoutMs);
  return (done as Extract<typeof done, { type: 'succeeded' }>).result as { pid: number; attempt: number };
}

test('one engine call that blocks its thread for 30 s finishes with the default settings', { timeout: 90_000 }, async () => {
  h = startService(tempDir(), { jobs: {} }); // every jobs.* setting at its default
  // Longer than the heartbeat timeout: heartbeats from the engine's own thread would have stopped.
  expect(h.config.jobs.heartbeatTimeoutMs).toBeLessThan(30_000);
  const { job } = await h.service.submit(video(alice, { mode: 'block', ms: 30_000 }));
  const result = await succeeded(job.id, 85_000);
  expect(result.attempt).toBe(1);
  expect(h.events.filter(isType('started', job.id))).toHaveLength(1);
  expect(gpuSecondsOf(job.id)).toBeGreaterThanOrEqual(30);
});

test('a real ONNX Runtime call that blocks the engine thread longer than the heartbeat timeout does not get the worker killed', { timeout: 90_000 }, async () => {
  h = startService(tempDir(), { engineModule: ORT_ENGINE, jobs: { ...QUICK, heartbeatTimeoutMs: 1000 } });
  const { job } = await h.service.submit(video(alice));
  const done = await h.waitFor(isType('succeeded', job.id), 80_000);
  const result = (done as Extract<typeof done, { type: 'succeeded' }>).result as { longestPauseMs: number; value: number };
  expect(done.job.attempts).toBe(1);
  // The call really held the engine thread past the heartbeat timeout…
  expect(result.longestPauseMs).toBeGreaterThan(1000);
  // …and computed what it should: all-ones times 200 matrices of 1/N stays all ones.
  expect(result.value).toBeCloseTo(1, 3);
});

test('an engine blocked forever is stopped after the stall timeout with a clear message, not retried; the next job gets a fresh worker', async () => {
  h = startService(tempDir(), { jobs: { ...QUICK, stallTimeoutSeconds: 2 } });
  const before = await h.service.submit(video(alice, { ms: 1 }));
  const firstPid = (await succeeded(before.job.id)).pid;
  const stuck = await h.service.submit(video(alice, { mode: 'hang' }));
  const after = await h.service.submit(video(alice, { ms: 1 })); // the same user's: it waits behind the stuck one
  const failed = await h.waitFor(isType('failed', stuck.job.id));
  expect(failed).toMatchObject({
    code: ErrorCode.EngineStalled,
    refunded: true,
    message: 'The video engine made no progress for 2 s on this job, so it was stopped.',
    job: { attempts: 1, state: 'failed' },
  });
  expect((await succeeded(after.job.id)).pid).not.toBe(firstPid);
});

test('an engine awaiting a promise that never settles, with no progress, is stopped the same way', async () => {
  h = startService(tempDir(), { jobs: { ...QUICK, stallTimeoutSeconds: 2 } });
  const stuck = await h.service.submit(video(alice, { mode: 'never' }));
  const failed = await h.waitFor(isType('failed', stuck.job.id));
  expect(failed).toMatchObject({ code: ErrorCode.EngineStalled, refunded: true, job: { attempts: 1 } });
  expect(failed.type === 'failed' && failed.message).toMatch(/made no progress for 2 s/);
});

test('the job timeout still stops an engine blocked forever when the stall timeout is longer', async () => {
  h = startService(tempDir(), { jobs: { ...QUICK, stallTimeoutSeconds: 60, timeoutSeconds: 2, defaultGpuSeconds: { text2video: 1, edit: 1 } } });
  const stuck = await h.service.submit(video(alice, { mode: 'hang' }));
  const failed = await h.waitFor(isType('failed', stuck.job.id));
  // A timeout is not retried (the same job takes as long again); default-sized work is refunded.
  expect(failed).toMatchObject({ code: ErrorCode.JobTimedOut, refunded: true, job: { attempts: 1 } });
});

test('a cancel sent while the engine thread is blocked in one call stops the job when the call returns; the worker is kept', async () => {
  h = startService(tempDir(), { jobs: { ...QUICK, cancelGraceMs: 20_000 } });
  const before = await h.service.submit(video(alice, { ms: 1 }));
  const workerPid = (await succeeded(before.job.id)).pid;
  const blocked = await h.service.submit(video(alice, { mode: 'block', ms: 3000 }));
  const after = await h.service.submit(video(alice, { ms: 1 }));
  await h.waitFor((event) => event.type === 'progress' && event.job.id === blocked.job.id); // the call has begun
  await h.service.cancel(alice, blocked.job.id);
  const cancelled = await h.waitFor(isType('cancelled', blocked.job.id));
  expect(cancelled).toMatchObject({ refunded: true, job: { state: 'cancelled' } });
  // The same worker process runs the next job: the engine saw the cancel and stopped, nothing was killed.
  expect((await succeeded(after.job.id)).pid).toBe(workerPid);
});

test('a slow model load is not charged: gpu_seconds, the ledger and the ETAs exclude it, and the log says how long it took', async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  h = startService(tempDir(), { jobs: { ...QUICK, defaultGpuSeconds: { text2video: 100, edit: 100 } } }, { logger });
  const { job } = await h.service.submit(video(alice, { loadMs: 4000, ms: 200, steps: 2 }));
  // While the models load, the job's ETA is its whole expected run: loading does not count it down.
  await sleep(1500);
  expect(h.service.status(job.id)).toMatchObject({ position: 0, etaMs: 100_000 });
  await succeeded(job.id);
  const charged = gpuSecondsOf(job.id);
  expect(charged).toBeGreaterThanOrEqual(0.2);
  expect(charged).toBeLessThan(4);
  expect(h.service.usage(alice).today.gpuSeconds).toBeCloseTo(charged, 6);
  const loadLine = lines.find((line) => line.msg === 'models loaded for the job');
  expect(loadLine).toMatchObject({ jobId: job.id, device: 'cpu' });
  expect(loadLine!.loadSeconds).toBeGreaterThanOrEqual(4);
  // The estimate follows the measured run (0.2 s), not run plus load (4.2 s).
  const running = await h.service.submit(video(alice, { ms: 2000 }));
  await h.waitFor(isType('started', running.job.id));
  const queued = await h.service.submit(video(bob, { ms: 1 }));
  expect(queued.position).toBe(1);
  expect(queued.etaMs).toBeLessThan(2000);
});

test('a model load past its deadline fails the job with a clear message, not retried; the next job gets a fresh worker', async () => {
  h = startService(tempDir(), { jobs: { ...QUICK, modelLoadTimeoutSeconds: 8 } });
  const slow = await h.service.submit(video(alice, { loadMs: 120_000 }));
  const after = await h.service.submit(video(alice, { ms: 1 }));
  const failed = await h.waitFor(isType('failed', slow.job.id));
  expect(failed).toMatchObject({
    code: ErrorCode.ModelLoadTimedOut,
    refunded: true,
    message: "Loading the video models took longer than 8 s on this server, so the job was stopped. The operator can see why in the bot's log.",
    job: { attempts: 1, state: 'failed' },
  });
  expect((await succeeded(after.job.id)).attempt).toBe(1);
  expect(h.events.filter(isType('started', slow.job.id))).toHaveLength(1);
});
