/**
 * The run queue: admitted jobs wait in the fair queue (round-robin across users, priorities) and
 * leave it only when a slot that can run them is free. On every change (a job queued or finished,
 * the dispatch's slots changing, starts resumed) it walks the waiting jobs in fair order and starts
 * each one whose kind has a free slot; a job whose kind has none keeps its place, so a job at
 * position 1 stays there while jobs of another kind behind it run on the slots it cannot use, and
 * it starts first once a slot for its kind frees or appears. A cancel or a drain takes a waiting
 * job out before it starts.
 */
import type { Logger } from 'pino';
import type { CostModel } from './cost-model.js';
import type { Dispatcher } from './dispatch/port.js';
import type { FairQueue } from './fair-queue.js';
import type { LiveJobs } from './live-jobs.js';
import type { JobKind, JobRecord } from './types.js';

export interface RunQueueOptions {
  fair: FairQueue;
  live: LiveJobs;
  costs: CostModel;
  /** Says how many slots there are, for which kinds, and whether one is free. */
  dispatcher: Pick<Dispatcher, 'size' | 'slotsFor' | 'nextIdleDevice'>;
  logger: Logger;
  now(): number;
  /** Runs a job whose turn has come (a slot for its kind is free). */
  run(jobId: number, kind: JobKind): Promise<void>;
}

export class RunQueue {
  readonly #options: RunQueueOptions;
  readonly #tasks = new Set<Promise<void>>();
  /** The kind of each started job not yet finished (including its last writes and a retry). */
  readonly #started = new Map<number, JobKind>();
  /** Starts are held (before start, by an admin's pause, in a drain). */
  #held = true;

  constructor(options: RunQueueOptions) {
    this.#options = options;
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
    this.startWhatFits();
  }

  pause(): void {
    this.#held = true;
  }

  /** Queues a job; a recovered job passes its submit time so that it keeps its place. */
  enqueue(job: JobRecord, options: { arrivedAt?: number } = {}): void {
    const { live, costs, fair } = this.#options;
    const units = costs.work(job.kind, job.params).units;
    live.addWaiting(job.id, { kind: job.kind, units });
    fair.enqueue(() => this.#track(job.id, job.kind), {
      id: String(job.id),
      userId: job.userId,
      priority: job.priority,
      arrivedAt: options.arrivedAt,
      cost: job.estimatedGpuSeconds * 1000,
    });
    this.startWhatFits();
  }

  /** Takes a queued job out (cancelled, or the service drains). */
  remove(jobId: number): void {
    if (!this.#options.live.waiting.has(jobId)) return;
    this.#options.live.removeWaiting(jobId);
    this.#options.fair.remove(String(jobId));
  }

  removeAll(): void {
    for (const jobId of [...this.#options.live.waiting.keys()]) this.remove(jobId);
  }

  /**
   * Starts waiting jobs, in fair order, while some kind has a free slot: the first job (in fair
   * order) whose kind has one starts, then the order is read again (that start moved its user's turn).
   * Called on every change that can free or add a slot: the dispatch's `onSizeChange`, a job's end.
   */
  startWhatFits(): void {
    const { fair, live, dispatcher } = this.#options;
    while (!this.#held && fair.size > 0 && this.#started.size < dispatcher.size) {
      // Asked once per kind and pass: the answer is the same for every waiting job of a kind.
      const fits = new Map<JobKind, boolean>();
      const entry = fair.dequeueFirst((waiting) => {
        const kind = live.waiting.get(Number(waiting.id))!.kind;
        if (!fits.has(kind)) fits.set(kind, this.#hasSlotFor(kind));
        return fits.get(kind)!;
      });
      if (!entry) return;
      void entry.run();
    }
  }

  /**
   * Whether a job of this kind may start now (fewer jobs started than slots, checked by the
   * caller): fewer of its kind started than slots that run it, and the dispatch names a free slot
   * for it. The counts include the jobs started here that have not reached the dispatch yet (their
   * start is being written), which the dispatch cannot see; with the local pool every slot runs
   * every kind, so only the total counts, as before.
   */
  #hasSlotFor(kind: JobKind): boolean {
    const { dispatcher } = this.#options;
    let sameKind = 0;
    for (const startedKind of this.#started.values()) if (startedKind === kind) sameKind++;
    return sameKind < dispatcher.slotsFor(kind) && dispatcher.nextIdleDevice(kind) !== undefined;
  }

  #track(jobId: number, kind: JobKind): Promise<void> {
    const { logger } = this.#options;
    this.#started.set(jobId, kind);
    const task = this.#execute(jobId, kind)
      .catch((error: unknown) => logger.error({ err: error, jobId }, 'job task failed'))
      .finally(() => {
        this.#tasks.delete(task);
        this.#started.delete(jobId);
        this.startWhatFits();
      });
    this.#tasks.add(task);
    return task;
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
