/**
 * Slack on the real built-in engine: `/video` runs Text2Video-Zero on the tiny set in a worker
 * process; while it denoises the job's message shows live previews (an image block of a PNG the
 * bot uploaded, shared nowhere), and the final message has none; `/reelbot history` shows the
 * thumbnails of the results still kept the same way.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { SlackAdapter } from '../../../src/bots/slack/slack-adapter.js';
import { makeModelSet } from '../../../src/engine/models/make.js';
import { resolveFfmpegPaths } from '../../../src/media/ffmpeg-paths.js';
import { probeVideo } from '../../../src/media/probe.js';
import { BOT_USER_ID, FakeSlack } from '../../fakes/fake-slack.js';
import { gradientPng } from '../../helpers/pictures.js';
import { removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { alice, CHANNEL, newAdapter, textOf } from './setup.js';

const { ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });

let dir: string;
let harness: Harness;
let fake: FakeSlack;
let adapter: SlackAdapter;

beforeAll(async () => {
  dir = tempDir();
  await makeModelSet({ size: 'tiny', kind: 'text2video', out: join(dir, 'tiny') });
  harness = startService(join(dir, 'service'), { engineModule: '', modelDir: join(dir, 'tiny'), jobs: { timeoutSeconds: 120 }, previews: { intervalSeconds: 0.02 } });
  fake = await FakeSlack.start();
  adapter = newAdapter(fake, harness.service, dir, { progressIntervalMs: 50 });
  await adapter.start();
  await fake.connected();
}, 60_000);

afterAll(async () => {
  await adapter?.stop();
  await fake?.close();
  await harness?.close();
  removeDir(dir);
});

type Block = { type: string; slack_file?: { id: string } };
const imagesOf = (blocks: unknown): Block[] => (Array.isArray(blocks) ? (blocks as Block[]).filter((block) => block.type === 'image') : []);

test('/video shows live previews in its message while it denoises; the final message shows none', async () => {
  fake.slashCommand('/video', 'a lighthouse in a storm --frames 6 --steps 40', alice);
  const final = await fake.waitForRequest((r) => r.method === 'chat.update' && /done/.test(textOf(r)), 90_000);
  const withPreview = fake.calls('chat.update').filter((u) => imagesOf(u.body.blocks).length > 0);
  expect(withPreview.length).toBeGreaterThan(0);
  // The first comes while denoising; the last one shown stays until the final message replaces it.
  expect(textOf(withPreview[0]!)).toMatch(/denoising/);
  expect(withPreview.every((u) => u.at < final.at)).toBe(true);
  // The image block names a file the bot uploaded as a PNG, into no channel.
  const fileId = imagesOf(withPreview[0]!.body.blocks)[0]!.slack_file!.id;
  const completion = fake.calls('files.completeUploadExternal').find((c) => (c.body.files as { id: string }[]).some((f) => f.id === fileId))!;
  expect(completion.body.channel_id).toBeUndefined();
  const bytes = fake.calls('upload').find((u) => u.path.endsWith(fileId))?.bytes;
  expect(bytes?.subarray(1, 4).toString()).toBe('PNG');
  expect(imagesOf(final.body.blocks)).toEqual([]);
}, 120_000);

test('a thread reply to a picture animates it in its shape; a hostile "picture" is refused privately before any job', async () => {
  const file = fake.addFile(gradientPng(200, 100), 'wide.png', 'image/png');
  const parent = fake.addMessage(CHANNEL, { user: alice.id, text: 'my drawing', subtype: 'file_share', files: [file] });
  fake.threadReply(CHANNEL, parent.ts, alice.id, `<@${BOT_USER_ID}> the sea moves --frames 3 --steps 10 --duration 1`);
  const complete = await fake.waitForRequest((r) => r.method === 'files.completeUploadExternal' && r.body.channel_id === CHANNEL && r.body.thread_ts === parent.ts, 90_000);
  const id = (complete.body.files as { id: string }[])[0]!.id;
  const bytes = fake.calls('upload').find((u) => u.path.endsWith(id))!.bytes!;
  const out = join(dir, 'animated.mp4');
  writeFileSync(out, bytes);
  expect(await probeVideo(out, ffprobe)).toMatchObject({ width: 64, height: 32, fps: 24, frames: 24 });
  expect(complete.body.thread_ts).toBe(parent.ts);

  const svg = fake.addFile(Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><image href="http://127.0.0.1:9/x.png"/></svg>'), 'cat.png', 'image/png');
  const other = fake.addMessage(CHANNEL, { user: alice.id, text: 'a cat', subtype: 'file_share', files: [svg] });
  const jobsBefore = harness.events.filter((e) => e.type === 'queued').length;
  fake.threadReply(CHANNEL, other.ts, alice.id, `<@${BOT_USER_ID}> a cat walks`);
  const notice = await fake.waitForRequest((r) => r.method === 'chat.postEphemeral' && /SVG/.test(textOf(r)), 30_000);
  expect(textOf(notice)).toContain('it looks like an SVG drawing');
  expect(harness.events.filter((e) => e.type === 'queued').length).toBe(jobsBefore);
}, 120_000);

test('/reelbot history shows, privately, a thumbnail image block for each result still kept and none for a deleted one', async () => {
  const owner = { platform: 'slack' as const, externalId: alice.id };
  const succeeded = harness.service.history(owner, 1, 10).filter((job) => job.state === 'succeeded');
  expect(succeeded.length).toBeGreaterThanOrEqual(2);
  const [deleted, ...kept] = succeeded;
  await harness.service.deleteResult(owner, deleted!.id);

  const sent = fake.slashCommand('/reelbot', 'history', alice);
  // Acked at once with no text (the uploads may outlast Slack's 3 s); the answer comes on the response_url.
  expect((await sent.ack).payload?.text).toBeUndefined();
  const answer = await fake.waitForRequest((r) => r.method === 'response' && r.path === new URL(String(sent.payload.response_url)).pathname, 30_000);
  expect(answer.body.response_type).toBe('ephemeral');
  expect(textOf(answer)).toContain(`#${deleted!.id}`);
  const images = imagesOf(answer.body.blocks) as (Block & { title?: { text: string } })[];
  expect(images.map((image) => image.title?.text)).toEqual(kept.map((job) => `#${job.id}`));
  for (const image of images) {
    // Each names a PNG the bot uploaded into no channel.
    const fileId = image.slack_file!.id;
    const completion = fake.calls('files.completeUploadExternal').find((c) => (c.body.files as { id: string }[]).some((f) => f.id === fileId))!;
    expect(completion.body.channel_id).toBeUndefined();
    expect(fake.calls('upload').find((u) => u.path.endsWith(fileId))?.bytes?.subarray(1, 4).toString()).toBe('PNG');
  }
}, 60_000);
