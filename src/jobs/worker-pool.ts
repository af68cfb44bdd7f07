/**
 * One worker process per device slot. The pool starts workers lazily, keeps them between jobs
 * (models stay loaded), and isolates failures: a worker that exits mid-job, stops sending
 * heartbeats or runs past the job timeout is killed and the job's promise rejects with a coded
 * AppError; the next job on that slot gets a fresh worker.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { setPriority } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import { AppError, ErrorCode } from '../errors.js';
import type { EngineJob, EngineResult, EngineSettings } from './engine.js';
import type { JobProgress } from './types.js';
import type { ChildMessage, ParentMessage } from './worker-protocol.js';

const WORKER_ENTRY = fileURLToPath(new URL('./worker-main.ts', import.meta.url));
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
/**
 * How long a new worker process may take to boot before it sends its first message. Heartbeats
 * start once the process runs; booting Node and the loader on a busy machine can take seconds.
 */
const WORKER_BOOT_TIMEOUT_MS = 60_000;

/** Niceness of worker processes (0 is normal, 19 the lowest priority). */
const WORKER_NICENESS = 10;

export interface WorkerPoolOptions {
  devices: readonly string[];
  engineModule: string;
  engineSettings: EngineSettings;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  logLevel: string;
  logger: Logger;
  /** Environment of the workers; secrets of the bot adapters are left out by the caller. */
  env?: NodeJS.ProcessEnv;
}

export interface RunOutcome {
  result: EngineResult;
  gpuSeconds: number;
  device: string;
}

interface Worker {
  child: ChildProcess;
  ready: Promise<void>;
  /** When the worker last said anything; undefined until its first message. */
  lastSeen?: number;
  spawnedAt: number;
}

interface Slot {
  device: string;
  worker?: Worker;
  task?: {
    jobId: number;
    resolve(outcome: RunOutcome): void;
    reject(error: AppError): void;
    onProgress(progress: JobProgress): void;
    timers: NodeJS.Timeout[];
  };
}

export class WorkerPool {
  readonly #options: WorkerPoolOptions;
  readonly #slots: Slot[];
  readonly #watchdog: NodeJS.Timeout;
  #closed = false;

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
    this.#slots = options.devices.map((device) => ({ device }));
    this.#watchdog = setInterval(() => this.#checkHeartbeats(), Math.min(options.heartbeatIntervalMs, 1000));
    this.#watchdog.unref();
  }

  get size(): number {
    return this.#slots.length;
  }

  /** The device that the next `run()` will use, or undefined when every slot is busy. */
  nextIdleDevice(): string | undefined {
    return this.#slots.find((slot) => !slot.task)?.device;
  }

  /**
   * Runs a job on an idle slot. Rejects with an AppError whose code says what happened:
   * `worker_crashed`, `worker_hung`, `job_timed_out`, `cancelled`, `interrupted` (pool closed),
   * `engine_unavailable`, or the engine's own code.
   */
  run(job: Omit<EngineJob, 'device'>, options: { timeoutMs: number; onProgress(progress: JobProgress): void }): Promise<RunOutcome> {
    const slot = this.#slots.find((candidate) => !candidate.task);
    if (!slot) return Promise.reject(new Error('WorkerPool.run called with no idle slot'));
    if (this.#closed) return Promise.reject(new AppError(ErrorCode.Interrupted, 'The bot is shutting down.'));
    return new Promise<RunOutcome>((resolve, reject) => {
      const timers = [
        setTimeout(() => {
          this.#fail(slot, new AppError(ErrorCode.JobTimedOut, `The job ran longer than ${Math.round(options.timeoutMs / 1000)} s.`));
        }, options.timeoutMs),
      ];
      slot.task = { jobId: job.id, resolve, reject, onProgress: options.onProgress, timers };
      const worker = slot.worker ?? this.#spawn(slot);
      worker.ready.then(
        () => {
          if (slot.task?.jobId !== job.id || slot.worker !== worker) return;
          this.#send(worker, { type: 'start', job: { ...job, device: slot.device } });
        },
        (error: AppError) => this.#fail(slot, error),
      );
    });
  }

  /**
   * Tells the worker running this job to stop; kills it when it has not stopped after `graceMs`.
   * Returns false when no slot runs the job.
   */
  cancel(jobId: number, graceMs: number): boolean {
    const slot = this.#slots.find((candidate) => candidate.task?.jobId === jobId);
    if (!slot?.task) return false;
    const cancelled = new AppError(ErrorCode.Cancelled, 'The job was cancelled.');
    if (slot.worker) this.#send(slot.worker, { type: 'cancel', jobId });
    slot.task.timers.push(setTimeout(() => this.#fail(slot, cancelled), graceMs));
    return true;
  }

  /** Stops every worker. Running jobs reject with `interrupted`. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#watchdog);
    const exits: Promise<void>[] = [];
    for (const slot of this.#slots) {
      if (slot.task) this.#fail(slot, new AppError(ErrorCode.Interrupted, 'The bot was restarted while this job ran.'));
      const worker = slot.worker;
      if (!worker) continue;
      slot.worker = undefined;
      exits.push(this.#kill(worker));
    }
    await Promise.all(exits);
  }

  #spawn(slot: Slot): Worker {
    const child = fork(WORKER_ENTRY, [], {
      execArgv: ['--import', TSX_LOADER],
      env: this.#options.env ?? process.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    // Below the bot's own priority: on a busy CPU the acks, heartbeats and uploads of the main
    // process come first (the 3 s interaction deadline does not wait for a denoising step).
    if (child.pid !== undefined) {
      try {
        setPriority(child.pid, WORKER_NICENESS);
      } catch (error) {
        this.#options.logger.debug({ err: error, pid: child.pid }, 'could not lower the worker priority');
      }
    }
    let settleReady!: { resolve(): void; reject(error: AppError): void };
    const ready = new Promise<void>((resolve, reject) => (settleReady = { resolve, reject }));
    ready.catch(() => undefined); // observed through run(); never an unhandled rejection
    const worker: Worker = { child, ready, spawnedAt: Date.now() };
    slot.worker = worker;
    this.#options.logger.info({ device: slot.device, pid: child.pid }, 'worker started');

    child.on('message', (message: ChildMessage) => {
      worker.lastSeen = Date.now();
      this.#onMessage(slot, worker, message, settleReady);
    });
    child.on('error', (error) => this.#options.logger.error({ err: error, device: slot.device }, 'worker process error'));
    child.on('exit', (code, signal) => {
      // Workers stopped on purpose (a replaced or hung worker, shutdown) are not news.
      const expected = this.#closed || slot.worker !== worker;
      this.#options.logger[expected ? 'debug' : 'warn']({ device: slot.device, pid: child.pid, code, signal }, 'worker exited');
      settleReady.reject(new AppError(ErrorCode.WorkerCrashed, 'The video worker crashed.'));
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      this.#fail(slot, new AppError(ErrorCode.WorkerCrashed, 'The video worker crashed while making this video.'));
    });
    this.#send(worker, {
      type: 'init',
      device: slot.device,
      engineModule: this.#options.engineModule,
      settings: this.#options.engineSettings,
      heartbeatIntervalMs: this.#options.heartbeatIntervalMs,
      logLevel: this.#options.logLevel,
    });
    return worker;
  }

  #onMessage(slot: Slot, worker: Worker, message: ChildMessage, ready: { resolve(): void; reject(error: AppError): void }): void {
    if (slot.worker !== worker) return; // a worker already replaced: ignore what it still says
    const task = slot.task;
    switch (message.type) {
      case 'ready':
        ready.resolve();
        return;
      case 'fatal':
        ready.reject(new AppError(ErrorCode.EngineUnavailable, message.message));
        return;
      case 'heartbeat':
        return;
      case 'progress':
        if (task?.jobId === message.jobId) task.onProgress(message.progress);
        return;
      case 'result':
        if (task?.jobId !== message.jobId) return;
        this.#release(slot);
        task.resolve({ result: message.result, gpuSeconds: message.gpuSeconds, device: slot.device });
        return;
      case 'error': {
        if (task?.jobId !== message.jobId) return;
        this.#release(slot);
        const code = (Object.values(ErrorCode) as string[]).includes(message.code) ? (message.code as ErrorCode) : ErrorCode.EngineFailed;
        if (!message.userMessage && code !== ErrorCode.Cancelled) {
          this.#options.logger.error({ device: slot.device, jobId: message.jobId, error: message.message }, 'engine error');
        }
        task.reject(new AppError(code, message.userMessage ?? (code === ErrorCode.Cancelled ? 'The job was cancelled.' : 'The engine failed on this job.'), {
          cause: new Error(message.message),
        }));
        return;
      }
    }
  }

  /** Ends the slot's task with an error and kills its worker (the next job gets a fresh one). */
  #fail(slot: Slot, error: AppError): void {
    const task = slot.task;
    if (!task) return;
    this.#release(slot);
    const worker = slot.worker;
    if (worker && error.code !== ErrorCode.EngineUnavailable) {
      slot.worker = undefined;
      void this.#kill(worker);
    } else if (worker) {
      slot.worker = undefined;
    }
    task.reject(error);
  }

  #release(slot: Slot): void {
    for (const timer of slot.task?.timers ?? []) clearTimeout(timer);
    slot.task = undefined;
  }

  #checkHeartbeats(): void {
    const now = Date.now();
    for (const slot of this.#slots) {
      const worker = slot.worker;
      if (!slot.task || !worker) continue;
      const silentFor = now - (worker.lastSeen ?? worker.spawnedAt);
      if (silentFor > (worker.lastSeen === undefined ? WORKER_BOOT_TIMEOUT_MS : this.#options.heartbeatTimeoutMs)) {
        this.#options.logger.warn({ device: slot.device, jobId: slot.task.jobId, silentFor }, 'worker missed its heartbeats: killing it');
        this.#fail(slot, new AppError(ErrorCode.WorkerHung, 'The video worker stopped responding.'));
      }
    }
  }

  #send(worker: Worker, message: ParentMessage): void {
    if (worker.child.connected) worker.child.send(message);
  }

  #kill(worker: Worker): Promise<void> {
    const { child } = worker;
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }
}
