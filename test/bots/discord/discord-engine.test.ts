/**
 * Discord on the real built-in engine: `/video` runs Text2Video-Zero on a tiny model set in a
 * worker process and the MP4 that reaches the fake decodes; `/edit` of that very MP4 runs the
 * instruct-edit pipeline on a tiny edit set and uploads the edited clip.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import { makeModelSet } from '../../../src/engine/models/make.js';
import { resolveFfmpegPaths } from '../../../src/media/ffmpeg-paths.js';
import { probeVideo } from '../../../src/media/probe.js';
import { FakeDiscord, snowflake, type RecordedRequest } from '../../fakes/fake-discord.js';
import { removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { gradientPng } from '../../helpers/pictures.js';
import { isOriginalEdit, isPrivateFollowUp, newAdapter } from './setup.js';

const { ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
const alice = { id: snowflake(), username: 'alice' };

let dir: string;
let harness: Harness;
let fake: FakeDiscord;
let adapter: DiscordAdapter;

beforeAll(async () => {
  dir = tempDir();
  await makeModelSet({ size: 'tiny', kind: 'text2video', out: join(dir, 'tiny') });
  await makeModelSet({ size: 'tiny', kind: 'instruct-edit', out: join(dir, 'tiny-edit') });
  harness = startService(join(dir, 'service'), { engineModule: '', modelDir: join(dir, 'tiny'), editModelDir: join(dir, 'tiny-edit'), editSteps: 3, jobs: { timeoutSeconds: 120 }, previews: { intervalSeconds: 0.02 } });
  fake = await FakeDiscord.start();
  adapter = newAdapter(fake, harness.service, dir, { clipDir: join(dir, 'clips'), progressIntervalMs: 50 });
  await adapter.start();
}, 60_000);

afterAll(async () => {
  await adapter?.stop();
  await fake?.close();
  await harness?.close();
  removeDir(dir);
});

const isUpload = (token: string) => (r: RecordedRequest) => isOriginalEdit(token)(r) && r.files.some((file) => /\.(mp4|gif)$/.test(file.name)) && r.status === 200;

/** Writes an uploaded file out and probes it with ffprobe. */
async function probeUpload(upload: RecordedRequest, name: string) {
  const file = join(dir, name);
  writeFileSync(file, upload.files[0]!.data);
  return probeVideo(file, ffprobe);
}

test('/video on the tiny engine uploads a decodable MP4, and /edit of that MP4 uploads the edited clip', async () => {
  const video = fake.slashCommand(alice, { prompt: 'a corgi surfing at sunset', frames: 4, steps: 3, seed: 5 });
  fake.sendInteraction(video);
  const made = await fake.waitForRequest(isUpload(video.token), 90_000);
  expect(made.files[0]!.contentType).toBe('video/mp4');
  // Smoothed by default: 4 made frames shown over 1 s, interpolated to 24 fps.
  expect(await probeUpload(made, 'made.mp4')).toMatchObject({ codec: 'h264', frames: 24, width: 64, height: 64, fps: 24 });
  expect((made.body as { content: string }).content).toMatch(/seed `5`/);

  const clip = fake.hostFile('made.mp4', made.files[0]!.data);
  const edit = fake.editCommand(alice, clip, 'make it snowy --anchors 2');
  fake.sendInteraction(edit);
  const edited = await fake.waitForRequest(isUpload(edit.token), 90_000);
  expect(edited.files[0]!.contentType).toBe('video/mp4');
  // The 24 fps clip is edited at the 12 fps input cap: 12 frames.
  expect(await probeUpload(edited, 'edited.mp4')).toMatchObject({ codec: 'h264', frames: 12, width: 64, height: 64 });
  expect((edited.body as { content: string }).content).toMatch(/edited: “make it snowy”/);
}, 180_000);

test('/video shows live previews on its message while it denoises, and the final message replaces them with the video', async () => {
  const video = fake.slashCommand(alice, { prompt: 'a lighthouse in a storm', frames: 6, steps: 40, seed: 9 });
  fake.sendInteraction(video);
  const upload = await fake.waitForRequest(isUpload(video.token), 90_000);
  const edits = fake.requestsFor(video).filter(isOriginalEdit(video.token));
  const previews = edits.filter((r) => r.files.some((file) => file.name === 'preview.png'));
  expect(previews.length).toBeGreaterThan(0);
  const png = previews[0]!.files[0]!;
  expect(png.contentType).toBe('image/png');
  expect(png.data.subarray(1, 4).toString()).toBe('PNG');
  // Previews ride on progress edits (the text is the progress bar) and come before the upload.
  expect((previews[0]!.body as { content: string }).content).toMatch(/denoising/);
  expect(previews.every((r) => r.at <= upload.at)).toBe(true);
  // The final message carries only the video: the preview attachment is gone, and no edit follows it.
  expect(upload.files.map((file) => file.name)).toEqual([expect.stringMatching(/\.mp4$/)]);
  expect((upload.body as { attachments: unknown[] }).attachments).toHaveLength(1);
  expect(edits.filter((r) => r.at > upload.at)).toEqual([]);
}, 120_000);

test('/video image: animates the picture in its own shape; a hostile "picture" is refused privately before any job exists', async () => {
  const picture = fake.hostFile('wide.png', gradientPng(200, 100), { contentType: 'image/png' });
  const video = fake.slashCommand(alice, { prompt: 'the sea moves', image: picture, frames: 3, steps: 10, duration: 1, seed: 3 });
  fake.sendInteraction(video);
  const made = await fake.waitForRequest(isUpload(video.token), 90_000);
  expect(await probeUpload(made, 'animated.mp4')).toMatchObject({ codec: 'h264', width: 64, height: 32, fps: 24, frames: 24 });

  const svg = fake.hostFile('cat.png', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><image href="http://127.0.0.1:9/x.png"/></svg>'), { contentType: 'image/png' });
  const hostile = fake.slashCommand(alice, { prompt: 'a cat', image: svg, frames: 2, steps: 3 });
  fake.sendInteraction(hostile);
  // Refused privately as soon as its first bytes are in, before any job exists.
  const refused = await fake.waitForRequest(isPrivateFollowUp(hostile.token), 30_000);
  expect((refused.body as { content: string }).content).toContain('it looks like an SVG drawing');
  expect(fake.requestsFor(hostile).filter(isUpload(hostile.token))).toEqual([]);
  expect(harness.events.filter((e) => e.type === 'queued' && e.job.params.prompt === 'a cat')).toEqual([]);
}, 180_000);

test('/history shows the thumbnails of the results still kept beside its text', async () => {
  const history = fake.command(alice, 'history');
  fake.sendInteraction(history);
  const answer = await fake.waitForRequest((r) => isOriginalEdit(history.token)(r) && r.status === 200, 30_000);
  expect((answer.body as { content: string }).content).toMatch(/#\d+/);
  const kept = harness.service.history({ platform: 'discord', externalId: alice.id }, 1, 10).filter((job) => job.state === 'succeeded');
  expect(kept.length).toBeGreaterThan(0);
  expect(answer.files.map((file) => file.name)).toEqual(kept.map((job) => `job-${job.id}.png`));
  for (const file of answer.files) expect(file.data.subarray(1, 4).toString()).toBe('PNG');
}, 60_000);
