/**
 * Untrusted pictures in (`/video image:`, a Slack image, `reelbot render --image`): check, then
 * decode one RGB24 frame at the model's size, keeping the picture's aspect ratio.
 *
 * The same layers as clips (src/media/input.ts), for stills:
 * 1. `stat` (regular file inside the job's folder, size limit) and our own sniff of the first
 *    bytes: only PNG, JPEG and WebP signatures pass. SVG (which can reference other files and
 *    URLs), HTML, text, videos and everything else are refused by name before any process starts.
 * 2. The header's dimensions are checked before anything is decoded: read from the PNG's IHDR by
 *    us (a "PNG bomb", a tiny file that claims a huge canvas, never reaches a decoder), and from
 *    ffprobe for JPEG and WebP.
 * 3. ffprobe and ffmpeg are told the demuxer (`-f png_pipe`…) with `-format_whitelist` and
 *    `-protocol_whitelist file` on a `file:` path, run with an empty environment and a timeout,
 *    and exactly one frame of exactly the expected size must come out.
 */
import { realpath, stat } from 'node:fs/promises';
import { ErrorCode, UserError } from '../errors.js';
import { FfmpegError } from './encode.js';
import { insideTempDir, readHead, runChild, type SpawnFunction } from './input.js';

/** Limits on pictures (the clip limits' bytes and dimensions). */
export interface ImageLimits {
  maxBytes: number;
  maxWidth: number;
  maxHeight: number;
}

export type ImageType = 'png' | 'jpeg' | 'webp';

/** ffmpeg's image demuxer for each accepted type. */
const DEMUXERS: Record<ImageType, string> = { png: 'png_pipe', jpeg: 'jpeg_pipe', webp: 'webp_pipe' };

const SUPPORTED = 'Please send a PNG, JPEG or WebP picture.';
const SNIFF_BYTES = 512;
const PROBE_TIMEOUT_MS = 10_000;
const DECODE_TIMEOUT_MS = 30_000;

export type ImageSniff = { ok: true; type: ImageType; width?: number; height?: number } | { ok: false; message: string };

/**
 * Tells from a file's first bytes whether it is a picture we accept (and, for PNG, its
 * dimensions from IHDR), or why not. Pure; never throws.
 */
export function sniffImage(head: Uint8Array): ImageSniff {
  const ascii = (from: number, to: number): string => String.fromCharCode(...head.subarray(from, to));
  if (head.length >= 24 && head[0] === 0x89 && ascii(1, 8) === 'PNG\r\n\u001a\n') {
    if (ascii(12, 16) !== 'IHDR') return { ok: false, message: `The picture could not be read: the PNG is damaged. ${SUPPORTED}` };
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    return { ok: true, type: 'png', width: view.getUint32(16), height: view.getUint32(20) };
  }
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return { ok: true, type: 'jpeg' };
  if (head.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return { ok: true, type: 'webp' };
  const text = new TextDecoder('utf-8', { fatal: false }).decode(head).replace(/^\uFEFF/, '').trimStart().toLowerCase();
  const notImage = (what: string) => ({ ok: false as const, message: `This file is not a picture we can animate (it looks like ${what}). ${SUPPORTED}` });
  if (text.includes('<svg')) return notImage('an SVG drawing, which can point to other files');
  if (text.startsWith('<!doctype html') || text.startsWith('<html') || /^<(head|body|meta|script)\b/.test(text)) return notImage('a web page');
  if (text.startsWith('<')) return notImage('an XML document');
  if (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a') return notImage('a GIF; send it as a clip to edit instead');
  if (head.length >= 8 && ['ftyp', 'moov', 'mdat'].includes(ascii(4, 8))) return notImage('a video; send it as a clip to edit instead');
  if (ascii(0, 4) === '%PDF') return notImage('a PDF document');
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(text)) return notImage('a link');
  return { ok: false, message: `This file is not a picture format we accept. ${SUPPORTED}` };
}

export interface DecodeImageOptions {
  ffmpegPath: string;
  ffprobePath: string;
  limits: ImageLimits;
  /** The model's long side (512 for SD 1.5). */
  resolution: number;
  /** Each side a multiple of this (the UNet's; 64 for SD 1.x). */
  sizeMultiple: number;
  /** The job's folder: `file` must be inside it; the children run there. */
  tempDir: string;
  signal?: AbortSignal;
  spawn?: SpawnFunction;
}

export interface DecodedImage {
  /** RGB24, `width × height × 3` bytes. */
  rgb: Uint8Array;
  width: number;
  height: number;
  sourceWidth: number;
  sourceHeight: number;
  type: ImageType;
}

/**
 * Checks an uploaded picture and decodes it to RGB24 at the model's size: the long side
 * `resolution`, each side a multiple of `sizeMultiple`, the aspect ratio kept as near as the
 * multiples allow ({@link pictureFrameSize}).
 * Rejects with a {@link UserError} for a bad picture, with `signal.reason` when aborted.
 */
export async function decodeImage(file: string, options: DecodeImageOptions): Promise<DecodedImage> {
  const { limits, signal } = options;
  signal?.throwIfAborted();
  // 1. The file: ours, regular, not empty, within the size limit; our own sniff.
  const absolute = await insideTempDir(file, options.tempDir);
  const stats = await stat(absolute);
  if (!stats.isFile()) throw new TypeError(`Expected ${absolute} to be a regular file`);
  if (stats.size === 0) throw new UserError(ErrorCode.InputEmpty, 'The picture is empty (0 bytes). Please upload it again.');
  if (stats.size > limits.maxBytes) {
    throw new UserError(ErrorCode.InputFileTooLarge, `The picture is too large (${megabytes(stats.size)}); the limit is ${megabytes(limits.maxBytes)}.`, { context: { bytes: stats.size } });
  }
  const sniffed = sniffImage(await readHead(absolute, SNIFF_BYTES));
  if (!sniffed.ok) throw new UserError(ErrorCode.InputNotImage, sniffed.message);
  if (sniffed.width !== undefined && sniffed.height !== undefined) checkDimensions(sniffed.width, sniffed.height, limits);

  // 2. ffprobe: the header's dimensions, the demuxer forced.
  const demuxer = DEMUXERS[sniffed.type];
  const input = ['-protocol_whitelist', 'file', '-format_whitelist', demuxer, '-f', demuxer, '-i', `file:${await realpath(absolute)}`];
  const probe = await runChild(options.ffprobePath, ['-v', 'error', ...input, '-print_format', 'json', '-show_streams', '-select_streams', 'v:0'], {
    cwd: options.tempDir,
    timeoutMs: PROBE_TIMEOUT_MS,
    signal,
    spawn: options.spawn,
    maxStdout: 256 * 1024,
  });
  signal?.throwIfAborted();
  const stream = probe.code === 0 ? firstStream(probe.stdout) : undefined;
  if (stream === undefined) throw unreadable(new FfmpegError(`ffprobe could not read ${absolute}`, probe.stderr));
  const sourceWidth = stream.width;
  const sourceHeight = stream.height;
  checkDimensions(sourceWidth, sourceHeight, limits);
  if (sniffed.width !== undefined && (sniffed.width !== sourceWidth || sniffed.height !== sourceHeight)) {
    throw unreadable(new Error(`IHDR says ${sniffed.width}×${sniffed.height}, ffprobe ${sourceWidth}×${sourceHeight}`));
  }

  // 3. One frame at the model's size.
  const { width, height } = pictureFrameSize(sourceWidth, sourceHeight, options.resolution, options.sizeMultiple);
  const expected = width * height * 3;
  const chunks: Buffer[] = [];
  let bytes = 0;
  const decoded = await runChild(
    options.ffmpegPath,
    ['-hide_banner', '-nostdin', '-loglevel', 'error', '-xerror', ...input, '-frames:v', '1', '-vf', `scale=${width}:${height}`, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'],
    {
      cwd: options.tempDir,
      timeoutMs: DECODE_TIMEOUT_MS,
      signal,
      spawn: options.spawn,
      onStdout: (chunk, kill) => {
        bytes += chunk.length;
        if (bytes > expected) kill();
        else chunks.push(chunk);
      },
    },
  );
  signal?.throwIfAborted();
  if (decoded.timedOut) throw new UserError(ErrorCode.InputTimedOut, 'The picture took too long to read and was skipped. Please send a simpler one.');
  if (decoded.code !== 0 || bytes !== expected) throw unreadable(new FfmpegError(`ffmpeg gave ${bytes} of ${expected} bytes for ${absolute}`, decoded.stderr));
  return { rgb: new Uint8Array(Buffer.concat(chunks)), width, height, sourceWidth, sourceHeight, type: sniffed.type };
}

/**
 * A picture's size for the model: scaled so the long side is `resolution`, each side rounded to
 * the nearest multiple of `sizeMultiple` (at least one). Clips round to 64 as the Video-IP2P
 * reference does; a picture rounds only as far as the UNet needs, so its shape survives on
 * small models too. 1024×576 at 512 / 64 → 512×320 (16:9 → 1.6, the nearest the multiples allow).
 */
export function pictureFrameSize(width: number, height: number, resolution: number, sizeMultiple: number): { width: number; height: number } {
  const k = resolution / Math.max(width, height);
  const side = (value: number): number => Math.max(sizeMultiple, Math.round((value * k) / sizeMultiple) * sizeMultiple);
  return { width: side(width), height: side(height) };
}

function checkDimensions(width: number, height: number, limits: ImageLimits): void {
  if (!(width >= 1 && height >= 1)) throw unreadable(new Error(`a picture of ${width}×${height} pixels`));
  if (width > limits.maxWidth || height > limits.maxHeight) {
    throw new UserError(
      ErrorCode.InputDimensionsTooLarge,
      `The picture's dimensions are too large: ${width}×${height} pixels; the limit is ${limits.maxWidth}×${limits.maxHeight}. Please send a smaller picture.`,
      { context: { width, height } },
    );
  }
}

function unreadable(cause: unknown): UserError {
  return new UserError(ErrorCode.InputCorrupt, `The picture could not be read: the file looks damaged. ${SUPPORTED}`, { cause });
}

function firstStream(json: string): { width: number; height: number } | undefined {
  try {
    const data = JSON.parse(json) as { streams?: Array<{ codec_type?: unknown; width?: unknown; height?: unknown }> };
    const stream = data.streams?.find((s) => s.codec_type === 'video');
    if (stream && typeof stream.width === 'number' && typeof stream.height === 'number') return { width: stream.width, height: stream.height };
  } catch {
    // not JSON: unreadable
  }
  return undefined;
}

function megabytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
