/**
 * The built-in engine module that workers load when no `engineModule` is configured.
 * text2video runs Text2Video-Zero on the configured model folder (or the built-in small set, made
 * on first use); edit runs Video Instruct-Pix2Pix with anchor-frame attention on an uploaded clip
 * (checked and decoded by the hardened input path) and keeps its frame rate and audio.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';
import type { CreateEngine, Engine, EngineSettings } from '../jobs/engine.js';
import { ensureModelSet } from './models/built-in.js';
import { StableDiffusionComponents } from './pipelines/sd-components.js';
import { TextToVideoZeroPipeline } from './pipelines/text-to-video-zero.js';
import { parseEditParams, parseTextToVideoParams } from './params.js';
import { VideoEditPipeline } from './pipelines/video-edit.js';
import { decodeClip } from './video/input.js';
import { encodeFrames } from './video/encode.js';
import { resolveFfmpegPaths } from './video/ffmpeg-paths.js';

/** Threads per ONNX session: the configured number, or the cores shared out between workers. */
export function sessionThreads(settings: EngineSettings): EngineSettings['onnx'] {
  const intraOpThreads = settings.onnx.intraOpThreads || Math.max(1, Math.floor(availableParallelism() / Math.max(1, settings.workerCount)));
  return { ...settings.onnx, intraOpThreads };
}

/**
 * `crossFrameUnavailable: true` in a result when the model's UNet runs per frame because the
 * cross-frame rewrite could not find its attention (the videos flicker); absent otherwise.
 */
function crossFrameNote(components: StableDiffusionComponents): { crossFrameUnavailable?: true } {
  return components.crossFrameUnavailable ? { crossFrameUnavailable: true } : {};
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
    logger.info({ dir, provider: components.provider, crossFrameBlocks: components.crossFrameBlocks, crossFrameUnavailable: components.crossFrameUnavailable }, 'text-to-video model loaded');
    return { components, pipeline: new TextToVideoZeroPipeline(components) };
  });

  const loadVideoEdit = lazily('clip-edit model', async () => {
    const dir = settings.editModelDir || (await ensureModelSet({ size: 'small', kind: 'instruct-edit', dir: join('models', 'small-edit') }));
    const components = await StableDiffusionComponents.load(dir, { device, onnx: sessionThreads(settings), logger, groups: 3, vaeEncoder: true });
    loaded.push(components);
    logger.info({ dir, provider: components.provider, crossFrameBlocks: components.crossFrameBlocks, crossFrameUnavailable: components.crossFrameUnavailable }, 'clip-edit model loaded');
    return { components, pipeline: new VideoEditPipeline(components) };
  });

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
      resolution: components.resolution,
      tempDir: job.outputDir,
      signal,
    });
    const output = await pipeline.run(
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
      },
      { signal, onProgress },
    );
    onProgress({ step: 1, total: 1, stage: 'encoding' });
    const file = join(job.outputDir, `edited.${params.format}`);
    await encodeFrames({
      frames: output.frames,
      width: output.width,
      height: output.height,
      fps: clip.fps,
      out: file,
      format: params.format,
      ffmpegPath: ffmpeg.ffmpeg,
      signal,
      audioFrom: clip.hasAudio ? input : undefined,
      audioCodec: clip.audioCodec ?? undefined,
    });
    return {
      file,
      width: output.width,
      height: output.height,
      frames: output.frames.length,
      fps: clip.fps,
      sourceFps: clip.sourceFps,
      anchors: output.anchors,
      seed: job.seed,
      promptTruncated: output.promptTruncated,
      droppedText: output.droppedText,
      ...crossFrameNote(components),
    };
  };

  const engine: Engine = {
    async run(job, context) {
      if (job.kind === 'edit') return edit(job, context);
      if (job.kind !== 'text2video') throw new AppError(ErrorCode.EngineUnavailable, `Unknown job kind ${String(job.kind)}.`);
      const { signal, onProgress } = context;
      const params = parseTextToVideoParams(job.params);
      onProgress({ step: 0, total: 1, stage: 'loading' });
      const { components, pipeline } = await loadTextToVideo();
      const output = await pipeline.run({ ...params, seed: job.seed }, { signal, onProgress });
      onProgress({ step: 1, total: 1, stage: 'encoding' });
      await mkdir(job.outputDir, { recursive: true });
      const file = join(job.outputDir, `video.${params.format}`);
      await encodeFrames({
        frames: output.frames,
        width: output.width,
        height: output.height,
        fps: params.fps,
        out: file,
        format: params.format,
        ffmpegPath: ffmpeg.ffmpeg,
        signal,
      });
      return {
        file,
        width: output.width,
        height: output.height,
        frames: output.frames.length,
        fps: params.fps,
        seed: job.seed,
        promptTruncated: output.promptTruncated,
        droppedText: output.droppedText,
        ...crossFrameNote(components),
      };
    },
    async dispose() {
      await Promise.all(loaded.map((components) => components.release()));
    },
  };
  return engine;
};
