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
import { DrawsError, DrawsFile, type DrawSource } from './draws.js';
import { ensureModelSet } from './models/built-in.js';
import { LatentRecorder, writeLatentDump } from './pipelines/latent-dump.js';
import { checkUnetSize } from './pipelines/latents.js';
import { StableDiffusionComponents } from './pipelines/sd-components.js';
import { TextToVideoZeroPipeline } from './pipelines/text-to-video-zero.js';
import { parseEditParams, parseTextToVideoParams } from '../jobs/job-params.js';
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
      const { draws: drawsFile, dumpLatents: dumpDir, ...input } = params;
      const draws = await readDraws(drawsFile);
      const recorder = dumpDir ? new LatentRecorder() : undefined;
      const output = await asInvalidRequest(() => pipeline.run({ ...input, seed: job.seed, draws }, { signal, onProgress, onLatent: recorder?.record }));
      await dumpLatents(dumpDir, recorder, output, { pipeline: 'text-to-video-zero', draws: draws?.description ?? `seed ${job.seed}` });
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
