/**
 * Untrusted clips in: check, then decode to RGB24 frames at the model's size.
 *
 * An uploaded file is hostile until proven otherwise. It is read in four layers, each of which
 * alone would stop a streaming playlist (HLS, concat list…) from making ffmpeg read other files:
 *
 * 1. `stat` (regular file, size limit) and our own sniff of its first bytes: only MP4/MOV,
 *    Matroska/WebM, GIF and AVI signatures pass, and playlists, concat lists, HTML and text are
 *    refused by name before any process starts.
 * 2. ffprobe and ffmpeg are told the demuxer (`-f mov`…), so they never guess the format from
 *    the content, and `-format_whitelist` refuses any other demuxer, nested ones included.
 * 3. `-protocol_whitelist file` and a `file:<absolute path>` input: no URL, no `concat:`/`subfile:`.
 * 4. The file must lie inside the job's temp dir, and the children run there with an empty
 *    environment, a wall-clock timeout and no stdin.
 *
 * Limits are checked from ffprobe's header answer before anything is decoded (no `-count_frames`:
 * it decodes the whole stream), and the frame limit is enforced again while frames are read.
 */
import { type ChildProcess, type SpawnOptions, spawn as nodeSpawn } from 'node:child_process';
import { open, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, UserError } from '../errors.js';
import { FfmpegError } from './encode.js';
import { formatBytes } from './format-bytes.js';
import { RawFrameSplitter } from './raw-frames.js';

/** Limits on uploaded clips (the `input` settings). */
export interface InputLimits {
  maxBytes: number;
  maxDurationSeconds: number;
  maxWidth: number;
  maxHeight: number;
  /** Frames after the frame-rate cap, i.e. frames the pipeline will edit. */
  maxFrames: number;
  /** Clips are decoded at most at this rate (frames dropped evenly by ffmpeg's `fps` filter). */
  maxFps: number;
}

/** The part of `child_process.spawn` we use; tests pass a wrapper to count or veto processes. */
export type SpawnFunction = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess;

/** Options of {@link probeClip}. */
export interface ProbeClipOptions {
  ffprobePath: string;
  limits: InputLimits;
  /** The job's temp dir: `file` must be inside it; the child runs there. */
  tempDir: string;
  /** Aborting kills ffprobe and rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** ffprobe is killed after this long (default 10 s) and the clip refused as unreadable. */
  probeTimeoutMs?: number;
  /** Defaults to `child_process.spawn`. */
  spawn?: SpawnFunction;
}

/** Options of {@link decodeClip}. */
export interface DecodeClipOptions extends ProbeClipOptions {
  ffmpegPath: string;
  /** The model's long side in pixels (512 for SD 1.5, 128 for the tiny set). */
  resolution: number;
  /** Each side is rounded to a multiple of this and of 64 (the reference's 64; a deeper UNet may need 128). Default 64. */
  sizeMultiple?: number;
  /** ffmpeg is killed after this long (default 120 s). */
  decodeTimeoutMs?: number;
}

/** The containers we accept. `demuxer` is forced with `-f`; `names` is ffprobe's `format_name` and the `-format_whitelist`. */
export const ACCEPTED_CONTAINERS = {
  mov: { demuxer: 'mov', names: ['mov', 'mp4', 'm4a', '3gp', '3g2', 'mj2'] },
  matroska: { demuxer: 'matroska', names: ['matroska', 'webm'] },
  gif: { demuxer: 'gif', names: ['gif'] },
  avi: { demuxer: 'avi', names: ['avi'] },
} as const;
export type Container = keyof typeof ACCEPTED_CONTAINERS;

/**
 * Video codecs we accept (ffprobe's `codec_name`). Anything else (raw video, lossless archive
 * codecs, screen codecs…) is refused up front rather than failing somewhere in the decoder.
 */
const ACCEPTED_VIDEO_CODECS = new Set([
  'h264',
  'hevc',
  'vp8',
  'vp9',
  'av1',
  'mpeg4',
  'mpeg1video',
  'mpeg2video',
  'mjpeg',
  'prores',
  'h263',
  'msmpeg4v3',
  'gif',
]);

/** What {@link probeClip} learned from the header, after every limit passed. */
export interface ClipProbe {
  container: Container;
  /** ffprobe's `format_name`, e.g. `mov,mp4,m4a,3gp,3g2,mj2`. */
  formatName: string;
  codec: string;
  /** Index of the one video stream (cover art excluded), for `-map 0:<index>`. */
  videoStreamIndex: number;
  /** Displayed size: width and height are swapped for clips rotated by ±90° (phones). */
  sourceWidth: number;
  sourceHeight: number;
  sourceFps: number;
  /** `undefined` when the container does not say (e.g. WebM from MediaRecorder). */
  durationSeconds: number | undefined;
  /** Frames that decoding will produce after the `maxFps` cap (an estimate from the header). */
  estimatedFrames: number | undefined;
  hasAudio: boolean;
  /** ffprobe's name of the first audio stream's codec (`aac`, `opus`…). */
  audioCodec: string | undefined;
}

/** What {@link decodeClip} returns. */
export interface DecodedClip {
  /** RGB24, `width * height * 3` bytes each, rows top to bottom. */
  frames: Uint8Array[];
  width: number;
  height: number;
  /** The clip's own rate (avg_frame_rate, else r_frame_rate). */
  sourceFps: number;
  /** The rate of `frames`: `min(sourceFps, limits.maxFps)`. Encode the edited frames at this rate. */
  fps: number;
  sourceWidth: number;
  sourceHeight: number;
  durationSeconds: number;
  hasAudio: boolean;
  audioCodec: string | undefined;
}

const PROBE_TIMEOUT_MS = 10_000;
const DECODE_TIMEOUT_MS = 120_000;
/** Bytes sniffed; enough for every signature and to tell text from binary. */
const SNIFF_BYTES = 512;
/** ffprobe's JSON for one accepted clip is a few kB; more means something is off. */
const MAX_PROBE_OUTPUT = 1024 * 1024;
const STDERR_KEEP = 16_384;

const SUPPORTED_FORMATS = 'Please send an MP4, MOV, WebM, MKV, GIF or AVI video.';

/**
 * Checks an uploaded clip against the limits and decodes it to RGB24 frames whose long side is
 * `resolution` and whose sides are multiples of 64, at most `limits.maxFps` frames per second.
 *
 * Rejects with a {@link UserError} (one {@link ErrorCode} per reason, message written for the
 * user) for a bad clip, with `signal.reason` when aborted, and with a plain Error when ffmpeg or
 * ffprobe cannot be started (our side, not the user's).
 *
 * @example
 * const clip = await decodeClip(path.join(jobDir, 'upload'), { ffmpegPath, ffprobePath, limits: settings.input, resolution: 512, tempDir: jobDir, signal });
 * // clip.frames: 512×384 RGB24 frames at clip.fps (≤ maxFps); encode the edit at clip.fps with audioFrom: the upload.
 */
export async function decodeClip(file: string, options: DecodeClipOptions): Promise<DecodedClip> {
  const { ffmpegPath, limits, resolution, signal } = options;
  if (!Number.isInteger(resolution) || resolution < 64) {
    throw new TypeError(`Expected \`resolution\` to be an integer from 64 and up, got \`${String(resolution)}\``);
  }
  if (typeof ffmpegPath !== 'string' || ffmpegPath === '') {
    throw new TypeError('Expected `ffmpegPath` to be the path of an ffmpeg binary (see resolveFfmpegPaths), got an empty value');
  }

  // 1. Check the file and its header; nothing is decoded before every limit has passed.
  const probe = await probeClip(file, options);
  const absolute = await realpath(file);

  // 2. Output size and rate.
  const { width, height } = modelFrameSize(probe.sourceWidth, probe.sourceHeight, resolution, options.sizeMultiple);
  const capped = probe.sourceFps > limits.maxFps;
  const fps = capped ? limits.maxFps : probe.sourceFps;

  // 3. Decode, counting frames as they arrive.
  const args = decodeArgs(absolute, probe.container, {
    streamIndex: probe.videoStreamIndex,
    width,
    height,
    fps: capped ? limits.maxFps : undefined,
    maxFrames: limits.maxFrames,
  });
  const splitter = new RawFrameSplitter(width, height);
  const frames = splitter.frames;
  let tooMany = false;
  const result = await runChild(ffmpegPath, args, {
    cwd: options.tempDir,
    timeoutMs: options.decodeTimeoutMs ?? DECODE_TIMEOUT_MS,
    signal,
    spawn: options.spawn,
    onStdout: (chunk, kill) => {
      if (tooMany) return;
      splitter.push(chunk, (count) => {
        if (count <= limits.maxFrames) return true;
        tooMany = true;
        kill();
        return false;
      });
    },
  });
  signal?.throwIfAborted();

  // 4. Judge the outcome.
  if (tooMany) {
    throw new UserError(
      ErrorCode.InputTooManyFrames,
      `The video has more than ${limits.maxFrames} frames at ${formatFps(fps)} fps, the most we can edit. Please send a shorter clip.`,
      { context: { maxFrames: limits.maxFrames, fps } },
    );
  }
  if (result.timedOut) throw timedOut('decode', result.stderr);
  if (result.code !== 0) {
    const stderr = result.stderr;
    const cause = new FfmpegError(`ffmpeg could not decode ${absolute}: ${describeExit(result)}`, stderr);
    if (/decoder \(codec [^)]*\) not found|unknown decoder|no decoder/i.test(stderr)) {
      throw unsupportedCodec(probe.codec, cause);
    }
    throw new UserError(
      ErrorCode.InputCorrupt,
      'The video could not be decoded: the file looks damaged or incomplete. Try exporting or uploading it again.',
      { cause },
    );
  }
  if (frames.length === 0 || splitter.partialBytes !== 0) {
    throw new UserError(ErrorCode.InputCorrupt, 'The video could not be decoded: it has no readable frames. Try exporting or uploading it again.', {
      cause: new FfmpegError(`ffmpeg gave ${frames.length} whole frames and ${splitter.partialBytes} extra bytes for ${absolute}`, result.stderr),
    });
  }
  const durationSeconds = probe.durationSeconds ?? frames.length / fps;
  if (probe.durationSeconds === undefined) checkDuration(durationSeconds, fps, limits);

  return {
    frames,
    width,
    height,
    sourceFps: probe.sourceFps,
    fps,
    sourceWidth: probe.sourceWidth,
    sourceHeight: probe.sourceHeight,
    durationSeconds,
    hasAudio: probe.hasAudio,
    audioCodec: probe.audioCodec,
  };
}

/**
 * Steps 1–3 of {@link decodeClip} on their own: stat, sniff, ffprobe (with a timeout, the
 * demuxer forced), then every limit checked from the header. Resolves with what decoding needs.
 */
export async function probeClip(file: string, options: ProbeClipOptions): Promise<ClipProbe> {
  const { ffprobePath, limits, signal } = options;
  if (typeof ffprobePath !== 'string' || ffprobePath === '') {
    throw new TypeError('Expected `ffprobePath` to be the path of an ffprobe binary (see resolveFfmpegPaths), got an empty value');
  }
  signal?.throwIfAborted();

  // 1. The file itself: ours, regular, within the size limit.
  const absolute = await insideTempDir(file, options.tempDir);
  const stats = await stat(absolute);
  if (!stats.isFile()) throw new TypeError(`Expected ${absolute} to be a regular file`);
  if (stats.size === 0) {
    throw new UserError(ErrorCode.InputEmpty, 'The file is empty (0 bytes). Please upload the video again.');
  }
  if (stats.size > limits.maxBytes) {
    throw new UserError(
      ErrorCode.InputFileTooLarge,
      `The video is too large (file size ${formatBytes(stats.size)}); the limit is ${formatBytes(limits.maxBytes)}. Please send a shorter or smaller clip.`,
      { context: { bytes: stats.size, maxBytes: limits.maxBytes } },
    );
  }

  // 2. Our own look at the first bytes, so that ffprobe never opens a playlist at all.
  const sniffed = sniffContainer(await readHead(absolute, SNIFF_BYTES));
  if (!sniffed.ok) throw new UserError(sniffed.code, sniffed.message);
  const container = sniffed.container;

  // 3. ffprobe, killed after the timeout.
  const result = await runChild(ffprobePath, ffprobeArgs(absolute, container), {
    cwd: options.tempDir,
    timeoutMs: options.probeTimeoutMs ?? PROBE_TIMEOUT_MS,
    signal,
    spawn: options.spawn,
    maxStdout: MAX_PROBE_OUTPUT,
  });
  signal?.throwIfAborted();
  if (result.timedOut) throw timedOut('probe', result.stderr);
  const data = result.code === 0 ? parseProbe(result.stdout) : undefined;
  if (data === undefined) {
    throw corrupt(new FfmpegError(`ffprobe could not read ${absolute}: ${describeExit(result)}`, result.stderr));
  }
  const formatName = typeof data.format?.format_name === 'string' ? data.format.format_name : '';
  // Cannot differ with `-f` forced; checked anyway so a wrong demuxer can never slip through.
  const allowed: readonly string[] = ACCEPTED_CONTAINERS[container].names;
  if (!formatName.split(',').every((name) => allowed.includes(name))) {
    throw new UserError(ErrorCode.InputUnsupportedFormat, `This video format (${formatName || 'unknown'}) is not supported. ${SUPPORTED_FORMATS}`);
  }

  // 4. Streams: exactly one video stream (cover art does not count), a codec we decode.
  const streams = data.streams ?? [];
  const videos = streams.filter((stream) => stream.codec_type === 'video' && stream.disposition?.attached_pic !== 1);
  const [video] = videos;
  if (video === undefined) {
    throw new UserError(ErrorCode.InputNoVideoStream, 'The file has no video track (is it audio only or a picture?). Please send a video.');
  }
  if (videos.length > 1) {
    throw new UserError(
      ErrorCode.InputMultipleVideoStreams,
      `The file has ${videos.length} video tracks; we can only edit a video with exactly one. Please export it with a single video track.`,
      { context: { videoStreams: videos.length } },
    );
  }
  const codec = typeof video.codec_name === 'string' ? video.codec_name : '';
  if (!ACCEPTED_VIDEO_CODECS.has(codec)) throw unsupportedCodec(codec);
  const audio = streams.find((stream) => stream.codec_type === 'audio');

  // 5. Size, rate, duration, frames: all from the header, nothing decoded.
  const codedWidth = toNumber(video.width);
  const codedHeight = toNumber(video.height);
  const sourceFps = toRate(video.avg_frame_rate) ?? toRate(video.r_frame_rate);
  if (codedWidth === undefined || codedHeight === undefined || codedWidth < 1 || codedHeight < 1 || sourceFps === undefined) {
    throw corrupt(new Error(`ffprobe gave no frame size or rate for ${absolute}: ${JSON.stringify({ codedWidth, codedHeight, sourceFps })}`));
  }
  const quarterTurn = Math.abs(rotationOf(video)) % 180 === 90;
  const sourceWidth = quarterTurn ? codedHeight : codedWidth;
  const sourceHeight = quarterTurn ? codedWidth : codedHeight;
  if (sourceWidth > limits.maxWidth || sourceHeight > limits.maxHeight) {
    throw new UserError(
      ErrorCode.InputDimensionsTooLarge,
      `The video's dimensions are too large: ${sourceWidth}×${sourceHeight} pixels; the limit is ${limits.maxWidth}×${limits.maxHeight}. Please send a smaller video.`,
      { context: { width: sourceWidth, height: sourceHeight } },
    );
  }
  const durationSeconds = positive(toNumber(data.format?.duration)) ?? positive(toNumber(video.duration));
  const fps = Math.min(sourceFps, limits.maxFps);
  if (durationSeconds !== undefined) checkDuration(durationSeconds, sourceFps, limits);
  // Two header estimates, the larger wins: duration × rate, and the container's frame count
  // thinned by the cap. `-count_frames` would be exact but decodes the whole stream first.
  const claimed = toNumber(video.nb_frames);
  const fromDuration = durationSeconds === undefined ? undefined : Math.round(durationSeconds * fps);
  const fromCount = claimed === undefined ? undefined : Math.round(claimed * (fps / sourceFps));
  const estimates = [fromDuration, fromCount].filter((value): value is number => value !== undefined);
  const estimatedFrames = estimates.length === 0 ? undefined : Math.max(...estimates);
  if (estimatedFrames !== undefined && estimatedFrames > limits.maxFrames) {
    throw new UserError(
      ErrorCode.InputTooManyFrames,
      `The video has too many frames: about ${estimatedFrames} at ${formatFps(fps)} fps; the limit is ${limits.maxFrames}. Please send a shorter clip.`,
      { context: { estimatedFrames, maxFrames: limits.maxFrames, fps } },
    );
  }

  return {
    container,
    formatName,
    codec,
    videoStreamIndex: toNumber(video.index) ?? 0,
    sourceWidth,
    sourceHeight,
    sourceFps,
    durationSeconds,
    estimatedFrames,
    hasAudio: audio !== undefined,
    audioCodec: typeof audio?.codec_name === 'string' ? audio.codec_name : undefined,
  };
}

/** Result of {@link sniffContainer}: the container to force, or why the file is refused. */
export type SniffResult =
  | { ok: true; container: Container }
  | { ok: false; code: ErrorCode; message: string };

/**
 * Tells from a file's first bytes which accepted container it is, or why it is refused
 * (playlist, concat list, HTML, text, an image…). Pure; never throws.
 *
 * @example
 * sniffContainer(new TextEncoder().encode('#EXTM3U\n…')); // { ok: false, code: 'input_playlist', … }
 */
export function sniffContainer(head: Uint8Array): SniffResult {
  if (head.length === 0) return { ok: false, code: ErrorCode.InputEmpty, message: 'The file is empty (0 bytes). Please upload the video again.' };
  const ascii = (from: number, to: number): string => String.fromCharCode(...head.subarray(from, to));
  // ISO base media (MP4, MOV, 3GP…): a box size, then a top-level box type.
  if (head.length >= 8 && ['ftyp', 'moov', 'mdat', 'free', 'skip', 'wide', 'pnot'].includes(ascii(4, 8))) return { ok: true, container: 'mov' };
  if (head[0] === 0x1a && head[1] === 0x45 && head[2] === 0xdf && head[3] === 0xa3) return { ok: true, container: 'matroska' };
  if (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a') return { ok: true, container: 'gif' };
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'AVI ') return { ok: true, container: 'avi' };

  // Everything else is refused; the rest only picks the message.
  const text = new TextDecoder('utf-8', { fatal: false }).decode(head).replace(/^\uFEFF/, '').trimStart();
  const lower = text.toLowerCase();
  const playlist = (kind: string): SniffResult => ({
    ok: false,
    code: ErrorCode.InputPlaylist,
    message: `This file is ${kind}, not a video: it only points to other files or links. Please upload the video file itself.`,
  });
  if (text.startsWith('#EXTM3U') || text.startsWith('#EXTINF')) return playlist('an HLS/M3U playlist');
  if (lower.startsWith('ffconcat')) return playlist('an ffmpeg concat list');
  if (/^file\s+\S/.test(lower)) return playlist('a concat list');
  if (lower.startsWith('[playlist]')) return playlist('a PLS playlist');
  if (lower.startsWith('<?xml') && lower.includes('<mpd')) return playlist('a DASH manifest');
  if (lower.startsWith('<asx') || lower.startsWith('<smil') || (lower.startsWith('<?xml') && /<(smil|asx|playlist)/.test(lower))) {
    return playlist('a playlist');
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//.test(lower)) return playlist('a link or a list of links');
  const notVideo = (what: string): SniffResult => ({
    ok: false,
    code: ErrorCode.InputNotVideo,
    message: `This file is not a video (it looks like ${what}). ${SUPPORTED_FORMATS}`,
  });
  if (lower.startsWith('<!doctype html') || lower.startsWith('<html') || /^<(head|body|meta|script)\b/.test(lower)) return notVideo('a web page');
  if (head[0] === 0x89 && ascii(1, 4) === 'PNG') return notVideo('a PNG image');
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return notVideo('a JPEG image');
  if (ascii(0, 4) === '%PDF') return notVideo('a PDF document');
  if (ascii(0, 4) === 'PK\u0003\u0004') return notVideo('a ZIP archive');
  if (looksLikeText(head)) return notVideo('text');
  return {
    ok: false,
    code: ErrorCode.InputUnsupportedFormat,
    message: `This file is not a video format we accept. ${SUPPORTED_FORMATS}`,
  };
}

/**
 * The model's frame size, as in the reference code (`k = res / max(h, w); h = np.round(h * k / 64) * 64`):
 * scale so the long side is `resolution`, round each side to a multiple of 64 (at least 64), or of
 * `sizeMultiple` when the UNet needs a larger one.
 * The aspect ratio moves a little. Halves round to even as numpy's `round` does, so
 * 1920×1080 → 512×256 (4.5 → 4) and 320×240 at 128 → 128×128 (1.5 → 2), as in the reference.
 *
 * @example
 * modelFrameSize(640, 480, 512); // { width: 512, height: 384 }
 */
export function modelFrameSize(width: number, height: number, resolution: number, sizeMultiple = 64): { width: number; height: number } {
  const k = resolution / Math.max(width, height);
  // Both are powers of two for SD UNets, so the larger is a multiple of the smaller.
  const step = Math.max(64, sizeMultiple);
  const side = (value: number): number => Math.max(step, roundHalfToEven((value * k) / step) * step);
  return { width: side(width), height: side(height) };
}

/** numpy's `round`: x.5 goes to the even neighbour. */
function roundHalfToEven(value: number): number {
  const floor = Math.floor(value);
  const fraction = value - floor;
  if (Math.abs(fraction - 0.5) > 1e-9) return Math.round(value);
  return floor % 2 === 0 ? floor : floor + 1;
}

/** ffprobe's argv for an accepted container: header only (no `-count_frames`), demuxer forced. */
export function ffprobeArgs(absoluteFile: string, container: Container): string[] {
  return [
    '-v',
    'error',
    ...inputArgs(absoluteFile, container),
    '-print_format',
    'json',
    '-show_format',
    '-show_streams',
  ];
}

/** ffmpeg's argv to decode one video stream to raw RGB24 on stdout. */
export function decodeArgs(
  absoluteFile: string,
  container: Container,
  target: { streamIndex: number; width: number; height: number; fps: number | undefined; maxFrames: number },
): string[] {
  // The fps filter (only when capping) drops frames evenly to a constant rate; otherwise each
  // decoded frame is emitted once (`-vsync passthrough`; the bundled 2018 ffmpeg has no `-fps_mode`).
  const filters = [...(target.fps === undefined ? [] : [`fps=fps=${target.fps}`]), `scale=${target.width}:${target.height}`];
  return [
    '-hide_banner',
    '-nostdin',
    '-loglevel',
    'error',
    // Stop at the first decode or read error: a damaged upload is refused, not half-edited.
    '-xerror',
    ...inputArgs(absoluteFile, container),
    '-map',
    `0:${target.streamIndex}`,
    '-an',
    '-sn',
    '-dn',
    '-vf',
    filters.join(','),
    '-vsync',
    'passthrough',
    // One frame past the limit is enough to know it is exceeded; ffmpeg then stops by itself.
    '-frames:v',
    String(target.maxFrames + 1),
    '-f',
    'rawvideo',
    '-pix_fmt',
    'rgb24',
    'pipe:1',
  ];
}

function inputArgs(absoluteFile: string, container: Container): string[] {
  const { demuxer, names } = ACCEPTED_CONTAINERS[container];
  return ['-protocol_whitelist', 'file', '-format_whitelist', names.join(','), '-f', demuxer, '-i', `file:${absoluteFile}`];
}

function checkDuration(durationSeconds: number, fps: number, limits: InputLimits): void {
  // One frame of slack: a clip trimmed to "30 s" is often 30.03 s long.
  if (durationSeconds > limits.maxDurationSeconds + 1 / fps) {
    throw new UserError(
      ErrorCode.InputTooLong,
      `The video is too long: ${durationSeconds.toFixed(1)} s; the limit is ${limits.maxDurationSeconds} s. Please trim it and try again.`,
      { context: { durationSeconds, maxDurationSeconds: limits.maxDurationSeconds } },
    );
  }
}

function corrupt(cause: unknown): UserError {
  return new UserError(
    ErrorCode.InputCorrupt,
    'The video could not be read: the file looks damaged or incomplete. Try exporting or uploading it again.',
    { cause },
  );
}

function unsupportedCodec(codec: string, cause?: unknown): UserError {
  return new UserError(
    ErrorCode.InputUnsupportedCodec,
    `The video uses a codec we cannot edit (${codec || 'unknown'}). Please send H.264, HEVC, VP8/VP9, AV1 or GIF video.`,
    { cause, context: { codec } },
  );
}

function timedOut(stage: 'probe' | 'decode', stderr: string): UserError {
  return new UserError(ErrorCode.InputTimedOut, 'The video took too long to read and was skipped. Please send a shorter or simpler clip.', {
    cause: new FfmpegError(`${stage === 'probe' ? 'ffprobe' : 'ffmpeg'} was stopped after its time limit`, stderr),
  });
}

/** Resolves symlinks on both sides and refuses a file outside the job's temp dir. */
export async function insideTempDir(file: string, tempDir: string): Promise<string> {
  if (typeof tempDir !== 'string' || tempDir === '') throw new TypeError('Expected `tempDir` to be the job\'s temp dir, got an empty value');
  const [real, dir] = await Promise.all([realpath(file), realpath(tempDir)]);
  const relative = path.relative(dir, real);
  if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative)) {
    throw new TypeError(`Expected the clip ${real} to be inside the job's temp dir ${dir}; decode only files written there`);
  }
  return real;
}

export async function readHead(file: string, bytes: number): Promise<Uint8Array> {
  const handle = await open(file, 'r');
  try {
    const buffer = new Uint8Array(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Printable ASCII/UTF-8 and whitespace only, no NUL: a text file. */
function looksLikeText(head: Uint8Array): boolean {
  if (head.includes(0)) return false;
  const text = new TextDecoder('utf-8', { fatal: false }).decode(head);
  const bad = [...text].filter((char) => char === '\uFFFD' || (char < ' ' && !'\t\n\r\f'.includes(char))).length;
  // The sniffed head may end inside a multi-byte character.
  return bad <= 1;
}

export interface ChildResult {
  code: number | null;
  killedBy: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/**
 * Spawns one ffmpeg/ffprobe with an argv array (no shell), no stdin, an empty environment and
 * `cwd`, and kills it (SIGKILL) on timeout, abort, `kill()` from `onStdout`, or too much output.
 * Resolves after 'close', when all output has been read; rejects only if it cannot start.
 */
export async function runChild(
  binary: string,
  args: readonly string[],
  options: {
    cwd: string;
    timeoutMs: number;
    signal: AbortSignal | undefined;
    spawn: SpawnFunction | undefined;
    maxStdout?: number;
    onStdout?: (chunk: Buffer, kill: () => void) => void;
  },
): Promise<ChildResult> {
  const { signal, onStdout, maxStdout = Number.POSITIVE_INFINITY } = options;
  signal?.throwIfAborted();
  const child = (options.spawn ?? nodeSpawn)(binary, args, {
    cwd: options.cwd,
    env: {},
    stdio: ['ignore', 'pipe', 'pipe'],
    windowsHide: true,
  });
  let timedOut = false;
  const kill = (): void => {
    child.kill('SIGKILL');
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, options.timeoutMs);
  signal?.addEventListener('abort', kill, { once: true });

  const stdout: Buffer[] = [];
  let stdoutBytes = 0;
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    if (onStdout !== undefined) {
      onStdout(chunk, kill);
      return;
    }
    stdoutBytes += chunk.length;
    if (stdoutBytes > maxStdout) kill();
    else stdout.push(chunk);
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_KEEP);
  });
  try {
    const [code, killedBy] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
    });
    return { code, killedBy, timedOut, stdout: Buffer.concat(stdout).toString('utf8'), stderr };
  } catch (error) {
    throw new Error(`Could not start ${binary}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', kill);
  }
}

function describeExit(result: ChildResult): string {
  return result.killedBy === null ? `exited with code ${result.code}` : `was killed with signal ${result.killedBy}`;
}

interface ProbeStream {
  index?: unknown;
  codec_type?: unknown;
  codec_name?: unknown;
  width?: unknown;
  height?: unknown;
  avg_frame_rate?: unknown;
  r_frame_rate?: unknown;
  duration?: unknown;
  nb_frames?: unknown;
  disposition?: { attached_pic?: unknown };
  tags?: { rotate?: unknown };
  side_data_list?: Array<{ rotation?: unknown }>;
}
interface ProbeData {
  streams?: ProbeStream[];
  format?: { format_name?: unknown; duration?: unknown };
}

/** ffprobe's JSON, or undefined when it is not the expected shape. */
function parseProbe(json: string): ProbeData | undefined {
  try {
    const data: unknown = JSON.parse(json);
    if (typeof data !== 'object' || data === null) return undefined;
    const { streams } = data as { streams?: unknown };
    if (streams !== undefined && !Array.isArray(streams)) return undefined;
    return data as ProbeData;
  } catch {
    return undefined;
  }
}

/** Degrees, from the display matrix (ffprobe ≥ 5) or the old `rotate` tag. */
function rotationOf(stream: ProbeStream): number {
  for (const side of stream.side_data_list ?? []) {
    const rotation = toNumber(side.rotation);
    if (rotation !== undefined) return rotation;
  }
  return toNumber(stream.tags?.rotate) ?? 0;
}

function toNumber(value: unknown): number | undefined {
  const number = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  return Number.isFinite(number) ? number : undefined;
}

function positive(value: number | undefined): number | undefined {
  return value !== undefined && value > 0 ? value : undefined;
}

/** "30000/1001" → 29.97…; "0/0" and "N/A" → undefined. */
function toRate(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const [numerator, denominator = '1'] = value.split('/');
  const rate = Number(numerator) / Number(denominator);
  return Number.isFinite(rate) && rate > 0 ? rate : undefined;
}


function formatFps(fps: number): string {
  return Number.isInteger(fps) ? String(fps) : fps.toFixed(2);
}
