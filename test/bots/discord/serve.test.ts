/**
 * `reelbot serve` as an operator runs it: the real bin in its own process, Discord's API base set
 * to the fake by REELBOT_DISCORD_API_URL, a /video answered with an MP4, and SIGTERM draining it.
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { FakeDiscord, snowflake, type RecordedRequest } from '../../fakes/fake-discord.js';
import { MP4_ENGINE } from '../../fakes/mp4-engine.js';
import { removeDir, tempDir } from '../../helpers/harness.js';
import { startServe } from '../../helpers/serve-process.js';

let dir: string;
let fake: FakeDiscord;
beforeEach(async () => {
  dir = tempDir();
  fake = await FakeDiscord.start();
});
afterEach(async () => {
  await fake.close();
  removeDir(dir);
});

const serve = (env: Record<string, string>) => startServe(dir, env);

test('serve connects to Discord through REELBOT_DISCORD_API_URL, answers /video, and drains on SIGTERM', async () => {
  const bot = serve({ REELBOT_DISCORD_TOKEN: 'fake-bot-token', REELBOT_DISCORD_API_URL: fake.apiUrl, REELBOT_ENGINE_MODULE: MP4_ENGINE });
  try {
    await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`, 30_000);
    const interaction = fake.slashCommand({ id: snowflake(), username: 'alice' }, { prompt: 'a corgi surfing' });
    fake.sendInteraction(interaction);
    const upload = await fake.waitForRequest(
      (r: RecordedRequest) => r.method === 'PATCH' && r.path.endsWith(`/${interaction.token}/messages/@original`) && r.files.length > 0,
      30_000,
    );
    expect(upload.files[0]).toMatchObject({ contentType: 'video/mp4' });
    expect(fake.requestsFor(interaction)[0]).toMatchObject({ method: 'POST', body: { type: 5 } });

    // /edit of that video: the clip is kept under the output folder (a queued edit survives a restart).
    const edit = fake.editCommand({ id: snowflake(), username: 'bob' }, fake.hostFile('corgi.mp4', upload.files[0]!.data), 'make it snowy');
    fake.sendInteraction(edit);
    const edited = await fake.waitForRequest((r: RecordedRequest) => r.path.endsWith(`/${edit.token}/messages/@original`) && r.files.length > 0, 30_000);
    expect(edited.files[0]!.size).toBe(upload.files[0]!.size);
    expect(readdirSync(join(dir, 'out', 'clips', 'discord'))).toHaveLength(1);
    bot.child.kill('SIGTERM');
    expect(await bot.exited).toBe(0);
    expect(bot.output()).toMatch(/reelbot is running on Discord/);
    expect(bot.output()).not.toContain('fake-bot-token');
    // An engine module replaces the built-in engine: no word about its demo weights.
    expect(bot.output()).not.toContain('Untrained');
  } finally {
    bot.child.kill('SIGKILL');
  }
});

test('serve says at start when the built-in engine would make videos from untrained demo weights, and which model', async () => {
  // The text-to-video folder is a built-in set (its reelbot.json says untrained); the edit folder is an operator's export.
  const builtIn = join(dir, 'built-in');
  const exported = join(dir, 'exported');
  mkdirSync(builtIn);
  mkdirSync(exported);
  writeFileSync(join(builtIn, 'reelbot.json'), JSON.stringify({ builtIn: true, untrainedWeights: true }));
  const bot = serve({ REELBOT_DISCORD_TOKEN: 'fake-bot-token', REELBOT_DISCORD_API_URL: fake.apiUrl, REELBOT_MODEL_DIR: builtIn, REELBOT_EDIT_MODEL_DIR: exported, REELBOT_LOG_LEVEL: 'warn' });
  try {
    await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`, 30_000);
    const deadline = Date.now() + 10_000;
    while (!bot.output().includes('Untrained') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const output = bot.output();
    expect(output).toContain(`Untrained demo weights for text to video (${builtIn}; set REELBOT_MODEL_DIR): those videos are abstract patterns`);
    expect(output).not.toContain('clip editing (');
    // Logged as a warning too (JSON), not only printed.
    expect(output).toMatch(/"level":40[^\n]*Untrained demo weights/);
    bot.child.kill('SIGTERM');
    expect(await bot.exited).toBe(0);
  } finally {
    bot.child.kill('SIGKILL');
  }
});

test('serve with a bucket set but no Redis says the bucket is not used, without its secret', { timeout: 60_000 }, async () => {
  const bot = serve({
    REELBOT_DISCORD_TOKEN: 'fake-bot-token',
    REELBOT_DISCORD_API_URL: fake.apiUrl,
    REELBOT_ENGINE_MODULE: MP4_ENGINE,
    REELBOT_S3_ENDPOINT: 'http://127.0.0.1:9',
    REELBOT_S3_BUCKET: 'reelbot-blobs',
    REELBOT_S3_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    REELBOT_S3_SECRET_ACCESS_KEY: 'bucket-secret-key',
    REELBOT_LOG_LEVEL: 'warn',
  });
  try {
    // Fully started (its commands registered) before the signal, as the other tests here.
    await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`, 30_000);
    const deadline = Date.now() + 10_000;
    while (!bot.output().includes('REELBOT_S3_* is set') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(bot.output()).toMatch(/"level":40[^\n]*REELBOT_S3_\* is set but REELBOT_REDIS_URL is not: the bucket only carries files between this coordinator and worker hosts, so it is not used/);
    bot.child.kill('SIGTERM');
    expect(await bot.exited).toBe(0);
    expect(bot.output()).not.toContain('bucket-secret-key');
  } finally {
    bot.child.kill('SIGKILL');
  }
});

test('SIGTERM while Discord is still connecting: serve drains and exits without waiting for the connection', async () => {
  fake.holdReady = true;
  const bot = serve({ REELBOT_DISCORD_TOKEN: 'fake-bot-token', REELBOT_DISCORD_API_URL: fake.apiUrl, REELBOT_ENGINE_MODULE: MP4_ENGINE, REELBOT_SHUTDOWN_GRACE_MS: '500', REELBOT_LOG_LEVEL: 'info' });
  try {
    // The bot has identified on the gateway and waits for READY, which does not come.
    const deadline = Date.now() + 20_000;
    while (!fake.gatewayFrames.some((frame) => frame.op === 2) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(fake.gatewayFrames.some((frame) => frame.op === 2)).toBe(true);
    const signalledAt = Date.now();
    bot.child.kill('SIGTERM');
    // Before, the start-up kept waiting for Discord (up to REELBOT_PLATFORM_START_TIMEOUT_MS, 30 s) and,
    // once the drain had stopped everything, the process stayed open.
    const exit = await Promise.race([bot.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 10_000))]);
    if (exit !== 0) console.error(bot.output());
    expect(exit).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(10_000);
  } finally {
    bot.child.kill('SIGKILL');
  }
});

test('serve without a platform token says what is missing and exits 78', async () => {
  const bot = serve({});
  expect(await bot.exited).toBe(78);
  expect(bot.output()).toMatch(/Nothing to serve: set REELBOT_DISCORD_TOKEN/);
});

test('SIGTERM while a job runs: the job finishes in its grace period and its slow upload completes before serve exits', async () => {
  const bot = serve({ REELBOT_DISCORD_TOKEN: 'fake-bot-token', REELBOT_DISCORD_API_URL: fake.apiUrl, REELBOT_ENGINE_MODULE: MP4_ENGINE, REELBOT_SHUTDOWN_GRACE_MS: '20000' });
  try {
    await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`, 30_000);
    // Every edit of the reply takes 3 s on Discord's side: the final upload waits behind the last progress edit, and the drain must wait for both.
    fake.slowDown('PATCH', /\/messages\/@original$/, 3_000);
    const interaction = fake.slashCommand({ id: snowflake(), username: 'alice' }, { prompt: 'a slow corgi' });
    fake.sendInteraction(interaction);
    // The reply is being edited (queued, then running); the job takes about 2 s.
    await fake.waitForRequest((r) => r.method === 'PATCH' && r.path.endsWith(`/${interaction.token}/messages/@original`), 30_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    bot.child.kill('SIGTERM');
    expect(await bot.exited).toBe(0);
    const upload = fake.requests.find((r) => r.method === 'PATCH' && r.path.endsWith(`/${interaction.token}/messages/@original`) && r.files.length > 0);
    expect(upload).toBeDefined();
    expect(upload!.answeredAt).toBeDefined();
    const done = JSON.stringify(fake.requests.filter((r) => r.path.endsWith(`/${interaction.token}/messages/@original`)).at(-1)?.body ?? '');
    expect(done).toMatch(/done/);
  } finally {
    bot.child.kill('SIGKILL');
  }
}, 60_000);

test('SIGTERM after Discord went away: serve still exits within the grace period plus a few seconds', async () => {
  const bot = serve({ REELBOT_DISCORD_TOKEN: 'fake-bot-token', REELBOT_DISCORD_API_URL: fake.apiUrl, REELBOT_ENGINE_MODULE: MP4_ENGINE, REELBOT_SHUTDOWN_GRACE_MS: '2000' });
  try {
    await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`, 30_000);
    await fake.close();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const signalled = Date.now();
    bot.child.kill('SIGTERM');
    const code = await Promise.race([bot.exited, new Promise((resolve) => setTimeout(() => resolve('still running'), 2_000 + 8_000))]);
    expect(code).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(10_000);
  } finally {
    bot.child.kill('SIGKILL');
  }
});
