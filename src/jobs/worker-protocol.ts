/** Typed IPC between the worker pool (parent) and a worker process (child). */
import type { EngineJob, EngineResult, EngineSettings } from './engine.js';
import type { JobProgress } from './types.js';

export type ParentMessage =
  | { type: 'init'; device: string; engineModule: string; settings: EngineSettings; heartbeatIntervalMs: number; logLevel: string }
  | { type: 'start'; job: EngineJob }
  | { type: 'cancel'; jobId: number };

export type ChildMessage =
  | { type: 'ready' }
  /** The engine could not be loaded; the worker exits after sending this. */
  | { type: 'fatal'; message: string }
  | { type: 'heartbeat' }
  | { type: 'progress'; jobId: number; progress: JobProgress }
  | { type: 'result'; jobId: number; result: EngineResult; gpuSeconds: number }
  /** `userMessage` is set when the engine threw an AppError meant for the user. */
  | { type: 'error'; jobId: number; code: string; message: string; userMessage?: string };
