/**
 * Abuse limits on Discord (issue 12, "Costs and abuse"): "Edit clip…" downloads are capped per
 * user and in total (refused privately, no modal, no download), opening the menu again on the
 * same message reuses its download, and `/video` in a DM is refused unless direct messages are
 * allowed. Against the fake Discord, with real worker processes and a real SQLite file.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, expect, it } from 'vitest';
import type { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import { resolveFfmpegPaths } from '../../../src/media/ffmpeg-paths.js';
import { FakeDiscord, snowflake, type FakeUser, type RecordedRequest } from '../../fakes/fake-discord.js';
import { removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { isOriginalEdit, isPrivateFollowUp, MP4_ENGINE, newAdapter } from './setup.js';

const alice = { id: snowflake(), username: 'alice' };
const bob = { id: snowflake(), username: 'bob' };
const carol = { id: snowflake(), username: 'carol' };

interface Callback {
  type: number;
  data?: { custom_id?: string; flags?: number; content?: string };
}

let clip: Buffer;
let dir: string | undefined;
let harness: Harness | undefined;
let fake: FakeDiscord | undefined;
let adapter: DiscordAdapter | undefined;

beforeAll(() => {
  const scratch = tempDir();
  const file = join(scratch, 'clip.mp4');
  const { ffmpeg } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
  const run = spawnSync(ffmpeg, ['-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=96x64:rate=8:duration=1', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', file]);
  if (run.status !== 0) throw new Error(String(run.stderr));
  clip = readFileSync(file);
  removeDir(scratch);
});

afterEach(async () => {
  await adapter?.stop();
  adapter = undefined;
  await fake?.close();
  await harness?.close();
  if (dir) removeDir(dir);
  dir = undefined;
});

async function startAll(overrides: Record<string, unknown>, clipDownloads?: { perUser: number; total: number }): Promise<FakeDiscord> {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE, ...overrides });
  fake = await FakeDiscord.start();
  adapter = newAdapter(fake, harness.service, dir, { clipDir: join(dir, 'clips'), maxClipBytes: 1024 * 1024, ...(clipDownloads ? { clipDownloads } : {}) });
  await adapter.start();
  return fake;
}

const callbackOf = (interaction: { id: string; token: string }) => (r: RecordedRequest) => r.method === 'POST' && r.path === `/interactions/${interaction.id}/${interaction.token}/callback`;
const downloadsOf = (discord: FakeDiscord, attachment: { id: string }) => discord.requests.filter((r) => r.method === 'GET' && r.path.includes(`/attachments/${discord.channelId}/${attachment.id}/`));

/** Opens Apps → "Edit clip…" on a new message with a clip; returns the callback and the attachment. */
async function openMenu(discord: FakeDiscord, user: FakeUser, message?: Record<string, unknown> & { id: string }) {
  const target = message ?? discord.storeMessage(bob, [discord.hostFile('dance.mp4', clip)]);
  const menu = discord.messageCommand(user, 'Edit clip…', target);
  discord.sendInteraction(menu);
  const callback = (await discord.waitForRequest(callbackOf(menu))).body as Callback;
  return { callback, message: target, attachment: (target.attachments as { id: string }[])[0]! };
}

it('"Edit clip…" holds at most perUser downloads per user and total overall, refused privately; reopening reuses the download', async () => {
  const discord = await startAll({}, { perUser: 2, total: 3 });
  const first = await openMenu(discord, alice);
  expect(first.callback.type).toBe(9); // the modal
  const second = await openMenu(discord, alice);
  expect(second.callback.type).toBe(9);
  await discord.waitForRequest((r) => downloadsOf(discord, first.attachment).includes(r));
  await discord.waitForRequest((r) => downloadsOf(discord, second.attachment).includes(r));

  // The same message again: the modal, and no second download.
  const again = await openMenu(discord, alice, first.message);
  expect(again.callback.type).toBe(9);

  // A third clip for alice: refused privately, no modal and nothing fetched.
  const third = await openMenu(discord, alice);
  expect(third.callback).toMatchObject({ type: 4, data: { flags: 64 } });
  expect(third.callback.data?.content).toMatch(/You already have 2 clips being fetched or waiting for an edit instruction \(the limit is 2\)/);
  // bob takes the last slot overall; carol is refused because the bot is at its total.
  expect((await openMenu(discord, bob)).callback.type).toBe(9);
  const full = await openMenu(discord, carol);
  expect(full.callback).toMatchObject({ type: 4, data: { flags: 64 } });
  expect(full.callback.data?.content).toMatch(/The bot is fetching as many clips as it can/);
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(downloadsOf(discord, third.attachment)).toHaveLength(0);
  expect(downloadsOf(discord, full.attachment)).toHaveLength(0);
  expect(downloadsOf(discord, first.attachment)).toHaveLength(1);

  // Sending alice's first form gives its slot back: a new clip may be opened.
  const submit = discord.modalSubmit(alice, `v1:clip:${first.message.id}`, { instruction: 'make it snowy' });
  discord.sendInteraction(submit);
  await discord.waitForRequest((r) => isOriginalEdit(submit.token)(r) && /Job #\d+/.test(String((r.body as { content?: string }).content)));
  const after = await openMenu(discord, alice);
  expect(after.callback.type).toBe(9);
});

/** `/video` sent in a DM with the bot: no guild, the user instead of a member, a DM channel. */
function inDirectMessage(discord: FakeDiscord, interaction: Record<string, unknown>, user: FakeUser): Record<string, unknown> & { id: string; token: string } {
  const { guild_id: _guild, guild: _g, member: _member, authorizing_integration_owners: _owners, ...rest } = interaction;
  const channelId = snowflake();
  return {
    ...(rest as { id: string; token: string }),
    user: discord.user(user),
    channel_id: channelId,
    channel: { id: channelId, type: 1, last_message_id: null, flags: 0, recipients: [discord.user(user)] },
    authorizing_integration_owners: { '1': user.id },
    context: 1,
  };
}

it('/video in a DM is refused while direct messages are off (the default), and runs when they are allowed', async () => {
  let discord = await startAll({});
  const dm = inDirectMessage(discord, discord.slashCommand(alice, { prompt: 'a corgi surfing' }), alice);
  discord.sendInteraction(dm);
  const refusal = await discord.waitForRequest(isPrivateFollowUp(dm.token));
  expect((refusal.body as { content?: string }).content).toMatch(/Videos cannot be made in direct messages with this bot/);
  expect(harness!.db.prepare('SELECT count(*) FROM jobs').pluck().get()).toBe(0);
  await adapter!.stop();
  adapter = undefined;
  await discord.close();
  fake = undefined;
  await harness!.close();
  removeDir(dir!);

  discord = await startAll({ quota: { allowDirectMessages: true } });
  const allowed = inDirectMessage(discord, discord.slashCommand(alice, { prompt: 'a corgi surfing' }), alice);
  discord.sendInteraction(allowed);
  const queued = await discord.waitForRequest((r) => isOriginalEdit(allowed.token)(r) && /Job #\d+/.test(String((r.body as { content?: string }).content)));
  expect(queued.status).toBe(200);
  const job = harness!.db.prepare('SELECT group_id, platform FROM jobs').get();
  expect(job).toEqual({ group_id: null, platform: 'discord' });
});
