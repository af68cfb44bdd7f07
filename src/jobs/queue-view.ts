/**
 * The queue as users see it: each job's position (1 = starts next, 0 = running) and the time until
 * its result is expected, from the learned cost rates, the work ahead and the number of slots.
 */
import { UserError } from '../errors.js';
import type { JobRepo } from '../store/job-repo.js';
import type { CostModel } from './cost-model.js';
import type { FairQueue } from './fair-queue.js';
import { ranFor, type LiveJobs } from './live-jobs.js';
import { JOB_KINDS, type Actor, type JobKind, type JobRecord } from './types.js';

export interface QueueEntry {
  job: JobRecord;
  /** 1 = starts next; 0 = running. */
  position: number;
  etaMs: number;
}

export interface QueueSnapshot {
  paused: boolean;
  /** Why jobs cannot start now (the job queue server unreachable, no worker host), when so. */
  notice?: string;
  running: QueueEntry[];
  waiting: QueueEntry[];
}

export interface QueueViewOptions {
  jobs: JobRepo;
  fair: FairQueue;
  live: LiveJobs;
  costs: CostModel;
  now(): number;
  /** How many jobs run at once. */
  slots(): number;
  /** Whether starts are paused (by an admin). */
  paused(): boolean;
  /** The dispatch's word on why jobs cannot start now. */
  notice?(): string | undefined;
}

export class QueueView {
  readonly #options: QueueViewOptions;

  constructor(options: QueueViewOptions) {
    this.#options = options;
  }

  /** A job with its queue position and ETA. */
  status(jobId: number): QueueEntry | undefined {
    const job = this.#options.jobs.get(jobId);
    if (!job) return undefined;
    return { job, ...this.positionAndEta(job) };
  }

  /** What is running and what waits, in the order it will start. */
  queue(): QueueSnapshot {
    const { live, fair } = this.#options;
    const running = [...live.running.keys()].map((id) => this.status(id)!).filter(Boolean);
    const waiting = fair.order().map((entry) => this.status(Number(entry.id))!);
    const notice = this.#options.notice?.();
    return { paused: this.#options.paused(), running, waiting, ...(notice ? { notice } : {}) };
  }

  /** Position (1 = next, 0 = running or finished) and the time until the result is expected. */
  positionAndEta(job: JobRecord): { position: number; etaMs: number } {
    const { live, fair, costs } = this.#options;
    const now = this.#options.now();
    // Every cost is the job's work units at its kind's current rate, so ETAs follow what was learned since the submit.
    const ms = (kind: JobKind, units: number) => units * costs.meanRate(kind) * 1000;
    const own = ms(job.kind, costs.work(job.kind, job.params).units);
    const running = live.running.get(job.id);
    if (running) return { position: 0, etaMs: Math.max(0, own - ranFor(running.runningSince, now)) };
    const ahead = job.state === 'queued' ? fair.aheadCount(String(job.id)) : undefined;
    if (ahead === undefined) return { position: 0, etaMs: live.waiting.has(job.id) ? Math.round(own) : 0 }; // starting now, or finished
    let workMs = 0;
    for (const other of live.running.values()) workMs += Math.max(0, ms(other.kind, other.units) - ranFor(other.runningSince, now));
    // The jobs ahead are costed at the mean cost of the jobs waiting.
    let waitingMs = 0;
    for (const kind of JOB_KINDS) waitingMs += ms(kind, live.waitingUnits[kind]);
    workMs += ahead * (waitingMs / Math.max(1, live.waiting.size));
    return { position: ahead + 1, etaMs: Math.round(workMs / Math.max(1, this.#options.slots()) + own) };
  }

  /** The per-user cap refusal, with where the user's jobs stand now ("job #12 running now, job #13 next in line"). */
  withQueuePositions(error: UserError, actor: Actor): UserError {
    const { running, waiting } = this.queue();
    const mine = [...running, ...waiting].filter((entry) => entry.job.platform === actor.platform && entry.job.userExternalId === actor.externalId);
    if (mine.length === 0) return error;
    const where = mine
      .slice(0, 5)
      .map(({ job, position }) => `job #${job.id} ${position === 0 ? 'running now' : position === 1 ? 'next in line' : `at position ${position} in the queue`}`)
      .join(', ');
    return new UserError(error.code, `${error.userMessage} Your jobs now: ${where}${mine.length > 5 ? ', …' : ''}.`, {
      cause: error,
      context: { ...error.context, positions: mine.map(({ job, position }) => ({ jobId: job.id, position })) },
    });
  }
}
