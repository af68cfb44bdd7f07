/**
 * The Discord adapter end to end: a real discord.js Client logged in to the fake Discord, a real
 * JobService with worker processes running the MP4 test engine.
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import { MP4_ENGINE, isOriginalDelete, isOriginalEdit, isPrivateFollowUp, newAdapter } from './setup.js';
import { FakeDiscord, snowflake, type RecordedRequest } from '../../fakes/fake-discord.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';

const alice = { id: snowflake(), username: 'alice' };
const bob = { id: snowflake(), username: 'bob' };

interface Payload {
  content?: string;
  components?: { type: number; components: { type: number; custom_id: string; label: string }[] }[];
  attachments?: unknown[];
}

let dir: string;
let harness: Harness;
let fake: FakeDiscord;
let adapter: DiscordAdapter;

async function startAll(progressIntervalMs?: number): Promise<void> {
  adapter = newAdapter(fake, harness.service, dir, { ...(progressIntervalMs === undefined ? {} : { progressIntervalMs }) });
  await adapter.start();
}

beforeEach(async () => {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE });
  fake = await FakeDiscord.start();
});

afterEach(async () => {
  await adapter?.stop();
  await fake.close();
  await harness.close();
  removeDir(dir);
});

const isUpload = (token: string) => (r: RecordedRequest) => isOriginalEdit(token)(r) && r.multipart && r.files.length > 0 && r.status === 200;

describe('DiscordAdapter', () => {
  it('logs in and registers the slash commands', async () => {
    await startAll();
    const put = await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`);
    expect((put.body as { name: string }[]).map((c) => c.name)).toEqual(['video', 'edit', 'Edit clip…', 'queue', 'usage', 'history', 'cancel', 'admin']);
    expect(fake.gatewayFrames.find((f) => f.op === 2)).toBeDefined();
  });

  it('a result from untrained demo weights or a per-frame UNet says so; others do not', async () => {
    await startAll();
    const contents: string[] = [];
    for (const prompt of ['a corgi surfing', 'an untrained corgi', 'a per-frame corgi']) {
      const interaction = fake.slashCommand(alice, { prompt });
      fake.sendInteraction(interaction);
      const upload = await fake.waitForRequest(isUpload(interaction.token), 30_000);
      contents.push(String((upload.body as Payload).content));
    }
    const [plain, untrained, perFrame] = contents as [string, string, string];
    expect(plain).toMatch(/\*\*Job #\d+\*\* done/);
    expect(plain).not.toMatch(/untrained|flicker/);
    expect(untrained).toContain('_Made with untrained demo weights: it shows abstract patterns, not your prompt, until the operator sets a model folder');
    expect(untrained).not.toMatch(/flicker/);
    expect(perFrame).toContain('each frame was made on its own and the video may flicker._');
    expect(perFrame).not.toMatch(/untrained/);
  });

  it('a prompt with @everyone pings nobody: the text is defused and every message says allowed_mentions parse []', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: '@everyone look at this @here corgi' });
    fake.sendInteraction(interaction);
    await fake.waitForRequest(isUpload(interaction.token));
    const edits = fake.requests.filter(isOriginalEdit(interaction.token));
    expect(edits.length).toBeGreaterThan(1);
    for (const edit of edits) {
      expect((edit.body as { allowed_mentions?: unknown }).allowed_mentions).toEqual({ parse: [], replied_user: false });
      expect((edit.body as Payload).content ?? '').not.toMatch(/@(everyone|here)/);
    }
    expect((edits[0]!.body as Payload).content).toContain('@\u200beveryone look at this @\u200bhere corgi');
  });

  it('/video: defers first, shows the queued text, then uploads the MP4 with Re-roll, Edit and Cancel', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: 'a corgi surfing', frames: 8 });
    fake.sendInteraction(interaction);
    await fake.waitForRequest(isUpload(interaction.token));

    const seen = fake.requestsFor(interaction);
    const first = seen[0]!;
    expect(first.method).toBe('POST');
    expect(first.path).toBe(`/interactions/${interaction.id}/${interaction.token}/callback`);
    expect(first.body).toMatchObject({ type: 5 });
    expect(first.headers.authorization).toBeUndefined();

    const second = seen[1]!;
    expect(isOriginalEdit(interaction.token)(second)).toBe(true);
    const queued = second.body as Payload;
    expect(queued.content).toMatch(/\*\*Job #\d+\*\* is queued/);
    expect(queued.content).toContain('a corgi surfing');

    const upload = seen.find(isUpload(interaction.token))!;
    expect(upload.files).toHaveLength(1);
    expect(upload.files[0]!.contentType).toBe('video/mp4');
    expect(upload.files[0]!.name).toMatch(/\.mp4$/);
    expect(upload.files[0]!.size).toBeGreaterThan(100);
    const done = upload.body as Payload;
    expect(done.content).toMatch(/\*\*Job #\d+\*\* done/);
    const buttons = done.components?.[0]?.components ?? [];
    const jobId = Number(/Job #(\d+)/.exec(done.content ?? '')?.[1]);
    expect(buttons.map((b) => [b.label, b.custom_id])).toEqual([
      ['Re-roll', `v1:reroll:${jobId}`],
      ['Edit', `v1:edit:${jobId}`],
      ['🗑 Delete', `v1:delete:${jobId}`],
    ]);
    // The upload is the last edit: nothing overwrote it.
    expect(seen.at(-1)).toBe(upload);

    const job = harness.service.status(jobId)!.job;
    expect(job.state).toBe('succeeded');
    expect(job.userExternalId).toBe(alice.id);
    expect(job.groupId).toBe(fake.guildId);
    expect(job.channelId).toBe(fake.channelId);
    expect(job.messageRefs).toMatchObject({ discord: { interactionId: interaction.id, channelId: fake.channelId } });
    expect((job.messageRefs.discord as { messageId?: string }).messageId).toMatch(/^\d{17,19}$/);
  });

  it('makes one job when the same interaction is delivered twice', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: 'a corgi surfing' });
    fake.sendInteraction(interaction);
    fake.sendInteraction(interaction);
    await fake.waitForRequest(isUpload(interaction.token));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(harness.events.filter(isType('queued'))).toHaveLength(1);
    const uploads = fake.requests.filter(isUpload(interaction.token));
    expect(uploads).toHaveLength(1);
    // The redelivery did not overwrite the video.
    expect(fake.requestsFor(interaction).filter((r) => r.method === 'PATCH').at(-1)).toBe(uploads[0]);
  });

  it('refuses a Cancel click by someone else with an ephemeral message, and the job goes on', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: 'a slow corgi' });
    fake.sendInteraction(interaction);
    const queued = await fake.waitForRequest(isOriginalEdit(interaction.token));
    const jobId = Number(/Job #(\d+)/.exec((queued.body as Payload).content ?? '')?.[1]);

    const click = fake.button(bob, `v1:cancel:${jobId}`);
    fake.sendInteraction(click);
    const ack = await fake.waitForRequest((r) => r.path === `/interactions/${click.id}/${click.token}/callback`);
    expect(ack.body).toMatchObject({ type: 5, data: { flags: 64 } });
    const answer = await fake.waitForRequest(isOriginalEdit(click.token));
    expect((answer.body as Payload).content).toContain('belongs to someone else');

    await harness.waitFor(isType('succeeded', jobId));
    await fake.waitForRequest(isUpload(interaction.token));
  });

  it('cancels for the owner, and the reply says so', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: 'a slow corgi' });
    fake.sendInteraction(interaction);
    const queued = await fake.waitForRequest(isOriginalEdit(interaction.token));
    const jobId = Number(/Job #(\d+)/.exec((queued.body as Payload).content ?? '')?.[1]);
    const click = fake.button(alice, `v1:cancel:${jobId}`);
    fake.sendInteraction(click);
    await harness.waitFor(isType('cancelled', jobId));
    const edit = await fake.waitForRequest((r) => isOriginalEdit(interaction.token)(r) && ((r.body as Payload).content ?? '').includes('was cancelled'));
    expect((edit.body as Payload).components).toEqual([]);
    expect(fake.requests.filter(isUpload(interaction.token))).toHaveLength(0);
  });

  it('🗑 Delete: someone else is refused privately; the owner\'s click removes the stored video and the message', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: 'a corgi surfing' });
    fake.sendInteraction(interaction);
    const upload = await fake.waitForRequest(isUpload(interaction.token));
    const jobId = Number(/Job #(\d+)/.exec((upload.body as Payload).content ?? '')?.[1]);
    const file = (harness.service.status(jobId)!.job.result as { file: string }).file;
    expect(existsSync(file)).toBe(true);
    const message = { id: snowflake(), content: (upload.body as Payload).content ?? '' };
    const isMessageDelete = (r: RecordedRequest) => r.method === 'DELETE' && r.path === `/channels/${fake.channelId}/messages/${message.id}`;

    const stranger = fake.button(bob, `v1:delete:${jobId}`, message);
    fake.sendInteraction(stranger);
    const refused = await fake.waitForRequest(isOriginalEdit(stranger.token));
    expect((refused.body as Payload).content).toContain('belongs to someone else');
    expect(existsSync(file)).toBe(true);
    expect(fake.requests.filter(isMessageDelete)).toHaveLength(0);

    const owner = fake.button(alice, `v1:delete:${jobId}`, message);
    fake.sendInteraction(owner);
    const ack = await fake.waitForRequest((r) => r.path === `/interactions/${owner.id}/${owner.token}/callback`);
    expect(ack.body).toMatchObject({ type: 5, data: { flags: 64 } });
    const answer = await fake.waitForRequest(isOriginalEdit(owner.token));
    expect((answer.body as Payload).content).toBe(`Deleted job #${jobId}'s video and its message.`);
    expect(fake.requests.filter(isMessageDelete)).toHaveLength(1);
    expect(existsSync(file)).toBe(false);
    expect(existsSync(dirname(file))).toBe(false);
    expect(harness.service.status(jobId)!.job.outputDeletedAt).toEqual(expect.any(Number));

    // A second click (another copy of the button) says it is gone already.
    const again = fake.button(alice, `v1:delete:${jobId}`, message);
    fake.sendInteraction(again);
    const gone = await fake.waitForRequest(isOriginalEdit(again.token));
    expect((gone.body as Payload).content).toContain('already deleted');
  });

  it('re-rolls with the same params and a new job', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: 'a corgi surfing', frames: 8 });
    fake.sendInteraction(interaction);
    const upload = await fake.waitForRequest(isUpload(interaction.token));
    const jobId = Number(/Job #(\d+)/.exec((upload.body as Payload).content ?? '')?.[1]);
    const click = fake.button(bob, `v1:reroll:${jobId}`);
    fake.sendInteraction(click);
    await fake.waitForRequest(isUpload(click.token));
    const queuedJobs = harness.events.filter(isType('queued')).map((e) => e.job);
    expect(queuedJobs).toHaveLength(2);
    expect(queuedJobs[1]!.params).toEqual(queuedJobs[0]!.params);
    expect(queuedJobs[1]!.userExternalId).toBe(bob.id);
  });

  it('a 429 on a progress edit does not stop the job from finishing and being delivered', async () => {
    await startAll(100);
    const interaction = fake.slashCommand(alice, { prompt: 'a slow corgi' });
    fake.sendInteraction(interaction);
    await fake.waitForRequest(isOriginalEdit(interaction.token));
    // The next edit of this reply (a progress edit) is rate-limited.
    fake.rateLimit('PATCH', new RegExp(`/${interaction.token}/messages/@original$`), 0.5);
    const limited = await fake.waitForRequest((r) => isOriginalEdit(interaction.token)(r) && r.status === 429);
    expect((limited.body as Payload).content).toMatch(/denoising/);
    const succeeded = await harness.waitFor(isType('succeeded'));
    const upload = await fake.waitForRequest(isUpload(interaction.token));
    expect((upload.body as Payload).content).toMatch(/done/);
    expect(upload.files[0]!.contentType).toBe('video/mp4');
    expect(succeeded.job.id).toBeGreaterThan(0);
    expect(fake.requestsFor(interaction).at(-1)).toBe(upload);
  });

  it('shows a refusal from the command grammar', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: 'a corgi', motion: 'sideways' });
    fake.sendInteraction(interaction);
    // Only its user sees a refusal: an ephemeral follow-up, and the public "thinking…" is removed.
    const refusal = await fake.waitForRequest(isPrivateFollowUp(interaction.token));
    expect((refusal.body as Payload).content).toMatch(/motion must be two numbers/);
    await fake.waitForRequest(isOriginalDelete(interaction.token));
    expect(fake.requests.filter((r) => isOriginalEdit(interaction.token)(r))).toHaveLength(0);
    expect(harness.events).toHaveLength(0);
  });

  it('when the interaction token has expired, posts the result with the bot token', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: 'a slow corgi' });
    fake.sendInteraction(interaction);
    await fake.waitForRequest(isOriginalEdit(interaction.token));
    fake.expireToken('PATCH', new RegExp(`/${interaction.token}/messages/@original$`), 100);
    const edit = await fake.waitForRequest((r) => r.method === 'PATCH' && r.path.startsWith(`/channels/${fake.channelId}/messages/`) && r.files.length > 0);
    expect(edit.headers.authorization).toBe('Bot fake-bot-token');
    expect(edit.files[0]!.contentType).toBe('video/mp4');
    expect((edit.body as Payload).content).toMatch(/done/);
    // The dead token was tried once; every later edit went straight to the bot token.
    expect(fake.requests.filter((r) => isOriginalEdit(interaction.token)(r) && r.status === 401)).toHaveLength(1);
  });

  it('switches to the bot token on its own before the interaction token dies (at 14 minutes; here shortened)', async () => {
    adapter = newAdapter(fake, harness.service, dir, { tokenSwitchAfterMs: 900 });
    await adapter.start();
    const interaction = fake.slashCommand(alice, { prompt: 'a slow corgi' });
    fake.sendInteraction(interaction);
    await fake.waitForRequest(isOriginalEdit(interaction.token));
    const upload = await fake.waitForRequest((r) => r.method === 'PATCH' && r.path.startsWith(`/channels/${fake.channelId}/messages/`) && r.files.length > 0, 20_000);
    expect(upload.headers.authorization).toBe('Bot fake-bot-token');
    expect((upload.body as Payload).content).toMatch(/done/);
    // Nothing was refused: the switch came before any 50027, and the token was left alone after it.
    expect(fake.requests.some((r) => r.status === 401)).toBe(false);
    expect(fake.requests.filter(isOriginalEdit(interaction.token)).every((r) => r.at < upload.at)).toBe(true);
  });

  it('retries an upload refused with 413 / 40005 at the 10 MiB floor', async () => {
    await startAll();
    const interaction = fake.slashCommand(alice, { prompt: 'a corgi surfing' }, { attachmentSizeLimit: 50 * 1024 * 1024 });
    fake.rejectUpload('PATCH', new RegExp(`/${interaction.token}/messages/@original$`));
    fake.sendInteraction(interaction);
    const upload = await fake.waitForRequest(isUpload(interaction.token));
    expect(upload.files[0]!.contentType).toBe('video/mp4');
    expect(fake.requestsFor(interaction).some((r) => r.status === 413)).toBe(true);
  });
});
