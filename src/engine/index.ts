/**
 * The built-in engine module that workers load when no `engineModule` is configured.
 * The diffusion pipelines (Text2Video-Zero, video edit) plug in here; until a pipeline for a job
 * kind is present, such a job fails with a clear message instead of crashing the worker.
 */
import { AppError, ErrorCode } from '../errors.js';
import type { CreateEngine, Engine } from '../jobs/engine.js';

const UNAVAILABLE: Record<string, string> = {
  text2video: 'Video generation is not available on this server yet: its engine has no text-to-video pipeline installed.',
  edit: 'Editing is not available on this server: its engine has no edit pipeline installed.',
};

export const createEngine: CreateEngine = () => {
  const engine: Engine = {
    async run(job) {
      throw new AppError(ErrorCode.EngineUnavailable, UNAVAILABLE[job.kind] ?? `Unknown job kind ${job.kind}.`);
    },
  };
  return engine;
};
