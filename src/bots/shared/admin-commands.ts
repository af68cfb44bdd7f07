/**
 * The one admin command runner both platforms use: an {@link AdminCommand} (parsed from Slack's
 * `/reelbot-admin` text or built from Discord's `/admin` options) run against the job service,
 * and the text that answers it. The job service's admin allowlist decides every call (a
 * non-admin gets its NotAdmin UserError, and nothing changes) and writes the audit log.
 */
import { periodsAt } from '../../jobs/quota-policy.js';
import type { JobService } from '../../jobs/job-service.js';
import { ErrorCode, UserError } from '../../errors.js';
import type { Actor, Platform, UserRecord } from '../../jobs/types.js';
import type { DashboardLinks } from './platform-observer.js';
import { adminStatsText, adminUsageText, AUDIT_PAGE_SIZE, auditText, mention, type Format } from './texts.js';

/** Report periods of `usage` and `stats`. */
export const ADMIN_PERIODS = ['today', 'month', 'all'] as const;
export type AdminPeriod = (typeof ADMIN_PERIODS)[number];

/** How each period reads in a report's heading. */
export const PERIOD_LABELS: Record<AdminPeriod, string> = { today: 'today (UTC)', month: 'this month (UTC)', all: 'all time' };

export type QuotaOverride = NonNullable<UserRecord['quotaOverride']>;

export type AdminCommand =
  | { type: 'usage'; userId?: string; period: AdminPeriod }
  | { type: 'stats'; period: AdminPeriod }
  /** `tier: null` sets the user back to the default tier. */
  | { type: 'quota'; userId: string; tier?: string | null; override?: QuotaOverride }
  | { type: 'ban'; userId: string; reason?: string }
  | { type: 'unban'; userId: string }
  | { type: 'queue'; action: 'pause' | 'resume' | 'clear' }
  /** One page of the audit log, newest first (page 1 = the newest {@link AUDIT_PAGE_SIZE}). */
  | { type: 'audit'; page: number }
  /** A one-time sign-in link to the web dashboard, for the admin who asks (answered privately). */
  | { type: 'dashboard' };

/** The job service's admin operations. */
export type AdminJobs = Pick<JobService, 'usageReport' | 'stats' | 'setQuota' | 'setBanned' | 'pauseQueue' | 'resumeQueue' | 'clearQueue' | 'auditLog' | 'isAdmin'>;

/**
 * Whether a command changes something (and so writes to the database): a platform acks such a
 * command before running it, so that a database held by another process never delays the ack.
 * A dashboard link is a row too.
 */
export function adminCommandWrites(command: AdminCommand): boolean {
  return command.type === 'quota' || command.type === 'ban' || command.type === 'unban' || command.type === 'queue' || command.type === 'dashboard';
}

export interface AdminContext {
  /** The platform the command came from: its users are the targets. */
  platform: Exclude<Platform, 'cli'>;
  /** The text format of the answer. */
  format: Format;
  /** Now, in ms since the epoch (report periods start from it). */
  now: number;
  /** Sign-in links to the dashboard; absent when serve has no HTTP port. */
  dashboardLinks?: DashboardLinks;
}

/** Whether a word names a report period. */
export function isAdminPeriod(word: string | null | undefined): word is AdminPeriod {
  return (ADMIN_PERIODS as readonly (string | null | undefined)[]).includes(word);
}

/** Start of an admin report period, in ms since the epoch (UTC days and months). */
export function periodStart(period: AdminPeriod, now: number): number {
  if (period === 'all') return 0;
  const periods = periodsAt(now);
  return period === 'today' ? periods.dayStart : periods.monthStart;
}

/** Runs an admin command; returns the answer, or throws the job service's UserError (not an admin, unknown user). */
export async function runAdminCommand(jobs: AdminJobs, actor: Actor, command: AdminCommand, context: AdminContext): Promise<string> {
  const target = (userId: string) => ({ platform: context.platform, externalId: userId });
  switch (command.type) {
    case 'usage': {
      const report = jobs.usageReport(actor, { since: periodStart(command.period, context.now), ...(command.userId === undefined ? {} : { target: target(command.userId) }) });
      return adminUsageText(context.format, {
        periodLabel: PERIOD_LABELS[command.period],
        ...(command.userId === undefined ? {} : { userExternalId: command.userId }),
        total: report.total,
        topUsers: report.topUsers.map((row) => ({ jobs: row.jobs, gpuSeconds: row.gpuSeconds, externalId: row.user?.externalId ?? null })),
        byGroup: report.byGroup,
      });
    }
    case 'stats':
      return adminStatsText(context.format, { periodLabel: PERIOD_LABELS[command.period], ...jobs.stats(actor, periodStart(command.period, context.now)) });
    case 'quota': {
      const user = await jobs.setQuota(actor, target(command.userId), {
        ...(command.tier === undefined ? {} : { tier: command.tier }),
        ...(command.override === undefined ? {} : { override: command.override }),
      });
      const limits = Object.entries(user.quotaOverride ?? {})
        .map(([key, value]) => `${key} ${value ?? 'tier default'}`)
        .join(', ');
      return `Quota of ${mention(user.externalId)}: tier ${user.tier ?? 'default'}${limits === '' ? '' : `; ${limits}`}.`;
    }
    case 'ban': {
      const user = await jobs.setBanned(actor, target(command.userId), true, command.reason);
      return `${mention(user.externalId)} is banned${command.reason === undefined ? '' : `: ${command.reason}`}. Their queued jobs are cancelled.`;
    }
    case 'unban': {
      const user = await jobs.setBanned(actor, target(command.userId), false);
      return `${mention(user.externalId)} may make videos again.`;
    }
    case 'audit': {
      const entries = jobs.auditLog(actor, { limit: AUDIT_PAGE_SIZE + 1, offset: (command.page - 1) * AUDIT_PAGE_SIZE });
      return auditText(context.format, { entries: entries.slice(0, AUDIT_PAGE_SIZE), page: command.page, hasMore: entries.length > AUDIT_PAGE_SIZE });
    }
    case 'dashboard': {
      if (!jobs.isAdmin(actor)) throw new UserError(ErrorCode.NotAdmin, 'Only the bot admins can do this.');
      const links = context.dashboardLinks;
      if (!links) return 'The web dashboard is off on this bot: the operator turns it on by setting REELBOT_HTTP_PORT for reelbot serve.';
      const { url } = await links.link({ platform: context.platform, externalId: actor.externalId });
      // <…> keeps Discord from fetching a preview of the link (and Slack reads it as a link).
      return `Your sign-in link to the dashboard. Only you can see this message; the link works once, for ${links.minutes} minute${links.minutes === 1 ? '' : 's'}:\n<${url}>`;
    }
    case 'queue':
      switch (command.action) {
        case 'pause':
          await jobs.pauseQueue(actor);
          return 'The queue is paused: running jobs finish, new ones wait.';
        case 'resume':
          await jobs.resumeQueue(actor);
          return 'The queue is running again.';
        case 'clear': {
          const cleared = await jobs.clearQueue(actor);
          return `Cleared the queue: ${cleared} ${cleared === 1 ? 'job' : 'jobs'} cancelled and refunded.`;
        }
      }
  }
}
