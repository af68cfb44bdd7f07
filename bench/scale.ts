/**
 * Scale-out benchmarks: `npm run bench:scale` (needs redis-server). Prints one JSON line each:
 *   scale     the same jobs (fake engine, a fixed time per job, so the CPU is not the limit; several
 *             users) on 1, 2 and 4 worker hosts (`reelbot worker` processes, one slot each) behind a
 *             real redis-server: throughput, the 4-vs-1 speedup, and whether starts stayed round-robin
 *   failover  killed "worker": a host killed -9 mid-job (its job goes to the other host);
 *             killed "coordinator": the coordinator killed -9 while hosts compute, then restarted.
 *             lost jobs, jobs charged twice, whether each job was delivered once, and reassign_s
 *             (from the kill to the first interrupted job finishing elsewhere or after the restart)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadConfig } from '../src/config.js';
import type { Actor, JobEvent } from '../src/jobs/types.js';
import { openDatabase } from '../src/store/db.js';
import { JobRepo } from '../src/store/job-repo.js';
import { QuotaLedger } from '../src/store/quota-ledger.js';
import { freePort, startRedis, type RedisServer } from '../test/helpers/redis-server.js';
import { startCoordinator } from './scale-coordinator.js';

const FAKE_ENGINE = fileURLToPath(new URL('../test/fakes/fake-engine.ts', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/reelbot.js', import.meta.url));
const COORDINATOR = fileURLToPath(new URL('./scale-coordinator.ts', import.meta.url));
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const JOB_MS = 1500;
const USERS = 4;
const OPEN_QUOTA = { defaultTier: 'free', tiers: { free: { jobsPerDay: null, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 1000 } } };
const SCALE = { lockMs: 2000, stalledIntervalMs: 1000 };
/** Its own BullMQ keys (the Redis is the bench's own, but a prefix keeps it plain). */
const PREFIX = 'bench';

const dirs: string[] = [];
const children = new Set<ChildProcess>();
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'reelbot-bench-scale-'));
  dirs.push(dir);
  return dir;
}
const round = (value: number, digits = 3): number => Number(value.toFixed(digits));
const print = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`);
const actor = (user: number): Actor => ({ platform: 'discord', externalId: `user-${user}` });

/** A worker host in its own folder, one cpu slot, the fake engine. */
function startWorker(redisUrl: string): { child: ChildProcess; ready: Promise<void> } {
  const dir = tempDir();
  const child = spawn(process.execPath, [BIN, 'worker', '--devices', 'cpu'], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      REELBOT_REDIS_URL: redisUrl,
      REELBOT_OUTPUT_DIR: join(dir, 'work'),
      REELBOT_DB_PATH: join(dir, 'unused.db'),
      REELBOT_ENGINE_MODULE: FAKE_ENGINE,
      REELBOT_LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      REELBOT_WORKER_LOCK_MS: String(SCALE.lockMs),
      REELBOT_STALLED_INTERVAL_MS: String(SCALE.stalledIntervalMs),
      REELBOT_QUEUE_PREFIX: PREFIX,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('is taking')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker host exited (${code})`)));
  });
  return { child, ready };
}

async function kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

async function coordinatorConfig(redisUrl: string, dir: string, port?: number) {
  return {
    dbPath: join(dir, 'reelbot.db'),
    outputDir: join(dir, 'outputs'),
    logLevel: process.env.BENCH_LOG_LEVEL ?? 'silent',
    redisUrl,
    http: { port: port ?? (await freePort()) },
    leaseTtlMs: 3000,
    quota: OPEN_QUOTA,
    scale: { ...SCALE, queuePrefix: PREFIX },
    jobs: { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 5000, cancelGraceMs: 1000, shutdownGraceMs: 1000, timeoutSeconds: 120, defaultGpuSeconds: { text2video: JOB_MS / 1000, edit: JOB_MS / 1000 } },
  };
}

/** Jobs on `workers` hosts: throughput from the first start to the last end, and the start order. */
async function scaleRun(redis: RedisServer, workers: number, jobsPerUser: number): Promise<{ throughput: number; fair: boolean }> {
  const dir = tempDir();
  const coordinator = await startCoordinator(loadConfig({ overrides: await coordinatorConfig(redis.url, dir) }));
  const hosts = Array.from({ length: workers }, () => startWorker(redis.url));
  try {
    await Promise.all(hosts.map((host) => host.ready));
    const jobs = coordinator.app.jobs;
    const events: JobEvent[] = [];
    jobs.onEvent((event) => events.push(event));
    // Warm-up: one job per host boots its worker process (not measured).
    for (let i = 0; i < workers; i++) await jobs.submit({ actor: { platform: 'cli', externalId: 'warmup' }, kind: 'text2video', params: { ms: 10, steps: 1 } });
    while (events.filter((event) => event.type === 'succeeded').length < workers) await sleep(20);
    const submitted: number[] = [];
    // Each user submits all of their jobs at once, one user after the other, into a paused queue
    // (so that the first user's jobs do not simply take the idle slots): the fair queue must interleave them.
    const operator: Actor = { platform: 'cli', externalId: 'bench' };
    jobs.pauseQueue(operator);
    for (let user = 0; user < USERS; user++) {
      for (let i = 0; i < jobsPerUser; i++) submitted.push((await jobs.submit({ actor: actor(user), kind: 'text2video', params: { ms: JOB_MS, steps: 3 } })).job.id);
    }
    jobs.resumeQueue(operator);
    const ids = new Set(submitted);
    const done = () => events.filter((event) => event.type === 'succeeded' && ids.has(event.job.id)).length;
    while (done() < submitted.length) await sleep(20);
    const starts = events.filter((event): event is Extract<JobEvent, { type: 'started' }> => event.type === 'started' && ids.has(event.job.id));
    const ends = events.filter((event) => event.type === 'succeeded' && ids.has(event.job.id));
    const first = Math.min(...starts.map((event) => event.job.startedAt!));
    const last = Math.max(...ends.map((event) => event.job.finishedAt!));
    // Round-robin across users: at every point of the start order no user is more than one start ahead of another.
    const counts = new Map<number, number>();
    let fair = true;
    for (const start of starts) {
      counts.set(start.job.userId, (counts.get(start.job.userId) ?? 0) + 1);
      const values = [...counts.values()];
      if (counts.size === USERS && Math.max(...values) - Math.min(...values) > 1) fair = false;
      if (counts.size < USERS && Math.max(...values) > 1) fair = false;
    }
    return { throughput: submitted.length / ((last - first) / 1000), fair };
  } finally {
    await coordinator.stop();
    await Promise.all(hosts.map((host) => kill(host.child)));
  }
}

function ledgerOutcome(dir: string, ids: number[]): { lost: number; doubleCharged: number } {
  const db = openDatabase(join(dir, 'reelbot.db'));
  try {
    const repo = new JobRepo(db);
    const ledger = new QuotaLedger(db);
    let lost = 0;
    let doubleCharged = 0;
    for (const id of ids) {
      if (repo.get(id)?.state !== 'succeeded') lost++;
      if (ledger.forJob(id).filter((row) => row.entry === 'settle').length > 1) doubleCharged++;
    }
    return { lost, doubleCharged };
  } finally {
    db.close();
  }
}

async function failoverWorker(redis: RedisServer): Promise<void> {
  const dir = tempDir();
  const coordinator = await startCoordinator(loadConfig({ overrides: await coordinatorConfig(redis.url, dir) }));
  const hosts = [startWorker(redis.url), startWorker(redis.url)];
  try {
    await Promise.all(hosts.map((host) => host.ready));
    const jobs = coordinator.app.jobs;
    const events: { event: JobEvent; at: number }[] = [];
    jobs.onEvent((event) => events.push({ event, at: Date.now() }));
    const ids: number[] = [];
    for (let i = 0; i < 6; i++) ids.push((await jobs.submit({ actor: actor(i % USERS), kind: 'text2video', params: { ms: JOB_MS * 2, steps: 6 } })).job.id);
    // Kill the host of the first job once it computes (its progress has started).
    while (!events.some(({ event }) => event.type === 'progress' && event.job.id === ids[0])) await sleep(20);
    const victim = hosts[0]!;
    await kill(victim.child);
    const killedAt = Date.now();
    const succeeded = () => events.filter(({ event }) => event.type === 'succeeded');
    while (succeeded().length < ids.length) await sleep(50);
    const retried = events.find(({ event }) => event.type === 'started' && event.attempt === 2);
    const retriedDone = retried && succeeded().find(({ event }) => event.job.id === retried.event.job.id);
    const perJob = ids.map((id) => succeeded().filter(({ event }) => event.job.id === id).length);
    const { lost, doubleCharged } = ledgerOutcome(dir, ids);
    print({ bench: 'failover', killed: 'worker', jobs: ids.length, lost, double_charged: doubleCharged, delivered_once: perJob.every((n) => n === 1), reassign_s: retriedDone ? round((retriedDone.at - killedAt) / 1000, 2) : null });
  } finally {
    await coordinator.stop();
    await Promise.all(hosts.map((host) => kill(host.child)));
  }
}

/** The coordinator as its own process, printing its job events. */
function spawnCoordinator(config: Record<string, unknown>, submit: unknown[]): { child: ChildProcess; lines: { type: string; jobId?: number; at: number }[] } {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, COORDINATOR], {
    env: { ...process.env, BENCH_CONFIG: JSON.stringify(config), BENCH_SUBMIT: JSON.stringify(submit) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const lines: { type: string; jobId?: number; at: number }[] = [];
  let buffer = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      const line = buffer.slice(0, nl);
      if (process.env.BENCH_LOG_LEVEL) process.stderr.write(`${line}\n`);
      lines.push(JSON.parse(line) as { type: string; jobId?: number; at: number });
      buffer = buffer.slice(nl + 1);
    }
  });
  return { child, lines };
}

async function failoverCoordinator(redis: RedisServer): Promise<void> {
  const dir = tempDir();
  const config = await coordinatorConfig(redis.url, dir, await freePort());
  const hosts = [startWorker(redis.url), startWorker(redis.url)];
  try {
    await Promise.all(hosts.map((host) => host.ready));
    const submit = Array.from({ length: 4 }, (_, i) => ({ actor: actor(i % USERS), kind: 'text2video', params: { ms: JOB_MS * 2, steps: 6 } }));
    const first = spawnCoordinator(config, submit);
    // Kill it once two jobs compute on the hosts.
    while (first.lines.filter((line) => line.type === 'started').length < 2) await sleep(20);
    await sleep(500);
    await kill(first.child);
    const killedAt = Date.now();
    const running = new Set(first.lines.filter((line) => line.type === 'started').map((line) => line.jobId!));
    for (const line of first.lines) if (line.type === 'succeeded') running.delete(line.jobId!);
    const second = spawnCoordinator(config, []);
    const all = () => [...first.lines, ...second.lines];
    const ids = [1, 2, 3, 4];
    const succeededIds = () => all().filter((line) => line.type === 'succeeded').map((line) => line.jobId!);
    const deadline = Date.now() + 120_000;
    while (ids.some((id) => !succeededIds().includes(id)) && Date.now() < deadline) await sleep(50);
    const pickedUp = second.lines.find((line) => line.type === 'succeeded' && running.has(line.jobId!));
    const { lost, doubleCharged } = ledgerOutcome(dir, ids);
    await kill(second.child, 'SIGTERM');
    print({
      bench: 'failover',
      killed: 'coordinator',
      jobs: ids.length,
      lost,
      double_charged: doubleCharged,
      delivered_once: ids.every((id) => succeededIds().filter((done) => done === id).length === 1),
      reassign_s: pickedUp ? round((pickedUp.at - killedAt) / 1000, 2) : null,
    });
  } finally {
    await Promise.all(hosts.map((host) => kill(host.child)));
  }
}

async function main(): Promise<void> {
  const redis = await startRedis();
  try {
    if (process.env.BENCH_ONLY === 'coordinator') return await failoverCoordinator(redis);
    const workers = [1, 2, 4];
    const jobsPerUser = 4;
    const runs = [];
    for (const count of workers) runs.push(await scaleRun(redis, count, jobsPerUser));
    const throughput = runs.map((run) => round(run.throughput));
    print({
      bench: 'scale',
      workers,
      jobs: USERS * jobsPerUser,
      users: USERS,
      job_ms: JOB_MS,
      throughput_jobs_per_s: throughput,
      speedup_4_vs_1: round(throughput[2]! / throughput[0]!, 2),
      fairness_ok: runs.every((run) => run.fair),
      target_speedup: 3.5,
    });
    await failoverWorker(redis);
    await failoverCoordinator(redis);
  } finally {
    for (const child of children) child.kill('SIGKILL');
    await redis.stop(true);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
