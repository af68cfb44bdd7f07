/**
 * "Every failure has an owner", with real processes: a real redis-server, `reelbot serve` (the
 * coordinator) against the fake Discord, and `reelbot worker` hosts in their own folders with
 * nothing shared on disk. Each test breaks one thing the way it breaks in production (a cancel of
 * a job on another host, Redis killed -9 and started again, the coordinator killed -9 while a host
 * computes) and checks that every job ends once: delivered or cancelled once, charged once.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Job, Queue } from 'bullmq';
import { afterEach, expect, test } from 'vitest';
import { FakeDiscord, snowflake, type FakeUser, type RecordedRequest } from '../fakes/fake-discord.js';
import { removeDir, tempDir } from '../helpers/harness.js';
import { freePort, REDIS_MISSING, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { startServe, type ServeProcess } from '../helpers/serve-process.js';
import { startWorkerHost, waitUntil as until, type WorkerHostProcess } from '../helpers/worker-host.js';
import { bullConnection, scaleKeys } from '../../src/jobs/dispatch/redis-connection.js';
import { openDatabase } from '../../src/store/db.js';
import { JobRepo } from '../../src/store/job-repo.js';
import { QuotaLedger } from '../../src/store/quota-ledger.js';

const CANCEL_GRACE_MS = 2000;
const alice: FakeUser = { id: snowflake(), username: 'alice' };

const dirs: string[] = [];
const processes: { child: { kill(signal: NodeJS.Signals): unknown }; output(): string }[] = [];

const queues: Queue[] = [];
let redis: RedisServer | undefined;
let fake: FakeDiscord | undefined;
afterEach(async (context) => {
  // A failure on a slow CI machine is read from the processes' logs: print their ends.
  if (context.task.result?.state === 'fail') {
    for (const [index, process] of processes.entries()) console.error(`--- process ${index} ---\n${process.output().slice(-8000)}`);
  }
  for (const queue of queues.splice(0)) await queue.close().catch(() => undefined);
  for (const process of processes.splice(0)) process.child.kill('SIGKILL');
  await fake?.close();
  fake = undefined;
  await redis?.stop(true);
  redis = undefined;
  for (const dir of dirs.splice(0)) removeDir(dir);
});

/** `reelbot worker` in its own folder, removed after the test. */
function startWorker(redisUrl: string): WorkerHostProcess {
  const worker = startWorkerHost(redisUrl);
  dirs.push(worker.dir);
  processes.push(worker);
  return worker;
}

interface Coordinator {
  dir: string;
  env: Record<string, string>;
  bot: ServeProcess;
}

/** `reelbot serve` against the fake Discord with the BullMQ dispatch; `restart` starts it again on the same folder and port. */
async function coordinator(redisUrl: string, previous?: Coordinator): Promise<Coordinator> {
  let dir = previous?.dir;
  if (!dir) {
    dir = tempDir();
    dirs.push(dir);
  }
  fake ??= await FakeDiscord.start();
  const env = previous?.env ?? {
    REELBOT_DISCORD_TOKEN: 'fake-bot-token',
    REELBOT_DISCORD_API_URL: fake.apiUrl,
    REELBOT_REDIS_URL: redisUrl,
    // The same port after a restart: the hosts' upload URLs name it.
    REELBOT_HTTP_PORT: String(await freePort()),
    REELBOT_CANCEL_GRACE_MS: String(CANCEL_GRACE_MS),
    REELBOT_LEASE_TTL_MS: '3000',
    REELBOT_LOG_LEVEL: 'info',
  };
  const bot = startServe(dir, env);
  processes.push(bot);
  await until(() => bot.output().includes('reelbot is running'), 'serve to start');
  return { dir, env, bot };
}

function commandsRegistered(count: number): boolean {
  return fake!.requests.filter((r) => r.method === 'PUT' && r.path === `/applications/${fake!.applicationId}/commands`).length >= count;
}

function contentOf(request: RecordedRequest): string {
  return String((request.body as { content?: unknown } | null)?.content ?? '');
}

const isOriginal = (token: string) => (r: RecordedRequest) => r.method === 'PATCH' && r.path.endsWith(`/${token}/messages/@original`);
/** The requests that edited an interaction's reply into something matching `pattern`. */
function replies(interaction: { token: string }, pattern: RegExp): RecordedRequest[] {
  return fake!.requests.filter((r) => isOriginal(interaction.token)(r) && pattern.test(contentOf(r)));
}
const uploads = (interaction: { id: string; token: string }) => fake!.requestsFor(interaction).filter((r) => r.files.length > 0);

/** A user's slash command; resolves with the content of its answer (the first edit of its reply). */
async function command(name: string, options: Record<string, string | number> = {}): Promise<string> {
  const interaction = fake!.command(alice, name, options);
  fake!.sendInteraction(interaction);
  return contentOf(await fake!.waitForRequest((r) => isOriginal(interaction.token)(r) && r.status === 200, 30_000));
}

function video(prompt: string) {
  const interaction = fake!.slashCommand(alice, { prompt });
  fake!.sendInteraction(interaction);
  return interaction;
}

/** The job's state, attempts and ledger entries, read from the coordinator's database. */
function jobRow(dir: string, id: number) {
  const db = openDatabase(join(dir, 'reelbot.db'));
  try {
    const job = new JobRepo(db).get(id);
    return job && { state: job.state, attempts: job.attempts, ledger: new QuotaLedger(db).forJob(id).map((row) => row.entry) };
  } finally {
    db.close();
  }
}

/** When the job's final message went out, from the coordinator's database. */
function deliveredAt(dir: string, id: number): number | null {
  const db = openDatabase(join(dir, 'reelbot.db'));
  try {
    return new JobRepo(db).get(id)?.deliveredAt ?? null;
  } finally {
    db.close();
  }
}

/** The BullMQ job of a job attempt, as the worker hosts left it in Redis. */
async function bullJob(redisUrl: string, dir: string, id: number, attempt: number): Promise<Job | undefined> {
  const db = openDatabase(join(dir, 'reelbot.db'));
  let namespace: string;
  try {
    namespace = (db.prepare(`SELECT value FROM settings WHERE key = 'dispatch_namespace'`).get() as { value: string }).value;
  } finally {
    db.close();
  }
  // The built-in text-to-video set's queue: neither the coordinator nor the host sets a model folder.
  const queue = new Queue(scaleKeys('reelbot').queue('text2video', ''), { connection: bullConnection(redisUrl), prefix: 'reelbot' });
  queues.push(queue);
  return Job.fromId(queue, `${namespace}.${id}.${attempt}`);
}

/** The pids of the engine processes the host's pool started, in order (its log says "worker started"). */
function enginePids(worker: WorkerHostProcess): number[] {
  return [...worker.output().matchAll(/"workerPid":(\d+)[^\n]*"msg":"worker started"/g)].map((match) => Number(match[1]));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The job's progress reached the user: it runs on the host. */
const running = (interaction: { token: string }) => replies(interaction, /\d\/6 · denoising/).length > 0;

test.skipIf(REDIS_MISSING !== undefined)('a cancel of a job on another host stops it there within the grace period; an engine that ignores the cancel is killed after it', async () => {
  redis = await startRedis();
  const { dir } = await coordinator(redis.url);
  const worker = startWorker(redis.url);
  await until(() => worker.output().includes('is taking'), 'the worker host to start');
  await until(() => commandsRegistered(1), 'the slash commands');

  // An engine that stops at a cancel: the host ends the job as cancelled, long before it would have finished.
  const polite = video('a long corgi');
  await until(() => running(polite), 'job 1 to run on the host');
  const [politePid] = enginePids(worker);
  const cancelledAt = Date.now();
  expect(await command('cancel', { job: 1 })).toBe('Cancelling job #1…');
  await until(() => replies(polite, /was cancelled\. It did not count against your quota\./).length > 0, 'the user to hear of the cancel', 30_000);
  // Ended by the host (not by the coordinator giving up on it after the grace period), well before its 6 s were up.
  const stopped = await bullJob(redis.url, dir, 1, 1);
  expect(await stopped!.getState()).toBe('failed');
  expect(JSON.parse(stopped!.failedReason)).toMatchObject({ code: 'cancelled' });
  expect(stopped!.finishedOn! - cancelledAt).toBeLessThan(5000);
  expect(jobRow(dir, 1)).toEqual({ state: 'cancelled', attempts: 1, ledger: ['reserve', 'refund'] });

  // An engine that ignores it: the host kills its engine process once the grace period is over.
  const stubborn = video('a long stubborn corgi');
  await until(() => running(stubborn), 'job 2 to run on the host');
  const stubbornPid = enginePids(worker).at(-1)!;
  // The polite engine stopped within the grace period: its process was not killed, and it runs the next job.
  expect(stubbornPid).toBe(politePid);
  const stubbornCancelledAt = Date.now();
  expect(await command('cancel', { job: 2 })).toBe('Cancelling job #2…');
  await until(() => !alive(stubbornPid), 'the stubborn engine process to be killed', 30_000);
  const killedAfter = Date.now() - stubbornCancelledAt;
  expect(killedAfter).toBeGreaterThanOrEqual(CANCEL_GRACE_MS - 200);
  await until(() => replies(stubborn, /was cancelled\. It did not count against your quota\./).length > 0, 'the user to hear of the second cancel', 30_000);
  await until(async () => (await (await bullJob(redis!.url, dir, 2, 1))!.getState()) === 'failed', 'the host to fail job 2 as cancelled', 30_000);
  const killed = await bullJob(redis.url, dir, 2, 1);
  expect(JSON.parse(killed!.failedReason)).toMatchObject({ code: 'cancelled' });
  expect(jobRow(dir, 2)).toEqual({ state: 'cancelled', attempts: 1, ledger: ['reserve', 'refund'] });

  // The host is free again: a next job runs there on a fresh engine process.
  const next = video('a corgi surfing');
  await until(() => uploads(next).length > 0, 'job 3 to be delivered');
  expect(enginePids(worker).at(-1)).not.toBe(stubbornPid);
  // Each user heard once of each cancel, and no video of a cancelled job was delivered.
  expect(replies(polite, /was cancelled/)).toHaveLength(1);
  expect(replies(stubborn, /was cancelled/)).toHaveLength(1);
  expect(uploads(polite).concat(uploads(stubborn))).toEqual([]);
  expect(existsSync(join(dir, 'out', '2', 'a1', 'result.mp4'))).toBe(false);
}, 120_000);

test.skipIf(REDIS_MISSING !== undefined).each([
  { persist: false, what: 'with nothing it held' },
  { persist: true, what: 'with its data' },
])('Redis killed -9 and started again $what: the coordinator keeps admitting jobs and says why they wait; afterwards every job is delivered once and charged once', async ({ persist }) => {
  redis = await startRedis({ password: 'redis-pass', persist });
  const { dir, bot } = await coordinator(redis.url);
  const worker = startWorker(redis.url);
  await until(() => worker.output().includes('is taking'), 'the worker host to start');
  await until(() => commandsRegistered(1), 'the slash commands');

  // A job computing on the host when Redis goes away, for longer than the host's lock on it (2 s).
  const during = video('a long corgi');
  await until(() => running(during), 'job 1 to run on the host');
  await redis.stop(true);
  await until(() => bot.output().includes('Redis is unreachable'), 'the coordinator to log that Redis is unreachable', 30_000);

  // Jobs are still admitted into the database and answered; /queue says why they wait.
  const waiting = video('a corgi surfing');
  await until(() => replies(waiting, /Job #2\*\* is queued/).length > 0, 'job 2 to be admitted', 30_000);
  expect(await command('queue')).toContain('The job queue server (Redis) is unreachable: jobs are kept and start when it is back.');
  expect(jobRow(dir, 2)).toMatchObject({ state: 'queued', ledger: ['reserve'] });

  await redis.restart();
  await until(() => bot.output().includes('Redis is reachable again'), 'the coordinator to see Redis again', 30_000);
  await until(() => uploads(during).length > 0 && uploads(waiting).length > 0, 'both jobs to be delivered', 90_000);
  // The first job's run could not be completed in BullMQ: Redis forgot it, or kept it but the
  // host's lock expired meanwhile (BullMQ fails it as stalled). It was run again once, and only
  // that second run's video went out; the other job ran once.
  expect(jobRow(dir, 1)).toEqual({ state: 'succeeded', attempts: 2, ledger: ['reserve', 'settle'] });
  expect(existsSync(join(dir, 'out', '1', 'a2', 'result.mp4'))).toBe(true);
  if (!persist) expect(bot.output()).toContain('Redis lost the run of a job');
  expect(jobRow(dir, 2)).toEqual({ state: 'succeeded', attempts: 1, ledger: ['reserve', 'settle'] });
  expect(uploads(during)).toHaveLength(1);
  expect(uploads(waiting)).toHaveLength(1);
  expect(await command('queue')).not.toContain('unreachable');
  // The host said once that Redis was away and once that it is back, not at every reconnect.
  expect(worker.output()).toContain('worker host: Redis is reachable again');
  expect(worker.output().match(/ECONNREFUSED/g)?.length ?? 0).toBeLessThanOrEqual(2);
  for (const text of [bot.output(), worker.output()]) expect(text).not.toContain('redis-pass');
}, 150_000);

test.skipIf(REDIS_MISSING !== undefined)('the coordinator killed -9 while a host computes: after its restart the result is picked up, delivered once and charged once', async () => {
  redis = await startRedis();
  const first = await coordinator(redis.url);
  const worker = startWorker(redis.url);
  await until(() => worker.output().includes('is taking'), 'the worker host to start');
  await until(() => commandsRegistered(1), 'the slash commands');
  const computing = video('a long corgi');
  await until(() => running(computing), 'job 1 to run on the host');
  first.bot.child.kill('SIGKILL');
  await first.bot.exited;
  // The host goes on while no coordinator runs: its upload waits for the next one.
  const restarted = await coordinator(redis.url, first);
  await until(() => uploads(computing).length > 0, 'job 1 to be delivered after the restart', 90_000);
  expect(uploads(computing)[0]!.files[0]).toMatchObject({ contentType: 'video/mp4' });
  expect(restarted.bot.output()).toContain('following the run a worker host already has for this job');
  // Charged once, and the host's one run is what went out: no second run was started.
  expect(jobRow(first.dir, 1)).toMatchObject({ state: 'succeeded', ledger: ['reserve', 'settle'] });
  expect(readdirSync(join(first.dir, 'out', '1'))).toEqual(['a1']);
  expect(await bullJob(redis.url, first.dir, 1, 2)).toBeUndefined();
  // Delivered once: the coordinator recorded the delivery and, stopped, has nothing left to send.
  await until(() => deliveredAt(first.dir, 1) !== null, 'the delivery to be recorded');
  restarted.bot.child.kill('SIGTERM');
  expect(await restarted.bot.exited).toBe(0);
  expect(uploads(computing)).toHaveLength(1);
}, 150_000);
