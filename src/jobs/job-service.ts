/**
 * The job core's API, and the only one the bot adapters call: submit, cancel, status, queue,
 * usage, history, admin operations, and a typed event stream. This file is the facade; each
 * concern has its own owner:
 *
 * - admission.ts: a submit is admitted in one SQLite transaction (quota reserve + job row + dedup
 *   row); its reservation is its estimate from its parameters (cost-model.ts);
 * - run-queue.ts: it waits in a p-queue whose queue class is round-robin across users (fair-queue.ts);
 * - job-runner.ts: its turn come, it runs through the dispatch port (dispatch/port.ts: the local
 *   worker pool by default) and its outcome settles or refunds the quota;
 * - recovery.ts: on start, jobs left running by a crash are requeued once;
 * - queue-view.ts: positions and ETAs; admin-ops.ts: admin operations.
 *
 * Every write goes through one writer queue (src/store/writer.ts): another process holding the
 * database's write lock never holds the event loop. SIGTERM drains (see {@link JobService.shutdown}).
 */
import { randomInt } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ErrorCode, UserError } from '../errors.js';
import { AuditLog, type AuditEntry, type AuditQuery } from '../store/audit-log.js';
import { isBusyError, type Db } from '../store/db.js';
import { JobRepo, type JobStats } from '../store/job-repo.js';
import { HandledNotices } from '../store/handled-notices.js';
import type { InstanceLease } from '../store/instance-lease.js';
import { ProcessedEvents } from '../store/processed-events.js';
import { QuotaLedger } from '../store/quota-ledger.js';
import { Settings } from '../store/settings.js';
import { UserRepo } from '../store/user-repo.js';
import { StoreClosedError, StoreWriter } from '../store/writer.js';
import { Admission } from './admission.js';
import { AdminOps, type Target, type UsageReport } from './admin-ops.js';
import { clipFramesOf } from './clip-frames.js';
import { CostModel } from './cost-model.js';
import { WorkerPool } from './dispatch/local-pool.js';
import type { Dispatcher, WorkerSnapshot } from './dispatch/port.js';
import { workerEnvironment, workerPoolOptions } from './dispatch/worker-settings.js';
import { FairQueue } from './fair-queue.js';
import { JobRunner } from './job-runner.js';
import { LiveJobs } from './live-jobs.js';
import { Outbox, type FinalJobEvent } from './outbox.js';
import type { JobDetail, UsageOverview, UsageQuery } from './operator-reports.js';
import { checkParams, createPromptPolicy, type PromptPolicy } from './prompt-policy.js';
import { limitsFor, periodsAt, type EffectiveLimits } from './quota-policy.js';
import { QueueView, type QueueEntry, type QueueSnapshot } from './queue-view.js';
import { recoverInterruptedJobs } from './recovery.js';
import { RunQueue } from './run-queue.js';
import {
  FINISHED_STATES,
  JOB_KINDS,
  OPERATOR_ONLY_PARAMS,
  type Actor,
  type JobEvent,
  type JobKind,
  type JobRecord,
  type JobRequest,
  type Platform,
  type QuotaLeft,
  type SubmitResult,
  type Usage,
  type UserRecord,
} from './types.js';

export { MAX_ATTEMPTS } from './recovery.js';
export type { QueueEntry, QueueSnapshot } from './queue-view.js';
export type { Target, UsageReport } from './admin-ops.js';
export type { AuditEntry, AuditQuery } from '../store/audit-log.js';
export { engineSettings, workerEnvironment } from './dispatch/worker-settings.js';

/** Once-only notices are remembered this long (then a thread could be hinted again). */
const NOTICE_MEMORY_MS = 30 * 24 * 60 * 60 * 1000;
/** How long a submit waits for another process's write lock before the user is asked to try again. */
export const ADMISSION_LOCK_WAIT_MS = 10_000;
/** How long a cancel or an admin change waits for another process's write lock before the user is asked to try again. */
export const COMMAND_LOCK_WAIT_MS = 5_000;
/** At shutdown, after the workers stopped, how long the records of finished jobs may still wait for the database. */
const SHUTDOWN_WRITES_WAIT_MS = 5_000;

export interface JobServiceOptions {
  config: Config;
  db: Db;
  logger: Logger;
  /** Clock for timestamps and quota periods (tests move it). */
  now?: () => number;
  /** Environment for worker processes; defaults to this process's without the bot secrets. */
  workerEnv?: NodeJS.ProcessEnv;
  /** Where jobs run; default: a local worker pool with one process per configured device. */
  dispatcher?: Dispatcher;
  /**
   * The coordinator lease this process holds: running jobs record it as their owner, and recovery
   * leaves alone the running jobs of an owner whose lease is live. Without one (tests of the job core
   * alone), every job left running is recovered.
   */
  lease?: InstanceLease;
  /** The writer queue of `db` (the composition root shares it with other writers); default: a new one. Closed by {@link JobService.shutdown}. */
  writer?: StoreWriter;
}

export interface UserUsage {
  user: UserRecord;
  limits: EffectiveLimits;
  left: QuotaLeft;
  today: Usage;
  thisMonth: Usage;
  recent: JobRecord[];
}

export class JobService {
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #jobs: JobRepo;
  readonly #audit: AuditLog;
  readonly #users: UserRepo;
  readonly #ledger: QuotaLedger;
  readonly #settings: Settings;
  readonly #notices: HandledNotices;
  readonly #outbox: Outbox;
  readonly #admission: Admission;
  readonly #policy: PromptPolicy;
  readonly #db: Db;
  /** Every write of the running service goes through it: a foreign lock never holds the event loop. */
  readonly #writer: StoreWriter;
  /** Message refs given to {@link setMessageRefs} and not stored yet, per job. */
  readonly #latestRefs = new Map<number, Record<string, unknown>>();
  readonly #fair: FairQueue;
  readonly #live = new LiveJobs();
  readonly #dispatcher: Dispatcher;
  readonly #runQueue: RunQueue;
  readonly #runner: JobRunner;
  readonly #view: QueueView;
  readonly #admin: AdminOps;
  readonly #emitter = new EventEmitter();
  /** Seconds per unit of work, learned per kind, device and model: cost estimates and ETAs. */
  readonly #costs: CostModel;
  readonly #lease: InstanceLease | undefined;
  #state: 'new' | 'started' | 'draining' | 'stopped' = 'new';

  constructor(options: JobServiceOptions) {
    const { config, db } = options;
    this.#config = config;
    this.#db = db;
    this.#logger = options.logger.child({ module: 'jobs' });
    this.#now = options.now ?? Date.now;
    this.#lease = options.lease;
    const now = () => this.#now();
    this.#writer = options.writer ?? new StoreWriter(db, { logger: this.#logger });
    this.#fair = new FairQueue({ now: this.#now });
    this.#jobs = new JobRepo(db);
    this.#audit = new AuditLog(db);
    this.#users = new UserRepo(db);
    this.#ledger = new QuotaLedger(db);
    this.#settings = new Settings(db);
    this.#notices = new HandledNotices(db);
    this.#outbox = new Outbox(db, { jobs: this.#jobs, ledger: this.#ledger }, this.#now);
    this.#admission = new Admission(
      db,
      config.quota,
      { jobs: this.#jobs, users: this.#users, ledger: this.#ledger, events: new ProcessedEvents(db) },
      { timeoutSeconds: config.jobs.timeoutSeconds },
    );
    this.#policy = createPromptPolicy(config.prompt);
    this.#dispatcher =
      options.dispatcher ??
      new WorkerPool(workerPoolOptions(config, this.#logger, options.workerEnv ?? workerEnvironment(process.env)));
    this.#costs = new CostModel({ config, history: (kind, device, model, window) => this.#jobs.recentCosts(kind, device, model, window) });
    const emit = (event: JobEvent) => this.#emit(event);
    this.#runner = new JobRunner({
      config,
      db,
      jobs: this.#jobs,
      ledger: this.#ledger,
      writer: this.#writer,
      costs: this.#costs,
      live: this.#live,
      dispatcher: this.#dispatcher,
      logger: this.#logger,
      now,
      owner: options.lease?.instanceId ?? null,
      isStarted: () => this.#state === 'started',
      emit,
    });
    this.#runQueue = new RunQueue({
      fair: this.#fair,
      live: this.#live,
      costs: this.#costs,
      dispatcher: this.#dispatcher,
      logger: this.#logger,
      now,
      run: (jobId, kind) => this.#runner.run(jobId, kind),
    });
    this.#dispatcher.onSizeChange?.(() => this.#runQueue.startWhatFits());
    this.#view = new QueueView({
      jobs: this.#jobs,
      fair: this.#fair,
      live: this.#live,
      costs: this.#costs,
      now,
      slots: () => this.#dispatcher.size,
      paused: () => this.#runQueue.isPaused && this.#state === 'started',
      notice: () => this.#dispatcher.notice?.(),
    });
    this.#admin = new AdminOps({
      config,
      jobs: this.#jobs,
      users: this.#users,
      ledger: this.#ledger,
      audit: this.#audit,
      settings: this.#settings,
      now,
      write: (write) => this.#commandWrite(write),
      queuedJobIds: () => this.#fair.order().map((entry) => Number(entry.id)),
      cancel: (actor, jobId) => this.#cancel(actor, jobId, false),
      pauseStarts: () => this.#runQueue.pause(),
      resumeStarts: () => {
        if (this.#state === 'started') this.#runQueue.start();
      },
    });
  }

  /**
   * Subscribes to refused submits (quota, cooldown, ban, prompt policy…): the code of each
   * UserError a submit threw. Returns the unsubscribe function.
   */
  onRefusal(listener: (refusal: { kind: JobKind; code: string }) => void): () => void {
    const isolated = (refusal: { kind: JobKind; code: string }) => {
      try {
        listener(refusal);
      } catch (error) {
        this.#logger.error({ err: error, code: refusal.code }, 'refusal listener threw');
      }
    };
    this.#emitter.on('refusal', isolated);
    return () => this.#emitter.off('refusal', isolated);
  }

  /** The worker slots: device, state, process, job, last heartbeat, restarts. */
  workers(): WorkerSnapshot[] {
    return this.#dispatcher.snapshot();
  }

  /** Subscribes to job events; returns the unsubscribe function. */
  onEvent(listener: (event: JobEvent) => void): () => void {
    // Each listener on its own: one adapter's bug must not keep the event from the others.
    const isolated = (event: JobEvent) => {
      try {
        listener(event);
      } catch (error) {
        this.#logger.error({ err: error, event: event.type, jobId: event.job.id }, 'job event listener threw');
      }
    };
    this.#emitter.on('job', isolated);
    return () => this.#emitter.off('job', isolated);
  }

  /**
   * Recovers what a crash or stop left behind, then starts running jobs.
   * Jobs left `running` are requeued once (or failed with a refund when they already were);
   * queued jobs keep their fair order.
   */
  start(): void {
    if (this.#state !== 'new') throw new Error('JobService.start() called twice');
    const now = this.#now();
    const lease = this.#lease;
    const notices = recoverInterruptedJobs({ db: this.#db, jobs: this.#jobs, ledger: this.#ledger }, now, (jobs) => {
      const running = jobs.listByState('running');
      if (!lease) return running;
      // Another live instance's running jobs are its own; only those of a gone (or this) instance are recovered.
      const live = lease.liveInstanceIds();
      return running.filter((job) => job.ownerInstance === null || job.ownerInstance === lease.instanceId || !live.has(job.ownerInstance));
    });
    for (const notice of notices) this.#emit(notice);
    this.#notices.prune(now - NOTICE_MEMORY_MS);
    this.#fair.seedLastServed(this.#jobs.lastEndedByUser());
    const queued = this.#jobs.listByState('queued');
    // Recovered jobs keep their place: their turn is when they were submitted.
    for (const job of queued) this.#runQueue.enqueue(job, { arrivedAt: job.queuedAt });
    this.#state = 'started';
    if (!this.#settings.queuePaused()) this.#runQueue.start();
    this.#logger.info({ requeued: queued.length, failedOrCancelled: notices.length, devices: this.#config.devices }, 'job service started');
  }

  /**
   * Admits and queues a job. Throws a UserError (prompt policy, ban, quota, shutting down) with a
   * message for the user. A redelivered event id returns the first job with `duplicate: true`.
   */
  async submit(request: JobRequest): Promise<SubmitResult> {
    try {
      return await this.#submit(request);
    } catch (error) {
      if (error instanceof UserError) this.#emitter.emit('refusal', { kind: request.kind, code: error.code });
      throw error;
    }
  }

  async #submit(request: JobRequest): Promise<SubmitResult> {
    if (this.#state !== 'started') {
      throw new UserError(ErrorCode.ShuttingDown, 'The bot is restarting. Please try again in a minute.');
    }
    const earlier = this.#admission.duplicateOf(request);
    if (earlier) return this.#submitResult(earlier, true);
    if (!JOB_KINDS.includes(request.kind)) {
      throw new UserError(ErrorCode.InvalidRequest, `Unknown job kind "${String(request.kind)}".`);
    }
    const refusal = checkParams(request.params, this.#policy);
    if (refusal) throw refusal;
    const operatorOnly = OPERATOR_ONLY_PARAMS.filter((key) => request.params[key] !== undefined);
    if (operatorOnly.length > 0 && request.actor.platform !== 'cli') {
      throw new UserError(ErrorCode.InvalidRequest, `The option${operatorOnly.length > 1 ? 's' : ''} ${operatorOnly.join(', ')} can only be set by the operator on the command line.`);
    }
    if (request.seed !== undefined && !(Number.isInteger(request.seed) && request.seed >= 0 && request.seed < 2 ** 32)) {
      throw new UserError(ErrorCode.InvalidRequest, 'The seed must be a whole number from 0 to 4294967295.');
    }
    const seed = request.seed ?? randomInt(0, 2 ** 32);
    const priority = request.priority === 'high' && this.isAdmin(request.actor) ? 1 : 0;
    if (request.kind === 'edit' && typeof request.params.inputFile === 'string' && request.params.clipFrames === undefined) {
      // The clip's length is part of the work: recorded with the job, so its cost history is per frame too.
      const clipFrames = await clipFramesOf(request.params.inputFile, this.#config);
      if (clipFrames !== undefined) request = { ...request, params: { ...request.params, clipFrames } };
    }
    const estimate = this.#costs.estimate(request.kind, request.params);
    const model = this.#costs.modelOf(request.kind);
    let admitted: ReturnType<Admission['admit']>;
    try {
      // Another process (a CLI render, a second bot) may hold the write lock: wait for it without
      // stopping the event loop, so the platforms' acks and heartbeats keep flowing.
      const options = { seed, priority, estimatedGpuSeconds: estimate.gpuSeconds, estimate, model };
      admitted = await this.#writer.write(() => this.#admission.admit(request, { ...options, now: this.#now() }), { deadlineMs: ADMISSION_LOCK_WAIT_MS });
    } catch (error) {
      if (error instanceof UserError && error.code === ErrorCode.QuotaPending) throw this.#view.withQueuePositions(error, request.actor);
      if (!isBusyError(error)) throw error;
      throw new UserError(ErrorCode.DatabaseBusy, 'The bot is too busy to take the job right now. Please try again in a moment.', { cause: error });
    }
    const { job, duplicate, quotaLeft } = admitted;
    if (this.#state !== 'started' && !duplicate) this.#logger.warn({ jobId: job.id }, 'a job was admitted while stopping; it stays queued for the next start');
    if (!duplicate && this.#state === 'started') this.#runQueue.enqueue(job);
    const result: SubmitResult = { job, duplicate, ...this.#view.positionAndEta(job), quotaLeft };
    if (!duplicate) this.#emit({ type: 'queued', job, position: result.position, etaMs: result.etaMs });
    return result;
  }

  /**
   * Cancels a job of the actor's (or any job, for an admin). A queued job is removed and refunded
   * at once; a running one is told to stop and killed after the grace period (the `cancelled` event
   * follows). A finished job is refused with the reason.
   */
  cancel(actor: Actor, jobId: number): Promise<{ job: JobRecord; outcome: 'cancelled' | 'cancelling' }> {
    return this.#cancel(actor, jobId, true);
  }

  /**
   * {@link cancel}; with `audited`, an admin's cancel of someone else's job gets an audit row in the
   * same transaction (a ban or a clear, audited themselves, cancels without).
   */
  async #cancel(actor: Actor, jobId: number, audited: boolean): Promise<{ job: JobRecord; outcome: 'cancelled' | 'cancelling' }> {
    const job = this.#ownJob(actor, jobId);
    if (FINISHED_STATES.includes(job.state)) {
      throw new UserError(ErrorCode.JobAlreadyFinished, nothingToCancel(job));
    }
    const audit = () => {
      if (!audited || (job.platform === actor.platform && job.userExternalId === actor.externalId)) return;
      this.#admin.record(actor, 'job.cancel', `${job.platform}:${job.userExternalId}`, { jobId: job.id, state: job.state });
    };
    if (job.state === 'queued') {
      let refunded = false;
      const changed = await this.#commandWrite(() => {
        const now = this.#now();
        if (!this.#jobs.finish(job.id, 'cancelled', { now, errorCode: ErrorCode.Cancelled, error: 'Cancelled.' })) return false;
        refunded = this.#ledger.refund(job.id, now);
        audit();
        return true;
      });
      if (changed) {
        this.#runQueue.remove(job.id);
        const cancelled = this.#jobs.get(job.id)!;
        this.#emit({ type: 'cancelled', job: cancelled, refunded });
        return { job: cancelled, outcome: 'cancelled' };
      }
      return this.#cancel(actor, jobId, audited); // it started in between: cancel it as a running job
    }
    await this.#commandWrite(() => {
      this.#jobs.markCancelRequested(job.id, this.#now());
      audit();
    });
    const running = this.#live.running.get(job.id);
    if (running) running.cancelRequested = true;
    this.#dispatcher.cancel(job.id, this.#config.jobs.cancelGraceMs);
    return { job: this.#jobs.get(job.id)!, outcome: 'cancelling' };
  }

  /** A job with its queue position and ETA. */
  status(jobId: number): QueueEntry | undefined {
    return this.#view.status(jobId);
  }

  /**
   * Claims a notice that a bot sends at most once (a hint to a thread with no clip): true the
   * first time `key` is claimed on `platform`, false ever after, across redeliveries and restarts.
   */
  claimNotice(platform: Platform, key: string): Promise<boolean> {
    return this.#commandWrite(() => this.#notices.claim(platform, key, this.#now()));
  }

  /** What is running and what waits, in the order it will start. */
  queue(): QueueSnapshot {
    return this.#view.queue();
  }

  /** A user's own quota, what is left, and their recent jobs. Reads only: a user never seen has used nothing yet. */
  usage(actor: Actor): UserUsage {
    const now = this.#now();
    const user = this.#users.find(actor.platform, actor.externalId) ?? newUser(actor, now);
    const periods = periodsAt(now);
    return {
      user,
      limits: limitsFor(user, this.#config.quota),
      left: this.#admission.quotaLeft(user, now),
      today: this.#ledger.userUsage(user.id, periods.dayStart),
      thisMonth: this.#ledger.userUsage(user.id, periods.monthStart),
      recent: this.#jobs.listForUser(user.id, 5),
    };
  }

  /** A user's jobs, newest first; `page` starts at 1. */
  history(actor: Actor, page = 1, pageSize = 10): JobRecord[] {
    const user = this.#users.find(actor.platform, actor.externalId);
    if (!user) return [];
    return this.#jobs.listForUser(user.id, pageSize, (Math.max(1, Math.floor(page)) - 1) * pageSize);
  }

  /** Whether the actor may use admin operations: the CLI (the operator), or an allowlisted id. */
  isAdmin(actor: Actor): boolean {
    return this.#admin.isAdmin(actor);
  }

  /** Admin: usage per user and per guild/workspace over a period. */
  usageReport(actor: Actor, filter: { target?: Target; groupId?: string; since: number; until?: number }, limit = 10): UsageReport {
    return this.#admin.usageReport(actor, filter, limit);
  }

  /** Admin (the operator's `reelbot usage`): the total, top users and usage per guild/workspace over a period. */
  usageOverview(actor: Actor, query: UsageQuery): UsageOverview {
    return this.#admin.usageOverview(actor, query);
  }

  /** Admin (the operator's `reelbot jobs show`): one job and its quota ledger rows. */
  jobDetail(actor: Actor, jobId: number): JobDetail | undefined {
    return this.#admin.jobDetail(actor, jobId);
  }

  /** Admin: jobs, failure rate, p50/p95 durations and GPU-seconds by guild since a time. */
  stats(actor: Actor, since: number): JobStats {
    return this.#admin.stats(actor, since);
  }

  /** Admin: sets a user's tier and/or per-user limits (null in the override clears it). */
  setQuota(actor: Actor, target: Target, change: { tier?: string | null; override?: UserRecord['quotaOverride'] }): Promise<UserRecord> {
    return this.#admin.setQuota(actor, target, change);
  }

  /** Admin: bans a user (their queued jobs are cancelled and refunded) or lifts the ban. */
  setBanned(actor: Actor, target: Target, banned: boolean, reason?: string): Promise<UserRecord> {
    return this.#admin.setBanned(actor, target, banned, reason);
  }

  /** Admin: stops starting jobs (running ones finish); kept across restarts. */
  pauseQueue(actor: Actor): Promise<void> {
    return this.#admin.pauseQueue(actor);
  }

  resumeQueue(actor: Actor): Promise<void> {
    return this.#admin.resumeQueue(actor);
  }

  /** Admin: cancels and refunds every queued job; running jobs go on. Returns how many. */
  clearQueue(actor: Actor): Promise<number> {
    return this.#admin.clearQueue(actor);
  }

  /**
   * Admin: submits a job again (its kind, parameters and seed) as the admin's own job, and records
   * it in the audit log. Refusals are the submit's (quota, a clip that is gone…).
   */
  async rerun(actor: Actor, jobId: number): Promise<SubmitResult> {
    this.#admin.requireAdmin(actor);
    const job = Number.isInteger(jobId) ? this.#jobs.get(jobId) : undefined;
    if (!job) throw new UserError(ErrorCode.JobNotFound, `There is no job #${jobId}.`);
    const result = await this.submit({ actor, kind: job.kind, params: job.params, seed: job.seed, ...(job.groupId === null ? {} : { groupId: job.groupId }) });
    if (!result.duplicate) await this.#commandWrite(() => this.#admin.record(actor, 'job.rerun', `job:${job.id}`, { newJobId: result.job.id }));
    return result;
  }

  /** Admin: the audit log, newest first; `beforeId` pages on from the last entry of the page before. */
  auditLog(actor: Actor, query: AuditQuery): AuditEntry[] {
    return this.#admin.auditLog(actor, query);
  }

  /** Records the platform messages of a job (progress message id…), for delivery after a restart; retried until stored. */
  setMessageRefs(jobId: number, refs: Record<string, unknown>): Promise<void> {
    // Whichever write runs first stores the newest refs: a retried older write never overwrites a newer one.
    this.#latestRefs.set(jobId, refs);
    return this.#writer.writeUntilDone(
      "store a job's message refs",
      () => {
        const latest = this.#latestRefs.get(jobId);
        if (latest === undefined) return;
        this.#jobs.setMessageRefs(jobId, latest);
        this.#latestRefs.delete(jobId);
      },
      { jobId },
    );
  }

  /**
   * The final events of the platform's finished jobs whose final message never went out (the
   * process stopped between the outcome and its message), of the last day, oldest first: an
   * adapter resends them at start, then marks each delivered. See outbox.ts.
   */
  undeliveredOutcomes(platform: Platform): FinalJobEvent[] {
    return this.#outbox.undelivered(platform);
  }

  /**
   * Records that a finished job's final message (the upload, the failure or cancel notice) went
   * out, or was given up for good: it is not resent at the next start. Waits out another
   * process's write lock without blocking the event loop.
   */
  markDelivered(jobId: number): Promise<void> {
    return this.#outbox.markDelivered(jobId);
  }

  /**
   * Drains for SIGTERM: no new submits or starts; running jobs get `shutdownGraceMs` to finish,
   * then their workers are stopped and the jobs go back to the queue (not counted as an attempt).
   * Queued jobs stay queued in the database for the next start.
   */
  async shutdown(graceMs: number = this.#config.jobs.shutdownGraceMs): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'draining') return;
    this.#state = 'draining';
    this.#runQueue.pause();
    this.#runQueue.removeAll();
    const tasks = this.#runQueue.tasks;
    if (tasks.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...tasks]), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    await this.#dispatcher.close();
    // The outcomes of the jobs that just ended are being stored; a database still locked by another
    // process gets a few seconds more, then the writer stops and the next start recovers those jobs.
    if (tasks.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...tasks]), new Promise((resolve) => (timer = setTimeout(resolve, SHUTDOWN_WRITES_WAIT_MS)))]);
      clearTimeout(timer);
    }
    this.#writer.close();
    await Promise.allSettled([...tasks]);
    this.#state = 'stopped';
    this.#logger.info('job service stopped');
  }

  /**
   * Deletes a finished job's stored output (its folder: the video, the thumbnail, the inputs copied
   * there) for its owner or an admin (audited when it is someone else's), and records it on the job,
   * which stays in history and usage. The adapter removes the platform message. A job still
   * queued or running is refused (cancel it first); a second delete says it is already gone.
   */
  async deleteResult(actor: Actor, jobId: number): Promise<JobRecord> {
    const job = this.#ownJob(actor, jobId);
    if (!FINISHED_STATES.includes(job.state)) {
      throw new UserError(ErrorCode.InvalidRequest, `Job #${job.id} is still ${job.state}; cancel it first.`);
    }
    if (job.outputDeletedAt != null) throw new UserError(ErrorCode.InvalidRequest, `Job #${job.id}'s video was already deleted.`);
    const folder = resolve(join(this.#config.outputDir, String(job.id)));
    await rm(folder, { recursive: true, force: true });
    const now = this.#now();
    const by = `${actor.platform}:${actor.externalId}`;
    this.#db.transaction(() => {
      this.#jobs.markOutputDeleted(job.id, by, now);
      const owner = job.platform === actor.platform && job.userExternalId === actor.externalId;
      if (!owner) this.#audit.record({ platform: actor.platform, actorId: actor.externalId, action: 'delete-result', target: `job:${job.id}`, details: { owner: `${job.platform}:${job.userExternalId}` }, groupId: job.groupId, channelId: job.channelId, createdAt: now });
    })();
    this.#logger.info({ jobId: job.id, by }, 'job output deleted');
    return this.#jobs.get(job.id)!;
  }

  // ---------------------------------------------------------------------------------------------

  #submitResult(job: JobRecord, duplicate: boolean): SubmitResult {
    const user = this.#users.get(job.userId)!;
    return { job, duplicate, ...this.#view.positionAndEta(job), quotaLeft: this.#admission.quotaLeft(user, this.#now()) };
  }

  #ownJob(actor: Actor, jobId: number): JobRecord {
    const job = Number.isInteger(jobId) ? this.#jobs.get(jobId) : undefined;
    if (!job) throw new UserError(ErrorCode.JobNotFound, `There is no job #${jobId}.`);
    if (!(job.platform === actor.platform && job.userExternalId === actor.externalId) && !this.isAdmin(actor)) {
      throw new UserError(ErrorCode.NotJobOwner, `Job #${jobId} belongs to someone else; only they or an admin can change it.`);
    }
    return job;
  }

  /**
   * A write someone waits for (a cancel, an admin change, a notice claim), in one IMMEDIATE
   * transaction through the writer queue. Another process holding the lock past
   * {@link COMMAND_LOCK_WAIT_MS} is a "try again" for the user, never a frozen bot.
   */
  async #commandWrite<T>(write: () => T): Promise<T> {
    try {
      return await this.#writer.write(() => this.#db.transaction(write).immediate(), { deadlineMs: COMMAND_LOCK_WAIT_MS });
    } catch (error) {
      if (!isBusyError(error) && !(error instanceof StoreClosedError)) throw error;
      throw new UserError(ErrorCode.DatabaseBusy, 'The bot is too busy to do that right now. Please try again in a moment.', { cause: error });
    }
  }

  /** Listeners are isolated by {@link onEvent}: an adapter's bug never breaks the job core or another adapter. */
  #emit(event: JobEvent): void {
    this.#emitter.emit('job', event);
  }
}

/** A user not in the database yet, as they would be created: default tier, not banned, nothing used. */
function newUser(actor: Actor, now: number): UserRecord {
  return {
    id: 0,
    platform: actor.platform,
    externalId: actor.externalId,
    displayName: actor.displayName ?? null,
    tier: null,
    banned: false,
    banReason: null,
    quotaOverride: null,
    createdAt: now,
  };
}

/** Why a finished job cannot be cancelled. */
export function nothingToCancel(job: JobRecord): string {
  return `Job #${job.id} has already ${pastTense(job.state)}, so there is nothing to cancel.`;
}

function pastTense(state: JobRecord['state']): string {
  return state === 'succeeded' ? 'finished' : state === 'failed' ? 'failed' : 'been cancelled';
}
