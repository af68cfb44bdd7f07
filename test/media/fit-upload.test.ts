import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UploadTooLargeError, fitToLimit } from '../../src/media/fit-upload.js';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { probeVideo } from '../../src/media/probe.js';

const { ffmpeg, ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
let dir: string;
let clip: string;
let clipBytes: number;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'reelbot-fit-'));
  clip = path.join(dir, 'clip.mp4');
  // 4 s of a moving test pattern with noise at 640×480, 25 fps, near-lossless: a few MB that
  // compress a lot when re-encoded at a lower bitrate.
  const result = spawnSync(ffmpeg, [
    '-nostdin', '-hide_banner', '-loglevel', 'error',
    '-f', 'lavfi', '-i', 'testsrc2=size=640x480:rate=25:duration=4',
    '-vf', 'noise=alls=30:allf=t',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-qp', '8', '-pix_fmt', 'yuv420p',
    clip,
  ]);
  expect(result.status, String(result.stderr)).toBe(0);
  clipBytes = statSync(clip).size;
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  return mkdtempSync(path.join(dir, 'out-'));
}

describe('fitToLimit', () => {
  it('GIVEN a video under the limit THEN returns it unchanged with no steps', async () => {
    const out = tempDir();
    const fitted = await fitToLimit(clip, clipBytes + 1, { ffmpegPath: ffmpeg, ffprobePath: ffprobe, tempDir: out });
    expect(fitted).toEqual({ file: clip, bytes: clipBytes, steps: [], format: 'mp4' });
    expect(readdirSync(out)).toEqual([]);
  });

  it('GIVEN a limit below the size THEN re-encodes H.264 under the limit, decodable, original kept', async () => {
    expect(clipBytes).toBeGreaterThan(1024 * 1024);
    const limit = 600 * 1024;
    const out = tempDir();
    const fitted = await fitToLimit(clip, limit, { ffmpegPath: ffmpeg, ffprobePath: ffprobe, tempDir: out });
    expect(fitted.format).toBe('mp4');
    expect(fitted.note).toBeUndefined();
    expect(path.dirname(fitted.file)).toBe(out);
    expect(fitted.bytes).toBe(statSync(fitted.file).size);
    expect(fitted.bytes).toBeLessThanOrEqual(limit);
    expect(fitted.steps.length).toBeGreaterThanOrEqual(2);
    expect(fitted.steps.at(-1)).toMatch(/H\.264 .* fits$/);
    const info = await probeVideo(fitted.file, ffprobe);
    expect(info.codec).toBe('h264');
    expect(info.pixelFormat).toBe('yuv420p');
    expect(info.frames).toBe(100);
    expect(statSync(clip).size).toBe(clipBytes);
    // Attempts that were too big are not left behind.
    expect(readdirSync(out)).toEqual([path.basename(fitted.file)]);
  });

  it('GIVEN a limit too low for useful H.264 THEN sends a GIF preview with a note saying why', async () => {
    const limit = 25 * 1024;
    const fitted = await fitToLimit(clip, limit, { ffmpegPath: ffmpeg, ffprobePath: ffprobe, tempDir: tempDir() });
    expect(fitted.format, fitted.steps.join('\n')).toBe('gif');
    expect(fitted.bytes).toBeLessThanOrEqual(limit);
    expect(fitted.note).toMatch(/^The full video was too large for this channel \(\d+(\.\d)? MB, limit 25 KB\); here is a preview\.$/);
    const info = await probeVideo(fitted.file, ffprobe);
    expect(info.codec).toBe('gif');
    expect(fitted.steps.some((step) => step.includes('useful minimum'))).toBe(true);
  });

  it('GIVEN an absurd limit THEN throws a clear error and leaves no files', async () => {
    const out = tempDir();
    const error = await fitToLimit(clip, 500, { ffmpegPath: ffmpeg, ffprobePath: ffprobe, tempDir: out }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UploadTooLargeError);
    expect((error as UploadTooLargeError).userMessage).toMatch(/too large for this channel \(.* MB, limit 500 B\), and even a short preview does not fit/);
    expect(readdirSync(out)).toEqual([]);
  });

  it('GIVEN an aborted signal THEN rejects with its reason', async () => {
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    await expect(fitToLimit(clip, 1000, { ffmpegPath: ffmpeg, ffprobePath: ffprobe, tempDir: tempDir(), signal: controller.signal })).rejects.toThrow('stop');
  });
});
