import { type SpawnOptions, execFileSync, spawn as nodeSpawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, UserError } from '../../src/errors.js';
import { AUDIO_SOURCE_DEMUXERS, encodeFrames } from '../../src/media/encode.js';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import {
  ACCEPTED_CONTAINERS,
  type InputLimits,
  type SpawnFunction,
  decodeArgs,
  decodeClip,
  ffprobeArgs,
  modelFrameSize,
  sniffContainer,
} from '../../src/media/input.js';
import { probeVideo } from '../../src/media/probe.js';

const { ffmpeg: ffmpegPath, ffprobe: ffprobePath } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });

const LIMITS: InputLimits = { maxBytes: 5 * 1024 * 1024, maxDurationSeconds: 10, maxWidth: 3840, maxHeight: 3840, maxFrames: 240, maxFps: 12 };

/** Runs the bundled ffmpeg to make a fixture (argv array, quiet). */
function makeWithFfmpeg(...args: string[]): void {
  execFileSync(ffmpegPath, ['-hide_banner', '-loglevel', 'error', '-y', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

let fixtures: string;
/** 320×240, 25 fps, 2 s, H.264 + AAC sine, moov first. */
let clip: string;
beforeAll(() => {
  fixtures = mkdtempSync(path.join(tmpdir(), 'reelbot-input-fixtures-'));
  clip = path.join(fixtures, 'clip.mp4');
  makeWithFfmpeg(
    '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25:duration=2',
    '-f', 'lavfi', '-i', 'sine=frequency=440:duration=2',
    '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-shortest', '-movflags', '+faststart', clip,
  );
});
afterAll(() => {
  rmSync(fixtures, { recursive: true, force: true });
});

/** The job's temp dir; every upload is placed here, as the bot does after downloading. */
let jobDir: string;
/** Another temp dir, standing for "the rest of the machine" that playlists point into. */
let elsewhere: string;
/** Every process decodeClip starts, by binary name. */
let spawned: string[];
const countingSpawn: SpawnFunction = (command: string, args: readonly string[], options: SpawnOptions) => {
  spawned.push(path.basename(command));
  return nodeSpawn(command, args, options);
};
beforeEach(() => {
  jobDir = mkdtempSync(path.join(tmpdir(), 'reelbot-job-'));
  elsewhere = mkdtempSync(path.join(tmpdir(), 'reelbot-elsewhere-'));
  spawned = [];
});
afterEach(() => {
  rmSync(jobDir, { recursive: true, force: true });
  rmSync(elsewhere, { recursive: true, force: true });
});

function upload(name: string, content: string | Uint8Array): string {
  const file = path.join(jobDir, name);
  writeFileSync(file, content);
  return file;
}

function decode(file: string, limits: Partial<InputLimits> = {}, resolution = 256) {
  return decodeClip(file, { ffmpegPath, ffprobePath, limits: { ...LIMITS, ...limits }, resolution, tempDir: jobDir, spawn: countingSpawn });
}

/** decodeClip's refusal: must be a UserError with a user message. */
async function refusal(file: string, limits: Partial<InputLimits> = {}): Promise<UserError> {
  const error: unknown = await decode(file, limits).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(UserError);
  return error as UserError;
}

describe('decodeClip: a valid clip', () => {
  it('gives model-size RGB24 frames at the capped rate, keeps the source facts, and the edit keeps the audio', async () => {
    const file = path.join(jobDir, 'upload.mp4');
    copyFileSync(clip, file);

    const decoded = await decode(file);
    // 320×240 at 256: long side 256, short side round(192/64)·64 = 192.
    expect(decoded).toMatchObject({ width: 256, height: 192, sourceWidth: 320, sourceHeight: 240, sourceFps: 25, fps: 12, hasAudio: true, audioCodec: 'aac' });
    expect(decoded.durationSeconds).toBeCloseTo(2, 1);
    // 2 s at 12 fps.
    expect(decoded.frames).toHaveLength(24);
    for (const frame of decoded.frames) expect(frame.byteLength).toBe(256 * 192 * 3);
    expect(spawned).toEqual(['ffprobe', 'ffmpeg']);

    // The edited frames go out at the capped rate with the original audio: same length as the upload.
    const out = path.join(jobDir, 'edit.mp4');
    await encodeFrames({ frames: decoded.frames, width: decoded.width, height: decoded.height, fps: decoded.fps, out, ffmpegPath, audioFrom: file, audioCodec: decoded.audioCodec });
    const info = await probeVideo(out, ffprobePath);
    expect(info).toMatchObject({ hasAudio: true, frames: 24, fps: 12, width: 256, height: 192, streams: 2 });
    expect(info.durationSeconds).toBeCloseTo(2, 0);
    expect(Math.abs(info.durationSeconds - 2)).toBeLessThan(0.15);
  });

  it('sizes a phone clip by its displayed orientation (rotated 90°)', async () => {
    const file = path.join(jobDir, 'upload.mp4');
    makeWithFfmpeg('-i', clip, '-c', 'copy', '-metadata:s:v:0', 'rotate=90', file);
    const decoded = await decode(file);
    expect(decoded).toMatchObject({ sourceWidth: 240, sourceHeight: 320, width: 192, height: 256 });
    expect(decoded.frames[0]?.byteLength).toBe(192 * 256 * 3);
  });

  it('does not cap a clip already under maxFps, and encoding without audioFrom stays silent', async () => {
    const file = path.join(jobDir, 'upload.mp4');
    copyFileSync(clip, file);
    const decoded = await decode(file, { maxFps: 30 }, 64);
    expect(decoded).toMatchObject({ width: 64, height: 64, fps: 25, sourceFps: 25 });
    expect(decoded.frames).toHaveLength(50);
    const out = path.join(jobDir, 'edit.mp4');
    await encodeFrames({ frames: decoded.frames, width: 64, height: 64, fps: decoded.fps, out, ffmpegPath });
    expect(await probeVideo(out, ffprobePath)).toMatchObject({ hasAudio: false, frames: 50 });
  });
});

describe('decodeClip: refused before any process starts', () => {
  it('refuses an HLS playlist renamed .mp4 that points at a local file elsewhere', async () => {
    const target = path.join(elsewhere, 'secret.ts');
    copyFileSync(clip, target);
    const file = upload('upload.mp4', `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n${target}\n#EXT-X-ENDLIST\n`);
    const error = await refusal(file);
    expect(error.code).toBe(ErrorCode.InputPlaylist);
    expect(error.userMessage).toMatch(/playlist/i);
    // Only our own code read the upload's first bytes: neither ffprobe nor ffmpeg ran, so nothing
    // could have followed the playlist to `target`.
    expect(spawned).toEqual([]);
  });

  it('refuses an HLS playlist that points at an http URL', async () => {
    const file = upload('upload.mp4', '\uFEFF#EXTM3U\n#EXTINF:2.0,\nhttp://127.0.0.1:9/segment.ts\n#EXT-X-ENDLIST\n');
    const error = await refusal(file);
    expect(error.code).toBe(ErrorCode.InputPlaylist);
    expect(spawned).toEqual([]);
  });

  it('refuses ffconcat and bare concat lists', async () => {
    const target = path.join(elsewhere, 'secret.mp4');
    const concat = await refusal(upload('upload.mp4', `ffconcat version 1.0\nfile '${target}'\n`));
    expect(concat.code).toBe(ErrorCode.InputPlaylist);
    expect(concat.userMessage).toMatch(/concat list/);
    const bare = await refusal(upload('other.mp4', `file '${target}'\n`));
    expect(bare.code).toBe(ErrorCode.InputPlaylist);
    expect(spawned).toEqual([]);
  });

  it('refuses text and HTML as "not a video"', async () => {
    const text = await refusal(upload('upload.mp4', 'hello, this is not a video at all\n'));
    expect(text.code).toBe(ErrorCode.InputNotVideo);
    expect(text.userMessage).toMatch(/not a video/);
    const html = await refusal(upload('page.mp4', '<!DOCTYPE html><html><body>Access denied</body></html>'));
    expect(html.code).toBe(ErrorCode.InputNotVideo);
    expect(html.userMessage).toMatch(/web page/);
    expect(spawned).toEqual([]);
  });

  it('refuses an empty file', async () => {
    const error = await refusal(upload('upload.mp4', ''));
    expect(error.code).toBe(ErrorCode.InputEmpty);
    expect(error.userMessage).toMatch(/empty/);
    expect(spawned).toEqual([]);
  });

  it('refuses a file over maxBytes by its size alone', async () => {
    const file = path.join(jobDir, 'upload.mp4');
    copyFileSync(clip, file);
    const error = await refusal(file, { maxBytes: 1000 });
    expect(error.code).toBe(ErrorCode.InputFileTooLarge);
    expect(error.userMessage).toMatch(/too large \(file size/);
    expect(spawned).toEqual([]);
  });

  it('refuses an unknown binary format', async () => {
    const error = await refusal(upload('upload.mp4', new Uint8Array([0x47, 0x00, 0x11, 0x10, 0x00, 0xff, 0xfe, 0x80, 0x01])));
    expect(error.code).toBe(ErrorCode.InputUnsupportedFormat);
    expect(spawned).toEqual([]);
  });

  it('refuses a file outside the job temp dir as a programming error', async () => {
    const outside = path.join(elsewhere, 'clip.mp4');
    copyFileSync(clip, outside);
    await expect(decode(outside)).rejects.toThrow(TypeError);
    expect(spawned).toEqual([]);
  });
});

describe('decodeClip: refused from the header (ffprobe only, nothing decoded)', () => {
  it('refuses dimensions over the limit', async () => {
    const file = path.join(jobDir, 'wide.mp4');
    makeWithFfmpeg('-f', 'lavfi', '-i', 'color=c=red:size=4000x16:rate=5:duration=0.4', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', file);
    const error = await refusal(file);
    expect(error.code).toBe(ErrorCode.InputDimensionsTooLarge);
    expect(error.userMessage).toContain('4000×16');
    expect(error.userMessage).toMatch(/too large/);
    expect(spawned).toEqual(['ffprobe']);
  });

  it('refuses a clip longer than maxDurationSeconds', async () => {
    const file = path.join(jobDir, 'upload.mp4');
    copyFileSync(clip, file);
    const error = await refusal(file, { maxDurationSeconds: 1 });
    expect(error.code).toBe(ErrorCode.InputTooLong);
    expect(error.userMessage).toMatch(/too long: 2\.0 s; the limit is 1 s/);
    expect(spawned).toEqual(['ffprobe']);
  });

  it('refuses too many frames from duration × capped fps, before decoding', async () => {
    const file = path.join(jobDir, 'upload.mp4');
    copyFileSync(clip, file);
    const error = await refusal(file, { maxFrames: 20 });
    expect(error.code).toBe(ErrorCode.InputTooManyFrames);
    expect(error.userMessage).toMatch(/about 24 at 12 fps; the limit is 20/);
    expect(spawned).toEqual(['ffprobe']);
  });

  it('refuses an unsupported codec', async () => {
    const file = path.join(jobDir, 'upload.mkv');
    makeWithFfmpeg('-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=5:duration=0.4', '-c:v', 'ffv1', file);
    const error = await refusal(file);
    expect(error.code).toBe(ErrorCode.InputUnsupportedCodec);
    expect(error.userMessage).toContain('ffv1');
    expect(spawned).toEqual(['ffprobe']);
  });

  it('refuses two video streams, and none', async () => {
    const two = path.join(jobDir, 'two.mkv');
    makeWithFfmpeg(
      '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=5:duration=0.4',
      '-f', 'lavfi', '-i', 'testsrc=size=32x32:rate=5:duration=0.4',
      '-map', '0:v', '-map', '1:v', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', two,
    );
    const multiple = await refusal(two);
    expect(multiple.code).toBe(ErrorCode.InputMultipleVideoStreams);
    expect(multiple.userMessage).toMatch(/2 video tracks/);

    const audioOnly = path.join(jobDir, 'sound.m4a');
    makeWithFfmpeg('-f', 'lavfi', '-i', 'sine=frequency=440:duration=0.5', '-c:a', 'aac', audioOnly);
    const none = await refusal(audioOnly);
    expect(none.code).toBe(ErrorCode.InputNoVideoStream);
    expect(spawned).toEqual(['ffprobe', 'ffprobe']);
  });

  it('refuses a corrupt file: a valid MP4 signature, garbled body', async () => {
    const head = readFileSync(clip).subarray(0, 32);
    const garbage = new Uint8Array(4096).map((_, index) => (index * 131 + 7) % 251);
    const error = await refusal(upload('upload.mp4', new Uint8Array([...head, ...garbage])));
    expect(error.code).toBe(ErrorCode.InputCorrupt);
    expect(error.userMessage).toMatch(/could not be read/);
    expect(spawned).toEqual(['ffprobe']);
  });
});

describe('decodeClip: refused while decoding', () => {
  it('refuses a truncated clip whose header is intact as corrupt', async () => {
    const file = path.join(jobDir, 'upload.mp4');
    copyFileSync(clip, file);
    truncateSync(file, Math.floor(readFileSync(clip).length * 0.8));
    const error = await refusal(file);
    expect(error.code).toBe(ErrorCode.InputCorrupt);
    expect(error.userMessage).toMatch(/could not be decoded/);
    expect(spawned).toEqual(['ffprobe', 'ffmpeg']);
  });

  it('enforces maxFrames while reading when the header gives no duration', async () => {
    // Matroska written to a pipe has no duration in its header (like browser MediaRecorder WebM).
    const mkv = execFileSync(
      ffmpegPath,
      ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10:duration=3', '-c:v', 'libx264', '-pix_fmt', 'yuv420p', '-f', 'matroska', 'pipe:1'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const file = upload('upload.mkv', mkv);
    const error = await refusal(file, { maxFrames: 10 });
    expect(error.code).toBe(ErrorCode.InputTooManyFrames);
    expect(error.userMessage).toMatch(/more than 10 frames/);
    expect(spawned).toEqual(['ffprobe', 'ffmpeg']);
  });
});

describe('the argv itself never follows a playlist (were the sniffer ever fooled)', () => {
  /**
   * Starts a process and watches a FIFO: opening a FIFO for reading blocks until a writer comes,
   * and a non-blocking open for writing succeeds only while a reader has it open (else ENXIO).
   * So if the process ever tries to read the FIFO we see it; if it exits without us seeing it,
   * it never opened it (a blocked open could not have finished without our writer).
   */
  async function opensFifo(binary: string, args: string[], fifo: string): Promise<boolean> {
    const child = nodeSpawn(binary, args, { stdio: 'ignore', cwd: jobDir, env: {} });
    const closed = once(child, 'close');
    let opened = false;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
        opened = true;
        break;
      } catch {
        await delay(10);
      }
    }
    child.kill('SIGKILL');
    await closed;
    return opened;
  }

  it('a playlist pointing at a FIFO elsewhere: read by ffmpeg with only -protocol_whitelist file, untouched with our argv', async () => {
    const fifo = path.join(elsewhere, 'segment.ts');
    execFileSync('mkfifo', [fifo]);
    const playlist = upload('upload.mp4', `#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n${fifo}\n#EXT-X-ENDLIST\n`);

    // Control: the colleague's warning reproduced — the (2018) ffmpeg guesses HLS and opens the FIFO.
    const naive = ['-nostdin', '-v', 'error', '-protocol_whitelist', 'file', '-i', `file:${playlist}`, '-f', 'null', '-'];
    expect(await opensFifo(ffmpegPath, naive, fifo)).toBe(true);

    // Ours, as if the sniffer had wrongly said MP4: forced demuxer + format whitelist.
    const target = { streamIndex: 0, width: 64, height: 64, fps: 12, maxFrames: 10 };
    for (const container of Object.keys(ACCEPTED_CONTAINERS) as Array<keyof typeof ACCEPTED_CONTAINERS>) {
      expect(await opensFifo(ffmpegPath, decodeArgs(playlist, container, target), fifo)).toBe(false);
      expect(await opensFifo(ffprobePath, ffprobeArgs(playlist, container), fifo)).toBe(false);
    }
  });
});

describe('pure parts', () => {
  it('sizes frames like the reference: long side = resolution, multiples of 64, at least 64', () => {
    // 96/64 = 1.5 rounds to 2 (numpy, and JS alike): not 128×64.
    expect(modelFrameSize(320, 240, 128)).toEqual({ width: 128, height: 128 });
    // 288/64 = 4.5 rounds to even 4 as numpy does (Math.round would give 5 → 320).
    expect(modelFrameSize(1920, 1080, 512)).toEqual({ width: 512, height: 256 });
    expect(modelFrameSize(1080, 1920, 512)).toEqual({ width: 256, height: 512 });
    expect(modelFrameSize(640, 480, 512)).toEqual({ width: 512, height: 384 });
    expect(modelFrameSize(4000, 16, 512)).toEqual({ width: 512, height: 64 });
    // A UNet with 5 levels needs multiples of 128: the sides round to that instead.
    expect(modelFrameSize(640, 480, 512, 128)).toEqual({ width: 512, height: 384 });
    expect(modelFrameSize(1920, 1080, 512, 128)).toEqual({ width: 512, height: 256 });
    expect(modelFrameSize(4000, 16, 512, 128)).toEqual({ width: 512, height: 128 });
    // A shallower UNet (multiples of 32) still gets the reference's 64.
    expect(modelFrameSize(640, 480, 512, 32)).toEqual({ width: 512, height: 384 });
    expect(modelFrameSize(320, 240, 64)).toEqual({ width: 64, height: 64 });
  });

  it('sniffs the accepted signatures and names the refused ones', () => {
    const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
    expect(sniffContainer(readFileSync(clip).subarray(0, 64))).toEqual({ ok: true, container: 'mov' });
    expect(sniffContainer(new Uint8Array([0x1a, 0x45, 0xdf, 0xa3, 1, 2]))).toEqual({ ok: true, container: 'matroska' });
    expect(sniffContainer(bytes('GIF89a....'))).toEqual({ ok: true, container: 'gif' });
    expect(sniffContainer(bytes('RIFF\u0000\u0000\u0000\u0000AVI LIST'))).toEqual({ ok: true, container: 'avi' });
    expect(sniffContainer(bytes('  #EXTM3U\n'))).toMatchObject({ ok: false, code: ErrorCode.InputPlaylist });
    expect(sniffContainer(bytes('<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash">'))).toMatchObject({ ok: false, code: ErrorCode.InputPlaylist });
    expect(sniffContainer(bytes('https://example.com/video.mp4'))).toMatchObject({ ok: false, code: ErrorCode.InputPlaylist });
    expect(sniffContainer(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a]))).toMatchObject({ ok: false, code: ErrorCode.InputNotVideo });
    expect(sniffContainer(new Uint8Array())).toMatchObject({ ok: false, code: ErrorCode.InputEmpty });
  });

  it("encode's audio whitelist is exactly the containers decodeClip accepts", () => {
    const accepted = Object.values(ACCEPTED_CONTAINERS).flatMap((container) => container.names);
    expect(AUDIO_SOURCE_DEMUXERS.split(',').sort()).toEqual([...accepted].sort());
  });
});
