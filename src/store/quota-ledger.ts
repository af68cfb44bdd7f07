/**
 * The quota ledger. Submit reserves the estimated cost, completion settles the difference to the
 * measured GPU-seconds, failure and cancel refund the reservation. Usage is a SUM over the rows,
 * so it never drifts; unique indexes make a second settle or refund of a job impossible.
 */
import type { Db } from './db.js';
import type { Usage } from '../jobs/types.js';

export interface UsageRow extends Usage {
  key: string | number | null;
}

/** One row of the ledger. */
export interface LedgerEntry {
  id: number;
  entry: 'reserve' | 'settle' | 'refund';
  jobs: number;
  gpuSeconds: number;
  userId: number;
  groupId: string | null;
  chargedAt: number;
  createdAt: number;
}

export interface UsageFilter {
  userId?: number;
  groupId?: string;
  since: number;
  until?: number;
}

export class QuotaLedger {
  readonly #db: Db;
  readonly #reserve;
  readonly #close;
  readonly #userUsage;
  readonly #groupUsage;
  readonly #forJob;

  constructor(db: Db) {
    this.#db = db;
    this.#reserve = db.prepare(`INSERT INTO quota_ledger (job_id, user_id, group_id, entry, jobs, gpu_seconds, charged_at, created_at)
      VALUES (?, ?, ?, 'reserve', 1, ?, ?, ?)`);
    // settle / refund copy the reservation row, so they always match what was charged.
    this.#close = db.prepare(`INSERT OR IGNORE INTO quota_ledger (job_id, user_id, group_id, entry, jobs, gpu_seconds, charged_at, created_at)
      SELECT job_id, user_id, group_id, @entry,
             CASE @entry WHEN 'refund' THEN -jobs ELSE 0 END,
             CASE @entry WHEN 'refund' THEN -gpu_seconds ELSE @measured - gpu_seconds END,
             charged_at, @now
      FROM quota_ledger WHERE job_id = @jobId AND entry = 'reserve'`);
    this.#userUsage = db.prepare(`SELECT coalesce(sum(jobs), 0) AS jobs, coalesce(sum(gpu_seconds), 0) AS gpuSeconds
      FROM quota_ledger WHERE user_id = ? AND charged_at >= ?`);
    this.#groupUsage = db.prepare(`SELECT coalesce(sum(jobs), 0) AS jobs, coalesce(sum(gpu_seconds), 0) AS gpuSeconds
      FROM quota_ledger WHERE group_id = ? AND charged_at >= ?`);
    this.#forJob = db.prepare(`SELECT id, entry, jobs, gpu_seconds AS gpuSeconds, user_id AS userId, group_id AS groupId,
      charged_at AS chargedAt, created_at AS createdAt FROM quota_ledger WHERE job_id = ? ORDER BY id`);
  }

  /** A job's rows, oldest first. */
  forJob(jobId: number): LedgerEntry[] {
    return this.#forJob.all(jobId) as LedgerEntry[];
  }

  reserve(entry: { jobId: number; userId: number; groupId: string | null; gpuSeconds: number; chargedAt: number; now: number }): void {
    this.#reserve.run(entry.jobId, entry.userId, entry.groupId, entry.gpuSeconds, entry.chargedAt, entry.now);
  }

  /** Charges the measured GPU-seconds. False when the job was already settled or refunded. */
  settle(jobId: number, measuredGpuSeconds: number, now: number): boolean {
    return this.#close.run({ entry: 'settle', measured: measuredGpuSeconds, jobId, now }).changes === 1;
  }

  /** Gives the reservation back. False when the job was already settled or refunded. */
  refund(jobId: number, now: number): boolean {
    return this.#close.run({ entry: 'refund', measured: 0, jobId, now }).changes === 1;
  }

  userUsage(userId: number, since: number): Usage {
    return this.#userUsage.get(userId, since) as Usage;
  }

  groupUsage(groupId: string, since: number): Usage {
    return this.#groupUsage.get(groupId, since) as Usage;
  }

  /** Total usage matching a filter. */
  total(filter: UsageFilter): Usage {
    const { where, args } = whereClause(filter);
    return this.#db
      .prepare(`SELECT coalesce(sum(jobs), 0) AS jobs, coalesce(sum(gpu_seconds), 0) AS gpuSeconds FROM quota_ledger WHERE ${where}`)
      .get(...args) as Usage;
  }

  /** Usage grouped by user or by guild/workspace, biggest GPU-seconds first. */
  breakdown(by: 'user' | 'group', filter: UsageFilter, limit = 10): UsageRow[] {
    const column = by === 'user' ? 'user_id' : 'group_id';
    const { where, args } = whereClause(filter);
    return this.#db
      .prepare(`SELECT ${column} AS key, sum(jobs) AS jobs, sum(gpu_seconds) AS gpuSeconds FROM quota_ledger
        WHERE ${where} GROUP BY ${column} ORDER BY gpuSeconds DESC, jobs DESC LIMIT ?`)
      .all(...args, limit) as UsageRow[];
  }
}

function whereClause(filter: UsageFilter): { where: string; args: (string | number)[] } {
  const parts = ['charged_at >= ?'];
  const args: (string | number)[] = [filter.since];
  if (filter.until !== undefined) {
    parts.push('charged_at < ?');
    args.push(filter.until);
  }
  if (filter.userId !== undefined) {
    parts.push('user_id = ?');
    args.push(filter.userId);
  }
  if (filter.groupId !== undefined) {
    parts.push('group_id = ?');
    args.push(filter.groupId);
  }
  return { where: parts.join(' AND '), args };
}
