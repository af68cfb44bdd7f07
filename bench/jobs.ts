/**
 * Job core benchmarks: `npm run bench:jobs`.
 *
 * Prints one JSON object per line (each with a "bench" key) and nothing else on stdout:
 *   lifecycle            5000 no-op jobs: submit → run on a real worker → settle, in a file DB
 *   submit_latency_busy  latency of 1000 submits while every worker computes
 *   fairness             a user with 1 job is not stuck behind a user with 20
 *   fairness_arrivals    a returning user is not stuck behind a stream of newcomers arriving over time
 *   quota_race           50 admissions by one user from 5 processes against jobsPerDay = 10
 * Everything runs in temp dirs with a real SQLite file and real worker processes running the fake
 * engine. Exits non-zero only when a bench crashes; a missed target is reported in its line.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadConfig, type Config } from '../src/config.js';
import { JobService } from '../src/jobs/job-service.js';
import type { Actor, JobEvent, JobRequest } from '../src/jobs/types.js';
import { createLogger } from '../src/log.js';
import { openDatabase, type Db } from '../src/store/db.js';
import type { RaceChildInit, RaceChildMessage, RaceParentMessage } from './quota-race-child.js';

const FAKE_ENGINE = fileURLToPath(new URL('../test/fakes/fake-engine.ts', import.meta.url));
const RACE_CHILD = fileURLToPath(new URL('./quota-race-child.ts', import.meta.url));
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** A tier with no limit that could refuse a bench job. */
const OPEN_QUOTA = {
  defaultTier: 'free',
  tiers: { free: { jobsPerDay: null, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 1000 } },
};

const tempDirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'reelbot-bench-'));
  tempDirs.push(dir);
  return dir;
}

function print(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function benchConfig(dir: string, overrides: Record<string, unknown> = {}): Config {
  return loadConfig({
    overrides: {
      dbPath: join(dir, 'reelbot.db'),
      outputDir: join(dir, 'outputs'),
      engineModule: FAKE_ENGINE,
      logLevel: 'silent',
      devices: ['cpu'],
      quota: OPEN_QUOTA,
      ...overrides,
    },
  });
}

interface Running {
  service: JobService;
  db: Db;
  config: Config;
  /** Resolves on the first future event that matches. */
  next(predicate: (event: JobEvent) => boolean, timeoutMs?: number): Promise<JobEvent>;
  close(): Promise<void>;
}

function startService(dir: string, overrides: Record<string, unknown> = {}): Running {
  const config = benchConfig(dir, overrides);
  const db = openDatabase(config.dbPath);
  const service = new JobService({ config, db, logger: createLogger('silent') });
  service.start();
  return {
    service,
    db,
    config,
    next(predicate, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          off();
          reject(new Error('timed out waiting for a job event'));
        }, timeoutMs);
        const off = service.onEvent((event) => {
          if (!predicate(event)) return;
          off();
          clearTimeout(timer);
          resolve(event);
        });
      });
    },
    async close() {
      await service.shutdown(0);
      db.close();
    },
  };
}

const actor = (externalId: string): Actor => ({ platform: 'discord', externalId });
const request = (externalId: string, params: Record<string, unknown>): JobRequest => ({
  actor: actor(externalId),
  kind: 'text2video',
  params: { prompt: 'a corgi surfing', ...params },
});

/** CPU time (ms) used so far by this process's direct children (the worker processes), Linux only. */
function childCpuMs(): Map<number, number> | null {
  const ticksPerMs = 100 / 1000; // USER_HZ is 100 on Linux
  const result = new Map<number, number>();
  try {
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      } catch {
        continue;
      }
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) !== process.pid) continue; // fields[1] is ppid
      result.set(Number(name), (Number(fields[11]) + Number(fields[12])) / ticksPerMs);
    }
  } catch {
    return null;
  }
  return result;
}

// ---------------------------------------------------------------------------------------------

async function benchLifecycle(): Promise<void> {
  const JOBS = 5000;
  const USERS = 100;
  const run = startService(tempDir());
  const { service, db } = run;
  try {
    // Warm-up: spawns the worker and loads the engine. The job fails on purpose so that its
    // reservation is refunded and the ledger holds only the timed jobs.
    const warm = await service.submit(request('warmup', { steps: 0, ms: 0, mode: 'fail' }));
    await run.next((event) => event.job.id === warm.job.id && event.type === 'failed');

    let succeeded = 0;
    let failed = 0;
    let workerSeconds = 0;
    let lastSucceededAt = 0;
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    service.onEvent((event) => {
      if (event.job.id <= warm.job.id) return;
      if (event.type === 'succeeded') {
        succeeded++;
        workerSeconds += event.gpuSeconds;
        lastSucceededAt = performance.now();
      } else if (event.type === 'failed' || event.type === 'cancelled') failed++;
      if (succeeded + failed === JOBS) resolveDone();
    });

    const params = { mode: 'noop' };
    const cpuBefore = process.cpuUsage();
    const firstSubmitAt = performance.now();
    for (let i = 0; i < JOBS; i++) {
      await service.submit(request(`user-${i % USERS}`, params));
      // Let the worker's messages in now and then, as submits arriving over a socket would.
      if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
    }
    const submitMs = performance.now() - firstSubmitAt;
    await withTimeout(done, 120_000, 'lifecycle: jobs did not finish in 120 s');
    const seconds = (lastSucceededAt - firstSubmitAt) / 1000;
    const cpu = process.cpuUsage(cpuBefore);

    const ledger = db.prepare(`SELECT sum(jobs) AS jobs, sum(gpu_seconds) AS gpu FROM quota_ledger`).get() as { jobs: number; gpu: number };
    const entries = db.prepare(`SELECT entry, count(*) AS n FROM quota_ledger GROUP BY entry`).all() as { entry: string; n: number }[];
    const jobGpu = (db.prepare(`SELECT sum(gpu_seconds) AS gpu FROM jobs WHERE state = 'succeeded'`).get() as { gpu: number }).gpu;
    const states = db.prepare(`SELECT state, count(*) AS n FROM jobs WHERE id > ? GROUP BY state`).all(warm.job.id) as { state: string; n: number }[];
    const jobsPerS = JOBS / seconds;
    print({
      bench: 'lifecycle',
      jobs: JOBS,
      users: USERS,
      jobs_per_s: round(jobsPerS, 1),
      seconds: round(seconds),
      submit_loop_ms: round(submitMs, 1),
      succeeded,
      failed,
      db_states: Object.fromEntries(states.map((row) => [row.state, row.n])),
      ledger_jobs: ledger.jobs,
      ledger_entries: Object.fromEntries(entries.map((row) => [row.entry, row.n])),
      ledger_gpu_matches_jobs: Math.abs(ledger.gpu - jobGpu) < 1e-6,
      workers: run.config.devices.length,
      // Where the time goes: this process's CPU per job, and the worker's own time per job (the
      // no-op engine call, as the worker measures it).
      main_cpu_ms_per_job: round((cpu.user + cpu.system) / 1000 / JOBS),
      worker_ms_per_job: round((workerSeconds * 1000) / Math.max(1, succeeded)),
      tmpdir: tmpdir(),
      target_jobs_per_s: 1000,
      met: jobsPerS >= 1000 && succeeded === JOBS && ledger.jobs === JOBS,
    });
  } finally {
    await run.close();
  }
}

async function benchSubmitLatencyBusy(): Promise<void> {
  const SUBMITS = 1000;
  const GAP_MS = 2;
  const run = startService(tempDir());
  const { service, config } = run;
  try {
    // Occupy every worker with a CPU-bound job that outlasts the measurement, and wait until each runs.
    // A job starts inside submit() when a worker is idle, so its events come before submit returns:
    // the busy jobs are told apart by their users.
    const isBusy = (event: JobEvent) => event.job.userExternalId.startsWith('busy-');
    const busyIds = new Set<number>();
    const startedIds = new Set<number>();
    const allStarted = new Promise<void>((resolve) => {
      service.onEvent((event) => {
        if (event.type === 'started' && isBusy(event)) {
          startedIds.add(event.job.id);
          if (startedIds.size === config.devices.length) resolve();
        }
      });
    });
    const finishedEarly: number[] = [];
    service.onEvent((event) => {
      if (isBusy(event) && (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled')) {
        finishedEarly.push(event.job.id);
      }
    });
    for (let i = 0; i < config.devices.length; i++) {
      const { job } = await service.submit(request(`busy-${i}`, { cpu: true, ms: 60_000, steps: 60 }));
      busyIds.add(job.id);
    }
    await withTimeout(allStarted, 30_000, 'submit_latency_busy: the CPU jobs did not start');
    // Give the workers time to spawn, load and get into the computation.
    await sleep(500);

    const loop = monitorEventLoopDelay({ resolution: 1 });
    const cpuBefore = childCpuMs();
    const measureStart = performance.now();
    loop.enable();
    const latencies: number[] = [];
    for (let i = 0; i < SUBMITS; i++) {
      const t0 = performance.now();
      await service.submit(request(`latency-user-${i}`, { steps: 0, ms: 0 }));
      latencies.push(performance.now() - t0);
      await sleep(GAP_MS);
    }
    loop.disable();
    const wallMs = performance.now() - measureStart;
    const cpuAfter = childCpuMs();
    let workerCpuMs: number | null = null;
    if (cpuBefore && cpuAfter) {
      workerCpuMs = 0;
      for (const [pid, after] of cpuAfter) workerCpuMs += after - (cpuBefore.get(pid) ?? 0);
    }
    const running = service.queue().running.map((entry) => entry.job.id);
    const busyThroughout = finishedEarly.length === 0 && [...busyIds].every((id) => running.includes(id));

    latencies.sort((a, b) => a - b);
    const p99 = percentile(latencies, 0.99);
    print({
      bench: 'submit_latency_busy',
      submits: SUBMITS,
      p50_ms: round(percentile(latencies, 0.5)),
      p99_ms: round(p99),
      max_ms: round(latencies[latencies.length - 1]!),
      mean_ms: round(latencies.reduce((a, b) => a + b, 0) / latencies.length),
      gap_ms: GAP_MS,
      wall_ms: round(wallMs, 1),
      workers: config.devices.length,
      workers_busy_throughout: busyThroughout,
      // CPU the worker processes used during the measurement, as a share of one core each.
      worker_cpu_share: workerCpuMs === null ? null : round(workerCpuMs / wallMs / config.devices.length, 2),
      event_loop_delay_p99_ms: round(loop.percentile(99) / 1e6),
      event_loop_delay_max_ms: round(loop.max / 1e6),
      target_p99_ms: 20,
      met: p99 < 20 && busyThroughout,
    });
  } finally {
    await run.close();
  }
}

async function benchFairness(): Promise<void> {
  const A_JOBS = 20;
  const run = startService(tempDir());
  const { service } = run;
  try {
    const starts: { user: 'A' | 'B'; id: number }[] = [];
    let finished = 0;
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    service.onEvent((event) => {
      if (event.type === 'started') starts.push({ user: event.job.userExternalId === 'user-b' ? 'B' : 'A', id: event.job.id });
      if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled') {
        if (++finished === A_JOBS + 1) resolveDone();
      }
    });
    for (let i = 0; i < A_JOBS; i++) {
      await service.submit(request('user-a', { ms: 20, steps: 1 }));
    }
    const b = await service.submit(request('user-b', { ms: 20, steps: 1 }));
    await withTimeout(done, 60_000, 'fairness: jobs did not finish in 60 s');

    // Rank among the starts that follow A's first (running) job: 1 = right after it.
    const firstA = starts.findIndex((start) => start.user === 'A');
    const bIndex = starts.findIndex((start) => start.user === 'B');
    const rank = bIndex - firstA;
    print({
      bench: 'fairness',
      ok: firstA === 0 && rank >= 1 && rank <= 2,
      b_start_rank: rank,
      b_position_at_submit: b.position,
      first_starts: starts.slice(0, 6).map((start) => `${start.user}#${start.id}`),
      a_jobs: A_JOBS,
    });
  } finally {
    await run.close();
  }
}

/**
 * Users arriving over time: R's first job runs, three newcomers queue, R submits again, and a new
 * user arrives every time a job starts (40 in all). R's second job must start after only the
 * newcomers who were already waiting. `max_wait_jobs` is, over every job, how many jobs started
 * between its submit and its own start.
 */
async function benchFairnessArrivals(): Promise<void> {
  const NEWCOMERS = 40;
  const run = startService(tempDir());
  const { service } = run;
  try {
    const startOrder: number[] = [];
    const startsAtSubmit = new Map<number, number>();
    const waits: number[] = [];
    let newcomers = 0;
    let finished = 0;
    let resolveDone!: () => void;
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    const submit = async (user: string): Promise<number> => {
      const before = startOrder.length;
      const { job } = await service.submit(request(user, { ms: 30, steps: 1 }));
      startsAtSubmit.set(job.id, before);
      return job.id;
    };
    const arrive = (): void => {
      if (newcomers >= NEWCOMERS) return;
      newcomers++;
      void submit(`newcomer-${newcomers}`);
    };
    let streaming = false;
    service.onEvent((event) => {
      if (event.type === 'started') {
        startOrder.push(event.job.id);
        const at = startsAtSubmit.get(event.job.id);
        if (at !== undefined) waits.push(startOrder.length - 1 - at);
        if (streaming) arrive();
      }
      if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled') {
        if (++finished === NEWCOMERS + 2) resolveDone();
      }
    });
    await submit('returning');
    for (let i = 0; i < 3; i++) arrive();
    const second = await submit('returning');
    streaming = true;
    await withTimeout(done, 120_000, 'fairness_arrivals: jobs did not finish in 120 s');
    const rank = startOrder.indexOf(second) - startsAtSubmit.get(second)!;
    const maxWait = Math.max(...waits);
    print({
      bench: 'fairness_arrivals',
      ok: rank <= 4 && maxWait <= 6,
      returning_user_start_rank: rank,
      max_wait_jobs: maxWait,
      newcomers: NEWCOMERS,
      jobs: startOrder.length,
    });
  } finally {
    await run.close();
  }
}

async function benchQuotaRace(): Promise<void> {
  const PROCESSES = 5;
  const PER_PROCESS = 10;
  const LIMIT = 10;
  const dir = tempDir();
  const quota = {
    defaultTier: 'free',
    tiers: { free: { jobsPerDay: LIMIT, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 1000 } },
  };
  const config = benchConfig(dir, { quota });
  // Create the file and apply the migrations once, before any child opens it.
  const db = openDatabase(config.dbPath);
  const children: ChildProcess[] = [];
  try {
    const results: Extract<RaceChildMessage, { type: 'done' }>[] = [];
    const ready: Promise<void>[] = [];
    const done: Promise<void>[] = [];
    for (let index = 0; index < PROCESSES; index++) {
      const child = fork(RACE_CHILD, [], {
        execArgv: ['--import', TSX_LOADER],
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      children.push(child);
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      ready.push(
        new Promise((resolve, reject) => {
          child.on('message', (message: RaceChildMessage) => {
            if (message.type === 'ready') resolve();
          });
          void exited.then((code) => reject(new Error(`quota race child ${index} exited (${code}) before it was ready`)));
        }),
      );
      done.push(
        new Promise((resolve, reject) => {
          child.on('message', (message: RaceChildMessage) => {
            if (message.type === 'done') {
              results.push(message);
              resolve();
            }
          });
          void exited.then((code) => reject(new Error(`quota race child ${index} exited (${code}) without a result`)));
        }),
      );
      const init: RaceChildInit = { dbPath: config.dbPath, quota, admissions: PER_PROCESS, user: 'racer', index };
      child.send({ type: 'init', init } satisfies RaceParentMessage);
    }
    await withTimeout(Promise.all(ready), 30_000, 'quota_race: children did not get ready');
    const at = Date.now() + 100;
    for (const child of children) child.send({ type: 'go', at } satisfies RaceParentMessage);
    await withTimeout(Promise.all(done), 30_000, 'quota_race: children did not finish');
    await Promise.all(children.map((child) => (child.exitCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', resolve)))));

    const accepted = results.reduce((sum, result) => sum + result.accepted.length, 0);
    const refused: Record<string, number> = {};
    for (const result of results) for (const [code, n] of Object.entries(result.refused)) refused[code] = (refused[code] ?? 0) + n;
    const errors = results.flatMap((result) => result.errors);
    const ledger = db
      .prepare(`SELECT count(*) AS rows, coalesce(sum(jobs), 0) AS jobs FROM quota_ledger WHERE entry = 'reserve'`)
      .get() as { rows: number; jobs: number };
    const jobRows = (db.prepare(`SELECT count(*) AS n FROM jobs`).get() as { n: number }).n;
    const windowMs = Math.max(...results.map((r) => r.lastAdmitAt)) - Math.min(...results.map((r) => r.firstAdmitAt));
    print({
      bench: 'quota_race',
      accepted,
      limit: LIMIT,
      ok: accepted === LIMIT && ledger.rows === LIMIT && ledger.jobs === LIMIT && jobRows === LIMIT && errors.length === 0,
      submits: PROCESSES * PER_PROCESS,
      processes: PROCESSES,
      accepted_per_process: results.map((result) => result.accepted.length),
      refused,
      errors: errors.length,
      lock_waits: results.reduce((sum, result) => sum + result.waited, 0),
      ledger_reserved_jobs: ledger.jobs,
      job_rows: jobRows,
      race_window_ms: windowMs,
    });
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    db.close();
  }
}

async function main(): Promise<void> {
  // `tsx bench/jobs.ts lifecycle fairness` runs only those benches (for profiling); default: all.
  const benches: Record<string, () => Promise<void>> = {
    lifecycle: benchLifecycle,
    submit_latency_busy: benchSubmitLatencyBusy,
    fairness: benchFairness,
    fairness_arrivals: benchFairnessArrivals,
    quota_race: benchQuotaRace,
  };
  const selected = process.argv.slice(2);
  for (const name of selected) if (!(name in benches)) throw new Error(`unknown bench "${name}" (known: ${Object.keys(benches).join(', ')})`);
  try {
    for (const [name, bench] of Object.entries(benches)) {
      if (selected.length === 0 || selected.includes(name)) await bench();
    }
  } finally {
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench crashed: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
