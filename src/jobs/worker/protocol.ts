/**
 * Typed messages between the worker pool (parent), a worker process's main thread, and the engine
 * thread inside that process.
 *
 * The pool talks to the process over IPC (`ParentMessage` down, `ChildMessage` up). The process's
 * main thread answers heartbeats itself and passes everything else through: `start` and `cancel`
 * go down to the engine thread (`ThreadCommand`), and what the engine thread says (`ThreadMessage`)
 * goes up to the pool unchanged.
 */
import type { EngineJob, EngineResult, EngineSettings } from '../engine.js';
import type { JobProgress } from '../types.js';

export type ParentMessage =
  | { type: 'init'; device: string; engineModule: string; settings: EngineSettings; heartbeatIntervalMs: number; logLevel: string }
  | { type: 'start'; job: EngineJob }
  | { type: 'cancel'; jobId: number };

/** What the engine thread says; the process's main thread forwards it to the pool as it is. */
export type ThreadMessage =
  | { type: 'ready' }
  /** The engine could not be loaded; the worker exits after sending this. */
  | { type: 'fatal'; message: string }
  /** The engine's `prepare` (model loading) began for this job. */
  | { type: 'loading'; jobId: number }
  /** `prepare` is done (or the engine has none) and `run` begins; `loadSeconds` is what `prepare` took. */
  | { type: 'running'; jobId: number; loadSeconds: number }
  | { type: 'progress'; jobId: number; progress: JobProgress }
  /** `gpuSeconds` is the time of `run` alone; `loadSeconds` that of `prepare`. */
  | { type: 'result'; jobId: number; result: EngineResult; gpuSeconds: number; loadSeconds: number }
  /** `userMessage` is set when the engine threw an AppError meant for the user. */
  | { type: 'error'; jobId: number; code: string; message: string; userMessage?: string };

export type ChildMessage = ThreadMessage | { type: 'heartbeat' };

/** What the process's main thread hands down to the engine thread. */
export type ThreadCommand = Extract<ParentMessage, { type: 'start' | 'cancel' }>;

/** The engine thread's start data (`workerData`). */
export interface ThreadInit {
  device: string;
  /** Absolute path of the engine module; empty = the built-in engine. */
  engineModule: string;
  settings: EngineSettings;
  logLevel: string;
}
