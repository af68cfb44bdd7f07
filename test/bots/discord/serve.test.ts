/**
 * `reelbot serve` as an operator runs it: the real bin in its own process, Discord's API base set
 * to the fake by REELBOT_DISCORD_API_URL, a /video answered with an MP4, and SIGTERM draining it.
 */
import { readdirSync } from 'node:fs';
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
  } finally {
    bot.child.kill('SIGKILL');
  }
});

test('serve without a platform token says what is missing and exits 78', async () => {
  const bot = serve({});
  expect(await bot.exited).toBe(78);
  expect(bot.output()).toMatch(/Nothing to serve: set REELBOT_DISCORD_TOKEN/);
});
