/**
 * Slack ack benchmark: `npm run bench:slack`.
 *
 * Prints one JSON line: {"bench":"slack_ack","commands":200,"p50_ms":…,"p99_ms":…,"lost":0,"duplicates":0}
 *
 * A real SlackAdapter (Bolt in Socket Mode) and a real JobService on a SQLite file, with a real
 * worker process kept busy by a long CPU-bound job; the fake Slack runs in its own process
 * (bench/slack-fake-child.ts), as Slack is on another machine. 200 `/video` slash commands are sent
 * through its WebSocket as fast as possible, each redelivered once right after as a retry (same
 * payload, `retry_attempt: 1`). Latency is from the fake's send of an envelope to its receipt of
 * the ack, over all 400 envelopes; `lost` counts envelopes not acked within 10 s; `duplicates`
 * counts jobs beyond 200. Target: p99 < 250 ms, duplicates 0.
 */
import { fork } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SlackAdapter } from '../src/bots/slack/slack-adapter.js';
import { loadConfig } from '../src/config.js';
import { resolveFfmpegPaths } from '../src/media/ffmpeg-paths.js';
import { JobService } from '../src/jobs/job-service.js';
import { createLogger } from '../src/log.js';
import { openDatabase } from '../src/store/db.js';
import { APP_TOKEN, BOT_TOKEN } from '../test/fakes/fake-slack.js';
import type { FakeChildCommand, FakeChildMessage } from './slack-fake-child.js';

const FAKE_ENGINE = fileURLToPath(new URL('../test/fakes/fake-engine.ts', import.meta.url));
const FAKE_CHILD = fileURLToPath(new URL('./slack-fake-child.ts', import.meta.url));
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const COMMANDS = 200;
const USERS = 20;
const ACK_WAIT_MS = 10_000;

/** A tier with no limit that could refuse a bench job. */
const OPEN_QUOTA = {
  defaultTier: 'free',
  tiers: { free: { jobsPerDay: null, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 1000 } },
};

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

const round = (value: number, digits = 1): number => Number(value.toFixed(digits));

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'reelbot-bench-slack-'));
  const child = fork(FAKE_CHILD, [], { execArgv: ['--import', TSX_LOADER], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  const next = <T extends FakeChildMessage['type']>(type: T) =>
    new Promise<Extract<FakeChildMessage, { type: T }>>((resolve) => {
      const onMessage = (message: FakeChildMessage) => {
        if (message.type !== type) return;
        child.off('message', onMessage);
        resolve(message as Extract<FakeChildMessage, { type: T }>);
      };
      child.on('message', onMessage);
    });
  const command = (message: FakeChildCommand) => child.send(message);
  const ready = await next('ready');
  const connected = next('connected');

  const config = loadConfig({
    overrides: {
      dbPath: join(dir, 'reelbot.db'),
      outputDir: join(dir, 'outputs'),
      engineModule: FAKE_ENGINE,
      logLevel: 'silent',
      quota: OPEN_QUOTA,
      jobs: { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 10_000, cancelGraceMs: 200, shutdownGraceMs: 500, timeoutSeconds: 600 },
    },
  });
  const db = openDatabase(config.dbPath);
  const logger = createLogger('silent');
  const jobs = new JobService({ config, db, logger });
  jobs.start();
  const { ffmpeg, ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const adapter = new SlackAdapter({
    botToken: BOT_TOKEN,
    appToken: APP_TOKEN,
    apiUrl: ready.apiUrl,
    jobs,
    logger,
    ffmpegPath: ffmpeg,
    ffprobePath: ffprobe,
    tempDir: join(dir, 'tmp'),
    inputDir: join(dir, 'inputs'),
    maxInputBytes: config.input.maxBytes,
  });
  try {
    await adapter.start();
    await connected;
    // Keep the worker busy computing for the whole run, so the commands queue behind it.
    const busyStarted = new Promise<void>((resolve) => {
      const off = jobs.onEvent((event) => {
        if (event.type === 'started' || event.type === 'progress') {
          off();
          resolve();
        }
      });
    });
    await jobs.submit({ actor: { platform: 'cli', externalId: 'bench' }, kind: 'text2video', params: { prompt: 'busy', ms: 120_000, cpu: true, steps: 1000 } });
    await busyStarted;

    const warmedUp = next('warmed-up');
    command({ type: 'warm-up' });
    await warmedUp;

    const result = next('result');
    command({ type: 'burst', commands: COMMANDS, users: USERS, ackWaitMs: ACK_WAIT_MS });
    const { latencies, lost } = await result;
    latencies.sort((a, b) => a - b);
    const made = db.prepare(`SELECT count(*) FROM jobs JOIN users ON users.id = jobs.user_id WHERE jobs.platform = 'slack' AND users.external_id != 'UBENCHWARM'`).pluck().get() as number;
    process.stdout.write(
      `${JSON.stringify({
        bench: 'slack_ack',
        commands: COMMANDS,
        p50_ms: round(percentile(latencies, 0.5)),
        p99_ms: round(percentile(latencies, 0.99)),
        lost,
        duplicates: Math.max(0, made - COMMANDS),
      })}\n`,
    );
  } finally {
    await adapter.stop();
    await jobs.shutdown(0);
    db.close();
    command({ type: 'close' });
    await new Promise((resolve) => child.once('exit', resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
