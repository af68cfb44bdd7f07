/**
 * The built-in engine module that workers load when no `engineModule` is configured.
 * text2video runs Text2Video-Zero on the configured model folder (or the built-in small set, made
 * on first use); edit runs Video Instruct-Pix2Pix with anchor-frame attention on an uploaded clip
 * (checked and decoded by the hardened input path) and keeps its frame rate and audio.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';
import type { CreateEngine, Engine, EngineSettings } from '../jobs/engine.js';
import { DrawsError, DrawsFile, type DrawSource } from './draws.js';
import { ensureModelSet } from './models/built-in.js';
import { LatentRecorder, writeLatentDump } from './pipelines/latent-dump.js';
import { checkUnetSize } from './pipelines/latents.js';
import { StableDiffusionComponents } from './pipelines/sd-components.js';
import { TextToVideoZeroPipeline } from './pipelines/text-to-video-zero.js';
import { parseEditParams, parseTextToVideoParams, sizeForAspect, TEXT_TO_VIDEO_LIMITS, videoTiming } from '../jobs/job-params.js';
import { LivePreview } from './preview.js';
import { encodePng, scaleNearest } from '../media/png.js';
import { decodeImage } from '../media/image-input.js';
import { VideoEditPipeline } from './pipelines/video-edit.js';
import { decodeClip } from '../media/input.js';
import { encodeFrames } from '../media/encode.js';
import { resolveFfmpegPaths } from '../media/ffmpeg-paths.js';

/** Threads per ONNX session: the configured number, or the cores shared out between workers. */
export function sessionThreads(settings: EngineSettings): EngineSettings['onnx'] {
  const intraOpThreads = settings.onnx.intraOpThreads || Math.max(1, Math.floor(availableParallelism() / Math.max(1, settings.workerCount)));
  return { ...settings.onnx, intraOpThreads };
}

/** The operator's draws file (`--draws`), read and checked; what is wrong with it is the operator's message. */
async function readDraws(path: string | undefined): Promise<DrawSource | undefined> {
  if (path === undefined) return undefined;
  return asInvalidRequest(() => DrawsFile.read(path));
}

/** A draws file that does not fit the job fails it with the reason, not as an engine failure. */
async function asInvalidRequest<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof DrawsError) throw new AppError(ErrorCode.InvalidRequest, error.message, { cause: error });
    throw error;
  }
}

/** `--dump-latents DIR`: every latent of the run and its frames in DIR/latents.safetensors. */
async function dumpLatents(dir: string | undefined, recorder: LatentRecorder | undefined, output: { frames: Uint8Array[]; width: number; height: number }, metadata: Record<string, string>): Promise<void> {
  if (dir === undefined || recorder === undefined) return;
  try {
    await writeLatentDump(dir, recorder, [4, output.height / 8, output.width / 8], output, metadata);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    throw new AppError(ErrorCode.InvalidRequest, `The latents could not be written to ${dir} (${code}).`, { cause: error });
  }
}

/**
 * `crossFrameUnavailable: true` in a result when the model's UNet runs per frame because the
 * cross-frame rewrite could not find its attention (the videos flicker); absent otherwise.
 */
function crossFrameNote(components: StableDiffusionComponents): { crossFrameUnavailable?: true } {
  return components.crossFrameUnavailable ? { crossFrameUnavailable: true } : {};
}

/** The rate smoothing interpolates to when the job does not say (edits always). */
const SMOOTH_FPS = TEXT_TO_VIDEO_LIMITS.fps.smooth;

/** Longest side of a result's thumbnail (`/history`). */
const THUMBNAIL_SIDE = 160;

/** A small PNG of the result's first frame beside it, for `/history`: `{ thumbnail: path }`. */
async function thumbnail(dir: string, output: { frames: Uint8Array[]; width: number; height: number }): Promise<{ thumbnail: string }> {
  const scale = Math.min(1, THUMBNAIL_SIDE / Math.max(output.width, output.height));
  const width = Math.max(1, Math.round(output.width * scale));
  const height = Math.max(1, Math.round(output.height * scale));
  const file = join(dir, 'thumbnail.png');
  await writeFile(file, encodePng(scaleNearest(output.frames[0]!, output.width, output.height, width, height), width, height));
  return { thumbnail: file };
}

export const createEngine: CreateEngine = ({ device, settings, logger }) => {
  const ffmpeg = resolveFfmpegPaths(settings);
  const loaded: StableDiffusionComponents[] = [];

  /** Loads a model once per worker; a failed load is logged for the operator and retried by the next job. */
  const lazily = <T>(what: string, load: () => Promise<T>): (() => Promise<T>) => {
    let loading: Promise<T> | undefined;
    return () =>
      (loading ??= load().catch((error: unknown) => {
        loading = undefined;
        logger.error({ err: error }, `${what} could not be loaded`);
        throw new AppError(ErrorCode.EngineUnavailable, `The ${what} on this server could not be loaded. The operator can see why in the bot's log.`, { cause: error });
      }));
  };

  const loadTextToVideo = lazily('text-to-video model', async () => {
    const dir = settings.modelDir || (await ensureModelSet({ size: 'small', kind: 'text2video', dir: join('models', 'small') }));
    const components = await StableDiffusionComponents.load(dir, { device, onnx: sessionThreads(settings), logger, groups: 2 });
    loaded.push(components);
    logger.info({ dir, provider: components.provider, crossFrameBlocks: components.crossFrameBlocks, crossFrameUnavailable: components.crossFrameUnavailable, untrainedWeights: components.untrainedWeights }, 'text-to-video model loaded');
    return { components, pipeline: new TextToVideoZeroPipeline(components) };
  });

  const loadVideoEdit = lazily('clip-edit model', async () => {
    const dir = settings.editModelDir || (await ensureModelSet({ size: 'small', kind: 'instruct-edit', dir: join('models', 'small-edit') }));
    const components = await StableDiffusionComponents.load(dir, { device, onnx: sessionThreads(settings), logger, groups: 3, vaeEncoder: true });
    loaded.push(components);
    logger.info({ dir, provider: components.provider, crossFrameBlocks: components.crossFrameBlocks, crossFrameUnavailable: components.crossFrameUnavailable, untrainedWeights: components.untrainedWeights }, 'clip-edit model loaded');
    return { components, pipeline: new VideoEditPipeline(components) };
  });

  /** A fresh preview policy per job, or none when the operator turned previews off. */
  const livePreview = (): LivePreview | undefined =>
    settings.previews?.enabled === false ? undefined : new LivePreview({ intervalMs: (settings.previews?.intervalSeconds ?? 3) * 1000 });

  /** The picture to animate: copied into the job's folder, checked and decoded there at the model's size. */
  const readPicture = async (file: string, outputDir: string, components: StableDiffusionComponents, signal: AbortSignal) => {
    const input = join(outputDir, `picture${extname(file).toLowerCase().replace(/[^.a-z0-9]/g, '') || '.bin'}`);
    await copyFile(file, input).catch((error: unknown) => {
      throw new AppError(ErrorCode.InvalidRequest, 'The picture to animate could not be read.', { cause: error });
    });
    const picture = await decodeImage(input, {
      ffmpegPath: ffmpeg.ffmpeg,
      ffprobePath: ffmpeg.ffprobe,
      limits: settings.input,
      resolution: components.resolution,
      sizeMultiple: components.sizeMultiple,
      tempDir: outputDir,
      signal,
    });
    await components.ensureVaeEncoder();
    return picture;
  };

  const edit: Engine['run'] = async (job, { signal, onProgress }) => {
    const params = parseEditParams(job.params);
    onProgress({ step: 0, total: 1, stage: 'loading' });
    const { components, pipeline } = await loadVideoEdit();
    // The clip is read from a copy inside the job's own folder: ffmpeg touches nothing else.
    await mkdir(job.outputDir, { recursive: true });
    const input = join(job.outputDir, `input${extname(params.inputFile).toLowerCase().replace(/[^.a-z0-9]/g, '') || '.bin'}`);
    await copyFile(params.inputFile, input).catch((error: unknown) => {
      throw new AppError(ErrorCode.InvalidRequest, 'The clip to edit could not be read.', { cause: error });
    });
    const clip = await decodeClip(input, {
      ffmpegPath: ffmpeg.ffmpeg,
      ffprobePath: ffmpeg.ffprobe,
      limits: settings.input,
      resolution: params.resolution ?? components.resolution,
      sizeMultiple: components.sizeMultiple,
      tempDir: job.outputDir,
      signal,
    });
    const draws = await readDraws(params.draws);
    const recorder = params.dumpLatents ? new LatentRecorder() : undefined;
    const output = await asInvalidRequest(() => pipeline.run(
      {
        frames: clip.frames,
        width: clip.width,
        height: clip.height,
        instruction: params.instruction,
        negativePrompt: params.negativePrompt,
        numInferenceSteps: params.numInferenceSteps ?? settings.editSteps,
        guidanceScale: params.guidanceScale,
        imageGuidanceScale: params.imageGuidanceScale,
        seed: job.seed,
        anchors: Math.min(params.anchors, clip.frames.length),
        scheduler: params.scheduler,
        crossFrameAttention: params.crossFrameAttention,
        draws,
      },
      { signal, onProgress, onLatent: recorder?.record },
    ));
    await dumpLatents(params.dumpLatents, recorder, output, { pipeline: 'video-edit', draws: draws?.description ?? `seed ${job.seed}`, scheduler: params.scheduler });
    onProgress({ step: 1, total: 1, stage: 'encoding' });
    const file = join(job.outputDir, `edited.${params.format}`);
    const smoothTo = params.smooth && clip.fps < SMOOTH_FPS ? SMOOTH_FPS : undefined;
    await encodeFrames({
      frames: output.frames,
      width: output.width,
      height: output.height,
      fps: clip.fps,
      smoothTo,
      out: file,
      format: params.format,
      ffmpegPath: ffmpeg.ffmpeg,
      signal,
      audioFrom: clip.hasAudio ? input : undefined,
      audioCodec: clip.audioCodec ?? undefined,
    });
    return {
      file,
      ...(await thumbnail(job.outputDir, output)),
      width: output.width,
      height: output.height,
      frames: output.frames.length,
      fps: smoothTo ?? clip.fps,
      smooth: smoothTo !== undefined,
      sourceFps: clip.sourceFps,
      anchors: output.anchors,
      seed: job.seed,
      promptTruncated: output.promptTruncated,
      droppedText: output.droppedText,
      untrainedWeights: components.untrainedWeights,
      ...crossFrameNote(components),
    };
  };

  const engine: Engine = {
    /** Loads the job's model before `run` (the worker times it apart: loading is not charged). */
    async prepare(job, { onProgress }) {
      if (job.kind !== 'edit' && job.kind !== 'text2video') return; // run() refuses it
      onProgress({ step: 0, total: 1, stage: 'loading' });
      await (job.kind === 'edit' ? loadVideoEdit() : loadTextToVideo());
    },
    async run(job, context) {
      if (job.kind === 'edit') return edit(job, context);
      if (job.kind !== 'text2video') throw new AppError(ErrorCode.EngineUnavailable, `Unknown job kind ${String(job.kind)}.`);
      const { signal, onProgress } = context;
      const params = parseTextToVideoParams(job.params);
      onProgress({ step: 0, total: 1, stage: 'loading' });
      const { components, pipeline } = await loadTextToVideo();
      // A size the UNet cannot take is the user's to fix: say so before any UNet call, not as an ORT shape error.
      try {
        checkUnetSize(params.width ?? components.resolution, params.height ?? components.resolution, components.sizeMultiple);
      } catch (error) {
        throw new AppError(ErrorCode.InvalidRequest, `${(error as Error).message}.`);
      }
      const { draws: drawsFile, dumpLatents: dumpDir, image: imageFile, aspect, fps: _fps, durationSeconds: _duration, smooth: _smooth, ...input } = params;
      const timing = videoTiming(params.numFrames, params);
      const size = aspect === undefined ? {} : sizeForAspect(aspect, components.resolution, components.sizeMultiple);
      await mkdir(job.outputDir, { recursive: true });
      const picture = imageFile === undefined ? undefined : await readPicture(imageFile, job.outputDir, components, signal);
      const draws = await readDraws(drawsFile);
      const recorder = dumpDir ? new LatentRecorder() : undefined;
      const output = await asInvalidRequest(() =>
        pipeline.run(
          { ...input, ...size, ...(picture ? { image: picture.rgb, width: picture.width, height: picture.height } : {}), seed: job.seed, draws },
          { signal, onProgress, onLatent: recorder?.record, preview: livePreview() },
        ),
      );
      await dumpLatents(dumpDir, recorder, output, { pipeline: 'text-to-video-zero', draws: draws?.description ?? `seed ${job.seed}` });
      onProgress({ step: 1, total: 1, stage: 'encoding' });
      const file = join(job.outputDir, `video.${params.format}`);
      await encodeFrames({
        frames: output.frames,
        width: output.width,
        height: output.height,
        fps: timing.sourceFps,
        smoothTo: timing.interpolate ? timing.fps : undefined,
        out: file,
        format: params.format,
        ffmpegPath: ffmpeg.ffmpeg,
        signal,
      });
      return {
        file,
        ...(await thumbnail(job.outputDir, output)),
        width: output.width,
        height: output.height,
        frames: output.frames.length,
        fps: timing.fps,
        durationSeconds: timing.durationSeconds,
        smooth: timing.interpolate,
        ...(picture ? { image: { width: picture.sourceWidth, height: picture.sourceHeight } } : {}),
        seed: job.seed,
        promptTruncated: output.promptTruncated,
        droppedText: output.droppedText,
        untrainedWeights: components.untrainedWeights,
        ...crossFrameNote(components),
      };
    },
    async dispose() {
      await Promise.all(loaded.map((components) => components.release()));
    },
  };
  return engine;
};
