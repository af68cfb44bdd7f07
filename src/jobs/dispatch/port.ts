/**
 * The dispatch port: how the job core runs an admitted job whose turn has come on some device slot.
 * The job core keeps the fair queue and starts a job only when `nextIdleDevice(kind)` names a free
 * slot for its kind, so round-robin order, positions and ETAs are the same whichever implementation runs it:
 * local-pool.ts (worker processes on this machine, the default) or bullmq.ts (worker hosts behind
 * Redis).
 */
import type { EngineJob, EngineResult } from '../engine.js';
import type { JobKind, JobProgress } from '../types.js';

export type DispatchJob = Omit<EngineJob, 'device'>;

export interface RunOutcome {
  result: EngineResult;
  /** The time of the engine's `run` alone: what the user is charged. */
  gpuSeconds: number;
  /** The time of the engine's `prepare` (model loading) for this job; not charged. */
  loadSeconds: number;
  device: string;
}

export interface RunOptions {
  /** The longest the engine's `run` may take. */
  timeoutMs: number;
  onProgress(progress: JobProgress): void;
  /** Called when the models are loaded and the engine's `run` begins. */
  onRunning?(loadSeconds: number): void;
}

/** One device slot as the operator sees it (the dashboard, /metrics, /readyz). */
export interface WorkerSnapshot {
  device: string;
  /**
   * `idle`: no process (one starts with the next job); `starting`: booting or loading its engine;
   * `ready`: up, waiting for a job; `busy`: running one; `unavailable`: its engine could not be
   * loaded (the log says why; the next job tries again).
   */
  state: 'idle' | 'starting' | 'ready' | 'busy' | 'unavailable';
  pid: number | null;
  jobId: number | null;
  /** When its process last said anything (a heartbeat or a message). */
  lastHeartbeatAt: number | null;
  /** Processes started on this slot after the first (crashes, hangs, kills and engine failures). */
  restarts: number;
}

export interface Dispatcher {
  /** How many jobs can run at once now (device slots). */
  readonly size: number;
  /** How many of the slots run jobs of this kind (at most `size`; a worker host may take only some kinds or models). */
  slotsFor(kind: JobKind): number;
  /** The device that the next `run()` of a job of this kind will use, or undefined when no slot that can run it is free. */
  nextIdleDevice(kind?: JobKind): string | undefined;
  /**
   * Runs a job on an idle slot. Rejects with an AppError whose code says what happened:
   * `worker_crashed`, `worker_hung`, `model_load_timed_out`, `engine_stalled`, `job_timed_out`,
   * `cancelled`, `interrupted` (dispatch closed), `engine_unavailable`, or the engine's own code.
   */
  run(job: DispatchJob, options: RunOptions): Promise<RunOutcome>;
  /** Tells the slot running this job to stop; it is killed when it has not stopped after `graceMs`. False when no slot runs it. */
  cancel(jobId: number, graceMs: number): boolean;
  /** Each slot's device, state, process, job, last heartbeat and restarts. */
  snapshot(): WorkerSnapshot[];
  /** Stops every slot. Running jobs reject with `interrupted`. */
  close(): Promise<void>;
  /**
   * Called when the slots change (worker hosts come and go, or change the kinds they take) or
   * dispatch opens, so that waiting jobs that now have a slot start; a fixed pool has none.
   */
  onSizeChange?(listener: (size: number) => void): void;
  /** Why jobs cannot start now (Redis unreachable, no worker host), for /queue; undefined when they can. */
  notice?(): string | undefined;
}
