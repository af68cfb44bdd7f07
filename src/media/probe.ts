/**
 * Reading videos back: what a file contains (ffprobe) and its pixels (ffmpeg → raw RGB24).
 * Both open the file through the `file` protocol only, so a path is never taken for a URL
 * (`http:…`, `concat:…`) or an option (`-…`).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import ffmpeg from 'fluent-ffmpeg';
import type { FfprobeData } from 'fluent-ffmpeg';
import { FfmpegError } from './encode.js';
import { useBinaries } from './ffmpeg-paths.js';
import { RawFrameSplitter } from './raw-frames.js';

/** What {@link probeVideo} reports about a file's first video stream and the file itself. */
export interface VideoInfo {
  width: number;
  height: number;
  /** Frames actually decoded by ffprobe (`-count_frames`), not the container's claim. */
  frames: number;
  fps: number;
  durationSeconds: number;
  /** ffprobe's codec name: `h264`, `gif`, `vp9`… */
  codec: string;
  /** `yuv420p`, `bgra`… */
  pixelFormat: string;
  /** ffprobe's format name, e.g. `mov,mp4,m4a,3gp,3g2,mj2` or `gif`. */
  formatName: string;
  hasAudio: boolean;
  /** Number of streams of any kind in the file. */
  streams: number;
}

/**
 * Probes a video file with ffprobe and counts its frames exactly (ffprobe decodes the whole
 * video stream to do so). Rejects with an {@link FfmpegError} when ffprobe cannot read the file,
 * or an Error when it has no video stream.
 *
 * @example
 * const info = await probeVideo('clip.mp4', ffprobePath); // { width: 512, height: 512, frames: 16, fps: 8, codec: 'h264', … }
 */
export async function probeVideo(file: string, ffprobePath: string): Promise<VideoInfo> {
  const command = useBinaries(ffmpeg(fileUrl(file)), { ffprobe: ffprobePath });
  const data = await new Promise<FfprobeData>((resolve, reject) => {
    command.ffprobe(['-v', 'error', '-protocol_whitelist', 'file', '-count_frames'], (error: unknown, result: FfprobeData) => {
      if (error) {
        // fluent-ffmpeg appends ffprobe's whole stderr to the message; keep its first line as the summary.
        const message = error instanceof Error ? error.message : String(error);
        const [summary = message, ...rest] = message.split('\n');
        reject(new FfmpegError(`ffprobe could not read ${file}: ${summary}`, rest.join('\n'), { cause: error }));
      } else {
        resolve(result);
      }
    });
  });
  return videoInfoFromProbe(data, file);
}

/**
 * Turns ffprobe's answer into {@link VideoInfo}. Accepts numbers or numeric strings, so it
 * works both on fluent-ffmpeg's parsed output and on `ffprobe -print_format json`.
 */
export function videoInfoFromProbe(data: FfprobeData, file = 'the file'): VideoInfo {
  const video = data.streams.find((stream) => stream.codec_type === 'video');
  if (video === undefined) throw new Error(`${file} has no video stream`);
  const width = toNumber(video.width);
  const height = toNumber(video.height);
  const frames = toNumber(video.nb_read_frames);
  if (width === undefined || height === undefined) throw new Error(`ffprobe gave no frame size for ${file}`);
  if (frames === undefined) throw new Error(`ffprobe did not count the frames of ${file} (run it with -count_frames)`);
  const fps = toRate(video.avg_frame_rate) ?? toRate(video.r_frame_rate) ?? 0;
  const durationSeconds = toNumber(data.format.duration) ?? toNumber(video.duration) ?? (fps > 0 ? frames / fps : 0);
  return {
    width,
    height,
    frames,
    fps,
    durationSeconds,
    codec: String(video.codec_name ?? ''),
    pixelFormat: String(video.pix_fmt ?? ''),
    formatName: String(data.format.format_name ?? ''),
    hasAudio: data.streams.some((stream) => stream.codec_type === 'audio'),
    streams: data.streams.length,
  };
}

/** Options of {@link decodeFrames}. */
export interface DecodeFramesOptions {
  /** Aborting kills ffmpeg and rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Reject (and stop ffmpeg) once more frames than this arrive; memory is `width * height * 3` per frame. */
  maxFrames?: number;
}

/**
 * Decodes the first video stream of a file into RGB24 frames of the given size (scaled if the
 * video has another size), one frame per decoded frame: none dropped or duplicated.
 *
 * @example
 * const frames = await decodeFrames('clip.mp4', ffmpegPath, { width: 64, height: 48 });
 */
export async function decodeFrames(
  file: string,
  ffmpegPath: string,
  size: { width: number; height: number },
  options: DecodeFramesOptions = {},
): Promise<Uint8Array[]> {
  const { width, height } = size;
  if (!Number.isInteger(width) || width < 1 || !Number.isInteger(height) || height < 1) {
    throw new TypeError(`Expected \`size\` to be positive integers, got ${width}×${height}`);
  }
  const { signal, maxFrames = Number.POSITIVE_INFINITY } = options;
  signal?.throwIfAborted();

  // An argv array, never a shell string. `-vsync passthrough` emits each decoded frame once
  // (rawvideo output would otherwise get constant-rate duplication); ffmpeg ≥ 5.1 also calls
  // it `-fps_mode`, but the bundled 2018 build knows only `-vsync`.
  const args = [
    '-hide_banner',
    '-nostdin',
    '-loglevel',
    'error',
    '-protocol_whitelist',
    'file',
    '-i',
    fileUrl(file),
    '-map',
    '0:v:0',
    '-vsync',
    'passthrough',
    '-s',
    `${width}x${height}`,
    '-f',
    'rawvideo',
    '-pix_fmt',
    'rgb24',
    'pipe:1',
  ];
  const child = spawn(ffmpegPath, args, { stdio: ['ignore', 'pipe', 'pipe'], windowsHide: true });

  const splitter = new RawFrameSplitter(width, height);
  let stderr = '';
  let stopReason: unknown;
  const stop = (reason: unknown): void => {
    if (stopReason !== undefined) return;
    stopReason = reason;
    child.kill('SIGKILL');
  };

  child.stdout.on('data', (chunk: Buffer) => {
    if (stopReason !== undefined) return;
    splitter.push(chunk, (count) => {
      if (count <= maxFrames) return true;
      stop(new RangeError(`${file} has more than ${maxFrames} frames`));
      return false;
    });
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    // Only the tail is reported; keep the buffer bounded.
    stderr = (stderr + text).slice(-16_384);
  });
  const onAbort = (): void => stop(signal?.reason);
  signal?.addEventListener('abort', onAbort, { once: true });

  try {
    const [code, killedBy] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      // 'close' (not 'exit') so that all of stdout has been read.
      child.once('close', (exitCode, exitSignal) => resolve([exitCode, exitSignal]));
    });
    if (stopReason !== undefined) throw stopReason;
    if (code !== 0) {
      const how = killedBy === null ? `exited with code ${code}` : `was killed with signal ${killedBy}`;
      throw new FfmpegError(`ffmpeg could not decode ${file}: ffmpeg ${how}`, stderr);
    }
    if (splitter.partialBytes !== 0) throw new FfmpegError(`ffmpeg's output for ${file} ended in the middle of a frame`, stderr);
    return splitter.frames;
  } catch (error) {
    if (error instanceof Error && (error as NodeJS.ErrnoException).syscall?.startsWith('spawn')) {
      throw new Error(`Could not start ffmpeg at ${ffmpegPath}: ${error.message}`, { cause: error });
    }
    throw error;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** `file:` + absolute path: never read as another protocol or as an option. */
function fileUrl(file: string): string {
  return `file:${path.resolve(file)}`;
}

function toNumber(value: unknown): number | undefined {
  const number = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
  return Number.isFinite(number) ? number : undefined;
}

/** "30000/1001" → 29.97…; "0/0" and "N/A" → undefined. */
function toRate(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value > 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const [numerator, denominator = '1'] = value.split('/');
  const rate = Number(numerator) / Number(denominator);
  return Number.isFinite(rate) && rate > 0 ? rate : undefined;
}
