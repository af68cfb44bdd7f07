/**
 * Past one machine, with real processes: a real redis-server, `reelbot serve` (the coordinator)
 * against the fake Discord, and `reelbot worker` hosts, each in its own folder with its own data
 * and nothing shared on disk; files go over the coordinator's signed blob URLs.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { FakeDiscord, snowflake, type RecordedRequest } from '../fakes/fake-discord.js';
import { MP4_ENGINE } from '../fakes/mp4-engine.js';
import { removeDir, tempDir } from '../helpers/harness.js';
import { freePort, REDIS_MISSING, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startServe, type ServeProcess } from '../helpers/serve-process.js';
import { startWorkerHost, waitUntil as until, type WorkerHostProcess } from '../helpers/worker-host.js';
import { openDatabase } from '../../src/store/db.js';
import { JobRepo } from '../../src/store/job-repo.js';
import { QuotaLedger } from '../../src/store/quota-ledger.js';

const dirs: string[] = [];
const processes: { child: { kill(signal: NodeJS.Signals): unknown } }[] = [];
let redis: RedisServer | undefined;
let fake: FakeDiscord | undefined;
afterEach(async () => {
  for (const process of processes.splice(0)) process.child.kill('SIGKILL');
  await fake?.close();
  fake = undefined;
  await redis?.stop(true);
  redis = undefined;
  for (const dir of dirs.splice(0)) removeDir(dir);
});

/** `reelbot worker` in its own folder, removed after the test. */
function startWorker(redisUrl: string, env: Record<string, string> = {}): WorkerHostProcess {
  const worker = startWorkerHost(redisUrl, env);
  dirs.push(worker.dir);
  processes.push(worker);
  return worker;
}

async function coordinator(redisUrl: string, env: Record<string, string> = {}): Promise<{ bot: ServeProcess; dir: string }> {
  const dir = tempDir();
  dirs.push(dir);
  fake ??= await FakeDiscord.start();
  const bot = startServe(dir, {
    REELBOT_DISCORD_TOKEN: 'fake-bot-token',
    REELBOT_DISCORD_API_URL: fake.apiUrl,
    REELBOT_REDIS_URL: redisUrl,
    REELBOT_HTTP_PORT: String(await freePort()),
    REELBOT_LOG_LEVEL: 'info',
    ...env,
  });
  processes.push(bot);
  await until(() => bot.output().includes('reelbot is running'), 'serve to start');
  return { bot, dir };
}

const isOriginal = (token: string) => (r: RecordedRequest) => r.method === 'PATCH' && r.path.endsWith(`/${token}/messages/@original`);
const contentOf = (request: RecordedRequest) => String((request.body as { content?: unknown } | null)?.content ?? '');
const uploads = (interaction: { id: string; token: string }) => fake!.requestsFor(interaction).filter((r) => r.files.length > 0);

/** A slash command of alice's; resolves with the content of its answer. */
async function command(name: string): Promise<string> {
  const interaction = fake!.command({ id: 'alice-id', username: 'alice' }, name, {});
  fake!.sendInteraction(interaction);
  return contentOf(await fake!.waitForRequest((r) => isOriginal(interaction.token)(r) && r.status === 200, 30_000));
}

function jobRows(dir: string) {
  const db = openDatabase(join(dir, 'reelbot.db'));
  try {
    const jobs = new JobRepo(db);
    const ledger = new QuotaLedger(db);
    return jobs.listByState('succeeded').concat(jobs.listByState('failed'), jobs.listByState('running'), jobs.listByState('queued'))
      .map((job) => ({ ...job, ledger: ledger.forJob(job.id).map((row) => row.entry) }));
  } finally {
    db.close();
  }
}

test.skipIf(REDIS_MISSING !== undefined)('a /video through reelbot serve, rendered by a reelbot worker in another folder over a password-protected Redis, arrives as an MP4', async () => {
  redis = await startRedis({ password: 's3cret-pass' });
  const { bot, dir } = await coordinator(redis.url);
  const worker = startWorker(redis.url);
  await until(() => worker.output().includes('is taking'), 'the worker host to start');
  await fake!.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake!.applicationId}/commands`, 30_000);
  const interaction = fake!.slashCommand({ id: snowflake(), username: 'alice' }, { prompt: 'a corgi surfing' });
  fake!.sendInteraction(interaction);
  const upload = await fake!.waitForRequest(
    (r: RecordedRequest) => r.method === 'PATCH' && r.path.endsWith(`/${interaction.token}/messages/@original`) && r.files.length > 0,
    60_000,
  );
  expect(upload.files[0]).toMatchObject({ contentType: 'video/mp4' });
  expect(upload.files[0]!.data.subarray(4, 8).toString('latin1')).toBe('ftyp');
  const [job] = jobRows(dir);
  expect(job).toMatchObject({ state: 'succeeded', attempts: 1, ledger: ['reserve', 'settle'] });
  // The result came over the blob URL into the coordinator's folder; the worker kept nothing.
  expect(existsSync(join(dir, 'out', String(job!.id), 'a1', 'result.mp4'))).toBe(true);
  bot.child.kill('SIGTERM');
  worker.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
  for (const text of [bot.output(), worker.output()]) {
    expect(text).not.toContain('s3cret-pass');
    expect(text).not.toContain('fake-bot-token');
  }
}, 120_000);

test.skipIf(REDIS_MISSING !== undefined)('a worker host killed -9 mid-job: the job is retried once on the other host, charged and delivered once', async () => {
  redis = await startRedis();
  const { bot, dir } = await coordinator(redis.url);
  const first = startWorker(redis.url);
  await until(() => first.output().includes('is taking'), 'the first worker host');
  await fake!.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake!.applicationId}/commands`, 30_000);
  const interaction = fake!.slashCommand({ id: snowflake(), username: 'alice' }, { prompt: 'long corgi' });
  fake!.sendInteraction(interaction);
  await until(() => first.output().includes('"msg":"worker started"'), 'the first host to take the job');
  const second = startWorker(redis.url);
  await until(() => second.output().includes('is taking'), 'the second worker host');
  first.child.kill('SIGKILL');
  const upload = await fake!.waitForRequest(
    (r: RecordedRequest) => r.method === 'PATCH' && r.path.endsWith(`/${interaction.token}/messages/@original`) && r.files.length > 0,
    60_000,
  );
  expect(upload.files[0]).toMatchObject({ contentType: 'video/mp4' });
  const [job] = jobRows(dir);
  expect(job).toMatchObject({ state: 'succeeded', attempts: 2, ledger: ['reserve', 'settle'] });
  // Only the second attempt's result arrived; the killed host's never did.
  expect(readdirSync(join(dir, 'out', String(job!.id), 'a1'))).toEqual([]);
  expect(readdirSync(join(dir, 'out', String(job!.id), 'a2'))).toEqual(['result.mp4']);
  // Delivered once: one upload to the interaction.
  expect(fake!.requestsFor(interaction).filter((r) => r.files.length > 0)).toHaveLength(1);
  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
}, 120_000);

test.skipIf(REDIS_MISSING !== undefined)('serve with REELBOT_REDIS_URL and REELBOT_DEVICES runs a worker host of its own: a /video is delivered with no reelbot worker anywhere', async () => {
  redis = await startRedis();
  const { bot, dir } = await coordinator(redis.url, { REELBOT_DEVICES: 'cpu', REELBOT_ENGINE_MODULE: MP4_ENGINE });
  expect(bot.output()).toContain('this machine is one of them (1 worker: cpu)');
  await fake!.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake!.applicationId}/commands`, 30_000);
  const interaction = fake!.slashCommand({ id: snowflake(), username: 'alice' }, { prompt: 'a corgi surfing' });
  fake!.sendInteraction(interaction);
  const upload = await fake!.waitForRequest((r) => isOriginal(interaction.token)(r) && r.files.length > 0, 60_000);
  expect(upload.files[0]!.data.subarray(4, 8).toString('latin1')).toBe('ftyp');
  const [job] = jobRows(dir);
  // It went through BullMQ like any host's job: the result came over the blob URL into the coordinator's folder.
  expect(job).toMatchObject({ state: 'succeeded', attempts: 1, ledger: ['reserve', 'settle'] });
  expect(existsSync(join(dir, 'out', String(job!.id), 'a1', 'result.mp4'))).toBe(true);
  // The drain stops the host in this process too, and the process exits by itself.
  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
  expect(bot.output()).toContain('"msg":"worker host started"');
}, 120_000);

test.skipIf(REDIS_MISSING !== undefined)('serve with REELBOT_REDIS_URL and no REELBOT_DEVICES runs no worker: a job waits until a reelbot worker joins', async () => {
  redis = await startRedis();
  const { bot, dir } = await coordinator(redis.url, { REELBOT_ENGINE_MODULE: MP4_ENGINE });
  expect(bot.output()).toContain('jobs wait for worker hosts');
  expect(bot.output()).not.toContain('"msg":"worker host started"');
  await fake!.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake!.applicationId}/commands`, 30_000);
  const interaction = fake!.slashCommand({ id: snowflake(), username: 'alice' }, { prompt: 'a corgi surfing' });
  fake!.sendInteraction(interaction);
  await fake!.waitForRequest((r) => isOriginal(interaction.token)(r) && /is queued/.test(contentOf(r)), 30_000);
  // A job of the fake engine takes well under a second; three seconds later it still waits.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  expect(jobRows(dir)).toMatchObject([{ state: 'queued', attempts: 0 }]);
  const queue = await command('queue');
  expect(queue).toContain('No worker host is connected: jobs start when one is.');
  // It keeps its place in line (first), not shown running on a slot that is not there.
  expect(queue).toContain('Running (0)');
  expect(queue).toMatch(/\n1\. #1 /);
  expect(uploads(interaction)).toEqual([]);
  const worker = startWorker(redis.url);
  await until(() => uploads(interaction).length > 0, 'the job to be delivered once a worker host joined');
  expect(jobRows(dir)).toMatchObject([{ state: 'succeeded', attempts: 1 }]);
  expect(worker.output()).toContain('"msg":"worker started"');
  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
}, 120_000);
