/**
 * The outbox of final messages. A job's outcome (succeeded, failed, cancelled) is stored before its
 * adapter posts it; if the process dies in between, nobody would ever post it. Each finished job
 * therefore stays "undelivered" (`jobs.delivered_at` NULL) until its adapter says its final message
 * went out (or was given up for good), and at start an adapter resends the undelivered ones of its
 * platform, as the same final events it follows live.
 */
import { ErrorCode } from '../errors.js';
import { writeWithoutBlocking, type Db } from '../store/db.js';
import type { JobRepo } from '../store/job-repo.js';
import type { QuotaLedger } from '../store/quota-ledger.js';
import type { JobEvent, JobRecord, Platform } from './types.js';

/** Undelivered outcomes older than this are not resent: a video a day late is noise, not an answer. */
export const OUTBOX_MAX_AGE_MS = 24 * 60 * 60 * 1000;
/** How long marking a job delivered waits for another process's write lock (without blocking the event loop). */
const MARK_LOCK_WAIT_MS = 30_000;

/** The event that ends a job's stream. */
export type FinalJobEvent = Extract<JobEvent, { type: 'succeeded' | 'failed' | 'cancelled' }>;

export class Outbox {
  readonly #db: Db;
  readonly #jobs: JobRepo;
  readonly #ledger: QuotaLedger;
  readonly #now: () => number;

  constructor(db: Db, stores: { jobs: JobRepo; ledger: QuotaLedger }, now: () => number) {
    this.#db = db;
    this.#jobs = stores.jobs;
    this.#ledger = stores.ledger;
    this.#now = now;
  }

  /** The final events of a platform's finished, undelivered jobs of the last `maxAgeMs`, oldest first. */
  undelivered(platform: Platform, maxAgeMs = OUTBOX_MAX_AGE_MS): FinalJobEvent[] {
    return this.#jobs.listUndelivered(platform, this.#now() - maxAgeMs).map((job) => this.#finalEvent(job));
  }

  /**
   * Records that a finished job's final message went out; later starts do not resend it. Written
   * here, not through the job service's writer queue: a drain closes that queue before the last
   * final messages have gone out (the database stays open until they have), and this one small
   * write still waits out another process's lock without holding the event loop.
   */
  async markDelivered(jobId: number): Promise<void> {
    await writeWithoutBlocking(this.#db, () => this.#jobs.markDelivered(jobId, this.#now()), { deadlineMs: MARK_LOCK_WAIT_MS });
  }

  #finalEvent(job: JobRecord & { state: string }): FinalJobEvent {
    const refunded = this.#ledger.forJob(job.id).some((entry) => entry.entry === 'refund');
    switch (job.state) {
      case 'succeeded':
        return { type: 'succeeded', job, result: job.result, gpuSeconds: job.gpuSeconds ?? 0 };
      case 'cancelled':
        return { type: 'cancelled', job, refunded };
      default:
        return {
          type: 'failed',
          job,
          code: (job.errorCode ?? ErrorCode.Unknown) as ErrorCode,
          // The stored error is the user-facing text the live `failed` event carried.
          message: job.error ?? 'The job failed.',
          refunded,
        };
    }
  }
}
