/**
 * The operator's reports (`reelbot jobs show`, `reelbot usage`), read from the database: the same
 * function serves the running coordinator (through its control socket) and the command line
 * reading the file when no coordinator runs, so both print the same.
 */
import type { JobRepo } from '../store/job-repo.js';
import type { LedgerEntry, QuotaLedger, UsageFilter } from '../store/quota-ledger.js';
import type { UserRepo } from '../store/user-repo.js';
import type { JobRecord, Platform, Usage, UserRecord } from './types.js';

/** One job and its quota ledger rows. */
export interface JobDetail {
  job: JobRecord;
  ledger: LedgerEntry[];
}

/** A user by internal id, or by platform and platform id. */
export type UserQuery = { id: number } | { platform: Platform; externalId: string };

export interface UsageQuery {
  user?: UserQuery;
  groupId?: string;
  since: number;
  /** Exclusive. */
  until?: number;
  /** How many top users and groups. */
  limit: number;
}

export interface UsageOverview {
  /** The user asked for; null when none was, or when the database has no such user (then nothing else is counted). */
  user: UserRecord | null;
  total: Usage;
  topUsers: (Usage & { userId: number; user: UserRecord | null })[];
  byGroup: (Usage & { groupId: string | null })[];
}

export function jobDetail(repos: { jobs: JobRepo; ledger: QuotaLedger }, jobId: number): JobDetail | undefined {
  const job = repos.jobs.get(jobId);
  return job && { job, ledger: repos.ledger.forJob(jobId) };
}

/** GPU usage over a period: the total, the top users and the usage per guild/workspace. */
export function usageOverview(repos: { users: UserRepo; ledger: QuotaLedger }, query: UsageQuery): UsageOverview {
  const { users, ledger } = repos;
  let user: UserRecord | null = null;
  if (query.user) {
    user = ('id' in query.user ? users.get(query.user.id) : users.find(query.user.platform, query.user.externalId)) ?? null;
    if (!user) return { user: null, total: { jobs: 0, gpuSeconds: 0 }, topUsers: [], byGroup: [] };
  }
  const filter: UsageFilter = { since: query.since, until: query.until, userId: user?.id, groupId: query.groupId };
  return {
    user,
    total: ledger.total(filter),
    topUsers: ledger.breakdown('user', filter, query.limit).map((row) => ({
      userId: Number(row.key),
      user: users.get(Number(row.key)) ?? null,
      jobs: row.jobs,
      gpuSeconds: row.gpuSeconds,
    })),
    byGroup: ledger.breakdown('group', filter, query.limit).map((row) => ({ groupId: row.key === null ? null : String(row.key), jobs: row.jobs, gpuSeconds: row.gpuSeconds })),
  };
}
