/**
 * /metrics in Prometheus text format, parsed and checked against the database after a set of jobs
 * run by real worker processes (the fake engine): succeeded, failed, crashed twice, cancelled, and
 * a refused submit.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UserError } from '../../src/errors.js';
import { startDashboard, type Dashboard } from '../helpers/dashboard.js';
import { alice, bob, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Reads the text exposition format: `name{label="value",…} number` lines; comments skipped. */
function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) throw new Error(`not a metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[key!] = value!;
    samples.push({ name: match[1]!, labels, value: Number(match[3]) });
  }
  return samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((sample) => sample.name === name && Object.entries(labels).every(([key, v]) => sample.labels[key] === v))?.value;
}

function sum(samples: Sample[], name: string): number {
  return samples.filter((sample) => sample.name === name).reduce((total, sample) => total + sample.value, 0);
}

let dir: string;
let harness: Harness;
let dashboard: Dashboard;

beforeEach(async () => {
  dir = tempDir();
  harness = startService(dir, { http: { port: 0 }, prompt: { blocklist: ['forbidden'] } });
  dashboard = await startDashboard({ config: harness.config, db: harness.db, jobs: harness.service, platforms: ['discord'] });
});

afterEach(async () => {
  await dashboard.close();
  await harness.close();
  removeDir(dir);
});

async function scrape(): Promise<Sample[]> {
  const response = await dashboard.http.app.inject({ url: '/metrics' });
  expect(response.statusCode).toBe(200);
  expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseMetrics(response.body);
}

describe('/metrics', () => {
  it('counts jobs, outcomes, failures, GPU-seconds, durations and waits as the database records them', async () => {
    const { service } = harness;
    // A crash and its retry's crash first: the two replaced workers are restarts.
    const crashed = await service.submit(video(alice, { mode: 'crash' }));
    await harness.waitFor(isType('failed', crashed.job.id));
    for (const params of [{ ms: 30 }, { ms: 60 }, { ms: 10, steps: 2 }]) {
      const { job } = await service.submit(video(alice, params));
      await harness.waitFor(isType('succeeded', job.id));
    }
    const failed = await service.submit(video(bob, { mode: 'fail' }));
    await harness.waitFor(isType('failed', failed.job.id));
    const long = await service.submit(video(bob, { ms: 20_000, steps: 200 }));
    await harness.waitFor(isType('progress', long.job.id));
    await service.cancel(bob, long.job.id);
    await harness.waitFor(isType('cancelled', long.job.id));
    const refused = await service.submit(video(alice, { prompt: 'something forbidden' })).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(UserError);

    const samples = await scrape();
    const { db } = harness;
    const outcomes = db.prepare(`SELECT kind, state, count(*) AS n FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') GROUP BY kind, state`).all() as {
      kind: string;
      state: string;
      n: number;
    }[];
    expect(outcomes.map((row) => row.n).reduce((a, b) => a + b)).toBe(6);
    for (const row of outcomes) expect(value(samples, 'reelbot_jobs_total', { kind: row.kind, outcome: row.state })).toBe(row.n);
    expect(sum(samples, 'reelbot_jobs_total')).toBe(6);

    const failures = db.prepare(`SELECT error_code AS code, count(*) AS n FROM jobs WHERE state = 'failed' GROUP BY error_code`).all() as { code: string; n: number }[];
    expect(failures.map((row) => row.code).sort()).toEqual(['engine_failed', 'worker_crashed']);
    for (const row of failures) expect(value(samples, 'reelbot_job_failures_total', { code: row.code })).toBe(row.n);
    expect(sum(samples, 'reelbot_job_failures_total')).toBe(2);

    const gpu = db.prepare(`SELECT coalesce(sum(gpu_seconds), 0) FROM jobs`).pluck().get() as number;
    expect(gpu).toBeGreaterThan(0);
    expect(value(samples, 'reelbot_gpu_seconds_total', { kind: 'text2video', device: 'cpu' })).toBeCloseTo(gpu, 6);
    const succeeded = db.prepare(`SELECT count(*) FROM jobs WHERE state = 'succeeded'`).pluck().get() as number;
    expect(value(samples, 'reelbot_job_duration_seconds_count', { kind: 'text2video', device: 'cpu' })).toBe(succeeded);
    const durations = db.prepare(`SELECT sum(finished_at - started_at) / 1000.0 FROM jobs WHERE state = 'succeeded'`).pluck().get() as number;
    expect(value(samples, 'reelbot_job_duration_seconds_sum', { kind: 'text2video', device: 'cpu' })).toBeCloseTo(durations, 3);
    const started = db.prepare(`SELECT count(*) FROM jobs WHERE started_at IS NOT NULL`).pluck().get() as number;
    expect(value(samples, 'reelbot_queue_wait_seconds_count', { kind: 'text2video' })).toBe(started);

    expect(value(samples, 'reelbot_submit_refusals_total', { code: (refused as UserError).code })).toBe(1);
    expect(value(samples, 'reelbot_queue_depth', { state: 'waiting' })).toBe(0);
    expect(value(samples, 'reelbot_queue_depth', { state: 'running' })).toBe(0);
    expect(value(samples, 'reelbot_queue_paused')).toBe(0);
    // Slot 0 started a worker for the crash, one for its retry, and one after the second crash.
    expect(value(samples, 'reelbot_worker_restarts_total', { device: 'cpu', slot: '0' })).toBe(2);
    expect(value(samples, 'reelbot_worker_state', { device: 'cpu', slot: '0', state: 'ready' })).toBe(1);
    expect(value(samples, 'reelbot_worker_state', { device: 'cpu', slot: '0', state: 'busy' })).toBe(0);
  });

  it('shows what the adapters report: connection state, reconnects, ack latency, rate-limit hits', async () => {
    const discord = dashboard.http.metrics.platform('discord');
    let samples = await scrape();
    expect(value(samples, 'reelbot_platform_connected', { platform: 'discord' })).toBe(0);
    discord.connection(true);
    discord.acked(120);
    discord.acked(2400);
    discord.rateLimited();
    discord.connection(false);
    discord.connection(true);
    discord.reconnected();
    samples = await scrape();
    expect(value(samples, 'reelbot_platform_connected', { platform: 'discord' })).toBe(1);
    expect(value(samples, 'reelbot_platform_reconnects_total', { platform: 'discord' })).toBe(1);
    expect(value(samples, 'reelbot_rate_limit_hits_total', { platform: 'discord' })).toBe(1);
    expect(value(samples, 'reelbot_ack_latency_seconds_count', { platform: 'discord' })).toBe(2);
    expect(value(samples, 'reelbot_ack_latency_seconds_bucket', { platform: 'discord', le: '0.25' })).toBe(1);
    expect(value(samples, 'reelbot_ack_latency_seconds_sum', { platform: 'discord' })).toBeCloseTo(2.52, 6);
  });
});
