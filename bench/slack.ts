/**
 * Slack ack benchmark: `npm run bench:slack`.
 *
 * Prints one JSON line: {"bench":"slack_ack","commands":200,"p50_ms":…,"p99_ms":…,"lost":0,"duplicates":0}
 *
 * A real SlackAdapter (Bolt in Socket Mode) on the fake Slack, a real JobService on a SQLite file
 * with a real worker process kept busy by a long CPU-bound job. 200 `/video` slash commands are
 * sent through the fake's WebSocket as fast as possible, each redelivered once right after as a
 * retry (same payload, `retry_attempt: 1`). Latency is from the fake's send of an envelope to its
 * receipt of the ack, over all 400 envelopes; `lost` counts envelopes never acked within 10 s;
 * `duplicates` counts jobs beyond 200. Target: p99 < 250 ms, duplicates 0.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SlackAdapter } from '../src/bots/slack/slack-adapter.js';
import { loadConfig } from '../src/config.js';
import { resolveFfmpegPaths } from '../src/engine/video/ffmpeg-paths.js';
import { JobService } from '../src/jobs/job-service.js';
import { createLogger } from '../src/log.js';
import { openDatabase } from '../src/store/db.js';
import { APP_TOKEN, BOT_TOKEN, FakeSlack, type Ack, type SentEnvelope } from '../test/fakes/fake-slack.js';

const FAKE_ENGINE = fileURLToPath(new URL('../test/fakes/fake-engine.ts', import.meta.url));
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

async function ackOrTimeout(sent: SentEnvelope): Promise<Ack | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ACK_WAIT_MS)));
  try {
    return await Promise.race([sent.ack, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'reelbot-bench-slack-'));
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
  const fake = await FakeSlack.start();
  const { ffmpeg, ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  const adapter = new SlackAdapter({
    botToken: BOT_TOKEN,
    appToken: APP_TOKEN,
    apiUrl: fake.apiUrl,
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
    await fake.connected();
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
    const sent: SentEnvelope[] = [];
    for (let i = 0; i < COMMANDS; i++) {
      const payload = fake.slashPayload('/video', `a corgi surfing, take ${i} --frames 8`, { id: `UBENCH${String(i % USERS).padStart(3, '0')}` });
      sent.push(fake.sendEnvelope('slash_commands', payload));
      sent.push(fake.sendEnvelope('slash_commands', payload, { retry_attempt: 1, retry_reason: 'timeout' }));
    }
    const acks = await Promise.all(sent.map(ackOrTimeout));
    const latencies = acks.flatMap((ack, index) => (ack === undefined ? [] : [ack.at - sent[index]!.at])).sort((a, b) => a - b);
    const lost = acks.filter((ack) => ack === undefined).length;
    const made = db.prepare(`SELECT count(*) FROM jobs WHERE platform = 'slack'`).pluck().get() as number;
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
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
