/**
 * Startup recovery: what a crash or stop left `running` is requeued once, or failed with a refund
 * when it already had its retry; a job whose cancel was asked for is cancelled and refunded.
 */
import { ErrorCode } from '../errors.js';
import type { Db } from '../store/db.js';
import type { JobRepo } from '../store/job-repo.js';
import type { QuotaLedger } from '../store/quota-ledger.js';
import type { JobEvent, JobRecord } from './types.js';

/** A job is started at most this often: once, and once more after a crash, hang or restart (never after a timeout). */
export const MAX_ATTEMPTS = 2;

export interface RecoveryStores {
  db: Db;
  jobs: JobRepo;
  ledger: QuotaLedger;
}

/**
 * Recovers the given `running` jobs (default: every job the database has running) in one
 * transaction. Returns the notices to emit (cancelled and failed jobs); requeued jobs emit none.
 */
export function recoverInterruptedJobs(stores: RecoveryStores, now: number, select: (jobs: JobRepo) => JobRecord[] = (jobs) => jobs.listByState('running')): JobEvent[] {
  const { db, jobs, ledger } = stores;
  const notices: JobEvent[] = [];
  db.transaction(() => {
    for (const job of select(jobs)) {
      if (job.cancelRequestedAt !== null) {
        jobs.finish(job.id, 'cancelled', { now, errorCode: ErrorCode.Cancelled, error: 'Cancelled.' });
        notices.push({ type: 'cancelled', job: jobs.get(job.id)!, refunded: ledger.refund(job.id, now) });
      } else if (job.attempts >= MAX_ATTEMPTS) {
        const message = 'The bot restarted while making this video, twice. Please try again.';
        jobs.finish(job.id, 'failed', { now, errorCode: ErrorCode.Interrupted, error: message });
        notices.push({ type: 'failed', job: jobs.get(job.id)!, code: ErrorCode.Interrupted, message, refunded: ledger.refund(job.id, now) });
      } else {
        jobs.requeue(job.id, false);
      }
    }
  }).immediate();
  return notices;
}
