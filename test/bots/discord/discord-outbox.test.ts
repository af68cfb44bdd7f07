/**
 * The outbox as an operator would meet it: `reelbot serve` in its own process is killed with
 * SIGKILL after a job succeeded but before its video went out (the fake Discord holds the reply's
 * edits, so the upload waits behind a progress edit). The next start sends the video, once; the
 * one after sends nothing more.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { FakeDiscord, snowflake, type RecordedRequest } from '../../fakes/fake-discord.js';
import { MP4_ENGINE } from '../../fakes/mp4-engine.js';
import { removeDir, tempDir } from '../../helpers/harness.js';
import { startServe, type ServeProcess } from '../../helpers/serve-process.js';

let dir: string;
let fake: FakeDiscord;
const started: ServeProcess[] = [];
beforeEach(async () => {
  dir = tempDir();
  fake = await FakeDiscord.start();
});
afterEach(async () => {
  for (const bot of started) bot.child.kill('SIGKILL');
  await Promise.all(started.map((bot) => bot.exited));
  started.length = 0;
  await fake.close();
  removeDir(dir);
});

const env = () => ({ REELBOT_DISCORD_TOKEN: 'fake-bot-token', REELBOT_DISCORD_API_URL: fake.apiUrl, REELBOT_ENGINE_MODULE: MP4_ENGINE });
const registered = (r: RecordedRequest) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`;

async function serveUntilReady(): Promise<ServeProcess> {
  const seen = fake.requests.filter(registered).length;
  const bot = startServe(dir, env());
  started.push(bot);
  await fake.waitForRequest((r) => registered(r) && fake.requests.filter(registered).indexOf(r) >= seen, 30_000);
  return bot;
}

/** The job's state and delivery, read from the database file as another process would. */
function jobRow(): { state: string; delivered_at: number | null } | undefined {
  const db = new Database(join(dir, 'reelbot.db'), { readonly: true, fileMustExist: true });
  try {
    return db.prepare(`SELECT state, delivered_at FROM jobs ORDER BY id DESC LIMIT 1`).get() as { state: string; delivered_at: number | null } | undefined;
  } finally {
    db.close();
  }
}

async function until<T>(read: () => T, done: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out; last seen ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('killed after the job succeeded and before its upload: the next start uploads the MP4 exactly once', async () => {
  const first = await serveUntilReady();
  const interaction = fake.slashCommand({ id: snowflake(), username: 'alice' }, { prompt: 'a slow corgi' });
  const toReply = (r: RecordedRequest) => r.path.endsWith(`/${interaction.token}/messages/@original`);
  const uploads = () => fake.requests.filter((r) => toReply(r) && r.files.length > 0);
  // Discord sits on every edit of the reply from the first (the queued text) on, so the upload can
  // only wait behind it, however fast the job runs.
  const endHold = fake.slowDown('PATCH', /\/messages\/@original$/, 120_000);
  fake.sendInteraction(interaction);
  await fake.waitForRequest((r) => r.method === 'PATCH' && toReply(r), 30_000);
  await until(jobRow, (row) => row?.state === 'succeeded');
  // The job is finished and charged; its video has not gone out.
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(uploads()).toHaveLength(0);
  first.child.kill('SIGKILL');
  await first.exited;
  expect(jobRow()).toEqual({ state: 'succeeded', delivered_at: null });
  endHold();

  const second = await serveUntilReady();
  const upload = await fake.waitForRequest((r) => toReply(r) && r.files.length > 0 && r.answeredAt !== undefined, 30_000);
  expect(upload.files[0]).toMatchObject({ contentType: 'video/mp4' });
  expect(JSON.stringify(upload.body)).toMatch(/done/);
  await until(jobRow, (row) => row?.delivered_at !== null && row?.delivered_at !== undefined);
  second.child.kill('SIGTERM');
  expect(await second.exited).toBe(0);

  // A third start has nothing left to send.
  const third = await serveUntilReady();
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  third.child.kill('SIGTERM');
  expect(await third.exited).toBe(0);
  expect(uploads()).toHaveLength(1);
}, 120_000);
