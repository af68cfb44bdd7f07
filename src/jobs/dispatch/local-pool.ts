/**
 * The local dispatch (the default): one worker process per device slot on this machine. A worker
 * host (`reelbot worker`) runs the same pool for the jobs it takes from Redis.
 *
 * One worker process per device slot. The pool starts workers lazily, keeps them between jobs
 * (models stay loaded), and isolates failures: a worker that exits mid-job, stops sending
 * heartbeats, takes longer than the load deadline to get its engine and models ready, reports no
 * progress for the stall timeout, or runs past the job timeout is killed and the job's promise
 * rejects with a coded AppError; the next job on that slot gets a fresh worker.
 *
 * A job has two phases. *Preparing* runs from `run()` until the engine starts the job's `run`:
 * a fresh worker boots and loads its engine module, then the engine's `prepare` loads the models
 * the job needs; the load deadline covers all of it. *Running* is the engine's `run`: its time is
 * the job's GPU-seconds, the job timeout counts from its start, and every progress report resets
 * the stall timer. Heartbeats come from the worker's main thread, which the engine (on its own
 * thread) cannot block, so they only stop when the whole process is stuck.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { setPriority } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import { AppError, ErrorCode } from '../../errors.js';
import type { EngineJob, EngineSettings } from '../engine.js';
import type { Dispatcher, RunOptions, RunOutcome, WorkerSnapshot } from './port.js';
import type { ChildMessage, ParentMessage } from '../worker/protocol.js';

export const WORKER_ENTRY = fileURLToPath(new URL('../worker/process-main.ts', import.meta.url));
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
/**
 * How long a new worker process may take to boot before it sends its first message. Heartbeats
 * start once the process runs; booting Node and the loader on a busy machine can take seconds.
 */
const WORKER_BOOT_TIMEOUT_MS = 60_000;

/** Niceness of worker processes (0 is normal, 19 the lowest priority). */
/** What a user hears when the engine cannot start on a worker (the reason goes to the log). */
const ENGINE_UNAVAILABLE_TEXT = 'The video engine on this server could not start. The operator can see why in the bot\'s log.';

const WORKER_NICENESS = 10;

export interface WorkerPoolOptions {
  devices: readonly string[];
  engineModule: string;
  engineSettings: EngineSettings;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** A running job that reports no progress for this long is stopped (`engine_stalled`). */
  stallTimeoutMs: number;
  /** Getting a job's engine and models ready may take this long (`model_load_timed_out`). */
  modelLoadTimeoutMs: number;
  logLevel: string;
  logger: Logger;
  /** Environment of the workers; secrets of the bot adapters are left out by the caller. */
  env?: NodeJS.ProcessEnv;
}

interface Worker {
  child: ChildProcess;
  ready: Promise<void>;
  /** Set once the worker said `ready`. */
  isReady?: boolean;
  /** When the worker last said anything; undefined until its first message. */
  lastSeen?: number;
  spawnedAt: number;
}

interface Slot {
  device: string;
  worker?: Worker;
  task?: Task;
  /** Processes started on this slot so far. */
  spawns: number;
  /** The last worker's engine could not be loaded. */
  unavailable: boolean;
  /** When the slot's current or last worker last said anything. */
  lastSeen?: number;
}

interface Task {
  jobId: number;
  options: RunOptions;
  resolve(outcome: RunOutcome): void;
  reject(error: AppError): void;
  /** Undefined while preparing; when the engine's `run` began, then when it last reported progress. */
  lastProgressAt?: number;
  /** The load deadline, then the job timeout. */
  deadline: NodeJS.Timeout;
  /** Cancel grace timers. */
  timers: NodeJS.Timeout[];
}

export class WorkerPool implements Dispatcher {
  readonly #options: WorkerPoolOptions;
  readonly #slots: Slot[];
  readonly #watchdog: NodeJS.Timeout;
  #closed = false;

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
    this.#slots = options.devices.map((device) => ({ device, spawns: 0, unavailable: false }));
    this.#watchdog = setInterval(() => this.#checkHeartbeats(), Math.min(options.heartbeatIntervalMs, 1000));
    this.#watchdog.unref();
  }

  get size(): number {
    return this.#slots.length;
  }

  /** Each slot's device, state, process, job and last heartbeat. */
  snapshot(): WorkerSnapshot[] {
    return this.#slots.map((slot) => ({
      device: slot.device,
      state: slot.task ? 'busy' : slot.worker ? (slot.worker.isReady ? 'ready' : 'starting') : slot.unavailable ? 'unavailable' : 'idle',
      pid: slot.worker?.child.pid ?? null,
      jobId: slot.task?.jobId ?? null,
      lastHeartbeatAt: slot.lastSeen ?? null,
      restarts: Math.max(0, slot.spawns - 1),
    }));
  }

  /** Every slot runs every kind. */
  slotsFor(): number {
    return this.size;
  }

  /** The device that the next `run()` will use, or undefined when every slot is busy. */
  nextIdleDevice(): string | undefined {
    return this.#slots.find((slot) => !slot.task)?.device;
  }

  /**
   * Runs a job on an idle slot. Rejects with an AppError whose code says what happened:
   * `worker_crashed`, `worker_hung`, `model_load_timed_out`, `engine_stalled`, `job_timed_out`,
   * `cancelled`, `interrupted` (pool closed), `engine_unavailable`, or the engine's own code.
   */
  run(job: Omit<EngineJob, 'device'>, options: RunOptions): Promise<RunOutcome> {
    const slot = this.#slots.find((candidate) => !candidate.task);
    if (!slot) return Promise.reject(new Error('WorkerPool.run called with no idle slot'));
    if (this.#closed) return Promise.reject(new AppError(ErrorCode.Interrupted, 'The bot is shutting down.'));
    return new Promise<RunOutcome>((resolve, reject) => {
      const loadTimeoutMs = this.#options.modelLoadTimeoutMs;
      const deadline = setTimeout(() => {
        this.#options.logger.warn({ device: slot.device, jobId: job.id, loadTimeoutMs }, 'the engine was not ready to run the job by the load deadline: killing the worker');
        this.#fail(slot, new AppError(ErrorCode.ModelLoadTimedOut, `Loading the video models took longer than ${seconds(loadTimeoutMs)} s on this server, so the job was stopped. The operator can see why in the bot's log.`));
      }, loadTimeoutMs);
      const task: Task = { jobId: job.id, options, resolve, reject, deadline, timers: [] };
      slot.task = task;
      const worker = slot.worker ?? this.#spawn(slot);
      // Both only for this task on this worker: a job cancelled or failed while its worker still
      // booted must not start on it later, nor fail the next task when that worker exits.
      worker.ready.then(
        () => {
          if (slot.task !== task || slot.worker !== worker) return;
          this.#send(worker, { type: 'start', job: { ...job, device: slot.device } });
        },
        (error: AppError) => {
          if (slot.task === task) this.#fail(slot, error);
        },
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
      // glibc keeps large freed buffers in the heap once it has raised its mmap threshold; a fixed
      // threshold hands model-loading and activation buffers back to the OS (the operator's value wins).
      env: { MALLOC_MMAP_THRESHOLD_: '131072', ...(this.#options.env ?? process.env) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    // Below the bot's own priority: on a busy CPU the acks, heartbeats and uploads of the main
    // process come first (the 3 s interaction deadline does not wait for a denoising step).
    if (child.pid !== undefined) {
      try {
        setPriority(child.pid, WORKER_NICENESS);
      } catch (error) {
        this.#options.logger.debug({ err: error, workerPid: child.pid }, 'could not lower the worker priority');
      }
    }
    let settleReady!: { resolve(): void; reject(error: AppError): void };
    const ready = new Promise<void>((resolve, reject) => (settleReady = { resolve, reject }));
    ready.catch(() => undefined); // observed through run(); never an unhandled rejection
    const worker: Worker = { child, ready, spawnedAt: Date.now() };
    slot.worker = worker;
    slot.spawns++;
    this.#options.logger.info({ device: slot.device, workerPid: child.pid }, 'worker started');

    child.on('message', (message: ChildMessage) => {
      worker.lastSeen = Date.now();
      if (slot.worker === worker) slot.lastSeen = worker.lastSeen;
      this.#onMessage(slot, worker, message, settleReady);
    });
    child.on('error', (error) => this.#options.logger.error({ err: error, device: slot.device }, 'worker process error'));
    child.on('exit', (code, signal) => {
      // Workers stopped on purpose (a replaced or hung worker, shutdown) are not news.
      const expected = this.#closed || slot.worker !== worker;
      this.#options.logger[expected ? 'debug' : 'warn']({ device: slot.device, workerPid: child.pid, code, signal }, 'worker exited');
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
        worker.isReady = true;
        slot.unavailable = false;
        ready.resolve();
        return;
      case 'fatal':
        // The raw load error is for the operator's log; users only hear that the engine did not start.
        this.#options.logger.error({ device: slot.device, error: message.message }, 'the engine could not be loaded');
        slot.unavailable = true;
        ready.reject(new AppError(ErrorCode.EngineUnavailable, ENGINE_UNAVAILABLE_TEXT, { cause: new Error(message.message) }));
        return;
      case 'heartbeat':
        return;
      case 'loading':
        if (task?.jobId === message.jobId) this.#options.logger.debug({ device: slot.device, jobId: message.jobId }, 'engine preparing the job');
        return;
      case 'running':
        if (task?.jobId === message.jobId) this.#onRunning(slot, task, message.loadSeconds);
        return;
      case 'progress':
        if (task?.jobId !== message.jobId) return;
        if (task.lastProgressAt !== undefined) task.lastProgressAt = Date.now();
        task.options.onProgress(message.progress);
        return;
      case 'result':
        if (task?.jobId !== message.jobId) return;
        this.#release(slot);
        task.resolve({ result: message.result, gpuSeconds: message.gpuSeconds, loadSeconds: message.loadSeconds, device: slot.device });
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

  /** The models are loaded and the engine's `run` begins: the job timeout and the stall timer start. */
  #onRunning(slot: Slot, task: Task, loadSeconds: number): void {
    clearTimeout(task.deadline);
    const { timeoutMs } = task.options;
    task.deadline = setTimeout(() => {
      this.#fail(slot, new AppError(ErrorCode.JobTimedOut, `The job ran longer than ${seconds(timeoutMs)} s.`));
    }, timeoutMs);
    task.lastProgressAt = Date.now();
    // A warm worker has its models already: only real loads are worth an info line.
    const log = { device: slot.device, jobId: task.jobId, loadSeconds: Math.round(loadSeconds * 1000) / 1000 };
    if (loadSeconds >= 1) this.#options.logger.info(log, 'models loaded for the job');
    else this.#options.logger.debug(log, 'engine ready for the job');
    task.options.onRunning?.(loadSeconds);
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
    const task = slot.task;
    if (!task) return;
    clearTimeout(task.deadline);
    for (const timer of task.timers) clearTimeout(timer);
    slot.task = undefined;
  }

  /** Kills workers that went silent (the whole process stuck) and engines that stopped making progress. */
  #checkHeartbeats(): void {
    const now = Date.now();
    for (const slot of this.#slots) {
      const worker = slot.worker;
      const task = slot.task;
      if (!task || !worker) continue;
      const silentFor = now - (worker.lastSeen ?? worker.spawnedAt);
      if (silentFor > (worker.lastSeen === undefined ? WORKER_BOOT_TIMEOUT_MS : this.#options.heartbeatTimeoutMs)) {
        this.#options.logger.warn({ device: slot.device, jobId: task.jobId, silentFor }, 'worker missed its heartbeats: killing it');
        this.#fail(slot, new AppError(ErrorCode.WorkerHung, 'The video worker stopped responding.'));
        continue;
      }
      const stalledFor = task.lastProgressAt === undefined ? 0 : now - task.lastProgressAt;
      if (stalledFor > this.#options.stallTimeoutMs) {
        this.#options.logger.warn({ device: slot.device, jobId: task.jobId, stalledFor }, 'the engine made no progress for the stall timeout: killing the worker');
        this.#fail(slot, new AppError(ErrorCode.EngineStalled, `The video engine made no progress for ${seconds(this.#options.stallTimeoutMs)} s on this job, so it was stopped.`));
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

/** Milliseconds as whole seconds, for messages. */
function seconds(ms: number): number {
  return Math.round(ms / 1000);
}
