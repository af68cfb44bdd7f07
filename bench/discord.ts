/**
 * Discord ack benchmark: `npm run bench:discord`.
 *
 * Prints one JSON line on stdout:
 *   discord_ack  200 `/video` interactions sent through the fake Discord's gateway as fast as it
 *                can write them, while every worker computes a long job. Latency is from the
 *                fake's dispatch of INTERACTION_CREATE to its receipt of the defer callback
 *                (POST /interactions/:id/:token/callback). 20 of them are delivered a second time
 *                (same id) right after the burst. lost = interactions never deferred; duplicates =
 *                jobs made beyond one per interaction.
 *                BENCH_WORKERS sets how many workers compute (default 1, reelbot's default).
 *                bot_cpu_ms is the CPU time the bot process used from the first interaction to
 *                the last first ack. BENCH_CPU_PROF=<dir> writes V8 CPU profiles of the bot (and
 *                its workers) there, to see where that time goes.
 * The bot is the real `reelbot serve` in its own process (so the fake's timestamps do not wait on
 * the bot's event loop), with a real SQLite file and real worker processes running
 * bench/discord-engine.ts. Exits non-zero only when the bench crashes; a missed target is
 * reported in its line.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { FakeDiscord, snowflake, type FakeUser, type RecordedRequest } from '../test/fakes/fake-discord.js';

const BIN = fileURLToPath(new URL('../bin/reelbot.js', import.meta.url));
const ENGINE = fileURLToPath(new URL('./discord-engine.ts', import.meta.url));
const INTERACTIONS = 200;
const USERS = 20;
const REDELIVERED = 20;
/** Worker processes, each computing a long job during the burst: one, as reelbot's default `devices: ['cpu']` and bench:jobs. BENCH_WORKERS=2 saturates both cores of a 2-core machine. */
const WORKERS = Number(process.env.BENCH_WORKERS ?? 1);
const TARGET_P99_MS = 250;

const round = (value: number, digits = 1): number => Number(value.toFixed(digits));

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function print(line: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** Polls `check` every 20 ms until it is true or `ms` have passed; returns whether it came true. */
async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

function readJobs(dbPath: string): { total: number; running: number } {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT state, COUNT(*) AS n FROM jobs GROUP BY state').all() as { state: string; n: number }[];
    return { total: rows.reduce((sum, row) => sum + row.n, 0), running: rows.find((row) => row.state === 'running')?.n ?? 0 };
  } finally {
    db.close();
  }
}

/** CPU time (user + system) the process has used so far, from /proc (Linux), in ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

async function benchAck(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'reelbot-bench-discord-'));
  const dbPath = join(dir, 'reelbot.db');
  const fake = await FakeDiscord.start();
  const bot = spawn(process.execPath, [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-interval', '200', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : []), BIN, 'serve'], {
    env: {
      PATH: process.env.PATH,
      REELBOT_DB_PATH: dbPath,
      REELBOT_OUTPUT_DIR: join(dir, 'out'),
      REELBOT_LOG_LEVEL: 'error',
      REELBOT_ENGINE_MODULE: ENGINE,
      REELBOT_DEVICES: Array.from({ length: WORKERS }, () => 'cpu').join(','),
      REELBOT_SHUTDOWN_GRACE_MS: '0',
      REELBOT_QUOTA_TIERS: JSON.stringify({ free: { jobsPerDay: null, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 1000 } }),
      REELBOT_DISCORD_TOKEN: 'bench-bot-token',
      REELBOT_DISCORD_API_URL: fake.apiUrl,
      BENCH_JOB_MS: '120000',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  bot.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(bot, 'exit');
  const isAck = (r: RecordedRequest) => r.method === 'POST' && /^\/interactions\/\d+\/[^/]+\/callback$/.test(r.path);
  try {
    await fake.waitForRequest((r) => r.method === 'PUT' && r.path.endsWith('/commands'), 60_000);

    // Occupy every worker with a long computing job first.
    const warm: FakeUser = { id: snowflake(), username: 'warm-up' };
    for (let i = 0; i < WORKERS; i++) fake.sendInteraction(fake.slashCommand(warm, { prompt: `keep the worker busy ${i}` }));
    if (!(await until(() => readJobs(dbPath).running === WORKERS, 60_000))) throw new Error(`the workers did not start: ${stderr}`);

    const users: FakeUser[] = Array.from({ length: USERS }, (_, i) => ({ id: snowflake(), username: `user-${i}` }));
    const interactions = Array.from({ length: INTERACTIONS }, (_, i) => fake.slashCommand(users[i % USERS]!, { prompt: `a corgi number ${i}` }));
    const cpuBefore = cpuMs(bot.pid!);
    const sentAt = new Map<string, number>();
    const acksBefore = fake.requests.filter(isAck).length;
    for (const interaction of interactions) {
      sentAt.set(interaction.id, Date.now());
      fake.sendInteraction(interaction);
    }
    // Redeliveries of the same interaction ids, as after a gateway resume.
    for (let i = 0; i < REDELIVERED; i++) fake.sendInteraction(interactions[i * Math.floor(INTERACTIONS / REDELIVERED)]!);

    const firstAck = new Map<string, number>();
    const collect = (): boolean => {
      for (const request of fake.requests) {
        if (!isAck(request)) continue;
        const id = request.path.split('/')[2]!;
        if (sentAt.has(id) && !firstAck.has(id)) firstAck.set(id, request.at);
      }
      return firstAck.size === INTERACTIONS;
    };
    await until(collect, 15_000);
    const burstCpuMs = cpuMs(bot.pid!) - cpuBefore;
    // Let the redeliveries and the queued edits finish before counting jobs.
    await until(() => readJobs(dbPath).total >= INTERACTIONS + WORKERS && fake.requests.filter(isAck).length >= acksBefore + INTERACTIONS + REDELIVERED, 15_000);
    await sleep(500);
    const jobs = readJobs(dbPath);

    const latencies = [...firstAck].map(([id, at]) => at - sentAt.get(id)!).sort((a, b) => a - b);
    const lost = INTERACTIONS - firstAck.size;
    const p99 = latencies.length === 0 ? Number.NaN : percentile(latencies, 0.99);
    const duplicates = Math.max(0, jobs.total - WORKERS - INTERACTIONS);
    print({
      bench: 'discord_ack',
      interactions: INTERACTIONS,
      p50_ms: latencies.length === 0 ? null : round(percentile(latencies, 0.5)),
      p99_ms: Number.isNaN(p99) ? null : round(p99),
      lost,
      duplicates,
      bot_cpu_ms: burstCpuMs,
      max_ms: latencies.length === 0 ? null : round(latencies.at(-1)!),
      redelivered: REDELIVERED,
      jobs_made: jobs.total - WORKERS,
      workers: WORKERS,
      workers_busy: jobs.running === WORKERS,
      target_p99_ms: TARGET_P99_MS,
      met: lost === 0 && duplicates === 0 && jobs.total - WORKERS === INTERACTIONS && p99 < TARGET_P99_MS,
    });
  } finally {
    bot.kill('SIGTERM');
    const timer = setTimeout(() => bot.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await benchAck();
