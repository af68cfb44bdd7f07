/**
 * Makes a finished video fit a platform's upload limit (Discord: the interaction's
 * `attachment_size_limit`, 10 MiB as the safe floor; Slack: far larger).
 *
 * The ladder, cheapest loss first: the file as it is → H.264 at the bitrate the limit allows for
 * its duration → the same at lower resolutions → at a lower frame rate → a short GIF preview with
 * a note saying why. Every attempt is a new file in `tempDir`; the original is never touched.
 * ffmpeg is spawned directly with an argv array (never a shell), reads its input only through the
 * `file` protocol and is killed when the signal aborts.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { AppError, ErrorCode } from '../errors.js';
import { FfmpegError } from './encode.js';
import { probeVideo, type VideoInfo } from './probe.js';
import { formatBytes } from './format-bytes.js';

export interface FitOptions {
  /** Binaries as given by `resolveFfmpegPaths`. */
  ffmpegPath: string;
  ffprobePath: string;
  /** Existing folder for the re-encoded files; the caller removes them after the upload. */
  tempDir: string;
  /** Aborting kills ffmpeg, removes its partial file and rejects with `signal.reason`. */
  signal?: AbortSignal;
}

export interface FitResult {
  /** The original file when it already fits, else a new file in `tempDir`. */
  file: string;
  bytes: number;
  /** What was tried, in order, for the logs (empty when the original fits). */
  steps: string[];
  format: 'mp4' | 'gif';
  /** For the user, when what is sent is less than the full video (the GIF preview). */
  note?: string;
}

/** Even a short, small GIF preview is over the limit. */
export class UploadTooLargeError extends AppError {
  readonly bytes: number;
  readonly limitBytes: number;

  constructor(bytes: number, limitBytes: number, steps: readonly string[]) {
    super(
      ErrorCode.OutputTooLarge,
      `The video is too large for this channel (${formatBytes(bytes)}, limit ${formatBytes(limitBytes)}), and even a short preview does not fit.`,
      { context: { steps: [...steps] } },
    );
    this.bytes = bytes;
    this.limitBytes = limitBytes;
  }
}

/** The MP4 container, its index and muxing overhead: aim 5% under the limit. */
const CONTAINER_MARGIN = 0.95;
/** Audio, when the video has any, is kept at this bitrate (AAC). */
const AUDIO_KBPS = 48;
/** Below this video bitrate H.264 is mush: the GIF preview says more honestly what the clip is. */
const MIN_VIDEO_KBPS = 64;
/** Resolutions tried, as a fraction of the original (each attempt also lowers the bitrate if the last overshot). */
const SCALES: readonly number[] = [1, 0.75, 0.5];
/** The smallest of {@link SCALES}, used again for the reduced frame rate. */
const SMALLEST_SCALE = 0.5;
/** Frame rate of the last H.264 attempt, when the video is faster than that. */
const REDUCED_FPS = 8;
/** GIF previews tried in turn: length, width and frame rate. */
const GIF_LADDER = [
  { seconds: 3, width: 320, fps: 8, colors: 128 },
  { seconds: 3, width: 240, fps: 6, colors: 64 },
  { seconds: 2, width: 160, fps: 5, colors: 32 },
  { seconds: 2, width: 96, fps: 4, colors: 16 },
] as const;
const STDERR_TAIL_CHARS = 4000;

/**
 * Returns a video no larger than `limitBytes`: the original when it fits, else a re-encoded
 * H.264 file, else a GIF preview with a `note`. Throws {@link UploadTooLargeError} when nothing
 * fits, an {@link FfmpegError} when ffmpeg cannot read or write the video.
 *
 * @example
 * const fitted = await fitToLimit(result.file, interaction.attachmentSizeLimit, { ffmpegPath, ffprobePath, tempDir });
 */
export async function fitToLimit(file: string, limitBytes: number, options: FitOptions): Promise<FitResult> {
  if (!Number.isFinite(limitBytes) || limitBytes <= 0) throw new RangeError(`Expected \`limitBytes\` to be a positive number, got ${limitBytes}`);
  const { signal } = options;
  signal?.throwIfAborted();
  const original = path.resolve(file);
  const originalBytes = (await stat(original)).size;
  if (originalBytes <= limitBytes) {
    return { file: original, bytes: originalBytes, steps: [], format: path.extname(original).toLowerCase() === '.gif' ? 'gif' : 'mp4' };
  }

  const steps: string[] = [`original ${formatBytes(originalBytes)} is over the limit of ${formatBytes(limitBytes)}`];
  const info = await probeVideo(original, options.ffprobePath);
  signal?.throwIfAborted();
  const duration = durationOf(info);
  const audioKbps = info.hasAudio ? AUDIO_KBPS : 0;
  const budgetKbps = (limitBytes * 8 * CONTAINER_MARGIN) / duration / 1000;
  let videoKbps = Math.floor(budgetKbps - audioKbps);

  // 1. H.264 at the bitrate the limit allows, then smaller, then slower.
  const attempts: { scale: number; fps: number | undefined }[] = SCALES.map((scale) => ({ scale, fps: undefined }));
  if (info.fps > REDUCED_FPS) attempts.push({ scale: SMALLEST_SCALE, fps: REDUCED_FPS });
  for (const attempt of attempts) {
    if (videoKbps < MIN_VIDEO_KBPS) {
      steps.push(`H.264 would need ${videoKbps} kbit/s, under the useful minimum of ${MIN_VIDEO_KBPS}`);
      break;
    }
    const width = evenAtLeast2(info.width * attempt.scale);
    const height = evenAtLeast2(info.height * attempt.scale);
    const out = tempFile(options.tempDir, 'mp4');
    await runFfmpeg(options.ffmpegPath, mp4Args(original, out, { width, height, fps: attempt.fps, videoKbps, audio: info.hasAudio }), out, signal);
    const bytes = (await stat(out)).size;
    const fps = attempt.fps ?? round(info.fps);
    const label = `H.264 ${width}×${height} at ${fps} fps, ${videoKbps} kbit/s${info.hasAudio ? ` + audio ${AUDIO_KBPS} kbit/s` : ''}: ${formatBytes(bytes)}`;
    if (bytes <= limitBytes) {
      steps.push(`${label}, fits`);
      return { file: out, bytes, steps, format: 'mp4' };
    }
    steps.push(`${label}, over the limit`);
    await rm(out, { force: true });
    // The encoder overshot: aim lower by as much as it missed (and at least 10%) next time.
    videoKbps = Math.floor(videoKbps * Math.min(0.9, (limitBytes * CONTAINER_MARGIN) / bytes));
  }

  // 2. A short GIF preview.
  for (const rung of GIF_LADDER) {
    const seconds = Math.min(rung.seconds, duration);
    const width = Math.min(rung.width, info.width);
    const out = tempFile(options.tempDir, 'gif');
    await runFfmpeg(options.ffmpegPath, gifArgs(original, out, { seconds, width, fps: Math.min(rung.fps, Math.max(1, round(info.fps))), colors: rung.colors }), out, signal);
    const bytes = (await stat(out)).size;
    const label = `GIF preview ${width}px wide, ${round(seconds)} s at ${rung.fps} fps, ${rung.colors} colours: ${formatBytes(bytes)}`;
    if (bytes <= limitBytes) {
      steps.push(`${label}, fits`);
      return {
        file: out,
        bytes,
        steps,
        format: 'gif',
        note: `The full video was too large for this channel (${formatBytes(originalBytes)}, limit ${formatBytes(limitBytes)}); here is a preview.`,
      };
    }
    steps.push(`${label}, over the limit`);
    await rm(out, { force: true });
  }
  throw new UploadTooLargeError(originalBytes, limitBytes, steps);
}

function durationOf(info: VideoInfo): number {
  if (info.durationSeconds > 0) return info.durationSeconds;
  if (info.fps > 0 && info.frames > 0) return info.frames / info.fps;
  return 1;
}

function evenAtLeast2(value: number): number {
  return Math.max(2, Math.round(value / 2) * 2);
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

function tempFile(tempDir: string, extension: 'mp4' | 'gif'): string {
  return path.join(path.resolve(tempDir), `fit-${randomUUID()}.${extension}`);
}

/** Options every run shares: no stdin, quiet, refuse to overwrite, and the input through `file:` only. */
function inputArgs(input: string, extra: readonly string[] = []): string[] {
  return ['-nostdin', '-hide_banner', '-loglevel', 'error', '-n', ...extra, '-protocol_whitelist', 'file', '-i', `file:${input}`];
}

function mp4Args(input: string, out: string, o: { width: number; height: number; fps: number | undefined; videoKbps: number; audio: boolean }): string[] {
  const filters = [`scale=${o.width}:${o.height}`, ...(o.fps === undefined ? [] : [`fps=${o.fps}`])];
  const rate = `${o.videoKbps}k`;
  return [
    ...inputArgs(input),
    '-map', '0:v:0',
    '-map', '0:a:0?',
    '-map_metadata', '-1',
    '-vf', filters.join(','),
    '-c:v', 'libx264',
    '-preset', 'veryfast',
    // A one-second VBV buffer at the target rate keeps a single pass close to the budget.
    '-b:v', rate,
    '-maxrate', rate,
    '-bufsize', rate,
    '-pix_fmt', 'yuv420p',
    '-movflags', '+faststart',
    ...(o.audio ? ['-c:a', 'aac', '-b:a', `${AUDIO_KBPS}k`] : ['-an']),
    '-f', 'mp4',
    `file:${out}`,
  ];
}

function gifArgs(input: string, out: string, o: { seconds: number; width: number; fps: number; colors: number }): string[] {
  const graph = `fps=${o.fps},scale=${o.width}:-1:flags=lanczos,split[a][b];[a]palettegen=max_colors=${o.colors}[p];[b][p]paletteuse=dither=bayer`;
  return [...inputArgs(input, ['-t', String(o.seconds)]), '-map', '0:v:0', '-an', '-vf', graph, '-loop', '0', '-f', 'gif', `file:${out}`];
}

/** Runs ffmpeg; on failure or abort removes `out` and rejects (FfmpegError with stderr, or `signal.reason`). */
async function runFfmpeg(ffmpegPath: string, args: string[], out: string, signal: AbortSignal | undefined): Promise<void> {
  signal?.throwIfAborted();
  const child = spawn(ffmpegPath, args, { stdio: ['ignore', 'ignore', 'pipe'], windowsHide: true });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS);
  });
  const onAbort = (): void => {
    child.kill('SIGKILL');
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  const outcome = await new Promise<{ code: number | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, error }));
    child.once('close', (code) => resolve({ code }));
  });
  signal?.removeEventListener('abort', onAbort);
  if (signal?.aborted) {
    await rm(out, { force: true });
    throw signal.reason;
  }
  if (outcome.error !== undefined || outcome.code !== 0) {
    await rm(out, { force: true });
    const why = outcome.error !== undefined ? outcome.error.message : `exit code ${String(outcome.code)}`;
    throw new FfmpegError(`ffmpeg could not re-encode ${path.basename(out)} (${why})`, stderr, { cause: outcome.error });
  }
}
