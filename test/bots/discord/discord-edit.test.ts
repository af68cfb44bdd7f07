/**
 * Clip edits on Discord: `/edit`, Apps → "Edit clip…" with its modal, and the Edit button under a
 * result. The clip is a real MP4 served by the fake's CDN; the MP4 test engine returns a copy of
 * the clip it was given, so the uploaded size proves which file went through.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import { resolveFfmpegPaths } from '../../../src/media/ffmpeg-paths.js';
import { FakeDiscord, snowflake, type RecordedRequest } from '../../fakes/fake-discord.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { isOriginalEdit, isPrivateFollowUp, MP4_ENGINE, newAdapter } from './setup.js';

const alice = { id: snowflake(), username: 'alice' };
const bob = { id: snowflake(), username: 'bob' };

interface Payload {
  content?: string;
  components?: { type: number; components: { type: number; custom_id: string; label?: string }[] }[];
}
interface Callback {
  type: number;
  data?: { custom_id?: string; title?: string; flags?: number; content?: string; components?: { components: { custom_id: string; style: number }[] }[] };
}

let clip: Buffer;
let dir: string;
let clipDir: string;
let harness: Harness;
let fake: FakeDiscord;
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

beforeEach(async () => {
  dir = tempDir();
  clipDir = join(dir, 'clips');
  harness = startService(dir, { engineModule: MP4_ENGINE });
  fake = await FakeDiscord.start();
  adapter = await startAdapter();
});

afterEach(async () => {
  await adapter?.stop();
  adapter = undefined;
  await fake.close();
  await harness.close();
  removeDir(dir);
});

async function startAdapter(): Promise<DiscordAdapter> {
  const started = newAdapter(fake, harness.service, dir, { clipDir, maxClipBytes: 1024 * 1024 });
  await started.start();
  return started;
}

const callbackOf = (interaction: { id: string; token: string }) => (r: RecordedRequest) => r.method === 'POST' && r.path === `/interactions/${interaction.id}/${interaction.token}/callback`;
const isUpload = (token: string) => (r: RecordedRequest) => isOriginalEdit(token)(r) && r.files.length > 0 && r.status === 200;
const isDownload = (attachment: { id: string }) => (r: RecordedRequest) => r.method === 'GET' && r.path.includes(`/attachments/${fake.channelId}/${attachment.id}/`);
const contentOf = (r: RecordedRequest): string => (r.body as Payload).content ?? '';
const jobIdOf = (r: RecordedRequest): number => Number(/Job #(\d+)/.exec(contentOf(r))?.[1]);
const clipFiles = (): string[] => (existsSync(clipDir) ? readdirSync(clipDir) : []);

/** Waits for the reply that is not the queued message: the upload or a refusal. */
async function answerOf(interaction: { token: string }): Promise<RecordedRequest> {
  return fake.waitForRequest((r) => (isOriginalEdit(interaction.token)(r) && !/is queued|is running|%/.test(contentOf(r))) || isPrivateFollowUp(interaction.token)(r));
}

describe('/edit', () => {
  it('downloads the attached clip from the CDN, makes an edit job with the instruction and options, and uploads the result', async () => {
    const attachment = fake.hostFile('beach.mp4', clip);
    const interaction = fake.editCommand(alice, attachment, 'make it snowy --anchors 4');
    fake.sendInteraction(interaction);
    const upload = await fake.waitForRequest(isUpload(interaction.token), 20_000);

    const seen = fake.requestsFor(interaction);
    expect(seen[0]!.body).toMatchObject({ type: 5 });
    const download = fake.requests.find(isDownload(attachment))!;
    expect(download.at).toBeGreaterThanOrEqual(seen[0]!.at);
    // The bot token is never sent to a file host.
    expect(download.headers.authorization).toBeUndefined();

    const job = harness.service.status(jobIdOf(upload))!.job;
    expect(job).toMatchObject({ kind: 'edit', state: 'succeeded', userExternalId: alice.id });
    expect(job.params).toMatchObject({ instruction: 'make it snowy', anchors: 4 });
    expect(String(job.params.inputFile).startsWith(clipDir)).toBe(true);
    // The engine got exactly the clip: it returned a copy, which went up unchanged.
    expect(upload.files[0]!.size).toBe(clip.length);
    expect(contentOf(upload)).toMatch(/\*\*Job #\d+\*\* edited: “make it snowy”/);
  });

  it.each([
    ['a file on another host', { url: 'https://evil.example.com/clip.mp4' }, /not a Discord file/],
    ['a Discord CDN link over plain http', { url: 'http://cdn.discordapp.com/attachments/1/2/clip.mp4' }, /not a Discord file/],
    ['a declared size over the limit', { size: 5 * 1024 * 1024 }, /5\.0 MiB; clips up to 1\.0 MiB/],
  ])('refuses %s without fetching anything, and makes no job', async (_label, change, message) => {
    const attachment = { ...fake.hostFile('clip.mp4', clip), ...change };
    const interaction = fake.editCommand(alice, attachment, 'make it snowy');
    fake.sendInteraction(interaction);
    const answer = await answerOf(interaction);
    expect(contentOf(answer)).toMatch(message);
    expect(fake.requests.some(isDownload(attachment))).toBe(false);
    expect(harness.events.filter(isType('queued'))).toHaveLength(0);
  });

  it.each([
    // Declared as a video, served as a web page.
    ['a web page (a sign-in page)', () => ({ ...fake.hostFile('clip.mp4', Buffer.from('<!DOCTYPE html><html><body>Sign in</body></html>'), { contentType: 'text/html' }), content_type: 'video/mp4' }), /web page/],
    ['text posing as a video', () => fake.hostFile('clip.mp4', Buffer.from('#EXTM3U\nhttp://example.com/a.ts\n'.repeat(40)), { contentType: 'video/mp4' }), /playlist/],
    ['a 403', () => {
      const hosted = fake.hostFile('clip.mp4', clip);
      fake.fail('GET', new RegExp(`/attachments/.*/${hosted.id}/`), 403, { message: 'Forbidden' });
      return hosted;
    }, /refused to share the clip/],
  ])('refuses %s after the download, leaves no file and makes no job', async (_label, host, message) => {
    const attachment = host();
    const interaction = fake.editCommand(alice, attachment, 'make it snowy');
    fake.sendInteraction(interaction);
    const answer = await answerOf(interaction);
    expect(contentOf(answer)).toMatch(message);
    expect(fake.requests.some(isDownload(attachment))).toBe(true);
    expect(clipFiles()).toEqual([]);
    expect(harness.events.filter(isType('queued'))).toHaveLength(0);
  });

  it('refuses an attachment that is not a video, and an empty instruction, with a hint', async () => {
    const image = fake.hostFile('cat.png', Buffer.from('png'), { contentType: 'image/png' });
    const first = fake.editCommand(alice, image, 'make it snowy');
    fake.sendInteraction(first);
    expect(contentOf(await answerOf(first))).toMatch(/cat\.png is not a video/);

    const second = fake.editCommand(alice, fake.hostFile('clip.mp4', clip), '--anchors 3');
    fake.sendInteraction(second);
    expect(contentOf(await answerOf(second))).toMatch(/instruction is empty/);
    expect(harness.events.filter(isType('queued'))).toHaveLength(0);
  });
});

describe('Edit clip… (message context menu)', () => {
  it('answers with the modal only, downloads the clip at once, and edits it when the modal comes back', async () => {
    const attachment = fake.hostFile('dance.mp4', clip);
    const message = fake.storeMessage(bob, [attachment]);
    const menu = fake.messageCommand(alice, 'Edit clip…', message);
    fake.sendInteraction(menu);
    const modal = await fake.waitForRequest(callbackOf(menu));
    expect(modal.body).toMatchObject({ type: 9, data: { custom_id: `v1:clip:${message.id}` } });
    // The modal was the whole answer: no defer before or after it.
    expect(fake.requestsFor(menu)).toHaveLength(1);
    // The clip is fetched before anyone types the instruction.
    await fake.waitForRequest(isDownload(attachment));

    const submit = fake.modalSubmit(alice, `v1:clip:${message.id}`, { instruction: 'turn it into a watercolor' });
    fake.sendInteraction(submit);
    const upload = await fake.waitForRequest(isUpload(submit.token), 20_000);
    expect(fake.requestsFor(submit)[0]!.body).toMatchObject({ type: 5 });
    expect(upload.files[0]!.size).toBe(clip.length);
    expect(harness.service.status(jobIdOf(upload))!.job.params).toMatchObject({ instruction: 'turn it into a watercolor' });
    // Downloaded once; the message was not fetched again.
    expect(fake.requests.filter(isDownload(attachment))).toHaveLength(1);
    expect(fake.requests.some((r) => r.method === 'GET' && r.path.endsWith(`/messages/${message.id}`))).toBe(false);
  });

  it('says so, without a modal, on a message that has no video', async () => {
    const message = fake.storeMessage(bob, [fake.hostFile('notes.txt', Buffer.from('hello'), { contentType: 'text/plain' })]);
    const menu = fake.messageCommand(alice, 'Edit clip…', message);
    fake.sendInteraction(menu);
    const answer = (await fake.waitForRequest(callbackOf(menu))).body as Callback;
    expect(answer.type).toBe(4);
    expect(answer.data?.flags).toBe(64);
    expect(answer.data?.content).toMatch(/no video to edit/);
  });

  it('when the link expired before the modal came back, fetches the message again and downloads its fresh link', async () => {
    const stale = fake.hostFile('dance.mp4', clip);
    fake.fail('GET', new RegExp(`/attachments/.*/${stale.id}/`), 404, { message: 'This content is no longer available.' });
    const message = fake.storeMessage(bob, [stale]);
    const menu = fake.messageCommand(alice, 'Edit clip…', message);
    fake.sendInteraction(menu);
    await fake.waitForRequest(isDownload(stale));
    // Discord now signs a fresh link for the same attachment.
    const fresh = fake.hostFile('dance.mp4', clip);
    Object.assign(message, { attachments: [fresh] });
    fake.storeMessage(bob, []); // (another message; the stored one is updated in place)

    const submit = fake.modalSubmit(alice, `v1:clip:${message.id}`, { instruction: 'make it night' });
    fake.sendInteraction(submit);
    const upload = await fake.waitForRequest(isUpload(submit.token), 20_000);
    expect(upload.files[0]!.size).toBe(clip.length);
    expect(fake.requests.some((r) => r.method === 'GET' && r.path === `/channels/${fake.channelId}/messages/${message.id}`)).toBe(true);
    expect(fake.requests.some(isDownload(fresh))).toBe(true);
  });

  it('after a restart (no download in memory), fetches the message and edits its clip', async () => {
    const attachment = fake.hostFile('dance.mp4', clip);
    const message = fake.storeMessage(bob, [attachment]);
    await adapter!.stop();
    adapter = await startAdapter();
    const submit = fake.modalSubmit(alice, `v1:clip:${message.id}`, { instruction: 'make it snowy' });
    fake.sendInteraction(submit);
    const upload = await fake.waitForRequest(isUpload(submit.token), 20_000);
    expect(upload.files[0]!.size).toBe(clip.length);
    expect(fake.requests.filter(isDownload(attachment))).toHaveLength(1);
  });

  it('a modal for a message that is gone gets a clear answer and no job', async () => {
    const submit = fake.modalSubmit(alice, `v1:clip:${snowflake()}`, { instruction: 'make it snowy' });
    fake.sendInteraction(submit);
    const answer = await answerOf(submit);
    expect(contentOf(answer)).toMatch(/could not read that message again/);
    expect(harness.events.filter(isType('queued'))).toHaveLength(0);
  });
});

describe('Edit and Re-roll buttons under a result', () => {
  it('Edit opens the modal without a defer, and its instruction edits the result', async () => {
    const video = fake.slashCommand(alice, { prompt: 'a corgi surfing' });
    fake.sendInteraction(video);
    const result = await fake.waitForRequest(isUpload(video.token), 20_000);
    const sourceId = jobIdOf(result);
    const editButton = (result.body as Payload).components?.[0]?.components.find((c) => c.label === 'Edit');
    expect(editButton?.custom_id).toBe(`v1:edit:${sourceId}`);

    const click = fake.button(bob, `v1:edit:${sourceId}`);
    fake.sendInteraction(click);
    const modal = await fake.waitForRequest(callbackOf(click));
    expect(modal.body).toMatchObject({ type: 9, data: { custom_id: `v1:edit:${sourceId}` } });
    expect(fake.requestsFor(click)).toHaveLength(1);

    const submit = fake.modalSubmit(bob, `v1:edit:${sourceId}`, { instruction: 'make it snowy --seed 7' });
    fake.sendInteraction(submit);
    const upload = await fake.waitForRequest(isUpload(submit.token), 20_000);
    const edit = harness.service.status(jobIdOf(upload))!.job;
    const source = harness.service.status(sourceId)!.job;
    expect(edit).toMatchObject({ kind: 'edit', userExternalId: bob.id, seed: 7, state: 'succeeded' });
    expect(edit.params.inputFile).toBe((source.result as { file: string }).file);
    expect(upload.files[0]!.size).toBe(result.files[0]!.size);
  });

  it('Re-roll of an edit edits the same clip again with a new seed', async () => {
    const attachment = fake.hostFile('beach.mp4', clip);
    const first = fake.editCommand(alice, attachment, 'make it snowy');
    fake.sendInteraction(first);
    const result = await fake.waitForRequest(isUpload(first.token), 20_000);
    const original = harness.service.status(jobIdOf(result))!.job;

    const click = fake.button(alice, `v1:reroll:${original.id}`);
    fake.sendInteraction(click);
    const upload = await fake.waitForRequest(isUpload(click.token), 20_000);
    const again = harness.service.status(jobIdOf(upload))!.job;
    expect(again.id).not.toBe(original.id);
    expect(again.kind).toBe('edit');
    expect(again.params.inputFile).toBe(original.params.inputFile);
    expect(upload.files[0]!.size).toBe(clip.length);
  });
});
