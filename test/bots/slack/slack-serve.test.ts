/**
 * `reelbot serve` with Slack as an operator runs it: the real bin in its own process, Slack's API
 * base set to the fake by REELBOT_SLACK_API_URL, a /video over Socket Mode answered with an MP4,
 * SIGTERM draining it; incomplete Slack settings say what is missing and exit 78.
 */
import { createServer, type Socket } from 'node:net';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { APP_TOKEN, BOT_TOKEN, FakeSlack } from '../../fakes/fake-slack.js';
import { removeDir, tempDir } from '../../helpers/harness.js';
import { startServe } from '../../helpers/serve-process.js';
import { alice, MP4_ENGINE } from './setup.js';

let dir: string;
let fake: FakeSlack;
beforeEach(async () => {
  dir = tempDir();
  fake = await FakeSlack.start();
});
afterEach(async () => {
  await fake.close();
  removeDir(dir);
});

/** Debug logs, so the test can check that no secret is in them. */
const serve = (env: Record<string, string>) => startServe(dir, { REELBOT_LOG_LEVEL: 'debug', ...env });

test('serve connects to Slack through REELBOT_SLACK_API_URL, answers /video with an MP4, drains on SIGTERM, and logs no secret', async () => {
  const bot = serve({ REELBOT_SLACK_BOT_TOKEN: BOT_TOKEN, REELBOT_SLACK_APP_TOKEN: APP_TOKEN, REELBOT_SLACK_API_URL: fake.apiUrl, REELBOT_ENGINE_MODULE: MP4_ENGINE });
  try {
    await fake.connected();
    const ack = await fake.slashCommand('/video', 'a corgi surfing', alice).ack;
    expect(String(ack.payload?.text)).toMatch(/\*Job #1\* is queued/);
    const upload = await fake.waitForRequest((r) => r.method === 'upload' && r.status === 200, 30_000);
    expect(upload.bytes!.subarray(4, 8).toString('latin1')).toBe('ftyp');
    await fake.waitForRequest((r) => r.method === 'chat.update' && /done/.test(String(r.body.text)), 30_000);
    bot.child.kill('SIGTERM');
    expect(await bot.exited).toBe(0);
    expect(bot.output()).toMatch(/reelbot is running on Slack \(Socket Mode\)/);
    expect(bot.output()).not.toContain(BOT_TOKEN);
    expect(bot.output()).not.toContain(APP_TOKEN);
  } finally {
    bot.child.kill('SIGKILL');
  }
});

test('serve with a Slack bot token but no app token says what is missing and exits 78', async () => {
  const bot = serve({ REELBOT_SLACK_BOT_TOKEN: BOT_TOKEN });
  expect(await bot.exited).toBe(78);
  expect(bot.output()).toMatch(/Socket Mode needs REELBOT_SLACK_APP_TOKEN/);
  expect(bot.output()).not.toContain(BOT_TOKEN);
});

test('serve without any platform token names both platforms and exits 78', async () => {
  const bot = serve({});
  expect(await bot.exited).toBe(78);
  expect(bot.output()).toMatch(/Nothing to serve: set REELBOT_DISCORD_TOKEN .* REELBOT_SLACK_BOT_TOKEN/);
});

test('serve with Discord unreachable still serves Slack: each platform connects on its own, within its start timeout', async () => {
  // A "Discord" that accepts connections and never answers.
  const sockets: Socket[] = [];
  const hung = createServer((socket) => void sockets.push(socket));
  await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve));
  const port = (hung.address() as { port: number }).port;
  const bot = serve({
    REELBOT_DISCORD_TOKEN: 'fake-bot-token',
    REELBOT_DISCORD_API_URL: `http://127.0.0.1:${port}/api`,
    REELBOT_SLACK_BOT_TOKEN: BOT_TOKEN,
    REELBOT_SLACK_APP_TOKEN: APP_TOKEN,
    REELBOT_SLACK_API_URL: fake.apiUrl,
    REELBOT_ENGINE_MODULE: MP4_ENGINE,
    REELBOT_PLATFORM_START_TIMEOUT_MS: '2000',
  });
  try {
    await fake.connected();
    await expect.poll(() => bot.output(), { timeout: 20_000 }).toMatch(/reelbot is running on Slack \(Socket Mode\) .*; still connecting to Discord/);
    const ack = await fake.slashCommand('/video', 'a corgi surfing', alice).ack;
    expect(String(ack.payload?.text)).toMatch(/\*Job #1\* is queued/);
    await fake.waitForRequest((r) => r.method === 'upload' && r.status === 200, 30_000);
    bot.child.kill('SIGTERM');
    expect(await bot.exited).toBe(0);
  } finally {
    bot.child.kill('SIGKILL');
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => hung.close(resolve));
  }
}, 60_000);
