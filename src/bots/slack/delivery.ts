/**
 * Slack's side of following a job ({@link JobFollower}): the job's public message in the channel
 * (the thread, for edits) is posted with the bot token when it starts and updated at most every
 * 3 s (coalesced; a 429 skips progress edits until its Retry-After has passed and never holds up
 * the job); the finished MP4 is uploaded with files.uploadV2 and the message keeps its Re-roll /
 * Cancel buttons. Private notices go through the command's `response_url` (at most 5 uses within
 * 30 minutes, counted across restarts in the job's refs) or as ephemeral messages. After a
 * restart, jobs are followed again from the refs stored with them (`messageRefs.slack`).
 */
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { webApi, type App } from '@slack/bolt';
import type { JobService } from '../../jobs/job-service.js';
import type { JobRecord } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { fitToLimit, UploadTooLargeError, type FitOptions } from '../../media/fit-upload.js';
import { JobFollower, type FinalEvent, type FollowedJob, type FollowerPlatform, type ProgressEvent } from '../shared/job-follower.js';
import type { MessageEditor } from '../shared/message-editor.js';
import { cancelledText, deliveredText, describeJob, failedText, mention, MISSING_VIDEO_TEXT, progressText, quoted, resultFile } from '../shared/texts.js';
import { jobMessage, type SlackMessage } from './blocks.js';
import { uploadBotImage } from './bot-files.js';
import { MEMORY_LIMIT } from './payload.js';
import { parseRefs, type SlackRefs } from './refs.js';
import { ResponseUrl, type ResponseBody, type ResponseUrlState } from './response-url.js';

/** Progress edits of one message are at least this far apart. */
export const PROGRESS_EDIT_INTERVAL_MS = 3000;
/** Slack accepts files up to 1 GB; the adapter fits videos under this unless told otherwise. */
export const SLACK_UPLOAD_LIMIT_BYTES = 1024 * 1024 * 1024;
/** Web API errors that mean the bot cannot post in a channel. */
const NOT_IN_CHANNEL = new Set(['not_in_channel', 'channel_not_found', 'is_archived', 'restricted_action']);

export interface Followed extends FollowedJob {
  refs: SlackRefs;
  editor: MessageEditor;
  /** Progress edits are skipped until then (a 429's Retry-After). */
  rateLimitedUntil: number;
  /** chat.postMessage said the bot is not in the channel. */
  cannotPost: boolean;
  /** The live preview on the message now: its step and the Slack file it was uploaded as. */
  previewShown?: { step: number; fileId: string };
}

export interface SlackDeliveryOptions {
  app: App;
  /** Posts progress edits without waiting out a 429 (it rejects at once; the edit is skipped). */
  progressClient: webApi.WebClient;
  jobs: JobService;
  logger: Logger;
  now: () => number;
  /** Binaries and the folder for re-encoded uploads. */
  fit: FitOptions;
  /** Folder of downloaded clips; a finished edit's clip is removed from it. */
  inputDir: string;
  uploadLimitBytes?: number;
  progressIntervalMs?: number;
}

export class SlackDelivery implements FollowerPlatform<Followed> {
  readonly #options: SlackDeliveryOptions;
  readonly #logger: Logger;
  readonly #responseUrls = new Map<string, ResponseUrl>();
  readonly follower: JobFollower<Followed>;

  constructor(options: SlackDeliveryOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.follower = new JobFollower({ jobs: options.jobs, logger: options.logger, platform: this, platformName: 'slack', progressIntervalMs: options.progressIntervalMs ?? PROGRESS_EDIT_INTERVAL_MS });
  }

  /** Follows a job (the one already followed under its id, if any). */
  follow(jobId: number, refs: SlackRefs): Followed {
    return this.follower.follow(jobId, () => this.#followed(jobId, refs));
  }

  /** One tracker per response_url, so every path that answers through it shares its 5 uses. */
  responseUrl(url: string, state?: ResponseUrlState): ResponseUrl {
    const now = this.#options.now;
    let tracker = this.#responseUrls.get(url);
    if (tracker === undefined) {
      tracker = new ResponseUrl(state ?? { url, issuedAt: now(), uses: 0 }, now);
      if (this.#responseUrls.size >= MEMORY_LIMIT) this.#responseUrls.delete(this.#responseUrls.keys().next().value!);
      this.#responseUrls.set(url, tracker);
    }
    return tracker;
  }

  /**
   * A private notice to the job's user: the response_url while it lasts, else an ephemeral
   * message. With a job id, the response_url's new use count is stored in the job's refs, so that
   * the 5 uses hold across a restart.
   */
  async notify(refs: SlackRefs, responseUrl: ResponseUrl | undefined, text: string, jobId?: number): Promise<void> {
    if (responseUrl !== undefined) {
      const usable = responseUrl.usable();
      const sent = await responseUrl.send({ response_type: 'ephemeral', text } satisfies ResponseBody);
      refs.responseUrl = responseUrl.state();
      if (usable && jobId !== undefined) {
        // The job may be followed through another copy of its refs (its first events can come before submit returns).
        const followed = this.follower.get(jobId);
        const stored = followed === undefined ? refs : (followed.refs = { ...followed.refs, responseUrl: responseUrl.state() });
        void this.#options.jobs
          .setMessageRefs(jobId, { slack: stored })
          .catch((error: unknown) => this.#logger.warn({ err: error, jobId }, 'could not store the response_url use count'));
      }
      if (sent) return;
    }
    await this.#options.app.client.chat
      .postEphemeral({ channel: refs.channelId, user: refs.userId, ...(refs.threadTs === undefined ? {} : { thread_ts: refs.threadTs }), text })
      .catch((error: unknown) => this.#logger.warn({ err: error }, 'could not post a notice'));
  }

  // --- FollowerPlatform -------------------------------------------------------------------------

  reattach(job: JobRecord): Followed | undefined {
    const refs = parseRefs(job.messageRefs.slack);
    return refs === undefined ? undefined : this.#followed(job.id, refs);
  }

  progressText(followed: Followed, event: ProgressEvent): string {
    const jobId = event.job.id;
    const line = event.type === 'progress' ? progressText('slack', { jobId, progress: event.progress }) : `*Job #${jobId}* is running…`;
    return `${line}\n${whoAndWhat(event.job, followed.refs)}`;
  }

  async deliverFinal(followed: Followed, event: FinalEvent): Promise<void> {
    const jobId = event.job.id;
    switch (event.type) {
      case 'succeeded':
        return this.#deliver(followed, event.job, event.result);
      case 'failed':
        return this.#showFinal(followed, failedText('slack', { jobId, message: event.message, refunded: event.refunded }), true);
      case 'cancelled': {
        const text = cancelledText('slack', { jobId, refunded: event.refunded });
        // A job cancelled before it started has no public message: tell its owner only.
        return followed.refs.statusTs === undefined ? this.notify(followed.refs, this.#storedResponseUrl(followed.refs), text, jobId) : this.#showFinal(followed, text, false);
      }
    }
  }

  /** Removes a finished edit's downloaded clip (the engine copied it into the job folder). */
  onFinished(job: JobRecord): void {
    void this.#removeInput(job);
  }

  // --- Delivery ---------------------------------------------------------------------------------

  #followed(jobId: number, refs: SlackRefs): Followed {
    const followed: Followed = {
      jobId,
      refs,
      rateLimitedUntil: 0,
      cannotPost: false,
      editor: this.follower.editor(jobId, async (content) => {
        const shown = await this.#uploadPreview(followed);
        await this.#show(followed, jobMessage(content, jobId, shown ? { image: { fileId: shown.fileId, alt: `What job #${jobId} looks like so far` } } : {}), 'progress');
      }),
    };
    return followed;
  }

  /**
   * A newer live preview is uploaded as a file of the bot's own (shared nowhere: files.uploadV2
   * without a channel) and shown in the progress message as an image block; the last one stays
   * until a newer one comes, and the final message has none. A failed upload keeps the old one.
   */
  async #uploadPreview(followed: Followed): Promise<Followed['previewShown']> {
    const preview = followed.preview;
    if (preview === undefined || preview.step === followed.previewShown?.step) return followed.previewShown;
    try {
      const fileId = await uploadBotImage(this.#options.app.client, Buffer.from(preview.png, 'base64'), 'preview.png', `reelbot #${followed.jobId} preview`);
      followed.previewShown = { step: preview.step, fileId };
    } catch (error) {
      this.#logger.warn({ err: error, jobId: followed.jobId }, 'could not upload a live preview');
    }
    return followed.previewShown;
  }

  #storeRefs(followed: Followed, change: Partial<SlackRefs>): void {
    followed.refs = { ...followed.refs, ...change };
    void this.#options.jobs
      .setMessageRefs(followed.jobId, { slack: followed.refs })
      .catch((error: unknown) => this.#logger.warn({ err: error, jobId: followed.jobId }, 'could not store the message refs'));
  }

  #storedResponseUrl(refs: SlackRefs): ResponseUrl | undefined {
    return refs.responseUrl === undefined ? undefined : this.responseUrl(refs.responseUrl.url, refs.responseUrl);
  }

  /** Uploads the video into the channel (the thread, for edits), then shows the done text on the job's message. */
  async #deliver(followed: Followed, job: JobRecord, result: unknown): Promise<void> {
    const file = resultFile(result);
    if (file === undefined) {
      await this.#showFinal(followed, failedText('slack', { jobId: job.id, message: MISSING_VIDEO_TEXT, refunded: false }), true);
      return;
    }
    let fitted;
    try {
      fitted = await fitToLimit(file, this.#options.uploadLimitBytes ?? SLACK_UPLOAD_LIMIT_BYTES, this.#options.fit);
    } catch (error) {
      const message = error instanceof UploadTooLargeError ? error.userMessage : 'The video could not be prepared for Slack.';
      if (!(error instanceof UploadTooLargeError)) this.#logger.error({ err: error, jobId: job.id }, 'fitting the upload failed');
      await this.#showFinal(followed, failedText('slack', { jobId: job.id, message, refunded: false }), true);
      return;
    }
    try {
      if (fitted.steps.length > 0) this.#logger.info({ jobId: job.id, steps: fitted.steps }, 'fitted the video to the upload limit');
      const bytes = fitted.bytes || (await stat(fitted.file)).size;
      const text = deliveredText('slack', job, result, { bytes, ...(fitted.note === undefined ? {} : { note: fitted.note }) });
      const uploaded = await this.#upload(followed, job, fitted.file, `reelbot-${job.id}.${fitted.format}`);
      if (!uploaded.ok) {
        const message = uploaded.notInChannel
          ? 'I cannot post in this channel. Invite me with `/invite @reelbot` and press Re-roll.'
          : 'Slack did not take the upload of the video. Press Re-roll to make it again.';
        await this.#showFinal(followed, failedText('slack', { jobId: job.id, message, refunded: false }), true);
        return;
      }
      this.#storeRefs(followed, { fileId: uploaded.fileId });
      await this.#showFinal(followed, text, 'finished');
    } finally {
      // A re-encoded copy is ours to remove; the job's own output stays.
      if (fitted.file !== path.resolve(file)) await rm(fitted.file, { force: true });
    }
  }

  /**
   * files.uploadV2 into the job's channel (and thread). Tried twice: a failed POST to the upload
   * URL or a failed completion gets a fresh upload URL (not when the bot is not in the channel).
   */
  async #upload(followed: Followed, job: JobRecord, file: string, filename: string): Promise<{ ok: true; fileId: string } | { ok: false; notInChannel: boolean }> {
    const { refs } = followed;
    const data = await readFile(file);
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        const common = {
          file: data,
          filename,
          title: `reelbot #${job.id}: ${describeJob(job).slice(0, 200)}`,
          initial_comment: `${mention(refs.userId)} ${job.kind === 'edit' ? 'here is your edit' : 'here is your video'} (job #${job.id}).`,
        };
        const response = await this.#options.app.client.files.uploadV2(
          refs.threadTs === undefined ? { ...common, channel_id: refs.channelId } : { ...common, channel_id: refs.channelId, thread_ts: refs.threadTs },
        );
        const completed = (response as { files?: { files?: { id?: string }[] }[] }).files?.[0]?.files?.[0];
        return { ok: true, fileId: completed?.id ?? 'unknown' };
      } catch (error) {
        this.#logger.warn({ err: error, jobId: job.id, attempt }, 'upload to Slack failed');
        const code = slackErrorCode(error);
        if (code !== undefined && NOT_IN_CHANNEL.has(code)) return { ok: false, notInChannel: true };
      }
    }
    return { ok: false, notInChannel: false };
  }

  /** The job's message shows its final text (with the buttons when `buttons`). */
  async #showFinal(followed: Followed, text: string, buttons: boolean | 'finished'): Promise<void> {
    await this.#show(followed, jobMessage(text, followed.jobId, { buttons }), 'final');
  }

  /**
   * Shows a message as the job's public message: chat.update when it exists, else chat.postMessage
   * (into the thread for edits). Progress edits go through the client that does not wait out a
   * 429; a rate-limited progress edit is dropped and later ones wait for the Retry-After. When the
   * bot cannot post in the channel, the user hears it once, and the final text goes to them
   * through the command's response_url (within its 5 uses and 30 minutes) or as an ephemeral message.
   */
  async #show(followed: Followed, message: SlackMessage, kind: 'progress' | 'final'): Promise<void> {
    const { refs } = followed;
    const now = this.#options.now;
    if (kind === 'progress' && (now() < followed.rateLimitedUntil || followed.cannotPost)) return;
    // The first post is never dropped: only edits of an existing message go through the impatient client.
    const client = kind === 'progress' && refs.statusTs !== undefined ? this.#options.progressClient : this.#options.app.client;
    try {
      if (refs.statusTs !== undefined) {
        await client.chat.update({ channel: refs.channelId, ts: refs.statusTs, text: message.text, blocks: message.blocks as never });
        return;
      }
      const posted = await client.chat.postMessage({
        channel: refs.channelId,
        ...(refs.threadTs === undefined ? {} : { thread_ts: refs.threadTs }),
        text: message.text,
        blocks: message.blocks as never,
        unfurl_links: false,
      });
      if (typeof posted.ts === 'string') this.#storeRefs(followed, { statusTs: posted.ts });
    } catch (error) {
      const retryAfter = rateLimitSeconds(error);
      if (retryAfter !== undefined) {
        followed.rateLimitedUntil = now() + retryAfter * 1000;
        this.#logger.info({ jobId: followed.jobId, retryAfter }, 'progress edit rate-limited; skipping edits until Retry-After');
        return;
      }
      const code = slackErrorCode(error);
      if (code !== undefined && NOT_IN_CHANNEL.has(code)) {
        const first = !followed.cannotPost;
        followed.cannotPost = true;
        if (kind === 'progress' && !first) return;
        const hint = first ? '\n_I cannot post in this channel; invite me with `/invite @reelbot` to get the video here._' : '';
        await this.notify(refs, this.#storedResponseUrl(refs), `${message.text}${hint}`, followed.jobId);
        return;
      }
      throw error;
    }
  }

  /** Removes a finished edit's downloaded clip (the engine copied it into the job folder). */
  async #removeInput(job: JobRecord): Promise<void> {
    if (job.kind !== 'edit' || job.platform !== 'slack') return;
    const input = job.params.inputFile;
    if (typeof input !== 'string') return;
    const inputDir = path.resolve(this.#options.inputDir);
    const resolved = path.resolve(input);
    if (path.dirname(resolved) !== inputDir) return; // not one of ours
    await rm(resolved, { force: true }).catch((error: unknown) => this.#logger.warn({ err: error, jobId: job.id }, 'could not remove a downloaded clip'));
  }
}

/** The second line of a running job's message: who asked for what. */
function whoAndWhat(job: JobRecord, refs: SlackRefs): string {
  const text = describeJob(job);
  return `_${job.kind === 'edit' ? 'Edit' : 'Video'} for ${mention(refs.userId)}${text === '' ? '' : `: ${quoted('slack', text, 120)}`}_`;
}

/** Seconds of a 429's Retry-After, when the error is a rejected rate-limited call. */
function rateLimitSeconds(error: unknown): number | undefined {
  const e = error as { code?: unknown; retryAfter?: unknown };
  return e?.code === webApi.ErrorCode.RateLimitedError && typeof e.retryAfter === 'number' ? e.retryAfter : undefined;
}

/** The `error` of a Web API platform error (`not_in_channel`…). */
export function slackErrorCode(error: unknown): string | undefined {
  const e = error as { code?: unknown; data?: { error?: unknown } };
  return e?.code === webApi.ErrorCode.PlatformError && typeof e.data?.error === 'string' ? e.data.error : undefined;
}
