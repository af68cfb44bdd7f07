import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { deflateSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { decodeImage, pictureFrameSize, sniffImage } from '../../src/media/image-input.js';
import { gradientPng } from '../helpers/pictures.js';

const { ffmpeg: ffmpegPath, ffprobe: ffprobePath } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
const LIMITS = { maxBytes: 1024 * 1024, maxWidth: 3840, maxHeight: 3840 };

/** A PNG whose header claims `width × height` with a few bytes of data: a decompression bomb's shape. */
function bombPng(width: number, height: number): Buffer {
  const good = gradientPng(2, 2);
  const bomb = Buffer.from(good);
  bomb.writeUInt32BE(width, 16);
  bomb.writeUInt32BE(height, 20);
  return Buffer.concat([bomb, deflateSync(Buffer.alloc(1024))]);
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'reelbot-image-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const options = () => ({ ffmpegPath, ffprobePath, limits: LIMITS, resolution: 64, sizeMultiple: 16, tempDir: dir });

function write(name: string, data: Buffer | string): string {
  const file = path.join(dir, name);
  writeFileSync(file, data);
  return file;
}

describe('decodeImage', () => {
  it('decodes a PNG at the model size, keeping its 2:1 shape, pixels where they were', async () => {
    const picture = await decodeImage(write('wide.png', gradientPng(200, 100)), options());
    expect(picture).toMatchObject({ width: 64, height: 32, sourceWidth: 200, sourceHeight: 100, type: 'png' });
    expect(picture.rgb.length).toBe(64 * 32 * 3);
    // Red grows to the right, green downwards: the picture was not flipped or cropped.
    const at = (x: number, y: number) => Array.from(picture.rgb.subarray((y * 64 + x) * 3, (y * 64 + x) * 3 + 3));
    expect(at(63, 16)[0]!).toBeGreaterThan(at(0, 16)[0]! + 200);
    expect(at(32, 31)[1]!).toBeGreaterThan(at(32, 0)[1]! + 200);
  });

  it('decodes a JPEG and a WebP made by ffmpeg; a tall picture stays tall', async () => {
    const jpeg = path.join(dir, 'tall.jpg');
    execFileSync(ffmpegPath, ['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=90x160', '-frames:v', '1', jpeg]);
    expect(await decodeImage(jpeg, options())).toMatchObject({ width: 32, height: 64, type: 'jpeg' });
    const webp = path.join(dir, 'square.webp');
    execFileSync(ffmpegPath, ['-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=size=120x120', '-frames:v', '1', webp]);
    expect(await decodeImage(webp, options())).toMatchObject({ width: 64, height: 64, type: 'webp' });
  });

  it('refuses an SVG with external references, HTML, a video, text and an empty file, before any process starts', async () => {
    let spawned = 0;
    const counting = { ...options(), spawn: (() => { spawned++; throw new Error('no process may start'); }) as never };
    const svg = '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><image xlink:href="http://127.0.0.1:9/secret.png" width="10" height="10"/></svg>';
    await expect(decodeImage(write('cat.svg', svg), counting)).rejects.toMatchObject({ code: ErrorCode.InputNotImage, userMessage: expect.stringContaining('SVG') });
    await expect(decodeImage(write('cat.png', '<!doctype html><html><img src="file:///etc/passwd"></html>'), counting)).rejects.toMatchObject({ code: ErrorCode.InputNotImage, userMessage: expect.stringContaining('web page') });
    await expect(decodeImage(write('clip.png', Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypisom'), Buffer.alloc(32)])), counting)).rejects.toMatchObject({ code: ErrorCode.InputNotImage, userMessage: expect.stringContaining('video') });
    await expect(decodeImage(write('notes.png', 'just some words'), counting)).rejects.toMatchObject({ code: ErrorCode.InputNotImage });
    await expect(decodeImage(write('empty.png', ''), counting)).rejects.toMatchObject({ code: ErrorCode.InputEmpty });
    expect(spawned).toBe(0);
  });

  it('refuses a PNG bomb (a tiny file claiming 100000×100000 pixels) from its header, with the limit', async () => {
    let spawned = 0;
    const counting = { ...options(), spawn: (() => { spawned++; throw new Error('no process may start'); }) as never };
    const error = await decodeImage(write('bomb.png', bombPng(100_000, 100_000)), counting).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: ErrorCode.InputDimensionsTooLarge, userMessage: 'The picture\'s dimensions are too large: 100000×100000 pixels; the limit is 3840×3840. Please send a smaller picture.' });
    expect(spawned).toBe(0);
  });

  it('refuses a file over the byte limit and a damaged PNG with clear messages, leaving nothing behind', async () => {
    await expect(decodeImage(write('big.png', Buffer.concat([gradientPng(4, 4), Buffer.alloc(LIMITS.maxBytes)])), options())).rejects.toMatchObject({ code: ErrorCode.InputFileTooLarge });
    const damaged = gradientPng(40, 40).subarray(0, 60);
    await expect(decodeImage(write('damaged.png', damaged), options())).rejects.toMatchObject({ code: ErrorCode.InputCorrupt, userMessage: expect.stringMatching(/^The picture could not be read/) });
    expect(readdirSync(dir).sort()).toEqual(['big.png', 'damaged.png']);
  });
});

describe('sniffImage and pictureFrameSize', () => {
  it('reads the PNG header size and says what a refused file looks like', () => {
    expect(sniffImage(gradientPng(7, 5))).toEqual({ ok: true, type: 'png', width: 7, height: 5 });
    expect(sniffImage(Buffer.from('GIF89a....'))).toMatchObject({ ok: false, message: expect.stringContaining('GIF') });
    expect(sniffImage(Buffer.from('%PDF-1.7'))).toMatchObject({ ok: false, message: expect.stringContaining('PDF') });
  });

  it('scales the long side to the resolution and rounds each side only to the UNet multiple', () => {
    expect(pictureFrameSize(1920, 1080, 512, 64)).toEqual({ width: 512, height: 320 });
    expect(pictureFrameSize(1080, 1920, 512, 64)).toEqual({ width: 320, height: 512 });
    expect(pictureFrameSize(200, 100, 64, 16)).toEqual({ width: 64, height: 32 });
    expect(pictureFrameSize(4000, 10, 64, 16)).toEqual({ width: 64, height: 16 });
  });
});
