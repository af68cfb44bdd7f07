/**
 * Failure paths of the Discord adapter against the fake Discord, with a real bot token set: what
 * the adapter logs names the error (code, status, method) but never a token, an interaction or
 * webhook URL's token, or the bytes of an uploaded file.
 */
import { Writable } from 'node:stream';
import { afterEach, expect, test } from 'vitest';
import type { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import { createLogger } from '../../../src/log.js';
import { FakeDiscord, snowflake } from '../../fakes/fake-discord.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { MP4_ENGINE, isOriginalEdit, newAdapter } from './setup.js';

const BOT_TOKEN = 'MTI5MDAwMDAwMDAwMDAwMDAw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB';
const alice = { id: snowflake(), username: 'alice' };

let dir: string | undefined;
let harness: Harness | undefined;
let fake: FakeDiscord | undefined;
let adapter: DiscordAdapter | undefined;
let logged = '';

async function startAll(): Promise<FakeDiscord> {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE });
  fake = await FakeDiscord.start();
  fake.botToken = BOT_TOKEN;
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logged += chunk.toString('utf8');
      done();
    },
  });
  adapter = newAdapter(fake, harness.service, dir, { registerCommands: false, token: BOT_TOKEN, logger: createLogger('debug', stream, { secrets: [BOT_TOKEN] }) });
  await adapter.start();
  return fake;
}

afterEach(async () => {
  await adapter?.stop().catch(() => undefined);
  await fake?.close();
  await harness?.close();
  if (dir !== undefined) removeDir(dir);
  adapter = fake = harness = dir = undefined;
  logged = '';
});

function expectNoSecrets(tokens: string[]): void {
  for (const token of [BOT_TOKEN, ...tokens]) expect(logged).not.toContain(token);
  expect(logged).not.toContain('requestBody');
  // An MP4's bytes as pino would print a Buffer ({"type":"Buffer","data":[0,0,0,…]}) or a typed array.
  expect(logged).not.toMatch(/"data":\[\d+,\d+/);
  expect(logged).not.toMatch(/ftyp/);
}

test('an interaction Discord no longer knows (10062) is logged without its token', async () => {
  const discord = await startAll();
  const interaction = discord.slashCommand(alice, { prompt: 'a corgi' });
  discord.fail('POST', /^\/interactions\/\d+\/[^/]+\/callback$/, 404, { message: 'Unknown interaction', code: 10062 });
  discord.sendInteraction(interaction);
  await discord.waitForRequest((r) => r.method === 'POST' && r.path.endsWith('/callback') && r.status === 404);
  await expect.poll(() => logged, { timeout: 10_000 }).toMatch(/10062/);
  expectNoSecrets([interaction.token]);
  const line = logged.split('\n').find((text) => text.includes('10062'))!;
  expect(JSON.parse(line)).toMatchObject({ err: { code: 10062, status: 404, method: 'POST' } });
});

test('an upload refused with 50035 is logged without the webhook token or the file', async () => {
  const discord = await startAll();
  discord.fail('PATCH', /\/messages\/@original$/, 400, { message: 'Invalid Form Body', code: 50035 }, { uploadsOnly: true, times: 10 });
  const interaction = discord.slashCommand(alice, { prompt: 'a corgi' });
  discord.sendInteraction(interaction);
  await harness!.waitFor(isType('succeeded'), 30_000);
  await discord.waitForRequest((r) => isOriginalEdit(interaction.token)(r) && r.files.length > 0 && r.status === 400);
  await expect.poll(() => logged, { timeout: 10_000 }).toMatch(/50035/);
  expectNoSecrets([interaction.token]);
  const line = logged.split('\n').find((text) => text.includes('50035'))!;
  expect(JSON.parse(line)).toMatchObject({ err: { code: 50035, status: 400, method: 'PATCH' } });
  expect(JSON.parse(line).err.url).toMatch(/\/webhooks\/\d+\/\*\*\*\/messages\/(@|%40)original/);
});
