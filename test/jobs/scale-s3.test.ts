/**
 * The S3-compatible blob transport with real processes: `reelbot serve` with REELBOT_S3_* and no
 * HTTP port at all, a `reelbot worker` in another folder that has neither the bucket's keys nor a
 * way to the coordinator except Redis and the presigned URLs it is handed, and a fake S3 that
 * checks those URLs as S3 does. A /video's result and an /edit's clip and result go through the
 * bucket; the coordinator checks what arrives against the sha256 and size the host reported, and
 * leaves the bucket empty.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, expect, test } from 'vitest';
import { FakeDiscord, snowflake, type RecordedRequest } from '../fakes/fake-discord.js';
import { FakeS3 } from '../fakes/fake-s3.js';
import { MP4_ENGINE } from '../fakes/mp4-engine.js';
import { removeDir, tempDir } from '../helpers/harness.js';
import { REDIS_MISSING, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { BIN, startServe, type ServeProcess } from '../helpers/serve-process.js';
import { waitUntil as until } from '../helpers/worker-host.js';
import { openDatabase } from '../../src/store/db.js';
import { JobRepo } from '../../src/store/job-repo.js';

const S3_SECRET = 'fake/S3+secret/never-logged';
const s3Settings = { bucket: 'reelbot-blobs', region: 'eu-west-3', accessKeyId: 'AKIAREELBOTTEST', secretAccessKey: S3_SECRET };
const alice = { id: snowflake(), username: 'alice' };

const dirs: string[] = [];
const processes: { child: { kill(signal: NodeJS.Signals): unknown } }[] = [];
let redis: RedisServer | undefined;
let fake: FakeDiscord | undefined;
let s3: FakeS3 | undefined;
afterEach(async () => {
  for (const process of processes.splice(0)) process.child.kill('SIGKILL');
  await fake?.close();
  fake = undefined;
  await s3?.close();
  s3 = undefined;
  await redis?.stop(true);
  redis = undefined;
  for (const dir of dirs.splice(0)) removeDir(dir);
});

interface Running {
  child: ChildProcessByStdio<null, Readable, Readable>;
  output(): string;
}

/** A coordinator with the bucket and no HTTP port, and one worker host in its own folder. */
async function start(): Promise<{ bot: ServeProcess; dir: string; worker: Running }> {
  redis = await startRedis({ password: 'bucket-test-pass' });
  s3 = await FakeS3.start(s3Settings);
  fake = await FakeDiscord.start();
  const dir = tempDir();
  dirs.push(dir);
  const bot = startServe(dir, {
    REELBOT_DISCORD_TOKEN: 'fake-bot-token',
    REELBOT_DISCORD_API_URL: fake.apiUrl,
    REELBOT_REDIS_URL: redis.url,
    REELBOT_S3_ENDPOINT: s3.endpoint,
    REELBOT_S3_BUCKET: s3Settings.bucket,
    REELBOT_S3_REGION: s3Settings.region,
    REELBOT_S3_ACCESS_KEY_ID: s3Settings.accessKeyId,
    REELBOT_S3_SECRET_ACCESS_KEY: S3_SECRET,
    REELBOT_LOG_LEVEL: 'debug',
  });
  processes.push(bot);
  await until(() => bot.output().includes('reelbot is running'), 'serve to start');
  expect(bot.output()).toContain(`clips and results through the S3 bucket ${s3.endpoint}/reelbot-blobs`);
  const workerDir = tempDir();
  dirs.push(workerDir);
  const child = spawn(process.execPath, [BIN, 'worker', '--devices', 'cpu'], {
    cwd: workerDir,
    // No S3 settings: the host gets only the presigned URLs of the job it holds.
    env: { PATH: process.env.PATH, REELBOT_REDIS_URL: redis.url, REELBOT_DB_PATH: join(workerDir, 'unused.db'), REELBOT_OUTPUT_DIR: join(workerDir, 'work'), REELBOT_ENGINE_MODULE: MP4_ENGINE, REELBOT_LOG_LEVEL: 'debug' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const worker = { child, output: () => output };
  processes.push(worker);
  await until(() => output.includes('is taking'), 'the worker host to start');
  await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake!.applicationId}/commands`, 30_000);
  return { bot, dir, worker };
}

const isUpload = (token: string) => (r: RecordedRequest) => r.method === 'PATCH' && r.path.endsWith(`/${token}/messages/@original`) && r.files.length > 0;

function jobsOf(dir: string) {
  const db = openDatabase(join(dir, 'reelbot.db'));
  try {
    const jobs = new JobRepo(db);
    return [...jobs.listByState('succeeded'), ...jobs.listByState('failed')].sort((a, b) => a.id - b.id);
  } finally {
    db.close();
  }
}

test.skipIf(REDIS_MISSING !== undefined)('with REELBOT_S3_* and no HTTP port, a /video\'s result and an /edit\'s clip travel through the bucket on presigned URLs, and the bucket is left empty', async () => {
  const { bot, dir, worker } = await start();
  const video = fake!.slashCommand(alice, { prompt: 'a corgi surfing' });
  fake!.sendInteraction(video);
  const made = await fake!.waitForRequest(isUpload(video.token), 60_000);
  expect(made.files[0]!.data.subarray(4, 8).toString('latin1')).toBe('ftyp');

  // The mp4 engine returns the clip it was given: the edit's upload is the clip, gone through the bucket both ways.
  const clipBytes = Buffer.concat([made.files[0]!.data, Buffer.from('trailing bytes that make this clip unique')]);
  const clip = fake!.hostFile('clip.mp4', clipBytes);
  fake!.sendInteraction(fake!.editCommand(alice, clip, 'make it snowy'));
  await until(() => jobsOf(dir).length === 2, 'the edit to finish');
  const jobs = jobsOf(dir);
  expect(jobs.map((job) => [job.kind, job.state, job.attempts])).toEqual([['text2video', 'succeeded', 1], ['edit', 'succeeded', 1]]);

  const [videoJob, editJob] = jobs as [(typeof jobs)[number], (typeof jobs)[number]];
  const ns = (path: string) => path.replace(/^\/reelbot-blobs\/reelbot\/[^/]+\//, '');
  const seen = s3!.requests.map((r) => `${r.method} ${ns(r.path)} ${r.status}`);
  expect(seen).toEqual([
    `PUT ${videoJob.id}/a1/result.mp4 200`, // the host
    `GET ${videoJob.id}/a1/result.mp4 200`, // the coordinator, checking it
    `DELETE ${videoJob.id}/a1/result.mp4 204`,
    `PUT ${editJob.id}/a1/input.mp4 200`, // the coordinator puts the clip in
    `GET ${editJob.id}/a1/input.mp4 200`, // the host fetches it
    `PUT ${editJob.id}/a1/result.mp4 200`,
    `GET ${editJob.id}/a1/result.mp4 200`,
    `DELETE ${editJob.id}/a1/result.mp4 204`,
    `DELETE ${editJob.id}/a1/input.mp4 204`,
  ]);
  expect(s3!.objects.size).toBe(0);
  const editUpload = fake!.requests.find((r) => r.method === 'PATCH' && r.files.some((file) => file.data.equals(clipBytes)));
  expect(editUpload, 'the edited clip (a copy of the clip) was delivered').toBeDefined();

  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
  for (const text of [bot.output(), worker.output()]) {
    expect(text).not.toContain(S3_SECRET);
    expect(text).not.toContain('bucket-test-pass');
    expect(text).not.toMatch(/X-Amz-Signature=/);
  }
}, 120_000);

test.skipIf(REDIS_MISSING !== undefined)('a result changed in the bucket is refused on arrival (sha256): the user gets no video made of it', async () => {
  const { dir } = await start();
  // The store hands back other bytes than the host put: as a bucket shared with someone careless would.
  s3!.onPut = (path, body) => (path.endsWith('/result.mp4') ? Buffer.concat([body.subarray(0, -1), Buffer.from([body.at(-1)! ^ 0xff])]) : body);
  const video = fake!.slashCommand(alice, { prompt: 'a corgi surfing' });
  fake!.sendInteraction(video);
  await until(() => jobsOf(dir).length === 1, 'the job to end', 90_000);
  const [job] = jobsOf(dir);
  expect(job).toMatchObject({ state: 'failed' });
  expect(fake!.requestsFor(video).filter((r) => r.files.length > 0)).toEqual([]);
  // Every refused result was deleted from the bucket.
  expect(s3!.objects.size).toBe(0);
  expect(s3!.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/result.mp4')).length).toBe(job!.attempts);
}, 120_000);
