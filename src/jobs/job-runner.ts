/**
 * Runs a job whose turn has come through the dispatch port and settles what happened: success
 * settles the quota with the measured GPU-seconds; failure and cancel refund it, except a timeout
 * that the job's own settings caused ({@link JobRunner#finishTimedOut}). A worker crash or hang gets
 * one retry on a fresh worker; a timeout, a stalled engine or a model load past its deadline fails
 * the job at once.
 *
 * The outcome comes from the run alone: the writes that record it are retried until they succeed
 * ({@link StoreWriter.writeUntilDone}), so a busy or failing database delays a result but never
 * turns a success into a failure. A stop while they still wait leaves the row `running`: the next
 * start recovers it (recovery.ts).
 */
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { asAppError, ErrorCode, type AppError } from '../errors.js';
import type { Db } from '../store/db.js';
import type { JobRepo } from '../store/job-repo.js';
import type { QuotaLedger } from '../store/quota-ledger.js';
import { StoreClosedError, type StoreWriter } from '../store/writer.js';
import type { CostModel } from './cost-model.js';
import type { Dispatcher } from './dispatch/port.js';
import { ranFor, type LiveJobs, type Running } from './live-jobs.js';
import { MAX_ATTEMPTS } from './recovery.js';
import type { JobEvent, JobKind, JobRecord } from './types.js';

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

/** How often a job whose turn has come looks for a free slot when none is (remote slots come and go). */
const SLOT_WAIT_MS = 100;

export interface JobRunnerOptions {
  config: Config;
  db: Db;
  jobs: JobRepo;
  ledger: QuotaLedger;
  /** Every write goes through it. */
  writer: StoreWriter;
  costs: CostModel;
  live: LiveJobs;
  dispatcher: Dispatcher;
  logger: Logger;
  now(): number;
  /** The instance recorded as the owner of the jobs this runner starts. */
  owner: string | null;
  /** False while the service drains: a job whose turn comes then stays queued. */
  isStarted(): boolean;
  emit(event: JobEvent): void;
}

export class JobRunner {
  readonly #o: JobRunnerOptions;

  constructor(options: JobRunnerOptions) {
    this.#o = options;
  }

  /** Runs a job whose turn has come (the run queue calls this with a slot free), retrying once after a crash or hang. */
  async run(jobId: number, kind: JobKind): Promise<void> {
    try {
      await this.#attempts(jobId, kind);
    } catch (error) {
      if (!(error instanceof StoreClosedError)) throw error;
      this.#o.logger.error({ jobId }, 'the service stopped before the outcome of a job could be stored; the next start recovers it');
    } finally {
      this.#o.live.running.delete(jobId);
    }
  }

  async #attempts(jobId: number, kind: JobKind): Promise<void> {
    const { live, costs, jobs, dispatcher, config, db, ledger, logger, writer } = this.#o;
    // From here on the job counts as running for positions and ETAs.
    const units = live.waiting.get(jobId)?.units ?? costs.defaultWork(kind).units;
    live.removeWaiting(jobId);
    const running: Running = { kind, units, runningSince: undefined, cancelRequested: false };
    live.running.set(jobId, running);
    // The run queue starts a job inside enqueue(): go on at the next microtask, so that submit()
    // has emitted `queued` before this emits `started`.
    await Promise.resolve();
    const queued = this.#o.isStarted() ? jobs.get(jobId) : undefined; // draining: it stays queued
    let attempts = queued?.attempts ?? 0;
    for (;;) {
      let device = dispatcher.nextIdleDevice(kind);
      // The run queue started it with a slot free; a retry, or a worker host gone since, waits for one.
      while (device === undefined && queued && this.#o.isStarted()) {
        await sleep(SLOT_WAIT_MS);
        device = dispatcher.nextIdleDevice(kind);
      }
      const now = this.#o.now();
      if (!queued || device === undefined) return;
      const context = { jobId, userId: queued.userId, device, attempt: attempts + 1 };
      if (!(await writer.writeUntilDone('mark a job running', () => jobs.markRunning(jobId, device, now, this.#o.owner), context))) return;
      attempts++;
      running.runningSince = undefined;
      live.running.set(jobId, running);
      const job: JobRecord = { ...queued, state: 'running', device, attempts, startedAt: now };
      this.#o.emit({ type: 'started', job, device, attempt: attempts });
      const run = await dispatcher
        .run(
          {
            id: job.id,
            kind: job.kind,
            params: job.params,
            seed: job.seed,
            outputDir: resolve(join(config.outputDir, String(job.id))),
            attempt: attempts,
          },
          {
            timeoutMs: config.jobs.timeoutSeconds * 1000,
            onProgress: (progress) => this.#o.emit({ type: 'progress', job, progress }),
            // Model loading is not part of the job's expected duration: its ETA counts down from here.
            onRunning: () => {
              running.runningSince = this.#o.now();
            },
          },
        )
        .then(
          (outcome) => ({ ok: true as const, outcome }),
          (thrown: unknown) => ({ ok: false as const, thrown }),
        );
      live.running.delete(jobId);
      if (run.ok) {
        if (running.cancelRequested) return this.finishCancelled(jobId);
        const { outcome } = run;
        const finishedAt = this.#o.now();
        await writer.writeUntilDone(
          'store a finished job',
          () =>
            db
              .transaction(() => {
                jobs.finish(jobId, 'succeeded', { now: finishedAt, gpuSeconds: outcome.gpuSeconds, result: outcome.result });
                ledger.settle(jobId, outcome.gpuSeconds, finishedAt);
              })
              .immediate(),
          context,
        );
        costs.record(job.kind, device, job.params, outcome.gpuSeconds);
        logger.debug({ ...context, gpuSeconds: outcome.gpuSeconds, loadSeconds: outcome.loadSeconds }, 'job succeeded');
        this.#o.emit({ type: 'succeeded', job: jobs.get(jobId)!, result: outcome.result, gpuSeconds: outcome.gpuSeconds });
        return;
      }
      const error = asAppError(run.thrown);
      if (error.code === ErrorCode.Interrupted) {
        await writer.writeUntilDone('requeue an interrupted job', () => jobs.requeue(jobId, true), context);
        logger.info(context, 'job interrupted by shutdown; back in the queue for the next start');
        return;
      }
      if (error.code === ErrorCode.Cancelled || running.cancelRequested) return this.finishCancelled(jobId);
      if (RETRYABLE.has(error.code) && attempts < MAX_ATTEMPTS) {
        logger.warn({ ...context, code: error.code }, 'job attempt failed; retrying once on a fresh worker');
        await writer.writeUntilDone('requeue a job for its retry', () => jobs.requeue(jobId, false), context);
        if (!this.#o.isStarted()) return; // draining: the retry happens after the restart
        continue;
      }
      if (error.code === ErrorCode.JobTimedOut) return this.finishTimedOut(job, running, context);
      if (error.code === ErrorCode.Unknown) logger.error({ ...context, err: run.thrown }, 'job failed');
      else if (OUR_FAULT.has(error.code)) logger.warn({ ...context, code: error.code, err: error.cause }, 'job failed');
      else logger.info({ ...context, code: error.code, reason: error.userMessage }, 'job refused by the engine'); // bad input: the user's message says it all
      return this.finishFailed(jobId, error);
    }
  }

  async finishCancelled(jobId: number): Promise<void> {
    const { db, jobs, ledger, writer } = this.#o;
    const now = this.#o.now();
    const refunded = await writer.writeUntilDone(
      'store a cancelled job',
      () =>
        db
          .transaction(() => {
            jobs.finish(jobId, 'cancelled', { now, errorCode: ErrorCode.Cancelled, error: 'Cancelled.' });
            return ledger.refund(jobId, now);
          })
          .immediate(),
      { jobId },
    );
    this.#o.emit({ type: 'cancelled', job: jobs.get(jobId)!, refunded });
  }

  /**
   * A job that ran past `jobs.timeoutSeconds` (it is not retried: the same parameters take as
   * long again). Who pays follows from why it ran so long:
   * - its parameters asked for more work than a default job of its kind (more frames, steps,
   *   pixels or a longer clip): the user's choice made it long, so the GPU-seconds it ran (from the
   *   engine's start, model loading excluded, up to the timeout) are charged, as for a success;
   * - otherwise (default-sized work that still overran: a slow or overloaded device, a bad
   *   estimate) the cause is ours, and the reservation is refunded, as for a crash or a hang.
   * The message says what was charged; the refund sentence is the adapters' (the event's `refunded`).
   */
  async finishTimedOut(job: JobRecord, running: Running, context: Record<string, unknown>): Promise<void> {
    const { config, costs, db, jobs, ledger, logger, writer } = this.#o;
    const now = this.#o.now();
    const limitSeconds = config.jobs.timeoutSeconds;
    const work = costs.work(job.kind, job.params);
    const charge = work.units > costs.defaultWork(job.kind).units;
    const ranSeconds = Math.min(limitSeconds, ranFor(running.runningSince ?? job.startedAt ?? now, now) / 1000);
    const limit = limitSeconds < 90 ? `${limitSeconds} s` : `${Math.round(limitSeconds / 60)} min`;
    const message = charge
      ? `This job ran past the ${limit} a job may take and was stopped. Its settings ask for more work than the defaults, so the ${Math.ceil(ranSeconds)} GPU-seconds it ran were counted. Try fewer frames or steps.`
      : `This job ran past the ${limit} a job may take and was stopped. Please try again.`;
    logger.warn({ ...context, code: ErrorCode.JobTimedOut, units: work.units, charged: charge, ranSeconds }, 'job timed out');
    await writer.writeUntilDone(
      'store a timed-out job',
      () =>
        db
          .transaction(() => {
            jobs.finish(job.id, 'failed', { now, errorCode: ErrorCode.JobTimedOut, error: message, gpuSeconds: charge ? ranSeconds : null });
            if (charge) ledger.settle(job.id, ranSeconds, now);
            else ledger.refund(job.id, now);
          })
          .immediate(),
      context,
    );
    this.#o.emit({ type: 'failed', job: jobs.get(job.id)!, code: ErrorCode.JobTimedOut, message, refunded: !charge });
  }

  async finishFailed(jobId: number, error: AppError): Promise<void> {
    const { db, jobs, ledger, writer } = this.#o;
    const now = this.#o.now();
    const message = failureMessage(error);
    const refunded = await writer.writeUntilDone(
      'store a failed job',
      () =>
        db
          .transaction(() => {
            jobs.finish(jobId, 'failed', { now, errorCode: error.code, error: message });
            return ledger.refund(jobId, now);
          })
          .immediate(),
      { jobId },
    );
    this.#o.emit({ type: 'failed', job: jobs.get(jobId)!, code: error.code, message, refunded });
  }
}

/**
 * The user-facing text for a failed job. It says what went wrong, never whether it was charged:
 * the adapters add that sentence once, from the event's `refunded`.
 */
function failureMessage(error: AppError): string {
  switch (error.code) {
    case ErrorCode.WorkerCrashed:
      return 'The video worker crashed twice on this job. Please try again, perhaps with other settings.';
    case ErrorCode.WorkerHung:
      return 'The video worker stopped responding twice on this job. Please try again.';
    default:
      return error.userMessage;
  }
}
