/**
 * Admin operations: who is an admin, usage reports and stats, tiers and per-user limits, bans, and
 * pausing or clearing the queue, and reading the audit log. Every change is written with its
 * audit row (who, where, what, when) in one transaction, through the writer queue.
 */
import { ErrorCode, UserError } from '../errors.js';
import type { AuditEntry, AuditLog, AuditQuery } from '../store/audit-log.js';
import type { JobRepo, JobStats } from '../store/job-repo.js';
import type { QuotaLedger, UsageFilter } from '../store/quota-ledger.js';
import type { Settings } from '../store/settings.js';
import type { UserRepo } from '../store/user-repo.js';
import { jobDetail, usageOverview, type JobDetail, type UsageOverview, type UsageQuery } from './operator-reports.js';
import type { QuotaSettings } from './quota-policy.js';
import type { Actor, Platform, Usage, UserRecord } from './types.js';

export type Target = { platform: Actor['platform']; externalId: string };

export interface UsageReport {
  filter: UsageFilter;
  total: Usage;
  topUsers: (Usage & { user: UserRecord | undefined })[];
  byGroup: (Usage & { groupId: string | null })[];
}

/** The settings admin operations read (the config's, checked at start). */
export interface AdminSettings {
  /** Platform user ids allowed to run admin commands. */
  admins: Record<Exclude<Platform, 'cli'>, readonly string[]>;
  quota: Pick<QuotaSettings, 'tiers'>;
}

export interface AdminOpsOptions {
  config: AdminSettings;
  jobs: JobRepo;
  users: UserRepo;
  ledger: QuotaLedger;
  audit: AuditLog;
  settings: Settings;
  now(): number;
  /** Runs a write someone waits for in one transaction (JobService's: "try again" when the database stays locked). */
  write<T>(write: () => T): Promise<T>;
  /** The ids of the queued jobs, in the order they will start. */
  queuedJobIds(): number[];
  /** Cancels a job as the actor (JobService.cancel) without an audit row of its own: the ban or clear that asks is audited. */
  cancel(actor: Actor, jobId: number): Promise<{ outcome: 'cancelled' | 'cancelling' }>;
  /** Stops and restarts the starting of jobs. */
  pauseStarts(): void;
  resumeStarts(): void;
}

export class AdminOps {
  readonly #options: AdminOpsOptions;

  constructor(options: AdminOpsOptions) {
    this.#options = options;
  }

  /** Whether the actor may use admin operations: the CLI (the operator), or an allowlisted id. */
  isAdmin(actor: Actor): boolean {
    if (actor.platform === 'cli') return true;
    return this.#options.config.admins[actor.platform].includes(actor.externalId);
  }

  requireAdmin(actor: Actor): void {
    if (!this.isAdmin(actor)) throw new UserError(ErrorCode.NotAdmin, 'Only the bot admins can do this.');
  }

  /** Usage per user and per guild/workspace over a period. */
  usageReport(actor: Actor, filter: { target?: Target; groupId?: string; since: number; until?: number }, limit = 10): UsageReport {
    this.requireAdmin(actor);
    const { users, ledger } = this.#options;
    const userId = filter.target ? (users.find(filter.target.platform, filter.target.externalId)?.id ?? -1) : undefined;
    const usageFilter: UsageFilter = { since: filter.since, until: filter.until, userId, groupId: filter.groupId };
    return {
      filter: usageFilter,
      total: ledger.total(usageFilter),
      topUsers: ledger.breakdown('user', usageFilter, limit).map((row) => ({
        jobs: row.jobs,
        gpuSeconds: row.gpuSeconds,
        user: users.get(Number(row.key)),
      })),
      byGroup: ledger.breakdown('group', usageFilter, limit).map((row) => ({
        jobs: row.jobs,
        gpuSeconds: row.gpuSeconds,
        groupId: row.key as string | null,
      })),
    };
  }

  /** The operator's usage report (`reelbot usage`): see operator-reports.ts. */
  usageOverview(actor: Actor, query: UsageQuery): UsageOverview {
    this.requireAdmin(actor);
    return usageOverview(this.#options, query);
  }

  /** One job and its quota ledger rows (`reelbot jobs show`). */
  jobDetail(actor: Actor, jobId: number): JobDetail | undefined {
    this.requireAdmin(actor);
    return jobDetail(this.#options, jobId);
  }

  /** Jobs, failure rate, p50/p95 durations and GPU-seconds by guild since a time. */
  stats(actor: Actor, since: number): JobStats {
    this.requireAdmin(actor);
    return this.#options.jobs.stats(since);
  }

  /** Sets a user's tier and/or per-user limits (null in the override clears it). */
  async setQuota(actor: Actor, target: Target, change: { tier?: string | null; override?: UserRecord['quotaOverride'] }): Promise<UserRecord> {
    this.requireAdmin(actor);
    const { config, users } = this.#options;
    if (change.tier != null && !(change.tier in config.quota.tiers)) {
      throw new UserError(ErrorCode.InvalidRequest, `Unknown tier "${change.tier}". Tiers: ${Object.keys(config.quota.tiers).join(', ')}.`);
    }
    return this.#adminAction(actor, 'quota.set', target, { ...change }, (user) => {
      if (change.tier !== undefined) users.setTier(user.id, change.tier);
      if (change.override !== undefined) users.setQuotaOverride(user.id, change.override);
    });
  }

  /** Bans a user (their queued jobs are cancelled and refunded) or lifts the ban. */
  async setBanned(actor: Actor, target: Target, banned: boolean, reason?: string): Promise<UserRecord> {
    this.requireAdmin(actor);
    const { users, jobs } = this.#options;
    const user = await this.#adminAction(actor, banned ? 'user.ban' : 'user.unban', target, { reason: reason ?? null }, (found) =>
      users.setBanned(found.id, banned, reason ?? null),
    );
    if (banned) {
      for (const id of this.#options.queuedJobIds()) {
        const job = jobs.get(id);
        if (job?.userId === user.id) void this.#options.cancel(actor, job.id).catch(() => undefined);
      }
    }
    return user;
  }

  /** Stops starting jobs (running ones finish); kept across restarts. */
  async pauseQueue(actor: Actor): Promise<void> {
    this.requireAdmin(actor);
    await this.#options.write(() => {
      this.#record(actor, 'queue.pause', {});
      this.#options.settings.setQueuePaused(true);
    });
    this.#options.pauseStarts();
  }

  async resumeQueue(actor: Actor): Promise<void> {
    this.requireAdmin(actor);
    await this.#options.write(() => {
      this.#record(actor, 'queue.resume', {});
      this.#options.settings.setQueuePaused(false);
    });
    this.#options.resumeStarts();
  }

  /** Cancels and refunds every queued job; running jobs go on. Returns how many. */
  async clearQueue(actor: Actor): Promise<number> {
    this.requireAdmin(actor);
    const ids = this.#options.queuedJobIds();
    await this.#options.write(() => this.#record(actor, 'queue.clear', { jobs: ids.length }));
    let cleared = 0;
    for (const id of ids) {
      const { outcome } = await this.#options.cancel(actor, id);
      if (outcome === 'cancelled') cleared++;
    }
    return cleared;
  }

  /** The audit log, newest first; `beforeId` pages on from the last entry of the page before. */
  auditLog(actor: Actor, query: AuditQuery): AuditEntry[] {
    this.requireAdmin(actor);
    return this.#options.audit.list(query);
  }

  /** Records an admin action; call it inside the write that makes the change. */
  record(actor: Actor, action: string, target: string | null, details: Record<string, unknown>): void {
    this.#options.audit.record(auditEntry(actor, action, target, details, this.#options.now()));
  }

  #record(actor: Actor, action: string, details: Record<string, unknown>): void {
    this.record(actor, action, null, details);
  }

  /** Runs an admin change on a user (created if new) and records it in the audit log, in one transaction. */
  #adminAction(actor: Actor, action: string, target: Target, details: Record<string, unknown>, change: (user: UserRecord) => void): Promise<UserRecord> {
    const { users } = this.#options;
    return this.#options.write(() => {
      const now = this.#options.now();
      const user = users.upsert(target.platform, target.externalId, null, now);
      change(user);
      this.record(actor, action, `${target.platform}:${target.externalId}`, details);
      return users.get(user.id)!;
    });
  }
}

/** The audit row of an admin action: who, where (platform, guild/workspace, channel), what and when. */
function auditEntry(actor: Actor, action: string, target: string | null, details: Record<string, unknown>, now: number): Omit<AuditEntry, 'id'> {
  return {
    platform: actor.platform,
    actorId: actor.externalId,
    groupId: actor.groupId ?? null,
    channelId: actor.channelId ?? null,
    action,
    target,
    details,
    createdAt: now,
  };
}
