/**
 * Admission of a job: dedup check, ban check, quota check, reservation, job row and dedup row,
 * all in ONE `BEGIN IMMEDIATE` transaction. Two submits racing at the quota edge, in this process
 * or another one on the same database file, can never both pass.
 */
import type { Config } from '../config.js';
import { ErrorCode, UserError } from '../errors.js';
import type { Db } from '../store/db.js';
import type { JobRepo } from '../store/job-repo.js';
import type { ProcessedEvents } from '../store/processed-events.js';
import type { QuotaLedger } from '../store/quota-ledger.js';
import type { UserRepo } from '../store/user-repo.js';
import { checkQuota, groupLimitsFor, limitsFor, periodsAt, quotaLeft } from './quota-policy.js';
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

export class Admission {
  readonly #quota: Config['quota'];
  readonly #repos: AdmissionRepos;
  readonly #admit: (request: JobRequest, seed: number, priority: number, estimate: number, now: number) => Admitted;

  constructor(db: Db, quota: Config['quota'], repos: AdmissionRepos) {
    this.#quota = quota;
    this.#repos = repos;
    const transaction = db.transaction((request: JobRequest, seed: number, priority: number, estimate: number, now: number) =>
      this.#admitInTransaction(request, seed, priority, estimate, now),
    );
    // IMMEDIATE takes the write lock before the quota is read: no other writer can slip in between.
    this.#admit = (...args) => transaction.immediate(...args);
  }

  /**
   * Admits a job or throws the UserError that says why not.
   * A request whose event id was seen before returns the job made then, with `duplicate: true`.
   */
  admit(request: JobRequest, options: { seed: number; priority: number; estimatedGpuSeconds: number; now: number }): Admitted {
    return this.#admit(request, options.seed, options.priority, options.estimatedGpuSeconds, options.now);
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

  #admitInTransaction(request: JobRequest, seed: number, priority: number, estimate: number, now: number): Admitted {
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
    const periods = periodsAt(now);
    const groupId = request.groupId ?? null;
    const groupLimits = groupLimitsFor(groupId, this.#quota);
    const limits = limitsFor(user, this.#quota);
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
      queuedAt: now,
    });
    ledger.reserve({ jobId, userId: user.id, groupId, gpuSeconds: estimate, chargedAt: now, now });
    if (request.eventId !== undefined) events.record(actor.platform, request.eventId, jobId, now);
    const charged = (usage: { jobs: number; gpuSeconds: number }) => ({ jobs: usage.jobs + 1, gpuSeconds: usage.gpuSeconds + estimate });
    return { job: jobs.get(jobId)!, duplicate: false, quotaLeft: quotaLeft(limits, charged(userDay), charged(userMonth), pending + 1) };
  }
}
