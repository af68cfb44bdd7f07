/**
 * The contract between the job core and the video engine. A worker process loads an engine module
 * (the built-in one, or `engineModule` from config) that exports `createEngine`, then calls
 * `prepare()` (when the engine has one) and `run()` for each job it is given. The engine runs on a
 * thread of its own inside the worker process, so it may block that thread (ONNX Runtime's `run`
 * and model loading do) without stopping the worker's heartbeats. The engine never knows about
 * users, quotas or platforms.
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
  /**
   * Loads what the job needs (models), before `run`. It has its own deadline
   * (`jobs.modelLoadTimeoutSeconds`), its time is logged, and it is not charged to the user nor
   * counted in ETAs. Called for every job: it returns at once when the models are already loaded.
   */
  prepare?(job: EngineJob, context: EngineRunContext): Promise<void>;
  /**
   * Makes the job's result. Its time is the job's GPU-seconds. It must report progress at least
   * every `jobs.stallTimeoutSeconds`, or the job is stopped as stalled.
   */
  run(job: EngineJob, context: EngineRunContext): Promise<EngineResult>;
  dispose?(): Promise<void>;
}

/** The settings an engine needs, handed to each worker at start (a subset of the config). */
export interface EngineSettings {
  /** SD 1.x model folder; empty = the built-in small set. */
  modelDir: string;
  /** Instruct-edit model folder; empty = the built-in small instruct-edit set. */
  editModelDir: string;
  onnx: { intraOpThreads: number; interOpThreads: number; fallbackToCpu: boolean };
  ffmpegPath: string;
  ffprobePath: string;
  /** Limits on uploaded clips. */
  input: { maxBytes: number; maxDurationSeconds: number; maxWidth: number; maxHeight: number; maxFrames: number; maxFps: number };
  /** Default steps of the edit pipeline. */
  editSteps: number;
  /** Live previews (the `previews` settings); absent: on, every 3 s. */
  previews?: { enabled: boolean; intervalSeconds: number };
  /** How many workers share this machine (to split its cores between them). */
  workerCount: number;
}

export interface EngineOptions {
  device: string;
  settings: EngineSettings;
  logger: Logger;
}

/** What an engine module exports. */
export type CreateEngine = (options: EngineOptions) => Engine | Promise<Engine>;
