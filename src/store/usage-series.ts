/**
 * Usage over time for the dashboard's charts: the quota ledger summed per UTC day and job kind
 * (the same rows `reelbot usage` sums, so the figures agree), and a period's failure rate and
 * duration percentiles (defined as in `JobRepo.stats`: by submit time, durations of succeeded jobs).
 */
import type { Db } from './db.js';
import { percentile } from './job-repo.js';
import type { JobKind } from '../jobs/types.js';

export const DAY_MS = 24 * 60 * 60 * 1000;

export interface DailyUsage {
  /** Midnight UTC of the day, ms since the epoch. */
  day: number;
  kind: JobKind;
  jobs: number;
  gpuSeconds: number;
}

export interface PeriodStats {
  finished: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  /** failed / (succeeded + failed); 0 when nothing finished. */
  failureRate: number;
  p50Seconds: number | null;
  p95Seconds: number | null;
}

export class UsageSeries {
  readonly #daily;
  readonly #states;
  readonly #durations;

  constructor(db: Db) {
    this.#daily = db.prepare(`SELECT (l.charged_at / ${DAY_MS}) * ${DAY_MS} AS day, j.kind AS kind, sum(l.jobs) AS jobs, sum(l.gpu_seconds) AS gpuSeconds
      FROM quota_ledger l JOIN jobs j ON j.id = l.job_id
      WHERE l.charged_at >= ? AND l.charged_at < ? GROUP BY day, j.kind ORDER BY day`);
    this.#states = db.prepare(`SELECT state, count(*) AS n FROM jobs WHERE queued_at >= ? AND queued_at < ? GROUP BY state`);
    this.#durations = db
      .prepare(`SELECT (finished_at - started_at) / 1000.0 AS s FROM jobs
        WHERE state = 'succeeded' AND queued_at >= ? AND queued_at < ? AND started_at IS NOT NULL ORDER BY s`)
      .pluck();
  }

  /** Jobs and GPU-seconds per UTC day and kind, for days with any ledger rows in [since, until). */
  daily(since: number, until: number): DailyUsage[] {
    return this.#daily.all(since, until) as DailyUsage[];
  }

  /** Outcomes, failure rate and p50/p95 duration of the jobs submitted in [since, until). */
  stats(since: number, until: number): PeriodStats {
    const counts: Record<string, number> = {};
    for (const row of this.#states.all(since, until) as { state: string; n: number }[]) counts[row.state] = row.n;
    const succeeded = counts.succeeded ?? 0;
    const failed = counts.failed ?? 0;
    const cancelled = counts.cancelled ?? 0;
    const durations = this.#durations.all(since, until) as number[];
    return {
      finished: succeeded + failed + cancelled,
      succeeded,
      failed,
      cancelled,
      failureRate: succeeded + failed === 0 ? 0 : failed / (succeeded + failed),
      p50Seconds: percentile(durations, 0.5),
      p95Seconds: percentile(durations, 0.95),
    };
  }
}
