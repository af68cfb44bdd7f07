/**
 * The run queue: a p-queue whose queue class is the fair queue (round-robin across users,
 * priorities), with as many concurrent starts as the dispatch has slots. A job leaves it when its
 * turn comes and the job runner takes it; a cancel or a drain takes it out before that.
 */
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import type { CostModel } from './cost-model.js';
import type { FairQueue, FairQueueOptions } from './fair-queue.js';
import type { LiveJobs } from './live-jobs.js';
import type { JobKind, JobRecord } from './types.js';

export interface RunQueueOptions {
  fair: FairQueue;
  live: LiveJobs;
  costs: CostModel;
  concurrency: number;
  logger: Logger;
  now(): number;
  /** Runs a job whose turn has come (a slot is free). */
  run(jobId: number, kind: JobKind): Promise<void>;
}

export class RunQueue {
  readonly #options: RunQueueOptions;
  readonly #queue: PQueue<FairQueue, FairQueueOptions>;
  readonly #tasks = new Set<Promise<void>>();
  /** Starts are held (before start, by an admin's pause, in a drain). */
  #held = true;
  /** The dispatch's slots: with none (no worker host, none with the models, Redis away) no job's turn comes. */
  #slots: number;

  constructor(options: RunQueueOptions) {
    this.#options = options;
    this.#slots = options.concurrency;
    const fair = options.fair;
    this.#queue = new PQueue<FairQueue, FairQueueOptions>({
      concurrency: Math.max(1, options.concurrency),
      autoStart: false,
      // p-queue builds its queue with `new queueClass()`; hand it our instance so that positions can be read.
      queueClass: class {
        constructor() {
          return fair;
        }
      } as unknown as new () => FairQueue,
    });
  }

  /** Whether starts are held (an admin's pause or a drain); not while only the slots are missing. */
  get isPaused(): boolean {
    return this.#held;
  }

  /** Jobs started and not yet finished. */
  get tasks(): ReadonlySet<Promise<void>> {
    return this.#tasks;
  }

  start(): void {
    this.#held = false;
    this.#startOrHold();
  }

  pause(): void {
    this.#held = true;
    this.#startOrHold();
  }

  /** How many jobs may run at once (the dispatch's slots). */
  setConcurrency(concurrency: number): void {
    this.#slots = concurrency;
    this.#queue.concurrency = Math.max(1, concurrency);
    this.#startOrHold();
  }

  /**
   * p-queue needs a concurrency of at least 1: with no slot at all it is paused instead, so that
   * no job leaves the fair queue to wait for a slot, and every waiting job keeps its position.
   */
  #startOrHold(): void {
    if (this.#held || this.#slots === 0) this.#queue.pause();
    else this.#queue.start();
  }

  /** Queues a job; a recovered job passes its submit time so that it keeps its place. */
  enqueue(job: JobRecord, options: { arrivedAt?: number } = {}): void {
    const { live, costs, logger } = this.#options;
    const controller = new AbortController();
    const units = costs.work(job.kind, job.params).units;
    live.addWaiting(job.id, { kind: job.kind, units, controller });
    this.#queue
      .add(() => this.#track(this.#execute(job.id, job.kind)), {
        id: String(job.id),
        userId: job.userId,
        priority: job.priority,
        arrivedAt: options.arrivedAt,
        cost: job.estimatedGpuSeconds * 1000,
        signal: controller.signal,
      })
      .catch((error: unknown) => {
        if (!controller.signal.aborted) logger.error({ err: error, jobId: job.id }, 'job task failed');
      });
  }

  /** Takes a queued job out (cancelled, or the service drains). */
  remove(jobId: number): void {
    const { live } = this.#options;
    live.waiting.get(jobId)?.controller.abort();
    live.removeWaiting(jobId);
  }

  removeAll(): void {
    for (const jobId of [...this.#options.live.waiting.keys()]) this.remove(jobId);
  }

  #track(task: Promise<void>): Promise<void> {
    this.#tasks.add(task);
    return task.finally(() => this.#tasks.delete(task));
  }

  async #execute(jobId: number, kind: JobKind): Promise<void> {
    try {
      await this.#options.run(jobId, kind);
    } finally {
      // Its user's turn now follows its real end, not its estimate.
      this.#options.fair.finished(String(jobId), this.#options.now());
    }
  }
}
