/**
 * Quota rules, as pure functions over usage figures: which limits apply to a user (tier, admin
 * override), and whether one more job fits. Periods are UTC days and UTC calendar months.
 */
import { ErrorCode, UserError } from '../errors.js';
import type { Work } from './cost-model.js';
import type { QuotaLeft, Usage, UserRecord } from './types.js';

/** Limits of one quota tier; `null` means unlimited. */
export interface TierLimits {
  jobsPerDay: number | null;
  gpuSecondsPerDay: number | null;
  gpuSecondsPerMonth: number | null;
  maxPendingJobs: number;
  /** Most frames a text-to-video job may ask for. */
  maxFrames: number | null;
  /** Most denoising steps a job (text-to-video or edit) may ask for. */
  maxSteps: number | null;
  /** Seconds a user must wait between two submits; 0 = no cooldown. */
  cooldownSeconds: number;
}

/** Caps shared by everyone in one Discord guild or Slack workspace; `null` means unlimited. */
export interface GroupLimits {
  jobsPerDay: number | null;
  gpuSecondsPerDay: number | null;
  gpuSecondsPerMonth: number | null;
}

/** The quota settings (the config's `quota`, checked at start). */
export interface QuotaSettings {
  /** The tier of a user with none set; one of `tiers`. */
  defaultTier: string;
  tiers: Record<string, TierLimits>;
  /** Caps per guild / workspace, for every guild… */
  group: GroupLimits;
  /** …and for named ones (key: guild or workspace id). */
  groupOverrides: Record<string, GroupLimits>;
  /** Whether jobs may be submitted in a direct message with the bot (outside any guild). */
  allowDirectMessages: boolean;
}

export interface EffectiveLimits extends TierLimits {
  tier: string;
}

export interface Periods {
  dayStart: number;
  dayEnd: number;
  monthStart: number;
  monthEnd: number;
}

export function periodsAt(now: number): Periods {
  const date = new Date(now);
  const dayStart = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate());
  const monthStart = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
  return {
    dayStart,
    dayEnd: dayStart + 86_400_000,
    monthStart,
    monthEnd: Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1),
  };
}

/** The operator at the command line (`reelbot render`): recorded in the ledger, never refused. */
const OPERATOR_LIMITS: EffectiveLimits = {
  tier: 'operator',
  jobsPerDay: null,
  gpuSecondsPerDay: null,
  gpuSecondsPerMonth: null,
  maxPendingJobs: 100,
  maxFrames: null,
  maxSteps: null,
  cooldownSeconds: 0,
};

/** The user's tier limits with the admin's per-user override on top. */
export function limitsFor(user: UserRecord, quota: QuotaSettings): EffectiveLimits {
  if (user.platform === 'cli') return OPERATOR_LIMITS;
  const tier = user.tier !== null && user.tier in quota.tiers ? user.tier : quota.defaultTier;
  const base = quota.tiers[tier]!;
  const override = user.quotaOverride ?? {};
  return {
    tier,
    jobsPerDay: override.jobsPerDay !== undefined ? override.jobsPerDay : base.jobsPerDay,
    gpuSecondsPerDay: override.gpuSecondsPerDay !== undefined ? override.gpuSecondsPerDay : base.gpuSecondsPerDay,
    gpuSecondsPerMonth: override.gpuSecondsPerMonth !== undefined ? override.gpuSecondsPerMonth : base.gpuSecondsPerMonth,
    maxPendingJobs: override.maxPendingJobs ?? base.maxPendingJobs,
    maxFrames: base.maxFrames,
    maxSteps: base.maxSteps,
    cooldownSeconds: base.cooldownSeconds,
  };
}

export function groupLimitsFor(groupId: string | null, quota: QuotaSettings): GroupLimits | null {
  if (groupId === null) return null;
  return quota.groupOverrides[groupId] ?? quota.group;
}

export interface QuotaCheck {
  limits: EffectiveLimits;
  groupLimits: GroupLimits | null;
  userDay: Usage;
  userMonth: Usage;
  groupDay: Usage | null;
  groupMonth: Usage | null;
  pending: number;
  estimatedGpuSeconds: number;
  /** What to lower so that the job fits in the given seconds ("Lower the frames from 64 to about 21…"). */
  hint?: (fitSeconds: number) => string;
  periods: Periods;
  now: number;
}

/** The refusal for one more job, or null when it fits every limit. */
export function checkQuota(check: QuotaCheck): UserError | null {
  const { limits, groupLimits, userDay, userMonth, groupDay, groupMonth, estimatedGpuSeconds: cost, periods, now } = check;
  const lower = (left: number) => {
    const text = check.hint?.(left) ?? '';
    return text === '' ? '' : ` ${text}`;
  };
  const resetDay = `Your quota resets at 00:00 UTC (${inTime(periods.dayEnd - now)}).`;
  const resetMonth = `It resets on the 1st of next month (${inTime(periods.monthEnd - now)}).`;
  if (check.pending >= limits.maxPendingJobs) {
    return new UserError(
      ErrorCode.QuotaPending,
      `You already have ${check.pending} job${check.pending === 1 ? '' : 's'} waiting or running (the limit is ${limits.maxPendingJobs}). Wait for one to finish or cancel one.`,
      { context: { pending: check.pending, limit: limits.maxPendingJobs } },
    );
  }
  if (limits.jobsPerDay !== null && userDay.jobs + 1 > limits.jobsPerDay) {
    return new UserError(
      ErrorCode.QuotaJobsPerDay,
      limits.jobsPerDay === 0 ? `Your quota allows no videos at the moment; an admin can change that.` : `You have used ${videos(limits.jobsPerDay)} of your daily quota. ${resetDay}`,
    );
  }
  if (limits.gpuSecondsPerDay !== null && userDay.gpuSeconds + cost > limits.gpuSecondsPerDay) {
    return new UserError(
      ErrorCode.QuotaGpuPerDay,
      `This job needs about ${Math.ceil(cost)} GPU-seconds and you have ${Math.max(0, Math.floor(limits.gpuSecondsPerDay - userDay.gpuSeconds))} left today.${lower(limits.gpuSecondsPerDay - userDay.gpuSeconds)} ${resetDay}`,
    );
  }
  if (limits.gpuSecondsPerMonth !== null && userMonth.gpuSeconds + cost > limits.gpuSecondsPerMonth) {
    return new UserError(
      ErrorCode.QuotaGpuPerMonth,
      `This job needs about ${Math.ceil(cost)} GPU-seconds and you have ${Math.max(0, Math.floor(limits.gpuSecondsPerMonth - userMonth.gpuSeconds))} left this month.${lower(limits.gpuSecondsPerMonth - userMonth.gpuSeconds)} ${resetMonth}`,
    );
  }
  if (groupLimits && groupDay && groupMonth) {
    const server = 'this server';
    if (groupLimits.jobsPerDay !== null && groupDay.jobs + 1 > groupLimits.jobsPerDay) {
      return new UserError(
        ErrorCode.GroupQuotaJobsPerDay,
        groupLimits.jobsPerDay === 0 ? `${cap(server)} may not make videos at the moment.` : `${cap(server)} has used ${videos(groupLimits.jobsPerDay)} it may make today. ${resetDay}`,
      );
    }
    if (groupLimits.gpuSecondsPerDay !== null && groupDay.gpuSeconds + cost > groupLimits.gpuSecondsPerDay) {
      return new UserError(ErrorCode.GroupQuotaGpuPerDay, `${cap(server)} has used its GPU time for today. ${resetDay}`);
    }
    if (groupLimits.gpuSecondsPerMonth !== null && groupMonth.gpuSeconds + cost > groupLimits.gpuSecondsPerMonth) {
      return new UserError(ErrorCode.GroupQuotaGpuPerMonth, `${cap(server)} has used its GPU time for this month. ${resetMonth}`);
    }
  }
  return null;
}

/** The refusal for a job asking for more frames or steps than the user's tier allows, or null. */
export function checkWork(limits: EffectiveLimits, work: Work): UserError | null {
  if (work.kind === 'text2video' && limits.maxFrames !== null && work.frames > limits.maxFrames) {
    return new UserError(ErrorCode.QuotaWorkTooLarge, `Videos of up to ${limits.maxFrames} frames can be made with your quota; this one asks for ${work.frames}. Lower the frames to ${limits.maxFrames} or fewer.`, {
      context: { frames: work.frames, maxFrames: limits.maxFrames, tier: limits.tier },
    });
  }
  if (limits.maxSteps !== null && work.steps > limits.maxSteps) {
    return new UserError(ErrorCode.QuotaWorkTooLarge, `Up to ${limits.maxSteps} steps can be used with your quota; this job asks for ${work.steps}. Lower the steps to ${limits.maxSteps} or fewer.`, {
      context: { steps: work.steps, maxSteps: limits.maxSteps, tier: limits.tier },
    });
  }
  return null;
}

/** The refusal for a submit that comes sooner than the tier's cooldown after the last one, or null. */
export function checkCooldown(limits: EffectiveLimits, lastSubmitAt: number | undefined, now: number): UserError | null {
  if (limits.cooldownSeconds <= 0 || lastSubmitAt === undefined) return null;
  const waitMs = lastSubmitAt + limits.cooldownSeconds * 1000 - now;
  if (waitMs <= 0) return null;
  return new UserError(ErrorCode.QuotaCooldown, `Please wait ${Math.ceil(waitMs / 1000)} s before your next video (one every ${limits.cooldownSeconds} s).`, {
    context: { waitMs, cooldownSeconds: limits.cooldownSeconds },
  });
}

/** What is left after the given usage; `null` = unlimited. */
export function quotaLeft(limits: EffectiveLimits, userDay: Usage, userMonth: Usage, pending: number): QuotaLeft {
  const left = (limit: number | null, used: number) => (limit === null ? null : Math.max(0, limit - used));
  return {
    tier: limits.tier,
    jobsToday: left(limits.jobsPerDay, userDay.jobs),
    gpuSecondsToday: left(limits.gpuSecondsPerDay, userDay.gpuSeconds),
    gpuSecondsThisMonth: left(limits.gpuSecondsPerMonth, userMonth.gpuSeconds),
    pendingSlots: Math.max(0, limits.maxPendingJobs - pending),
  };
}

function cap(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "in 3 h 12 min", "in 45 min", "in 2 days". */
export function inTime(ms: number): string {
  const minutes = Math.max(1, Math.ceil(ms / 60_000));
  if (minutes < 60) return `in ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `in ${hours} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`;
  return `in ${Math.round(hours / 24)} days`;
}

/** "all 10 videos", "the 1 video". */
function videos(limit: number): string {
  return limit === 1 ? 'the 1 video' : `all ${limit} videos`;
}
