/**
 * "A job only goes to a worker that can run it", with real processes: a real redis-server,
 * `reelbot serve` (the coordinator) against the fake Discord, and `reelbot worker` hosts whose model
 * folders have different names. The coordinator's model folders only name the models (they are
 * not on its machine); a job goes to the BullMQ queue of its kind and model, where only hosts
 * with that model listen.
 */
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { FakeDiscord, snowflake, type FakeUser, type RecordedRequest } from '../fakes/fake-discord.js';
import { removeDir, tempDir } from '../helpers/harness.js';
import { freePort, REDIS_MISSING, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startServe, type ServeProcess } from '../helpers/serve-process.js';
import { startWorkerHost, waitUntil as until, type WorkerHostProcess } from '../helpers/worker-host.js';
import { kindModels, scaleKeys } from '../../src/jobs/dispatch/redis-connection.js';
import { openDatabase } from '../../src/store/db.js';
import { JobRepo } from '../../src/store/job-repo.js';

const alice: FakeUser = { id: snowflake(), username: 'alice' };
const bob: FakeUser = { id: snowflake(), username: 'bob' };

const dirs: string[] = [];
const processes: { child: { kill(signal: NodeJS.Signals): unknown }; output(): string }[] = [];
let redis: RedisServer | undefined;
let fake: FakeDiscord | undefined;
afterEach(async (context) => {
  if (context.task.result?.state === 'fail') {
    for (const [index, process] of processes.entries()) console.error(`--- process ${index} ---\n${process.output().slice(-8000)}`);
  }
  for (const process of processes.splice(0)) process.child.kill('SIGKILL');
  await fake?.close();
  fake = undefined;
  await redis?.stop(true);
  redis = undefined;
  for (const dir of dirs.splice(0)) removeDir(dir);
});

/** A `reelbot worker` whose model folders (in its own folder, relative) have these names. */
async function host(redisUrl: string, model: string, editModel: string, args: string[] = []): Promise<WorkerHostProcess> {
  const worker = startWorkerHost(redisUrl, { REELBOT_MODEL_DIR: join('models', model), REELBOT_EDIT_MODEL_DIR: join('models', editModel) }, args);
  dirs.push(worker.dir);
  processes.push(worker);
  await until(() => worker.output().includes('is taking'), `the ${model} host to start`);
  return worker;
}

/** The coordinator: its model folders name sd15 and ip2p, in a folder that does not exist on its machine. */
async function coordinator(redisUrl: string): Promise<{ bot: ServeProcess; dir: string }> {
  const dir = tempDir();
  dirs.push(dir);
  fake = await FakeDiscord.start();
  const bot = startServe(dir, {
    REELBOT_DISCORD_TOKEN: 'fake-bot-token',
    REELBOT_DISCORD_API_URL: fake.apiUrl,
    REELBOT_REDIS_URL: redisUrl,
    REELBOT_HTTP_PORT: String(await freePort()),
    REELBOT_MODEL_DIR: '/nowhere/on/this/machine/sd15',
    REELBOT_EDIT_MODEL_DIR: '/nowhere/on/this/machine/ip2p',
    REELBOT_LOG_LEVEL: 'info',
  });
  processes.push(bot);
  await until(() => bot.output().includes('reelbot is running'), 'serve to start');
  await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake!.applicationId}/commands`, 30_000);
  return { bot, dir };
}

const isOriginal = (token: string) => (r: RecordedRequest) => r.method === 'PATCH' && r.path.endsWith(`/${token}/messages/@original`);
const contentOf = (request: RecordedRequest) => String((request.body as { content?: unknown } | null)?.content ?? '');
const uploads = (interaction: { id: string; token: string }) => fake!.requestsFor(interaction).filter((r) => r.files.length > 0);

function video(user: FakeUser, prompt: string) {
  const interaction = fake!.slashCommand(user, { prompt });
  fake!.sendInteraction(interaction);
  return interaction;
}

async function queueText(): Promise<string> {
  const interaction = fake!.command(alice, 'queue', {});
  fake!.sendInteraction(interaction);
  return contentOf(await fake!.waitForRequest((r) => isOriginal(interaction.token)(r) && r.status === 200, 30_000));
}

/** The job ids a host ran (its log names each job it takes). */
function ranOn(worker: WorkerHostProcess): number[] {
  return [...worker.output().matchAll(/"jobId":(\d+)[^\n]*"msg":"running a job for the coordinator"/g)].map((match) => Number(match[1]));
}

function jobState(dir: string, id: number): string | undefined {
  const db = openDatabase(join(dir, 'reelbot.db'));
  try {
    return new JobRepo(db).get(id)?.state;
  } finally {
    db.close();
  }
}

test('a queue per kind and model: readable names without a colon (BullMQ refuses one), the built-in set apart from any folder name', () => {
  const { queue } = scaleKeys('reelbot');
  expect(kindModels({ modelDir: '/models/sd15/', editModelDir: '' })).toEqual({ text2video: 'sd15', edit: '' });
  expect(queue('text2video', 'sd15')).toBe('jobs-text2video@sd15');
  expect(queue('edit', '')).toBe('jobs-edit@[built-in]');
  expect(queue('text2video', 'sd:1.5 ö')).toBe('jobs-text2video@sd%3A1.5%20%C3%B6');
  const names = ['', 'built-in', '[built-in]', 'a:b', 'a%3Ab', 'A', 'a'].map((model) => queue('text2video', model));
  expect(new Set(names).size).toBe(names.length);
  for (const name of names) expect(name).not.toContain(':');
});

test.skipIf(REDIS_MISSING !== undefined)('jobs go only to the host with the coordinator\'s model; the other host\'s slot does not count, so positions stay exact', async () => {
  redis = await startRedis();
  const { bot, dir } = await coordinator(redis.url);
  const sd15 = await host(redis.url, 'sd15', 'ip2p');
  const tiny = await host(redis.url, 'tiny', 'tiny-edit');
  const first = video(alice, 'a long corgi');
  await until(() => ranOn(sd15).includes(1), 'job 1 to run on the sd15 host');
  const second = video(alice, 'a slow corgi');
  const third = video(bob, 'a slow cat');
  await until(() => jobState(dir, 3) === 'queued', 'job 3 to be admitted');
  // One slot has the model: one job runs; bob's job is next (round robin), then alice's second.
  const queue = await queueText();
  expect(queue).toContain('Running (1)');
  expect(queue).toMatch(/• #1 /);
  expect(queue).toContain('Waiting (2)');
  expect(queue).toMatch(/\n1\. #3 [^\n]*\n2\. #2 /);
  expect(queue).not.toContain('No worker host has');
  await until(() => [first, second, third].every((interaction) => uploads(interaction).length === 1), 'the three jobs to be delivered', 90_000);
  expect(ranOn(sd15)).toEqual([1, 3, 2]);
  expect(ranOn(tiny)).toEqual([]);
  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
}, 150_000);

test.skipIf(REDIS_MISSING !== undefined)('with only a host of another model, a job waits, /queue says which model is missing, the log says it once; a host with the model runs it', async () => {
  redis = await startRedis();
  const { bot, dir } = await coordinator(redis.url);
  const tiny = await host(redis.url, 'tiny', 'tiny-edit');
  const interaction = video(alice, 'a corgi surfing');
  await fake!.waitForRequest((r) => isOriginal(interaction.token)(r) && /is queued/.test(contentOf(r)), 30_000);
  const missing =
    'No worker host has the model sd15 for text2video; 1 host has tiny. No worker host has the model ip2p for edit; 1 host has tiny-edit. Those jobs wait for a host with it.';
  await until(() => bot.output().includes(missing), 'the coordinator to see the host and log what is missing');
  const queue = await queueText();
  expect(queue).toContain(missing);
  // No slot can run it: it keeps its place in line (first), not shown running.
  expect(queue).toContain('Running (0)');
  expect(queue).toMatch(/\n1\. #1 /);
  expect(queue).not.toContain('The queue is paused');
  // Several refreshes of the adverts (every 500 ms) later: still waiting, logged once.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  expect(jobState(dir, 1)).toBe('queued');
  expect(ranOn(tiny)).toEqual([]);
  expect(bot.output().split(missing).length - 1).toBe(1);
  const sd15 = await host(redis.url, 'sd15', 'ip2p');
  await until(() => uploads(interaction).length === 1, 'the job to be delivered by the sd15 host');
  expect(ranOn(sd15)).toEqual([1]);
  expect(ranOn(tiny)).toEqual([]);
  expect(await queueText()).not.toContain('No worker host has');
  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
}, 150_000);

test.skipIf(REDIS_MISSING !== undefined)('with only a host that runs edit jobs, a text2video job waits at position 1 (not running) and /queue says why; a host that runs text2video runs it', async () => {
  redis = await startRedis();
  const { bot, dir } = await coordinator(redis.url);
  const editOnly = await host(redis.url, 'sd15', 'ip2p', ['--kinds', 'edit']);
  const interaction = video(alice, 'a corgi surfing');
  await fake!.waitForRequest((r) => isOriginal(interaction.token)(r) && /is queued/.test(contentOf(r)), 30_000);
  const noHost = 'No worker host runs text2video jobs: they wait for one.';
  await until(() => bot.output().includes(noHost), 'the coordinator to see the edit-only host');
  // The host's slot counts (it runs edit jobs), but not for this job: it keeps its place, not shown running.
  const queue = await queueText();
  expect(queue).toContain(noHost);
  expect(queue).toContain('Running (0)');
  expect(queue).toMatch(/\n1\. #1 /);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  expect(jobState(dir, 1)).toBe('queued');
  expect(ranOn(editOnly)).toEqual([]);
  const both = await host(redis.url, 'sd15', 'ip2p');
  await until(() => uploads(interaction).length === 1, 'the job to be delivered by the host that runs text2video');
  expect(ranOn(both)).toEqual([1]);
  expect(await queueText()).not.toContain(noHost);
  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
}, 150_000);
