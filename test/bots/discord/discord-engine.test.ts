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
import { isOriginalEdit, newAdapter } from './setup.js';

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
  harness = startService(join(dir, 'service'), { engineModule: '', modelDir: join(dir, 'tiny'), editModelDir: join(dir, 'tiny-edit'), editSteps: 3, jobs: { timeoutSeconds: 120 } });
  fake = await FakeDiscord.start();
  adapter = newAdapter(fake, harness.service, dir, { clipDir: join(dir, 'clips') });
  await adapter.start();
}, 60_000);

afterAll(async () => {
  await adapter?.stop();
  await fake?.close();
  await harness?.close();
  removeDir(dir);
});

const isUpload = (token: string) => (r: RecordedRequest) => isOriginalEdit(token)(r) && r.files.length > 0 && r.status === 200;

/** Writes an uploaded file out and probes it with ffprobe. */
async function probeUpload(upload: RecordedRequest, name: string) {
  const file = join(dir, name);
  writeFileSync(file, upload.files[0]!.data);
  return probeVideo(file, ffprobe);
}

test('/video on the tiny engine uploads a decodable MP4, and /edit of that MP4 uploads the edited clip', async () => {
  const video = fake.slashCommand(alice, { prompt: 'a corgi surfing at sunset', frames: 4, steps: 3, fps: 4, seed: 5 });
  fake.sendInteraction(video);
  const made = await fake.waitForRequest(isUpload(video.token), 90_000);
  expect(made.files[0]!.contentType).toBe('video/mp4');
  expect(await probeUpload(made, 'made.mp4')).toMatchObject({ codec: 'h264', frames: 4, width: 64, height: 64, fps: 4 });
  expect((made.body as { content: string }).content).toMatch(/seed `5`/);

  const clip = fake.hostFile('made.mp4', made.files[0]!.data);
  const edit = fake.editCommand(alice, clip, 'make it snowy --anchors 2');
  fake.sendInteraction(edit);
  const edited = await fake.waitForRequest(isUpload(edit.token), 90_000);
  expect(edited.files[0]!.contentType).toBe('video/mp4');
  expect(await probeUpload(edited, 'edited.mp4')).toMatchObject({ codec: 'h264', frames: 4, width: 64, height: 64 });
  expect((edited.body as { content: string }).content).toMatch(/edited: “make it snowy”/);
}, 180_000);
