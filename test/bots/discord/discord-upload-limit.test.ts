/**
 * Failure mode 3 of platforms.md with a video that is really over Discord's 10 MiB floor: a real
 * discord.js Client on the fake Discord, a real JobService whose worker makes a ~14 MiB H.264 MP4
 * of noise (failure-engine.ts, "big"), and the bundled ffmpeg fitting it. The small-video retry
 * at the floor is in discord-adapter.test.ts; these cases need a file between 10 and 25 MiB.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import { resolveFfmpegPaths } from '../../../src/media/ffmpeg-paths.js';
import { probeVideo } from '../../../src/media/probe.js';
import { FakeDiscord, snowflake, type RecordedRequest } from '../../fakes/fake-discord.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { BIG_VIDEO } from './failure-engine.js';
import { isOriginalEdit, newAdapter } from './setup.js';

const FAILURE_ENGINE = fileURLToPath(new URL('./failure-engine.ts', import.meta.url));
const MiB = 1024 * 1024;
const FLOOR = 10 * MiB;
const BOOSTED = 25 * MiB;

const alice = { id: snowflake(), username: 'alice' };

let dir: string;
let harness: Harness;
let fake: FakeDiscord;
let adapter: DiscordAdapter;

beforeEach(async () => {
  dir = tempDir();
  harness = startService(dir, { engineModule: FAILURE_ENGINE });
  fake = await FakeDiscord.start();
  adapter = newAdapter(fake, harness.service, dir, { registerCommands: false });
  await adapter.start();
});
afterEach(async () => {
  await adapter.stop();
  await fake.close();
  await harness.close();
  removeDir(dir);
});

const uploads = (token: string) => fake.requests.filter((r) => isOriginalEdit(token)(r) && r.files.length > 0);
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const contentOf = (request: RecordedRequest) => (request.body as { content?: string } | undefined)?.content ?? '';

/** Sends `/video big …` with the given limit; resolves with the job's own output file once it succeeded. */
async function bigVideo(attachmentSizeLimit: number): Promise<{ interaction: { id: string; token: string }; original: Buffer }> {
  const interaction = fake.slashCommand(alice, { prompt: 'big noise' }, { attachmentSizeLimit });
  fake.sendInteraction(interaction);
  await harness.waitFor(isType('succeeded'), 30_000);
  const done = harness.events.find(isType('succeeded'))!;
  const file = (done.result as { file: string }).file;
  const original = readFileSync(file);
  // The engine really made a video between the floor and the boosted limit.
  expect(original.length).toBeGreaterThan(FLOOR);
  expect(original.length).toBeLessThan(BOOSTED);
  expect(statSync(file).size).toBe(original.length);
  return { interaction, original };
}

/** Probes uploaded bytes with the bundled ffprobe. */
async function probeUpload(request: RecordedRequest) {
  const path = join(dir, `uploaded-${request.at}.mp4`);
  writeFileSync(path, request.files[0]!.data);
  return probeVideo(path, resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' }).ffprobe);
}

describe('Discord failure mode 3: uploads over 10 MiB', () => {
  it('a 25 MiB attachment_size_limit sends a 10–25 MiB video as it is, not re-encoded', async () => {
    const { interaction, original } = await bigVideo(BOOSTED);
    const upload = await fake.waitForRequest((r) => isOriginalEdit(interaction.token)(r) && r.files.length > 0 && r.status === 200, 30_000);
    expect(uploads(interaction.token)).toHaveLength(1);
    expect(upload.files[0]!.size).toBe(original.length);
    expect(sha(upload.files[0]!.data)).toBe(sha(original));
    expect(upload.files[0]).toMatchObject({ contentType: 'video/mp4' });
    expect(contentOf(upload)).toMatch(/\*\*Job #\d+\*\* done/);
  }, 45_000);

  it('refused with 413 / 40005 at 25 MiB anyway, the video is re-encoded to fit 10 MiB and sent again', async () => {
    fake.rejectUpload('PATCH', /\/messages\/@original$/);
    const { interaction, original } = await bigVideo(BOOSTED);
    const retried = await fake.waitForRequest((r) => isOriginalEdit(interaction.token)(r) && r.files.length > 0 && r.status === 200, 45_000);
    const [refused, ...rest] = uploads(interaction.token);
    expect(refused).toMatchObject({ status: 413 });
    expect(refused!.files[0]!.size).toBe(original.length);
    expect(rest).toEqual([retried]);

    const sent = retried.files[0]!;
    expect(sent.size).toBeLessThanOrEqual(FLOOR);
    expect(sent.contentType).toBe('video/mp4');
    expect(sent.name).toMatch(/\.mp4$/);
    const info = await probeUpload(retried);
    expect(info.codec).toBe('h264');
    expect(info.pixelFormat).toBe('yuv420p');
    expect(info.frames).toBeGreaterThan(0);
    expect(info.durationSeconds).toBeCloseTo(BIG_VIDEO.seconds, 0);
    expect(contentOf(retried)).toMatch(/\*\*Job #\d+\*\* done/);
  }, 60_000);

  it('at the default 10 MiB limit the video is fitted before the first upload, with no 413', async () => {
    const { interaction, original } = await bigVideo(FLOOR);
    const upload = await fake.waitForRequest((r) => isOriginalEdit(interaction.token)(r) && r.files.length > 0, 45_000);
    expect(upload.status).toBe(200);
    expect(uploads(interaction.token)).toHaveLength(1);
    expect(upload.files[0]!.size).toBeLessThanOrEqual(FLOOR);
    expect(upload.files[0]!.size).toBeLessThan(original.length);
    const info = await probeUpload(upload);
    expect(info.codec).toBe('h264');
  }, 60_000);
});
