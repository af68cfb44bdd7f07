/**
 * Admission of a job: dedup check, ban check, direct-message rule, the tier's caps on frames and
 * steps, its cooldown, the job timeout against the estimate, quota check, reservation, job row and
 * dedup row, all in ONE `BEGIN IMMEDIATE` transaction. Two submits racing at the quota edge, in this process
 * or another one on the same database file, can never both pass.
 */
import { ErrorCode, UserError } from '../errors.js';
import type { Db } from '../store/db.js';
import type { JobRepo } from '../store/job-repo.js';
import type { ProcessedEvents } from '../store/processed-events.js';
import type { QuotaLedger } from '../store/quota-ledger.js';
import type { UserRepo } from '../store/user-repo.js';
import { lowerHint, type Estimate } from './cost-model.js';
import { checkCooldown, checkQuota, checkWork, groupLimitsFor, limitsFor, periodsAt, quotaLeft, type QuotaSettings } from './quota-policy.js';
import type { JobRecord, JobRequest, QuotaLeft, UserRecord } from './types.js';

export interface AdmissionRepos {
  jobs: JobRepo;
  users: UserRepo;
  ledger: QuotaLedger;
  events: ProcessedEvents;
}

export interface Admitted {
  job: JobRecord;
  duplicate: boolean;
  /** What the user has left after this job (read in the same transaction). */
  quotaLeft: QuotaLeft;
}

export interface AdmitOptions {
  seed: number;
  priority: number;
  estimatedGpuSeconds: number;
  /** The estimate with the work it came from: caps on frames and steps, and what to lower in a refusal. */
  estimate?: Estimate;
  /** The model folder the job runs with (recorded for the cost history). */
  model?: string;
  now: number;
}

export interface AdmissionPolicy {
  /** `jobs.timeoutSeconds`: a job estimated to run longer is refused. Unset: no such check. */
  timeoutSeconds?: number;
}

export class Admission {
  readonly #quota: QuotaSettings;
  readonly #policy: AdmissionPolicy;
  readonly #repos: AdmissionRepos;
  readonly #admit: (request: JobRequest, options: AdmitOptions) => Admitted;

  constructor(db: Db, quota: QuotaSettings, repos: AdmissionRepos, policy: AdmissionPolicy = {}) {
    this.#quota = quota;
    this.#policy = policy;
    this.#repos = repos;
    const transaction = db.transaction((request: JobRequest, options: AdmitOptions) => this.#admitInTransaction(request, options));
    // IMMEDIATE takes the write lock before the quota is read: no other writer can slip in between.
    this.#admit = (...args) => transaction.immediate(...args);
  }

  /**
   * Admits a job or throws the UserError that says why not.
   * A request whose event id was seen before returns the job made then, with `duplicate: true`.
   */
  admit(request: JobRequest, options: AdmitOptions): Admitted {
    return this.#admit(request, options);
  }

  /** The event's job, if this event was admitted before (a read outside any transaction). */
  duplicateOf(request: JobRequest): JobRecord | undefined {
    if (request.eventId === undefined) return undefined;
    const jobId = this.#repos.events.jobFor(request.actor.platform, request.eventId);
    return jobId === undefined ? undefined : this.#repos.jobs.get(jobId);
  }

  /** What the user has left right now. */
  quotaLeft(user: UserRecord, now: number): QuotaLeft {
    const periods = periodsAt(now);
    return quotaLeft(
      limitsFor(user, this.#quota),
      this.#repos.ledger.userUsage(user.id, periods.dayStart),
      this.#repos.ledger.userUsage(user.id, periods.monthStart),
      this.#repos.jobs.pendingCount(user.id),
    );
  }

  #admitInTransaction(request: JobRequest, options: AdmitOptions): Admitted {
    const { seed, priority, estimatedGpuSeconds: estimate, now } = options;
    const { jobs, users, ledger, events } = this.#repos;
    const { actor } = request;
    if (request.eventId !== undefined) {
      const jobId = events.jobFor(actor.platform, request.eventId);
      if (jobId !== undefined) {
        const job = jobs.get(jobId)!;
        return { job, duplicate: true, quotaLeft: this.quotaLeft(users.get(job.userId)!, now) };
      }
    }
    const user = users.upsert(actor.platform, actor.externalId, actor.displayName ?? null, now);
    if (user.banned) {
      throw new UserError(
        ErrorCode.UserBanned,
        `You are not allowed to make videos on this bot${user.banReason ? `: ${user.banReason}` : '.'}`,
      );
    }
    if (request.directMessage === true && !this.#quota.allowDirectMessages && user.platform !== 'cli') {
      throw new UserError(ErrorCode.DirectMessagesOff, 'Videos cannot be made in direct messages with this bot. Use the command in a server channel where the bot is.');
    }
    const limits = limitsFor(user, this.#quota);
    const work = options.estimate?.work;
    const tooMuch = work === undefined ? null : checkWork(limits, work);
    if (tooMuch) throw tooMuch;
    const cooldown = checkCooldown(limits, jobs.lastQueuedAt(user.id), now);
    if (cooldown) throw cooldown;
    const timeout = this.#policy.timeoutSeconds;
    if (timeout !== undefined && estimate > timeout) {
      const hint = options.estimate === undefined ? '' : lowerHint(options.estimate, timeout * 0.9);
      throw new UserError(
        ErrorCode.JobTooLong,
        `This job would take about ${duration(estimate)} to make, longer than the ${duration(timeout)} a job may run on this bot.${hint === '' ? '' : ` ${hint}`}`,
        { context: { estimatedGpuSeconds: estimate, timeoutSeconds: timeout } },
      );
    }
    const periods = periodsAt(now);
    // A direct message has no group: the user's own limits are the ones that apply there.
    const groupId = request.groupId ?? null;
    const groupLimits = groupLimitsFor(groupId, this.#quota);
    const userDay = ledger.userUsage(user.id, periods.dayStart);
    const userMonth = ledger.userUsage(user.id, periods.monthStart);
    const pending = jobs.pendingCount(user.id);
    const refusal = checkQuota({
      limits,
      groupLimits,
      userDay,
      userMonth,
      groupDay: groupLimits && groupId !== null ? ledger.groupUsage(groupId, periods.dayStart) : null,
      groupMonth: groupLimits && groupId !== null ? ledger.groupUsage(groupId, periods.monthStart) : null,
      pending,
      estimatedGpuSeconds: estimate,
      ...(options.estimate === undefined ? {} : { hint: (fit: number) => lowerHint(options.estimate!, fit) }),
      periods,
      now,
    });
    if (refusal) throw refusal;
    const jobId = jobs.insert({
      kind: request.kind,
      params: request.params,
      userId: user.id,
      platform: actor.platform,
      groupId,
      channelId: request.channelId ?? null,
      messageRefs: request.messageRefs ?? {},
      seed,
      priority,
      estimatedGpuSeconds: estimate,
      ...(options.model === undefined ? {} : { model: options.model }),
      queuedAt: now,
    });
    ledger.reserve({ jobId, userId: user.id, groupId, gpuSeconds: estimate, chargedAt: now, now });
    if (request.eventId !== undefined) events.record(actor.platform, request.eventId, jobId, now);
    const charged = (usage: { jobs: number; gpuSeconds: number }) => ({ jobs: usage.jobs + 1, gpuSeconds: usage.gpuSeconds + estimate });
    return { job: jobs.get(jobId)!, duplicate: false, quotaLeft: quotaLeft(limits, charged(userDay), charged(userMonth), pending + 1) };
  }
}

/** "40 s", "12 min", "1 h 5 min". */
function duration(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`;
}
