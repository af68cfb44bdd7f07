/**
 * The contract between the job core and the video engine. A worker process loads an engine module
 * (the built-in one, or `engineModule` from config) that exports `createEngine`, then calls
 * `run()` for each job it is given. The engine never knows about users, quotas or platforms.
 */
import type { Logger } from 'pino';
import type { JobKind, JobProgress } from './types.js';

export interface EngineJob {
  id: number;
  kind: JobKind;
  params: Record<string, unknown>;
  seed: number;
  /** The device slot this worker owns: `cpu`, `cuda:0`… */
  device: string;
  /** A folder reserved for this job's outputs; the engine creates it when it has something to write. */
  outputDir: string;
  /** 1 on the first run, 2 on the retry after a crash or hang. */
  attempt: number;
}

export interface EngineRunContext {
  /** Aborted when the job is cancelled; the engine stops at the next step. */
  signal: AbortSignal;
  onProgress(progress: JobProgress): void;
}

/** Must be JSON-serialisable: it is stored with the job and sent to the bot adapters. */
export type EngineResult = Record<string, unknown>;

export interface Engine {
  run(job: EngineJob, context: EngineRunContext): Promise<EngineResult>;
  dispose?(): Promise<void>;
}

export interface EngineOptions {
  device: string;
  logger: Logger;
}

/** What an engine module exports. */
export type CreateEngine = (options: EngineOptions) => Engine | Promise<Engine>;
