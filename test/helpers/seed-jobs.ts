/**
 * Finished jobs written straight into the database (users, job rows, reserve and settle/refund
 * ledger rows, as the job service writes them), for the dashboard's tests and benchmark.
 */
import type { Db } from '../../src/store/db.js';
import type { JobKind, JobState } from '../../src/jobs/types.js';

export const DAY_MS = 24 * 60 * 60 * 1000;

export interface SeedJob {
  user: string;
  kind: JobKind;
  state: Extract<JobState, 'succeeded' | 'failed' | 'cancelled'>;
  queuedAt: number;
  /** Run time, for durations and (succeeded) GPU-seconds. */
  seconds: number;
  groupId?: string;
  prompt?: string;
  platform?: 'discord' | 'slack';
}

/** Writes the jobs in one transaction; returns their ids. */
export function seedJobs(db: Db, jobs: SeedJob[]): number[] {
  const user = db.prepare(`INSERT INTO users (platform, external_id, display_name, created_at) VALUES (?, ?, ?, 0)
    ON CONFLICT (platform, external_id) DO UPDATE SET display_name = display_name RETURNING id`).pluck();
  const job = db.prepare(`INSERT INTO jobs (kind, params, state, user_id, platform, group_id, channel_id, seed, estimated_gpu_s, gpu_seconds,
      error_code, error, device, attempts, queued_at, started_at, finished_at, result)
    VALUES (?, ?, ?, ?, ?, ?, 'C1', 7, ?, ?, ?, ?, 'cpu', 1, ?, ?, ?, ?)`);
  const ledger = db.prepare(`INSERT INTO quota_ledger (job_id, user_id, group_id, entry, jobs, gpu_seconds, charged_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
  const ids: number[] = [];
  db.transaction(() => {
    for (const seed of jobs) {
      const platform = seed.platform ?? 'discord';
      const userId = user.get(platform, seed.user, seed.user.replace(/^u/, 'user ')) as number;
      const estimate = 10;
      const startedAt = seed.queuedAt + 2000;
      const finishedAt = startedAt + seed.seconds * 1000;
      const succeeded = seed.state === 'succeeded';
      const params = seed.kind === 'edit' ? { instruction: seed.prompt ?? 'make it snowy' } : { prompt: seed.prompt ?? 'a corgi surfing at sunset' };
      const info = job.run(
        seed.kind,
        JSON.stringify(params),
        seed.state,
        userId,
        platform,
        seed.groupId ?? 'G1',
        estimate,
        succeeded ? seed.seconds : null,
        seed.state === 'failed' ? 'engine_failed' : seed.state === 'cancelled' ? 'cancelled' : null,
        seed.state === 'failed' ? 'The engine failed on this job. It was not charged.' : seed.state === 'cancelled' ? 'Cancelled.' : null,
        seed.queuedAt,
        startedAt,
        finishedAt,
        succeeded ? JSON.stringify({ file: `/nonexistent/${seed.queuedAt}.mp4` }) : null,
      );
      const id = Number(info.lastInsertRowid);
      ids.push(id);
      ledger.run(id, userId, seed.groupId ?? 'G1', 'reserve', 1, estimate, seed.queuedAt, seed.queuedAt);
      if (succeeded) ledger.run(id, userId, seed.groupId ?? 'G1', 'settle', 0, seed.seconds - estimate, seed.queuedAt, finishedAt);
      else ledger.run(id, userId, seed.groupId ?? 'G1', 'refund', -1, -estimate, seed.queuedAt, finishedAt);
    }
  }).immediate();
  return ids;
}
