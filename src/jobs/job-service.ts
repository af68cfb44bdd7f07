/**
 * The job core's API, and the only one the bot adapters call: submit, cancel, status, queue,
 * usage, history, admin operations, and a typed event stream.
 *
 * A submitted job is admitted in one SQLite transaction (quota reserve + job row + dedup row),
 * waits in a p-queue whose queue class is round-robin across users, and runs on a worker process
 * of the pool. Its reservation is its estimate from its parameters (see cost-model.ts).
 * Completion settles the quota with the measured GPU-seconds (the engine's run, not its model
 * loading); failure and cancel refund it, except a timeout that the job's own settings caused
 * ({@link JobService#finishTimedOut}). A worker crash or hang gets one retry on a fresh worker;
 * a timeout, a stalled engine or a model load past its deadline fails the job at once. On start, jobs left running by a crash are requeued once; SIGTERM drains (see
 * {@link JobService.shutdown}).
 */
import { randomInt } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { join, resolve } from 'node:path';
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { SECRET_ENV_VARS, type Config } from '../config.js';
import { AppError, asAppError, ErrorCode, UserError } from '../errors.js';
import { AuditLog } from '../store/audit-log.js';
import { isBusyError, writeWithoutBlocking, type Db } from '../store/db.js';
import { JobRepo, type JobStats } from '../store/job-repo.js';
import { HandledNotices } from '../store/handled-notices.js';
import { ProcessedEvents } from '../store/processed-events.js';
import { QuotaLedger, type UsageFilter } from '../store/quota-ledger.js';
import { Settings } from '../store/settings.js';
import { UserRepo } from '../store/user-repo.js';
import { Admission } from './admission.js';
import { clipFramesOf } from './clip-frames.js';
import { CostModel } from './cost-model.js';
import { FairQueue, type FairQueueOptions } from './fair-queue.js';
import { checkParams, createPromptPolicy, type PromptPolicy } from './prompt-policy.js';
import { limitsFor, periodsAt, type EffectiveLimits } from './quota-policy.js';
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
import type { EngineSettings } from './engine.js';
import { WorkerPool } from './worker-pool.js';

/** A job is started at most this often: once, and once more after a crash, hang or restart (never after a timeout). */
export const MAX_ATTEMPTS = 2;
/** Once-only notices are remembered this long (then a thread could be hinted again). */
const NOTICE_MEMORY_MS = 30 * 24 * 60 * 60 * 1000;
/** How long a submit waits for another process's write lock before the user is asked to try again. */
export const ADMISSION_LOCK_WAIT_MS = 10_000;
/**
 * Failures retried once on a fresh worker: a crash or a silent process may be a one-off. A stalled
 * engine or a model load past its deadline is not retried: the same job on the same models would
 * most likely stall or load as slowly again, holding the device twice as long. Nor is a job that
 * ran past `jobs.timeoutSeconds`: the same parameters take as long again.
 */
const RETRYABLE: ReadonlySet<string> = new Set([ErrorCode.WorkerCrashed, ErrorCode.WorkerHung]);
/** Failures that are ours to look into (logged as warnings with their cause), as opposed to bad input. */
const OUR_FAULT: ReadonlySet<string> = new Set([
  ...RETRYABLE,
  ErrorCode.JobTimedOut,
  ErrorCode.EngineStalled,
  ErrorCode.ModelLoadTimedOut,
  ErrorCode.EngineFailed,
  ErrorCode.EngineUnavailable,
]);

export interface JobServiceOptions {
  config: Config;
  db: Db;
  logger: Logger;
  /** Clock for timestamps and quota periods (tests move it). */
  now?: () => number;
  /** Environment for worker processes; defaults to this process's without the bot secrets. */
  workerEnv?: NodeJS.ProcessEnv;
}

export interface QueueEntry {
  job: JobRecord;
  /** 1 = starts next; 0 = running. */
  position: number;
  etaMs: number;
}

export interface QueueSnapshot {
  paused: boolean;
  running: QueueEntry[];
  waiting: QueueEntry[];
}

export interface UserUsage {
  user: UserRecord;
  limits: EffectiveLimits;
  left: QuotaLeft;
  today: Usage;
  thisMonth: Usage;
  recent: JobRecord[];
}

export interface UsageReport {
  filter: UsageFilter;
  total: Usage;
  topUsers: (Usage & { user: UserRecord | undefined })[];
  byGroup: (Usage & { groupId: string | null })[];
}

export type Target = { platform: Actor['platform']; externalId: string };

export class JobService {
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #jobs: JobRepo;
  readonly #users: UserRepo;
  readonly #ledger: QuotaLedger;
  readonly #audit: AuditLog;
  readonly #settings: Settings;
  readonly #notices: HandledNotices;
  readonly #admission: Admission;
  readonly #policy: PromptPolicy;
  readonly #db: Db;
  readonly #fair: FairQueue;
  readonly #queue: PQueue<FairQueue, FairQueueOptions>;
  readonly #pool: WorkerPool;
  readonly #emitter = new EventEmitter();
  /** Queued jobs: their kind and work units (for ETAs) and the controller that removes them from p-queue. */
  readonly #waiting = new Map<number, { kind: JobKind; units: number; controller: AbortController }>();
  /** Work units of the queued jobs, per kind: the work ahead is costed at each kind's current rate. */
  readonly #waitingUnits: Record<JobKind, number> = { text2video: 0, edit: 0 };
  /**
   * Running jobs: their kind, and when the engine's `run` began (undefined while the worker starts
   * and loads the models: that time is in no estimate, so the job's ETA does not count it down).
   */
  readonly #running = new Map<number, Running>();
  readonly #tasks = new Set<Promise<void>>();
  /** Seconds per unit of work, learned per kind, device and model: cost estimates and ETAs. */
  readonly #costs: CostModel;
  #state: 'new' | 'started' | 'draining' | 'stopped' = 'new';

  constructor(options: JobServiceOptions) {
    const { config, db } = options;
    this.#config = config;
    this.#db = db;
    this.#logger = options.logger.child({ module: 'jobs' });
    this.#now = options.now ?? Date.now;
    this.#fair = new FairQueue({ now: this.#now });
    this.#jobs = new JobRepo(db);
    this.#users = new UserRepo(db);
    this.#ledger = new QuotaLedger(db);
    this.#audit = new AuditLog(db);
    this.#settings = new Settings(db);
    this.#notices = new HandledNotices(db);
    this.#admission = new Admission(
      db,
      config.quota,
      { jobs: this.#jobs, users: this.#users, ledger: this.#ledger, events: new ProcessedEvents(db) },
      { timeoutSeconds: config.jobs.timeoutSeconds },
    );
    this.#policy = createPromptPolicy(config.prompt);
    this.#pool = new WorkerPool({
      devices: config.devices,
      engineModule: config.engineModule,
      engineSettings: engineSettings(config),
      heartbeatIntervalMs: config.jobs.heartbeatIntervalMs,
      heartbeatTimeoutMs: config.jobs.heartbeatTimeoutMs,
      stallTimeoutMs: config.jobs.stallTimeoutSeconds * 1000,
      modelLoadTimeoutMs: config.jobs.modelLoadTimeoutSeconds * 1000,
      logLevel: config.logLevel,
      logger: this.#logger.child({ module: 'pool' }),
      env: options.workerEnv ?? workerEnvironment(process.env),
    });
    const fair = this.#fair;
    this.#queue = new PQueue<FairQueue, FairQueueOptions>({
      concurrency: this.#pool.size,
      autoStart: false,
      // p-queue builds its queue with `new queueClass()`; hand it our instance so that positions can be read.
      queueClass: class {
        constructor() {
          return fair;
        }
      } as unknown as new () => FairQueue,
    });
    this.#costs = new CostModel({ config, history: (kind, device, model, window) => this.#jobs.recentCosts(kind, device, model, window) });
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
    const notices: JobEvent[] = [];
    this.#db.transaction(() => {
      for (const job of this.#jobs.listByState('running')) {
        if (job.cancelRequestedAt !== null) {
          this.#jobs.finish(job.id, 'cancelled', { now, errorCode: ErrorCode.Cancelled, error: 'Cancelled.' });
          notices.push({ type: 'cancelled', job: this.#jobs.get(job.id)!, refunded: this.#ledger.refund(job.id, now) });
        } else if (job.attempts >= MAX_ATTEMPTS) {
          const message = 'The bot restarted while making this video, twice. It was not charged; please try again.';
          this.#jobs.finish(job.id, 'failed', { now, errorCode: ErrorCode.Interrupted, error: message });
          notices.push({ type: 'failed', job: this.#jobs.get(job.id)!, code: ErrorCode.Interrupted, message, refunded: this.#ledger.refund(job.id, now) });
        } else {
          this.#jobs.requeue(job.id, false);
        }
      }
    }).immediate();
    for (const notice of notices) this.#emit(notice);
    this.#notices.prune(now - NOTICE_MEMORY_MS);
    this.#fair.seedLastServed(this.#jobs.lastEndedByUser());
    const queued = this.#jobs.listByState('queued');
    // Recovered jobs keep their place: their turn is when they were submitted.
    for (const job of queued) this.#enqueue(job, { arrivedAt: job.queuedAt });
    this.#state = 'started';
    if (!this.#settings.queuePaused()) this.#queue.start();
    this.#logger.info({ requeued: queued.length, failedOrCancelled: notices.length, devices: this.#config.devices }, 'job service started');
  }

  /**
   * Admits and queues a job. Throws a UserError (prompt policy, ban, quota, shutting down) with a
   * message for the user. A redelivered event id returns the first job with `duplicate: true`.
   */
  async submit(request: JobRequest): Promise<SubmitResult> {
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
      admitted = await writeWithoutBlocking(this.#db, () => this.#admission.admit(request, { ...options, now: this.#now() }), {
        deadlineMs: ADMISSION_LOCK_WAIT_MS,
      });
    } catch (error) {
      if (error instanceof UserError && error.code === ErrorCode.QuotaPending) throw this.#withQueuePositions(error, request.actor);
      if (!isBusyError(error)) throw error;
      throw new UserError(ErrorCode.DatabaseBusy, 'The bot is too busy to take the job right now. Please try again in a moment.', { cause: error });
    }
    const { job, duplicate, quotaLeft } = admitted;
    if (this.#state !== 'started' && !duplicate) this.#logger.warn({ jobId: job.id }, 'a job was admitted while stopping; it stays queued for the next start');
    if (!duplicate && this.#state === 'started') this.#enqueue(job);
    const result: SubmitResult = { job, duplicate, ...this.#positionAndEta(job), quotaLeft };
    if (!duplicate) this.#emit({ type: 'queued', job, position: result.position, etaMs: result.etaMs });
    return result;
  }

  /**
   * Cancels a job of the actor's (or any job, for an admin). A queued job is removed and refunded
   * at once; a running one is told to stop and killed after the grace period (the `cancelled` event
   * follows). A finished job is refused with the reason.
   */
  async cancel(actor: Actor, jobId: number): Promise<{ job: JobRecord; outcome: 'cancelled' | 'cancelling' }> {
    const job = this.#ownJob(actor, jobId);
    if (FINISHED_STATES.includes(job.state)) {
      throw new UserError(ErrorCode.JobAlreadyFinished, `Job #${job.id} has already ${pastTense(job.state)}, so there is nothing to cancel.`);
    }
    if (job.state === 'queued') {
      const now = this.#now();
      let refunded = false;
      const changed = this.#db
        .transaction(() => {
          if (!this.#jobs.finish(job.id, 'cancelled', { now, errorCode: ErrorCode.Cancelled, error: 'Cancelled.' })) return false;
          refunded = this.#ledger.refund(job.id, now);
          return true;
        })
        .immediate();
      if (changed) {
        this.#waiting.get(job.id)?.controller.abort();
        this.#removeWaiting(job.id);
        const cancelled = this.#jobs.get(job.id)!;
        this.#emit({ type: 'cancelled', job: cancelled, refunded });
        return { job: cancelled, outcome: 'cancelled' };
      }
      return this.cancel(actor, jobId); // it started in between: cancel it as a running job
    }
    this.#jobs.markCancelRequested(job.id, this.#now());
    const running = this.#running.get(job.id);
    if (running) running.cancelRequested = true;
    this.#pool.cancel(job.id, this.#config.jobs.cancelGraceMs);
    return { job: this.#jobs.get(job.id)!, outcome: 'cancelling' };
  }

  /** A job with its queue position and ETA. */
  status(jobId: number): QueueEntry | undefined {
    const job = this.#jobs.get(jobId);
    if (!job) return undefined;
    return { job, ...this.#positionAndEta(job) };
  }

  /** The per-user cap refusal, with where the user's jobs stand now ("job #12 running now, job #13 next in line"). */
  #withQueuePositions(error: UserError, actor: Actor): UserError {
    const { running, waiting } = this.queue();
    const mine = [...running, ...waiting].filter((entry) => entry.job.platform === actor.platform && entry.job.userExternalId === actor.externalId);
    if (mine.length === 0) return error;
    const where = mine
      .slice(0, 5)
      .map(({ job, position }) => `job #${job.id} ${position === 0 ? 'running now' : position === 1 ? 'next in line' : `at position ${position} in the queue`}`)
      .join(', ');
    return new UserError(error.code, `${error.userMessage} Your jobs now: ${where}${mine.length > 5 ? ', …' : ''}.`, {
      cause: error,
      context: { ...error.context, positions: mine.map(({ job, position }) => ({ jobId: job.id, position })) },
    });
  }

  /**
   * Claims a notice that a bot sends at most once (a hint to a thread with no clip): true the
   * first time `key` is claimed on `platform`, false ever after, across redeliveries and restarts.
   */
  claimNotice(platform: Platform, key: string): boolean {
    return this.#notices.claim(platform, key, this.#now());
  }

  /** What is running and what waits, in the order it will start. */
  queue(): QueueSnapshot {
    const running = [...this.#running.keys()].map((id) => this.status(id)!).filter(Boolean);
    const waiting = this.#fair.order().map((entry) => this.status(Number(entry.id))!);
    return { paused: this.#queue.isPaused && this.#state === 'started', running, waiting };
  }

  /** A user's own quota, what is left, and their recent jobs. */
  usage(actor: Actor): UserUsage {
    const now = this.#now();
    const user = this.#users.upsert(actor.platform, actor.externalId, actor.displayName ?? null, now);
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
    if (actor.platform === 'cli') return true;
    return this.#config.admins[actor.platform].includes(actor.externalId);
  }

  /** Admin: usage per user and per guild/workspace over a period. */
  usageReport(actor: Actor, filter: { target?: Target; groupId?: string; since: number; until?: number }, limit = 10): UsageReport {
    this.#requireAdmin(actor);
    const userId = filter.target ? (this.#users.find(filter.target.platform, filter.target.externalId)?.id ?? -1) : undefined;
    const usageFilter: UsageFilter = { since: filter.since, until: filter.until, userId, groupId: filter.groupId };
    return {
      filter: usageFilter,
      total: this.#ledger.total(usageFilter),
      topUsers: this.#ledger.breakdown('user', usageFilter, limit).map((row) => ({
        jobs: row.jobs,
        gpuSeconds: row.gpuSeconds,
        user: this.#users.get(Number(row.key)),
      })),
      byGroup: this.#ledger.breakdown('group', usageFilter, limit).map((row) => ({
        jobs: row.jobs,
        gpuSeconds: row.gpuSeconds,
        groupId: row.key as string | null,
      })),
    };
  }

  /** Admin: jobs, failure rate, p50/p95 durations and GPU-seconds by guild since a time. */
  stats(actor: Actor, since: number): JobStats {
    this.#requireAdmin(actor);
    return this.#jobs.stats(since);
  }

  /** Admin: sets a user's tier and/or per-user limits (null in the override clears it). */
  setQuota(actor: Actor, target: Target, change: { tier?: string | null; override?: UserRecord['quotaOverride'] }): UserRecord {
    this.#requireAdmin(actor);
    if (change.tier != null && !(change.tier in this.#config.quota.tiers)) {
      throw new UserError(ErrorCode.InvalidRequest, `Unknown tier "${change.tier}". Tiers: ${Object.keys(this.#config.quota.tiers).join(', ')}.`);
    }
    return this.#adminAction(actor, 'quota.set', target, { ...change }, (user) => {
      if (change.tier !== undefined) this.#users.setTier(user.id, change.tier);
      if (change.override !== undefined) this.#users.setQuotaOverride(user.id, change.override);
    });
  }

  /** Admin: bans a user (their queued jobs are cancelled and refunded) or lifts the ban. */
  setBanned(actor: Actor, target: Target, banned: boolean, reason?: string): UserRecord {
    this.#requireAdmin(actor);
    const user = this.#adminAction(actor, banned ? 'user.ban' : 'user.unban', target, { reason: reason ?? null }, (found) =>
      this.#users.setBanned(found.id, banned, reason ?? null),
    );
    if (banned) {
      for (const entry of this.#fair.order()) {
        const job = this.#jobs.get(Number(entry.id));
        if (job?.userId === user.id) void this.cancel(actor, job.id).catch(() => undefined);
      }
    }
    return user;
  }

  /** Admin: stops starting jobs (running ones finish); kept across restarts. */
  pauseQueue(actor: Actor): void {
    this.#requireAdmin(actor);
    this.#audit.record({ platform: actor.platform, actorId: actor.externalId, action: 'queue.pause', target: null, details: {}, createdAt: this.#now() });
    this.#settings.setQueuePaused(true);
    this.#queue.pause();
  }

  resumeQueue(actor: Actor): void {
    this.#requireAdmin(actor);
    this.#audit.record({ platform: actor.platform, actorId: actor.externalId, action: 'queue.resume', target: null, details: {}, createdAt: this.#now() });
    this.#settings.setQueuePaused(false);
    if (this.#state === 'started') this.#queue.start();
  }

  /** Admin: cancels and refunds every queued job; running jobs go on. Returns how many. */
  async clearQueue(actor: Actor): Promise<number> {
    this.#requireAdmin(actor);
    const ids = this.#fair.order().map((entry) => Number(entry.id));
    this.#audit.record({ platform: actor.platform, actorId: actor.externalId, action: 'queue.clear', target: null, details: { jobs: ids.length }, createdAt: this.#now() });
    let cleared = 0;
    for (const id of ids) {
      const { outcome } = await this.cancel(actor, id);
      if (outcome === 'cancelled') cleared++;
    }
    return cleared;
  }

  /** Records the platform messages of a job (progress message id…), for delivery after a restart. */
  setMessageRefs(jobId: number, refs: Record<string, unknown>): void {
    this.#jobs.setMessageRefs(jobId, refs);
  }

  /**
   * Drains for SIGTERM: no new submits or starts; running jobs get `shutdownGraceMs` to finish,
   * then their workers are stopped and the jobs go back to the queue (not counted as an attempt).
   * Queued jobs stay queued in the database for the next start.
   */
  async shutdown(graceMs: number = this.#config.jobs.shutdownGraceMs): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'draining') return;
    this.#state = 'draining';
    this.#queue.pause();
    for (const [jobId, { controller }] of this.#waiting) {
      controller.abort();
      this.#removeWaiting(jobId);
    }
    if (this.#tasks.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.#tasks]), new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    await this.#pool.close();
    await Promise.allSettled([...this.#tasks]);
    this.#state = 'stopped';
    this.#logger.info('job service stopped');
  }

  // ---------------------------------------------------------------------------------------------

  #enqueue(job: JobRecord, options: { arrivedAt?: number } = {}): void {
    const controller = new AbortController();
    const units = this.#costs.work(job.kind, job.params).units;
    this.#waiting.set(job.id, { kind: job.kind, units, controller });
    this.#waitingUnits[job.kind] += units;
    this.#queue
      .add(() => this.#track(this.#execute(job.id, job.kind)), {
        id: String(job.id),
        userId: job.userId,
        priority: job.priority,
        arrivedAt: options.arrivedAt,
        cost: job.estimatedGpuSeconds * 1000,
        signal: controller.signal,
      })
      .catch((error: unknown) => {
        if (!controller.signal.aborted) this.#logger.error({ err: error, jobId: job.id }, 'job task failed');
      });
  }

  #removeWaiting(jobId: number): void {
    const waiting = this.#waiting.get(jobId);
    if (!waiting) return;
    this.#waiting.delete(jobId);
    this.#waitingUnits[waiting.kind] -= waiting.units;
  }

  #track(task: Promise<void>): Promise<void> {
    this.#tasks.add(task);
    return task.finally(() => this.#tasks.delete(task));
  }

  /** Runs a job whose turn has come (p-queue calls this with a slot free). */
  async #execute(jobId: number, kind: JobKind): Promise<void> {
    try {
      await this.#executeAttempts(jobId, kind);
    } finally {
      // Its user's turn now follows its real end, not its estimate.
      this.#fair.finished(String(jobId), this.#now());
    }
  }

  async #executeAttempts(jobId: number, kind: JobKind): Promise<void> {
    // From here on the job counts as running for positions and ETAs.
    const units = this.#waiting.get(jobId)?.units ?? this.#costs.defaultWork(kind).units;
    this.#removeWaiting(jobId);
    const running: Running = { kind, units, runningSince: undefined, cancelRequested: false };
    this.#running.set(jobId, running);
    // p-queue starts a task inside add(): go on at the next microtask, so that submit() has
    // emitted `queued` before this emits `started`.
    await Promise.resolve();
    const queued = this.#state === 'started' ? this.#jobs.get(jobId) : undefined; // draining: it stays queued
    let attempts = queued?.attempts ?? 0;
    for (;;) {
      const device = this.#pool.nextIdleDevice();
      const now = this.#now();
      if (!queued || device === undefined || !this.#jobs.markRunning(jobId, device, now)) {
        this.#running.delete(jobId);
        return;
      }
      attempts++;
      running.runningSince = undefined;
      this.#running.set(jobId, running);
      const job: JobRecord = { ...queued, state: 'running', device, attempts, startedAt: now };
      this.#emit({ type: 'started', job, device, attempt: attempts });
      const context = { jobId, userId: job.userId, device, attempt: attempts };
      try {
        const outcome = await this.#pool.run(
          {
            id: job.id,
            kind: job.kind,
            params: job.params,
            seed: job.seed,
            outputDir: resolve(join(this.#config.outputDir, String(job.id))),
            attempt: attempts,
          },
          {
            timeoutMs: this.#config.jobs.timeoutSeconds * 1000,
            onProgress: (progress) => this.#emit({ type: 'progress', job, progress }),
            // Model loading is not part of the job's expected duration: its ETA counts down from here.
            onRunning: () => {
              running.runningSince = this.#now();
            },
          },
        );
        this.#running.delete(jobId);
        if (running.cancelRequested) {
          this.#finishCancelled(jobId);
          return;
        }
        const finishedAt = this.#now();
        this.#db
          .transaction(() => {
            this.#jobs.finish(jobId, 'succeeded', { now: finishedAt, gpuSeconds: outcome.gpuSeconds, result: outcome.result });
            this.#ledger.settle(jobId, outcome.gpuSeconds, finishedAt);
          })
          .immediate();
        this.#costs.record(job.kind, device, job.params, outcome.gpuSeconds);
        this.#logger.debug({ ...context, gpuSeconds: outcome.gpuSeconds, loadSeconds: outcome.loadSeconds }, 'job succeeded');
        this.#emit({ type: 'succeeded', job: this.#jobs.get(jobId)!, result: outcome.result, gpuSeconds: outcome.gpuSeconds });
        return;
      } catch (thrown) {
        this.#running.delete(jobId);
        const error = asAppError(thrown);
        if (error.code === ErrorCode.Interrupted) {
          this.#jobs.requeue(jobId, true);
          this.#logger.info(context, 'job interrupted by shutdown; back in the queue for the next start');
          return;
        }
        if (error.code === ErrorCode.Cancelled || running.cancelRequested) {
          this.#finishCancelled(jobId);
          return;
        }
        if (RETRYABLE.has(error.code) && attempts < MAX_ATTEMPTS) {
          this.#logger.warn({ ...context, code: error.code }, 'job attempt failed; retrying once on a fresh worker');
          this.#jobs.requeue(jobId, false);
          if (this.#state !== 'started') return; // draining: the retry happens after the restart
          continue;
        }
        if (error.code === ErrorCode.JobTimedOut) {
          this.#finishTimedOut(job, running, context);
          return;
        }
        if (error.code === ErrorCode.Unknown) this.#logger.error({ ...context, err: thrown }, 'job failed');
        else if (OUR_FAULT.has(error.code)) this.#logger.warn({ ...context, code: error.code, err: error.cause }, 'job failed');
        else this.#logger.info({ ...context, code: error.code, reason: error.userMessage }, 'job refused by the engine'); // bad input: the user's message says it all
        this.#finishFailed(jobId, error);
        return;
      }
    }
  }

  #finishCancelled(jobId: number): void {
    const now = this.#now();
    let refunded = false;
    this.#db
      .transaction(() => {
        this.#jobs.finish(jobId, 'cancelled', { now, errorCode: ErrorCode.Cancelled, error: 'Cancelled.' });
        refunded = this.#ledger.refund(jobId, now);
      })
      .immediate();
    this.#emit({ type: 'cancelled', job: this.#jobs.get(jobId)!, refunded });
  }

  /**
   * A job that ran past `jobs.timeoutSeconds` (it is not retried: the same parameters take as
   * long again). Who pays follows from why it ran so long:
   * - its parameters asked for more work than a default job of its kind (more frames, steps,
   *   pixels or a longer clip): the user's choice made it long, so the GPU-seconds it ran (from the
   *   engine's start, model loading excluded, up to the timeout) are charged, as for a success;
   * - otherwise (default-sized work that still overran: a slow or overloaded device, a bad
   *   estimate) the cause is ours, and the reservation is refunded, as for a crash or a hang.
   */
  #finishTimedOut(job: JobRecord, running: Running, context: Record<string, unknown>): void {
    const now = this.#now();
    const limitSeconds = this.#config.jobs.timeoutSeconds;
    const work = this.#costs.work(job.kind, job.params);
    const charge = work.units > this.#costs.defaultWork(job.kind).units;
    const ranSeconds = Math.min(limitSeconds, ranFor(running.runningSince ?? job.startedAt ?? now, now) / 1000);
    const limit = limitSeconds < 90 ? `${limitSeconds} s` : `${Math.round(limitSeconds / 60)} min`;
    const message = charge
      ? `This job ran past the ${limit} a job may take and was stopped. Its settings ask for more work than the defaults, so the ${Math.ceil(ranSeconds)} GPU-seconds it ran were counted. Try fewer frames or steps.`
      : `This job ran past the ${limit} a job may take and was stopped. It was not charged; please try again.`;
    this.#logger.warn({ ...context, code: ErrorCode.JobTimedOut, units: work.units, charged: charge, ranSeconds }, 'job timed out');
    this.#db
      .transaction(() => {
        this.#jobs.finish(job.id, 'failed', { now, errorCode: ErrorCode.JobTimedOut, error: message, gpuSeconds: charge ? ranSeconds : null });
        if (charge) this.#ledger.settle(job.id, ranSeconds, now);
        else this.#ledger.refund(job.id, now);
      })
      .immediate();
    this.#emit({ type: 'failed', job: this.#jobs.get(job.id)!, code: ErrorCode.JobTimedOut, message, refunded: !charge });
  }

  #finishFailed(jobId: number, error: AppError): void {
    const now = this.#now();
    const message = failureMessage(error);
    let refunded = false;
    this.#db
      .transaction(() => {
        this.#jobs.finish(jobId, 'failed', { now, errorCode: error.code, error: message });
        refunded = this.#ledger.refund(jobId, now);
      })
      .immediate();
    this.#emit({ type: 'failed', job: this.#jobs.get(jobId)!, code: error.code, message, refunded });
  }

  #submitResult(job: JobRecord, duplicate: boolean): SubmitResult {
    const user = this.#users.get(job.userId)!;
    return { job, duplicate, ...this.#positionAndEta(job), quotaLeft: this.#admission.quotaLeft(user, this.#now()) };
  }

  /** Position (1 = next, 0 = running or finished) and the time until the result is expected. */
  #positionAndEta(job: JobRecord): { position: number; etaMs: number } {
    const now = this.#now();
    // Every cost is the job's work units at its kind's current rate, so ETAs follow what was learned since the submit.
    const ms = (kind: JobKind, units: number) => units * this.#costs.meanRate(kind) * 1000;
    const own = ms(job.kind, this.#costs.work(job.kind, job.params).units);
    const running = this.#running.get(job.id);
    if (running) return { position: 0, etaMs: Math.max(0, own - ranFor(running.runningSince, now)) };
    const ahead = job.state === 'queued' ? this.#fair.aheadCount(String(job.id)) : undefined;
    if (ahead === undefined) return { position: 0, etaMs: this.#waiting.has(job.id) ? Math.round(own) : 0 }; // starting now, or finished
    let workMs = 0;
    for (const other of this.#running.values()) workMs += Math.max(0, ms(other.kind, other.units) - ranFor(other.runningSince, now));
    // The jobs ahead are costed at the mean cost of the jobs waiting.
    let waitingMs = 0;
    for (const kind of JOB_KINDS) waitingMs += ms(kind, this.#waitingUnits[kind]);
    workMs += ahead * (waitingMs / Math.max(1, this.#waiting.size));
    return { position: ahead + 1, etaMs: Math.round(workMs / this.#pool.size + own) };
  }

  #ownJob(actor: Actor, jobId: number): JobRecord {
    const job = Number.isInteger(jobId) ? this.#jobs.get(jobId) : undefined;
    if (!job) throw new UserError(ErrorCode.JobNotFound, `There is no job #${jobId}.`);
    if (!(job.platform === actor.platform && job.userExternalId === actor.externalId) && !this.isAdmin(actor)) {
      throw new UserError(ErrorCode.NotJobOwner, `Job #${jobId} belongs to someone else; only they or an admin can change it.`);
    }
    return job;
  }

  #requireAdmin(actor: Actor): void {
    if (!this.isAdmin(actor)) throw new UserError(ErrorCode.NotAdmin, 'Only the bot admins can do this.');
  }

  /** Runs an admin change on a user (created if new) and records it in the audit log, in one transaction. */
  #adminAction(actor: Actor, action: string, target: Target, details: Record<string, unknown>, change: (user: UserRecord) => void): UserRecord {
    return this.#db
      .transaction(() => {
        const now = this.#now();
        const user = this.#users.upsert(target.platform, target.externalId, null, now);
        change(user);
        this.#audit.record({ platform: actor.platform, actorId: actor.externalId, action, target: `${target.platform}:${target.externalId}`, details, createdAt: now });
        return this.#users.get(user.id)!;
      })
      .immediate();
  }

  /** Listeners are isolated by {@link onEvent}: an adapter's bug never breaks the job core or another adapter. */
  #emit(event: JobEvent): void {
    this.#emitter.emit('job', event);
  }
}

/** What the service keeps of a running job. */
interface Running {
  kind: JobKind;
  /** Its work units (for its ETA). */
  units: number;
  /** When the engine's `run` began; undefined while the worker starts and loads the models. */
  runningSince: number | undefined;
  cancelRequested: boolean;
}

/** How long a running job's engine `run` has gone on (0 while it is still loading). */
function ranFor(runningSince: number | undefined, now: number): number {
  return runningSince === undefined ? 0 : now - runningSince;
}

/** The user-facing text for a failed job. */
function failureMessage(error: AppError): string {
  switch (error.code) {
    case ErrorCode.WorkerCrashed:
      return 'The video worker crashed twice on this job. It was not charged; please try again, perhaps with other settings.';
    case ErrorCode.WorkerHung:
      return 'The video worker stopped responding twice on this job. It was not charged; please try again.';
    default:
      return `${error.userMessage} It was not charged.`;
  }
}

function pastTense(state: JobRecord['state']): string {
  return state === 'succeeded' ? 'finished' : state === 'failed' ? 'failed' : 'been cancelled';
}

/** The part of the config that engines get. */
export function engineSettings(config: Config): EngineSettings {
  return {
    modelDir: config.modelDir,
    editModelDir: config.editModelDir,
    onnx: { ...config.onnx },
    ffmpegPath: config.ffmpegPath,
    ffprobePath: config.ffprobePath,
    input: { ...config.input },
    editSteps: config.editSteps,
    previews: { ...config.previews },
    workerCount: config.devices.length,
  };
}

/** The environment for worker processes: this one's, without the bot platforms' secrets. */
export function workerEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  for (const name of SECRET_ENV_VARS) delete copy[name];
  return copy;
}
