/**
 * The one job follower both platforms use: the jobs an adapter is following, each with its
 * message editor; the job events (held until the adapter is connected, see {@link JobEventFeed});
 * a job this process did not submit (recovered after a restart) followed again from the refs
 * stored with it; and the final message of a finished job, tracked so that a drain waits for it
 * ({@link FinalDeliveries}) and marked delivered once it went out. At {@link JobFollower.open}, the
 * outcomes of this platform's jobs that finished but were never delivered (the process stopped in
 * between) are sent, once, like live ones (the job core's outbox, src/jobs/outbox.ts). What a message looks like and how it is sent is the platform's
 * ({@link FollowerPlatform}).
 */
import type { JobService } from '../../jobs/job-service.js';
import type { JobEvent, JobPreview, JobRecord, Platform } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { FinalDeliveries } from './final-deliveries.js';
import { JobEventFeed } from './job-event-feed.js';
import { MessageEditor } from './message-editor.js';

/** What the follower needs of a followed job; a platform adds its message refs. */
export interface FollowedJob {
  readonly jobId: number;
  readonly editor: MessageEditor;
  /** The newest live preview of the job (set before its progress text is queued); gone once it has finished. */
  preview?: JobPreview;
}

export type ProgressEvent = Extract<JobEvent, { type: 'started' | 'progress' }>;
export type FinalEvent = Extract<JobEvent, { type: 'succeeded' | 'failed' | 'cancelled' }>;

/** The platform's side of following a job. */
export interface FollowerPlatform<F extends FollowedJob> {
  /**
   * What follows a job that this process did not submit, built from the refs stored with it (its
   * editor from {@link JobFollower.editor}); undefined when the job has none for this platform.
   */
  reattach(job: JobRecord): F | undefined;
  /** The progress text of a running job's message, or undefined to leave the message as it is. */
  progressText(followed: F, event: ProgressEvent): string | undefined;
  /** Sends the final message of a finished job (the upload, the failure, the cancellation). */
  deliverFinal(followed: F, event: FinalEvent): Promise<void>;
  /** Called for every finished job, followed or not, before its final message. */
  onFinished?(job: JobRecord): void;
}

export interface JobFollowerOptions<F extends FollowedJob> {
  jobs: Pick<JobService, 'onEvent' | 'undeliveredOutcomes' | 'markDelivered'>;
  logger: Logger;
  platform: FollowerPlatform<F>;
  /** Which platform's jobs this follower delivers (and resends from the outbox). */
  platformName: Platform;
  /** Shortest time between two progress edits of one message. */
  progressIntervalMs: number;
}

export class JobFollower<F extends FollowedJob> {
  readonly #options: JobFollowerOptions<F>;
  readonly #followed = new Map<number, F>();
  readonly #finalDeliveries = new FinalDeliveries();
  readonly #events: JobEventFeed;
  /** Jobs whose final message was started in this process, while {@link open} resends the outbox (then undefined). */
  #finalsStarted: Set<number> | undefined = new Set();

  /**
   * Subscribes to job events at once, so that a follower built before `JobService.start()` (as
   * `reelbot serve` builds the adapters) sees the notices that recovery emits; they are handled
   * from {@link open} on.
   */
  constructor(options: JobFollowerOptions<F>) {
    this.#options = options;
    this.#events = new JobEventFeed(options.jobs, (event) => this.#onEvent(event));
  }

  /**
   * Handles the events held so far and every later one as it comes; then sends the outcomes of
   * this platform's finished jobs that were never delivered, except those just handled.
   */
  open(): void {
    if (this.#finalsStarted === undefined) return this.#events.open();
    this.#events.open();
    const started = this.#finalsStarted;
    this.#finalsStarted = undefined;
    let outcomes: FinalEvent[];
    try {
      outcomes = this.#options.jobs.undeliveredOutcomes(this.#options.platformName);
    } catch (error) {
      this.#options.logger.error({ err: error }, 'could not read the outcomes left undelivered');
      return;
    }
    for (const event of outcomes) {
      if (started.has(event.job.id) || this.#followed.has(event.job.id)) continue;
      const followed = this.#options.platform.reattach(event.job);
      if (followed === undefined) {
        // Nothing says where its messages were: nobody can deliver it, now or at a later start.
        this.#options.logger.warn({ jobId: event.job.id }, 'an undelivered outcome has no message refs; giving it up');
        void this.#finalDeliveries.track(this.#markDelivered(event.job.id));
        continue;
      }
      this.#options.logger.info({ jobId: event.job.id, state: event.job.state }, 'sending an outcome left undelivered by the last run');
      this.#deliverFinal(followed, event);
    }
  }

  /** Stops handling events and any waiting progress edit; final messages under way go on. */
  close(): void {
    this.#events.close();
    for (const followed of this.#followed.values()) followed.editor.close();
    this.#followed.clear();
  }

  get(jobId: number): F | undefined {
    return this.#followed.get(jobId);
  }

  /** Follows a job: the one already followed under this id, else the one `create` makes. */
  follow(jobId: number, create: () => F): F {
    const existing = this.#followed.get(jobId);
    if (existing !== undefined) return existing;
    const followed = create();
    this.#followed.set(jobId, followed);
    return followed;
  }

  /** A message editor for a job: throttled to the progress interval; a failed progress edit is logged. */
  editor(jobId: number, send: (content: string) => Promise<void>): MessageEditor {
    return new MessageEditor({
      intervalMs: this.#options.progressIntervalMs,
      send,
      onError: (error) => this.#options.logger.warn({ err: error, jobId }, 'progress edit failed'),
    });
  }

  /**
   * Waits (up to `timeoutMs`) for the final messages of finished jobs that are still being sent:
   * a drain calls it after the job service stopped, before the adapter disconnects.
   */
  finalDeliveriesSettled(timeoutMs: number): Promise<'settled' | 'timed_out'> {
    return this.#finalDeliveries.settled(timeoutMs);
  }

  #onEvent(event: JobEvent): void {
    const { platform } = this.#options;
    const final = event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled';
    if (final) platform.onFinished?.(event.job);
    const followed = this.#followed.get(event.job.id) ?? this.#reattach(event);
    if (followed === undefined) return;
    if (event.type === 'started' || event.type === 'progress') {
      if (event.type === 'progress' && event.progress.preview !== undefined) followed.preview = event.progress.preview;
      const text = platform.progressText(followed, event);
      if (text !== undefined) followed.editor.progress(text);
      return;
    }
    if (!final) return;
    this.#followed.delete(event.job.id);
    this.#deliverFinal(followed, event);
  }

  /**
   * Sends a job's final message after the edits under way, and marks the job delivered once it
   * went out. One that failed stays undelivered: the next start sends it again.
   */
  #deliverFinal(followed: F, event: FinalEvent): void {
    const { platform, logger } = this.#options;
    const jobId = event.job.id;
    // Previews stop with the job: the final message carries none.
    delete followed.preview;
    this.#finalsStarted?.add(jobId);
    void this.#finalDeliveries.track(
      followed.editor
        .now(() => platform.deliverFinal(followed, event), { final: true })
        .then(
          () => this.#markDelivered(jobId),
          (error: unknown) => logger.error({ err: error, jobId }, 'could not post the outcome of a job'),
        ),
    );
  }

  async #markDelivered(jobId: number): Promise<void> {
    try {
      await this.#options.jobs.markDelivered(jobId);
    } catch (error) {
      // The message went out; at worst the next start sends it once more.
      this.#options.logger.error({ err: error, jobId }, 'could not record that a job was delivered');
    }
  }

  /** A job this process is not following: followed again from its stored refs (a submit in progress follows its own job). */
  #reattach(event: JobEvent): F | undefined {
    if (event.type === 'queued') return undefined;
    const followed = this.#options.platform.reattach(event.job);
    if (followed === undefined) return undefined;
    this.#followed.set(event.job.id, followed);
    this.#options.logger.info({ jobId: event.job.id, event: event.type }, 'following a job from its stored message refs');
    return followed;
  }
}
