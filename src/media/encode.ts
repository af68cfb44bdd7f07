/**
 * Frames → video file. Raw RGB frames are piped into ffmpeg (through fluent-ffmpeg) and the
 * result is written to a temporary file beside the output, renamed into place only on success,
 * so a failed or cancelled encode never leaves a half-written video behind.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { constants } from 'node:fs';
import { access, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import ffmpeg from 'fluent-ffmpeg';
import { useBinaries } from './ffmpeg-paths.js';

/** Options of {@link encodeFrames}. */
export interface EncodeFramesOptions {
  /**
   * The frames in order, each RGB24 (`width * height * 3` bytes, rows top to bottom).
   * They are written to ffmpeg without copying: do not change them until the promise settles.
   */
  frames: Uint8Array[];
  width: number;
  height: number;
  /** Frames per second; fractions are allowed (e.g. 29.97). */
  fps: number;
  /** Output file; its folder must exist. Replaced atomically if it already exists. */
  out: string;
  /** `mp4` (H.264, default) or `gif`. */
  format?: 'mp4' | 'gif';
  /** ffmpeg binary, as given by `resolveFfmpegPaths`. */
  ffmpegPath: string;
  /** Aborting kills ffmpeg, removes the partial file and rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Called after each frame is handed to ffmpeg's input (not yet encoded). */
  onFrameWritten?: (written: number, total: number) => void;
  /**
   * Motion-compensated frame interpolation (ffmpeg's `minterpolate`, bidirectional motion
   * estimation, overlapped-block compensation) up to this rate, at the same duration: the frames
   * still span `frames.length / fps` seconds, the output has `round(duration · smoothTo)` frames at
   * `smoothTo` fps. Ignored when it is not above `fps`. The last frame is held for its full
   * duration (it is fed three times: the filter stops one frame short of its input's end).
   */
  smoothTo?: number;
  /**
   * MP4 only (ignored for GIF): a video file (normally the user's original clip) whose first
   * audio stream is muxed into the output, cut to the video's length (`-t frames / fps`). A file without
   * audio gives a silent video. It is opened like untrusted input: `file:` protocol only, and only
   * the containers that `decodeClip` accepts.
   *
   * Keeping sync: give `fps` = the rate of the edited frames (`DecodedClip.fps`, after the
   * `maxFps` cap), not the source rate. The cap drops frames evenly, so N frames at the capped rate
   * last as long as the source and its audio; encoding them at the source rate would make the
   * video shorter than the sound.
   */
  audioFrom?: string;
  /**
   * ffprobe's codec name of that audio (`DecodedClip.audioCodec`). Codecs MP4 holds (AAC, MP3,
   * ALAC, AC-3, E-AC-3) are copied untouched; others (Opus, Vorbis from WebM…) are re-encoded to
   * AAC. Left out: copied.
   */
  audioCodec?: string;
}

/** ffmpeg or ffprobe failed; `stderrTail` holds the last lines it wrote, also quoted in the message. */
export class FfmpegError extends Error {
  readonly stderrTail: string;

  /** `stderr` may be long: only its last 20 non-empty lines are kept. */
  constructor(message: string, stderr: string, options: { cause?: unknown } = {}) {
    const tail = lastLines(stderr);
    super(tail === '' ? message : `${message}\n--- last lines of stderr ---\n${tail}`, options);
    this.name = new.target.name;
    this.stderrTail = tail;
  }
}

/** Lines of stderr kept for error messages. */
const STDERR_TAIL_LINES = 20;

/**
 * H.264 settings. CRF 18 is visually near-lossless for x264; `veryfast` keeps encode time small
 * next to diffusion time while staying far better than `ultrafast` per byte.
 */
const MP4_CRF = '18';
const MP4_PRESET = 'veryfast';

/**
 * yuv420p stores chroma per 2×2 block, so libx264 refuses odd sizes. We pad (one black column
 * on the right and/or one black row at the bottom) rather than scale: every input pixel stays
 * where it was and is not resampled. A 63×47 input gives a 64×48 video.
 */
const PAD_TO_EVEN = 'pad=ceil(iw/2)*2:ceil(ih/2)*2';

/**
 * GIF has a 256-colour palette: build one from the clip (palettegen) and map onto it
 * (paletteuse), which looks far better than ffmpeg's default fixed palette.
 */
const GIF_PALETTE = 'split[a][b];[a]palettegen[p];[b][p]paletteuse';

/**
 * ffmpeg's motion-compensated interpolation to `fps`: motion-compensated (`mci`) with
 * overlapped-block compensation, bidirectional estimation and variable-size block refinement,
 * the quality settings of the filter's documentation.
 */
export function minterpolateFilter(fps: number): string {
  return `minterpolate=fps=${fps}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1`;
}

/** Audio codecs the MP4 muxer takes as they are (Opus in MP4 is still "experimental" in the bundled ffmpeg). */
const MP4_AUDIO_COPY = new Set(['aac', 'mp3', 'alac', 'ac3', 'eac3']);

/** Demuxers allowed for `audioFrom`: the containers `decodeClip` (input.ts) accepts. */
export const AUDIO_SOURCE_DEMUXERS = 'mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,gif,avi';

/**
 * Encodes RGB24 frames to an MP4 (H.264, yuv420p, faststart) or a GIF.
 *
 * Resolves once the file is complete at `out`. Rejects with a `TypeError`/`RangeError` for bad
 * options (before starting ffmpeg), with `signal.reason` when aborted, or with an
 * {@link FfmpegError} quoting ffmpeg's stderr; in those cases nothing is left at `out` or beside it.
 *
 * @example
 * await encodeFrames({ frames, width: 512, height: 512, fps: 8, out: 'clip.mp4', ffmpegPath, signal });
 */
export async function encodeFrames(options: EncodeFramesOptions): Promise<void> {
  // 1. Check inputs.
  const { frames, width, height, fps, ffmpegPath, signal, onFrameWritten } = options;
  const format = options.format ?? 'mp4';
  checkOptions(options, format);
  signal?.throwIfAborted();
  // fluent-ffmpeg 2.1.3 throws an uncaught TypeError (crashing the process) when spawning a
  // missing or non-executable binary once its capability cache is warm, so check first.
  try {
    await access(ffmpegPath, constants.X_OK);
  } catch (error) {
    throw new Error(
      `Cannot run ffmpeg at ${ffmpegPath} (${(error as NodeJS.ErrnoException).code ?? String(error)}); ` +
        'pass the path that resolveFfmpegPaths gives for the FFMPEG_PATH setting.',
      { cause: error },
    );
  }
  signal?.throwIfAborted();

  // 2. Paths: a hidden temporary file in the same folder, so the final rename is atomic.
  const out = path.resolve(options.out);
  const partial = path.join(path.dirname(out), `.${path.basename(out)}.${randomUUID()}.part`);

  // 3. The command. The output format is given explicitly since `.part` says nothing.
  const input = new PassThrough();
  const command = useBinaries(ffmpeg({ stdoutLines: STDERR_TAIL_LINES }), { ffmpeg: ffmpegPath })
    .input(input)
    .inputFormat('rawvideo')
    .inputOptions('-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', String(fps))
    .outputOptions('-hide_banner', '-loglevel', 'error')
    .output(partial);
  const smooth = options.smoothTo !== undefined && options.smoothTo > fps && frames.length > 1 ? options.smoothTo : undefined;
  const smoothing = smooth === undefined ? [] : [minterpolateFilter(smooth)];
  // minterpolate stops one input frame short of the end: with the last frame fed twice more, the
  // output reaches it and holds it for its duration; the frame count cuts off the rest.
  const fed = smooth === undefined ? frames : [...frames, frames.at(-1)!, frames.at(-1)!];
  if (smooth !== undefined) command.outputOptions('-r', String(smooth), '-frames:v', String(Math.round((frames.length / fps) * smooth)));
  const { audioFrom } = options;
  if (format === 'mp4' && audioFrom !== undefined) {
    const copy = options.audioCodec === undefined || MP4_AUDIO_COPY.has(options.audioCodec);
    command
      .input(`file:${path.resolve(audioFrom)}`)
      .inputOptions('-protocol_whitelist', 'file', '-format_whitelist', AUDIO_SOURCE_DEMUXERS)
      // `1:a:0?`: the source's first audio stream if it has one, else none. The output is cut at
      // the video's length with `-t` rather than `-shortest`: with `-shortest` the bundled ffmpeg
      // stops when the copied audio (read from a file, far ahead of the piped frames) ends its
      // input, and kept 6 of 24 frames in our test.
      .outputOptions(
        '-map',
        '0:v',
        '-map',
        '1:a:0?',
        '-t',
        String(frames.length / fps),
        ...(copy ? ['-c:a', 'copy'] : ['-c:a', 'aac', '-b:a', '160k']),
      );
  } else {
    command.outputOptions('-an');
  }
  if (format === 'mp4') {
    // (Never call outputOptions with no argument: fluent-ffmpeg then adds the word "undefined".)
    const filters = [...(width % 2 !== 0 || height % 2 !== 0 ? [PAD_TO_EVEN] : []), ...smoothing];
    if (filters.length > 0) command.outputOptions('-vf', filters.join(','));
    command
      .videoCodec('libx264')
      .outputOptions('-pix_fmt', 'yuv420p', '-crf', MP4_CRF, '-preset', MP4_PRESET, '-movflags', '+faststart')
      .format('mp4');
  } else {
    command.outputOptions('-vf', [...smoothing, GIF_PALETTE].join(','), '-loop', '0').format('gif');
  }

  // 4. Run. `stop` ends the frame writer early, on abort or when ffmpeg ends by itself.
  const stop = new AbortController();
  const finished = new Promise<{ error: Error; stderr: string } | undefined>((resolve) => {
    command.once('end', () => resolve(undefined));
    command.once('error', (error: Error, _stdout: string | null, stderr: string | null) => resolve({ error, stderr: stderr ?? '' }));
  });
  let spawned = false;
  command.once('start', () => {
    spawned = true;
    // Aborted while fluent-ffmpeg was still checking capabilities: kill it as soon as it exists.
    if (signal?.aborted) command.kill('SIGKILL');
  });
  const onAbort = (): void => {
    stop.abort();
    input.destroy();
    if (spawned) command.kill('SIGKILL');
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  command.run();
  const writing = writeFrames(input, fed, stop.signal, onFrameWritten);

  // The 'error'/'end' events come only after ffmpeg has exited, so nothing writes `partial` later.
  const failure = await finished;
  signal?.removeEventListener('abort', onAbort);
  stop.abort();
  input.destroy();
  await writing;

  // 5. Keep the file only if ffmpeg succeeded and nobody cancelled.
  if (signal?.aborted) {
    await rm(partial, { force: true });
    throw signal.reason;
  }
  if (failure !== undefined) {
    await rm(partial, { force: true });
    throw new FfmpegError(`ffmpeg could not encode ${out}: ${summarize(failure.error.message)}`, failure.stderr, { cause: failure.error });
  }
  try {
    await rename(partial, out);
  } catch (error) {
    await rm(partial, { force: true });
    throw error;
  }
}

/** Writes the frames into ffmpeg's input, waiting for 'drain' whenever its buffer is full. */
async function writeFrames(
  input: PassThrough,
  frames: readonly Uint8Array[],
  stop: AbortSignal,
  onFrameWritten: EncodeFramesOptions['onFrameWritten'],
): Promise<void> {
  for (const [index, frame] of frames.entries()) {
    if (stop.aborted) return;
    const hasRoom = input.write(frame);
    onFrameWritten?.(index + 1, frames.length);
    if (!hasRoom && !stop.aborted) {
      try {
        await once(input, 'drain', { signal: stop });
      } catch {
        // Stopped or the stream broke: ffmpeg's own outcome says what happened.
        return;
      }
    }
  }
  if (!stop.aborted) input.end();
}

function checkOptions(options: EncodeFramesOptions, format: string): void {
  const { frames, width, height, fps, out, ffmpegPath } = options;
  if (!Number.isInteger(width) || width < 1) throw new TypeError(`Expected \`width\` to be an integer from 1 and up, got \`${width}\``);
  if (!Number.isInteger(height) || height < 1) throw new TypeError(`Expected \`height\` to be an integer from 1 and up, got \`${height}\``);
  if (typeof fps !== 'number' || !Number.isFinite(fps) || fps <= 0) {
    throw new TypeError(`Expected \`fps\` to be a finite number above 0, got \`${String(fps)}\``);
  }
  if (format !== 'mp4' && format !== 'gif') throw new TypeError(`Expected \`format\` to be 'mp4' or 'gif', got \`${format}\``);
  if (typeof out !== 'string' || out === '') throw new TypeError('Expected `out` to be a file path, got an empty value');
  if (typeof ffmpegPath !== 'string' || ffmpegPath === '') {
    throw new TypeError('Expected `ffmpegPath` to be the path of an ffmpeg binary (see resolveFfmpegPaths), got an empty value');
  }
  if (options.smoothTo !== undefined && !(typeof options.smoothTo === 'number' && Number.isFinite(options.smoothTo) && options.smoothTo > 0)) {
    throw new TypeError(`Expected \`smoothTo\` to be a frame rate above 0, got \`${String(options.smoothTo)}\``);
  }
  if (options.audioFrom !== undefined && (typeof options.audioFrom !== 'string' || options.audioFrom === '')) {
    throw new TypeError('Expected `audioFrom` to be the path of the original clip, got an empty value');
  }
  if (!Array.isArray(frames) || frames.length === 0) throw new RangeError('Expected at least 1 frame to encode, got 0');
  const frameBytes = width * height * 3;
  for (const [index, frame] of frames.entries()) {
    if (!(frame instanceof Uint8Array)) throw new TypeError(`Expected frame ${index} to be a Uint8Array of RGB24 pixels`);
    if (frame.byteLength !== frameBytes) {
      throw new RangeError(
        `Frame ${index} has ${frame.byteLength} bytes; a ${width}×${height} RGB24 frame has ${width}×${height}×3 = ${frameBytes}`,
      );
    }
  }
}

/** The useful first line of a fluent-ffmpeg error ("ffmpeg exited with code 1", "spawn … ENOENT"). */
function summarize(message: string): string {
  const first = message.split('\n', 1)[0] ?? message;
  return /^ffmpeg (exited with code -?\d+|was killed with signal \w+)/.exec(first)?.[0] ?? first;
}

function lastLines(text: string): string {
  return text
    .split(/\r\n|\r|\n/)
    .filter((line) => line.trim() !== '')
    .slice(-STDERR_TAIL_LINES)
    .join('\n');
}
