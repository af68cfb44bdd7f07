import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { main } from '../../src/cli.js';
import { makeModelSet } from '../../src/engine/models/make.js';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { probeVideo } from '../../src/media/probe.js';
import { removeDir, tempDir } from '../helpers/harness.js';

const { ffmpeg, ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
let dir: string;
let modelDir: string;

beforeAll(async () => {
  dir = tempDir();
  modelDir = join(dir, 'tiny-edit');
  await makeModelSet({ size: 'tiny', kind: 'instruct-edit', out: modelDir });
});
afterAll(() => removeDir(dir));

function clip(name: string, fps: number, seconds: number, audio: boolean): string {
  const file = join(dir, name);
  const args = ['-loglevel', 'error', '-y', '-f', 'lavfi', '-i', `testsrc=size=320x240:rate=${fps}`];
  if (audio) args.push('-f', 'lavfi', '-i', 'sine=frequency=440');
  args.push('-t', String(seconds), '-c:v', 'libx264', '-pix_fmt', 'yuv420p');
  if (audio) args.push('-c:a', 'aac', '-shortest');
  execFileSync(ffmpeg, [...args, file]);
  return file;
}

async function edit(input: string, out: string, ...extra: string[]) {
  const lines: string[] = [];
  const sink = { write: (text: string) => lines.push(text) };
  const env = { REELBOT_DB_PATH: join(dir, 'edit.db'), REELBOT_OUTPUT_DIR: join(dir, 'outputs') };
  const code = await main(['node', 'reelbot', 'edit', '--input', input, '--instruction', 'make it snowy', '--model', modelDir, '--steps', '3', '--seed', '1', '--out', out, ...extra], {
    stdout: sink,
    stderr: sink,
    env,
  });
  return { code, text: lines.join('') };
}

test('an edited clip keeps its frame count, frame rate, duration and audio', async () => {
  const input = clip('eight-fps.mp4', 8, 1.5, true);
  const out = join(dir, 'edited.mp4');
  const { code, text } = await edit(input, out);
  expect(code, text).toBe(0);
  const before = await probeVideo(input, ffprobe);
  const after = await probeVideo(out, ffprobe);
  expect(after).toMatchObject({ frames: before.frames, fps: 8, hasAudio: true, codec: 'h264', width: 64, height: 64 });
  expect(Math.abs(after.durationSeconds - before.durationSeconds)).toBeLessThan(0.2);
});

test('reelbot edit --smooth interpolates the edited frames to 24 fps over the source clip\'s duration', async () => {
  const input = clip('smooth-source.mp4', 8, 1.5, true);
  const out = join(dir, 'edited-smooth.mp4');
  const { code, text } = await edit(input, out, '--smooth');
  expect(code, text).toBe(0);
  expect(text).toContain('(smoothed)');
  const before = await probeVideo(input, ffprobe);
  const after = await probeVideo(out, ffprobe);
  expect(after).toMatchObject({ fps: 24, hasAudio: true, codec: 'h264', width: 64, height: 64 });
  expect(Math.abs(after.durationSeconds - before.durationSeconds)).toBeLessThan(0.2);
  expect(after.frames).toBe(Math.round(before.durationSeconds * 24));
});

test('a clip above the frame-rate cap is edited at the cap and lasts as long', async () => {
  const input = clip('thirty-fps.mp4', 30, 1, false);
  const out = join(dir, 'capped.mp4');
  const { code, text } = await edit(input, out, '--anchors', '1');
  expect(code, text).toBe(0);
  const after = await probeVideo(out, ffprobe);
  expect(after).toMatchObject({ fps: 12, frames: 12, hasAudio: false });
});

test('a file that is not a video is refused with a clear message and no charge', async () => {
  const fake = join(dir, 'fake.mp4');
  execFileSync('sh', ['-c', `printf '<html><body>login</body></html>' > '${fake}'`]);
  const { code, text } = await edit(fake, join(dir, 'never.mp4'));
  expect(code).toBe(1);
  expect(text).toMatch(/This file is not a video \(it looks like a web page\)\. .* It was not charged\./);
});
