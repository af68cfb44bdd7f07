import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeFrames, FfmpegError } from '../../src/media/encode.js';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { meanAbsFrameDiff } from '../../src/engine/video/metrics.js';
import { decodeFrames, probeVideo, videoInfoFromProbe } from '../../src/media/probe.js';
import type { FfprobeData } from 'fluent-ffmpeg';

const { ffmpeg: ffmpegPath, ffprobe: ffprobePath } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });

/** A horizontal/vertical gradient with a square moving 4 px right per frame. */
function movingSquare(count: number, width: number, height: number): Uint8Array[] {
  return Array.from({ length: count }, (_, frame) => {
    const pixels = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const inSquare = x >= 4 + frame * 4 && x < 20 + frame * 4 && y >= 16 && y < 32;
        const at = (y * width + x) * 3;
        pixels[at] = inSquare ? 220 : Math.round((x / width) * 200);
        pixels[at + 1] = inSquare ? 200 : Math.round((y / height) * 200);
        pixels[at + 2] = inSquare ? 40 : 100;
      }
    }
    return pixels;
  });
}

/** Mean |a − b| per byte between two frames. */
function frameDiff(a: Uint8Array, b: Uint8Array): number {
  return meanAbsFrameDiff([a, b]);
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'reelbot-video-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('encodeFrames → probeVideo → decodeFrames', () => {
  const frames = movingSquare(8, 64, 48);

  it('smooths 8 frames at 4 fps to 24 fps over the same 2 s, with in-between frames that move', async () => {
    const out = path.join(dir, 'smooth.mp4');
    await encodeFrames({ frames, width: 64, height: 48, fps: 4, smoothTo: 24, out, ffmpegPath });
    const info = await probeVideo(out, ffprobePath);
    expect(info).toMatchObject({ codec: 'h264', fps: 24, frames: 48, width: 64, height: 48 });
    expect(info.durationSeconds).toBeCloseTo(2, 1);
    const decoded = await decodeFrames(out, ffmpegPath, { width: 64, height: 48 });
    // Frame 3 of 48 lies half-way between source frames 0 and 1: not a copy of either.
    expect(frameDiff(decoded[3]!, decoded[0]!)).toBeGreaterThan(0.5);
    expect(frameDiff(decoded[3]!, decoded[6]!)).toBeGreaterThan(0.5);
    // The last source frame is held to the end.
    expect(frameDiff(decoded[47]!, frames[7]!)).toBeLessThan(frameDiff(decoded[47]!, frames[6]!));
  });

  it('smooths a GIF too, and leaves a clip that is already at the rate as it is', async () => {
    const gif = path.join(dir, 'smooth.gif');
    await encodeFrames({ frames, width: 64, height: 48, fps: 4, smoothTo: 12, out: gif, format: 'gif', ffmpegPath });
    expect(await probeVideo(gif, ffprobePath)).toMatchObject({ codec: 'gif', frames: 24 });
    const same = path.join(dir, 'same.mp4');
    await encodeFrames({ frames, width: 64, height: 48, fps: 24, smoothTo: 24, out: same, ffmpegPath });
    expect(await probeVideo(same, ffprobePath)).toMatchObject({ fps: 24, frames: 8 });
  });

  it('writes an H.264 yuv420p MP4 with every frame, at the given size and rate', async () => {
    const out = path.join(dir, 'clip.mp4');
    await encodeFrames({ frames, width: 64, height: 48, fps: 4, out, ffmpegPath });

    const info = await probeVideo(out, ffprobePath);
    expect(info).toMatchObject({ codec: 'h264', pixelFormat: 'yuv420p', frames: 8, width: 64, height: 48, fps: 4, hasAudio: false, streams: 1 });
    expect(info.formatName).toContain('mp4');
    expect(info.durationSeconds).toBeCloseTo(2, 1);
    // Only the finished file is left: no temporary file beside it.
    expect(readdirSync(dir)).toEqual(['clip.mp4']);

    const decoded = await decodeFrames(out, ffmpegPath, { width: 64, height: 48 });
    expect(decoded).toHaveLength(8);
    for (const [index, frame] of decoded.entries()) {
      expect(frame.byteLength).toBe(64 * 48 * 3);
      expect(frameDiff(frame, frames[index] as Uint8Array)).toBeLessThan(8);
    }
  });

  it('writes a GIF that decodes to the same frames', async () => {
    const out = path.join(dir, 'clip.gif');
    await encodeFrames({ frames, width: 64, height: 48, fps: 4, out, format: 'gif', ffmpegPath });

    const info = await probeVideo(out, ffprobePath);
    expect(info).toMatchObject({ codec: 'gif', formatName: 'gif', frames: 8, width: 64, height: 48, fps: 4 });

    const decoded = await decodeFrames(out, ffmpegPath, { width: 64, height: 48 });
    expect(decoded).toHaveLength(8);
    for (const [index, frame] of decoded.entries()) {
      expect(frameDiff(frame, frames[index] as Uint8Array)).toBeLessThan(8);
    }
  });

  it('pads an odd size to even for yuv420p, keeping the pixels in place', async () => {
    const odd = movingSquare(3, 63, 47);
    const out = path.join(dir, 'odd.mp4');
    await encodeFrames({ frames: odd, width: 63, height: 47, fps: 2, out, ffmpegPath });

    const info = await probeVideo(out, ffprobePath);
    expect(info).toMatchObject({ width: 64, height: 48, frames: 3 });
    const [first] = await decodeFrames(out, ffmpegPath, { width: 64, height: 48 });
    // Crop the decoded frame back to 63×47 and compare.
    const cropped = new Uint8Array(63 * 47 * 3);
    for (let y = 0; y < 47; y++) cropped.set((first as Uint8Array).subarray(y * 64 * 3, y * 64 * 3 + 63 * 3), y * 63 * 3);
    expect(frameDiff(cropped, odd[0] as Uint8Array)).toBeLessThan(8);
  });

  it('replaces an existing output file', async () => {
    const out = path.join(dir, 'clip.mp4');
    writeFileSync(out, 'old');
    await encodeFrames({ frames, width: 64, height: 48, fps: 4, out, ffmpegPath });
    expect((await probeVideo(out, ffprobePath)).frames).toBe(8);
    expect(readdirSync(dir)).toEqual(['clip.mp4']);
  });

  it('decodeFrames scales to the size asked for and stops past maxFrames', async () => {
    const out = path.join(dir, 'clip.mp4');
    await encodeFrames({ frames, width: 64, height: 48, fps: 4, out, ffmpegPath });
    const small = await decodeFrames(out, ffmpegPath, { width: 32, height: 24 });
    expect(small.map((frame) => frame.byteLength)).toEqual(Array(8).fill(32 * 24 * 3));
    await expect(decodeFrames(out, ffmpegPath, { width: 64, height: 48 }, { maxFrames: 5 })).rejects.toThrow(/more than 5 frames/);
  });
});

describe('encodeFrames cancellation and failures', () => {
  it('on abort after the first frame: kills ffmpeg, rejects with the reason, leaves no file', async () => {
    const frames = movingSquare(1, 320, 240);
    const many = Array.from({ length: 200 }, () => frames[0] as Uint8Array);
    const controller = new AbortController();
    const reason = new Error('cancelled by test');
    const out = path.join(dir, 'aborted.mp4');
    const written: number[] = [];

    const encoding = encodeFrames({
      frames: many,
      width: 320,
      height: 240,
      fps: 8,
      out,
      ffmpegPath,
      signal: controller.signal,
      onFrameWritten: (count) => {
        written.push(count);
        if (count === 1) controller.abort(reason);
      },
    });

    await expect(encoding).rejects.toBe(reason);
    expect(written).toEqual([1]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('on abort while ffmpeg is encoding: same outcome', async () => {
    const frames = movingSquare(1, 320, 240);
    const many = Array.from({ length: 400 }, () => frames[0] as Uint8Array);
    const controller = new AbortController();
    const out = path.join(dir, 'aborted.mp4');
    const encoding = encodeFrames({
      frames: many,
      width: 320,
      height: 240,
      fps: 8,
      out,
      ffmpegPath,
      signal: controller.signal,
      onFrameWritten: (count) => {
        // Frames only flow this far once ffmpeg is running and reading its input.
        if (count === 60) controller.abort();
      },
    });
    await expect(encoding).rejects.toMatchObject({ name: 'AbortError' });
    expect(readdirSync(dir)).toEqual([]);
  });

  it('an already aborted signal rejects before starting', async () => {
    const out = path.join(dir, 'never.mp4');
    const signal = AbortSignal.abort(new Error('too late'));
    await expect(encodeFrames({ frames: movingSquare(1, 8, 8), width: 8, height: 8, fps: 1, out, ffmpegPath, signal })).rejects.toThrow('too late');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('rejects bad inputs with clear errors before running ffmpeg', async () => {
    const out = path.join(dir, 'bad.mp4');
    const base = { width: 64, height: 48, fps: 4, out, ffmpegPath };
    const good = movingSquare(2, 64, 48);
    await expect(encodeFrames({ ...base, frames: [good[0] as Uint8Array, new Uint8Array(100)] })).rejects.toThrow(
      'Frame 1 has 100 bytes; a 64×48 RGB24 frame has 64×48×3 = 9216',
    );
    await expect(encodeFrames({ ...base, frames: [] })).rejects.toThrow('at least 1 frame');
    await expect(encodeFrames({ ...base, frames: good, fps: 0 })).rejects.toThrow('`fps` to be a finite number above 0, got `0`');
    await expect(encodeFrames({ ...base, frames: good, fps: Number.NaN })).rejects.toThrow('`fps`');
    await expect(encodeFrames({ ...base, frames: good, width: 0 })).rejects.toThrow('`width`');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a missing ffmpeg binary rejects (fluent-ffmpeg would crash the process on it)', async () => {
    // Earlier tests warmed fluent-ffmpeg's capability cache, the case where spawning a missing
    // binary throws an uncaught TypeError inside fluent-ffmpeg.
    const out = path.join(dir, 'clip.mp4');
    const missing = path.join(dir, 'no-ffmpeg');
    await expect(encodeFrames({ frames: movingSquare(1, 8, 8), width: 8, height: 8, fps: 1, out, ffmpegPath: missing })).rejects.toThrow(
      `Cannot run ffmpeg at ${missing} (ENOENT)`,
    );
    await expect(decodeFrames(out, missing, { width: 8, height: 8 })).rejects.toThrow(`Could not start ffmpeg at ${missing}`);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('an ffmpeg failure rejects with the end of its stderr and leaves nothing', async () => {
    const out = path.join(dir, 'missing-folder', 'clip.mp4');
    const error = await encodeFrames({ frames: movingSquare(2, 16, 16), width: 16, height: 16, fps: 2, out, ffmpegPath }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegError);
    expect((error as FfmpegError).message).toMatch(/ffmpeg could not encode .*clip\.mp4: ffmpeg exited with code 1/);
    expect((error as FfmpegError).message).toContain('No such file or directory');
    expect((error as FfmpegError).stderrTail).toContain('No such file or directory');
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('probeVideo', () => {
  it('rejects a file that is not a video, quoting ffprobe', async () => {
    const file = path.join(dir, 'page.mp4');
    writeFileSync(file, '<html><body>not a video</body></html>');
    const error = await probeVideo(file, ffprobePath).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegError);
    expect((error as Error).message).toContain('ffprobe could not read');
    expect((error as Error).message).toContain('Invalid data found when processing input');
  });

  it('reads a path that looks like a protocol or an option as a file name', async () => {
    const file = path.join(dir, '-concat:x.mp4');
    await encodeFrames({ frames: movingSquare(2, 16, 16), width: 16, height: 16, fps: 2, out: file, ffmpegPath });
    const cwd = process.cwd();
    try {
      process.chdir(dir);
      expect((await probeVideo('-concat:x.mp4', ffprobePath)).frames).toBe(2);
      expect(await decodeFrames('-concat:x.mp4', ffmpegPath, { width: 16, height: 16 })).toHaveLength(2);
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('videoInfoFromProbe', () => {
  // The shape `ffprobe -print_format json -count_frames` gives: numbers as strings.
  const json = {
    streams: [
      { codec_type: 'audio', codec_name: 'aac' },
      { codec_type: 'video', codec_name: 'h264', pix_fmt: 'yuv420p', width: 640, height: 360, nb_read_frames: '48', avg_frame_rate: '30000/1001', r_frame_rate: '30000/1001' },
    ],
    format: { format_name: 'mov,mp4,m4a,3gp,3g2,mj2', duration: '1.601600' },
    chapters: [],
  } as unknown as FfprobeData;

  it('reads the first video stream and notes audio', () => {
    const info = videoInfoFromProbe(json);
    expect(info).toMatchObject({ width: 640, height: 360, frames: 48, codec: 'h264', hasAudio: true, streams: 2, durationSeconds: 1.6016 });
    expect(info.fps).toBeCloseTo(29.97, 2);
  });

  it('refuses a file without a video stream or without a frame count', () => {
    expect(() => videoInfoFromProbe({ ...json, streams: [json.streams[0]] } as FfprobeData, 'song.m4a')).toThrow('song.m4a has no video stream');
    const uncounted = { ...json, streams: [{ ...json.streams[1], nb_read_frames: 'N/A' }] } as FfprobeData;
    expect(() => videoInfoFromProbe(uncounted, 'x.mp4')).toThrow('did not count the frames of x.mp4');
  });
});

describe('resolveFfmpegPaths', () => {
  it('uses the bundled binaries when the settings are empty', () => {
    expect(path.isAbsolute(ffmpegPath) && existsSync(ffmpegPath)).toBe(true);
    expect(path.isAbsolute(ffprobePath) && existsSync(ffprobePath)).toBe(true);
    expect(path.basename(ffmpegPath)).toBe('ffmpeg');
    expect(path.basename(ffprobePath)).toBe('ffprobe');
  });

  it('names FFMPEG_PATH / FFPROBE_PATH when the file does not exist', () => {
    const missing = path.join(dir, 'no-such-ffmpeg');
    expect(() => resolveFfmpegPaths({ ffmpegPath: missing, ffprobePath: '' })).toThrow(`FFMPEG_PATH points to ${missing}, which does not exist`);
    expect(() => resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: missing })).toThrow(`FFPROBE_PATH points to ${missing}, which does not exist`);
  });

  it('says when the file is not executable, or is a folder', () => {
    const file = path.join(dir, 'ffmpeg');
    writeFileSync(file, '#!/bin/sh\n');
    chmodSync(file, 0o644);
    expect(() => resolveFfmpegPaths({ ffmpegPath: file, ffprobePath: '' })).toThrow(/FFMPEG_PATH points to .*, which is not executable by this user \(mode 644/);
    expect(() => resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: dir })).toThrow(/FFPROBE_PATH points to .*, which is not a file/);
  });
});

describe('meanAbsFrameDiff', () => {
  it('is 0 for identical frames', () => {
    const frame = movingSquare(1, 16, 8)[0] as Uint8Array;
    expect(meanAbsFrameDiff([frame, frame, Uint8Array.from(frame)])).toBe(0);
  });

  it('averages |a − b| over every byte and every consecutive pair', () => {
    // Pair 1: |10−0| + |0−20| + |255−255| = 30 → 30 / 3 = 10.
    // Pair 2: |10−10| + |6−0| + |0−255| = 261 → 261 / 3 = 87.
    // Mean over 2 pairs × 3 bytes: (30 + 261) / 6 = 48.5.
    const frames = [Uint8Array.of(0, 20, 255), Uint8Array.of(10, 0, 255), Uint8Array.of(10, 6, 0)];
    expect(meanAbsFrameDiff(frames)).toBe(48.5);
  });

  it('needs 2 frames of one size', () => {
    expect(() => meanAbsFrameDiff([Uint8Array.of(1)])).toThrow('at least 2 frames');
    expect(() => meanAbsFrameDiff([Uint8Array.of(1, 2), Uint8Array.of(1)])).toThrow('Frame 1 has 1 bytes but frame 0 has 2');
  });
});
