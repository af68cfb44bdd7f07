/**
 * The built-in engine module that workers load when no `engineModule` is configured.
 * text2video runs Text2Video-Zero on the configured model folder (or the built-in small set, made
 * on first use) and writes an MP4; kinds whose pipeline is not in this build fail with a clear
 * message instead of crashing the worker.
 */
import { mkdir } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';
import type { CreateEngine, Engine, EngineSettings } from '../jobs/engine.js';
import { ensureModelSet } from './models/built-in.js';
import { StableDiffusionComponents } from './pipelines/sd-components.js';
import { TextToVideoZeroPipeline } from './pipelines/text-to-video-zero.js';
import { parseTextToVideoParams } from './params.js';
import { encodeFrames } from './video/encode.js';
import { resolveFfmpegPaths } from './video/ffmpeg-paths.js';

const UNAVAILABLE: Record<string, string> = {
  edit: 'Editing is not available on this server: its engine has no edit pipeline installed.',
};

/** Threads per ONNX session: the configured number, or the cores shared out between workers. */
export function sessionThreads(settings: EngineSettings): EngineSettings['onnx'] {
  const intraOpThreads = settings.onnx.intraOpThreads || Math.max(1, Math.floor(availableParallelism() / Math.max(1, settings.workerCount)));
  return { ...settings.onnx, intraOpThreads };
}

export const createEngine: CreateEngine = ({ device, settings, logger }) => {
  const ffmpeg = resolveFfmpegPaths(settings);
  let textToVideo: Promise<{ components: StableDiffusionComponents; pipeline: TextToVideoZeroPipeline }> | undefined;

  const loadTextToVideo = () =>
    (textToVideo ??= (async () => {
      const dir = settings.modelDir || (await ensureModelSet({ size: 'small', kind: 'text2video', dir: join('models', 'small') }));
      const components = await StableDiffusionComponents.load(dir, { device, onnx: sessionThreads(settings), logger, groups: 2 });
      logger.info({ dir, provider: components.provider, crossFrameBlocks: components.crossFrameBlocks }, 'text-to-video model loaded');
      return { components, pipeline: new TextToVideoZeroPipeline(components) };
    })().catch((error: unknown) => {
      textToVideo = undefined; // the next job tries again
      throw new AppError(ErrorCode.EngineUnavailable, `The video model could not be loaded: ${(error as Error).message}`, { cause: error });
    }));

  const engine: Engine = {
    async run(job, { signal, onProgress }) {
      if (job.kind !== 'text2video') {
        throw new AppError(ErrorCode.EngineUnavailable, UNAVAILABLE[job.kind] ?? `Unknown job kind ${job.kind}.`);
      }
      const params = parseTextToVideoParams(job.params);
      onProgress({ step: 0, total: 1, stage: 'loading' });
      const { pipeline } = await loadTextToVideo();
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
      };
    },
    async dispose() {
      const loaded = await textToVideo?.catch(() => undefined);
      await loaded?.components.release();
    },
  };
  return engine;
};
