/**
 * Discord's side of following a job ({@link JobFollower}): the reply is edited with the queued
 * text, throttled progress, then the MP4 with Re-roll / Edit / Cancel buttons, or the failure.
 * Edits go through the interaction token while it lives and through the bot token in the channel
 * after that; the video is fitted to the interaction's upload limit. A final message that fails
 * for a reason worth another try (5xx, a dropped connection) is tried again after a pause; an
 * upload refused for another reason is told to the user in the job's message, with Re-roll. Where
 * the bot may not post (403 on a bot-token edit) no edit is tried again, and the outcome goes to
 * its user privately, once: an ephemeral follow-up while the interaction token lives, else a DM.
 * After a restart, jobs it did not submit in this process are followed again from the Discord
 * refs stored with them (`messageRefs.discord`).
 */
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { DiscordAPIError, MessageFlags, Routes, type ActionRowBuilder, type ButtonBuilder, type Client } from 'discord.js';
import type { JobService } from '../../jobs/job-service.js';
import type { JobRecord } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { fitToLimit, UploadTooLargeError, type FitOptions } from '../../media/fit-upload.js';
import { JobFollower, type FinalEvent, type FollowedJob, type FollowerPlatform, type ProgressEvent } from '../shared/job-follower.js';
import type { MessageEditor } from '../shared/message-editor.js';
import { cancelledText, deliveredText, failedText, MISSING_VIDEO_TEXT, progressText, resultFile } from '../shared/texts.js';
import { DELIVERY_RETRY_DELAYS_MS, isChannelForbidden, isRetryableDeliveryError, uploadFailureText, withDeliveryRetries } from './delivery-errors.js';
import { fitContent, jobButtons, type Replyable } from './replies.js';

/** Discord's per-file default; any interaction may upload this much. */
export const DISCORD_UPLOAD_FLOOR_BYTES = 10 * 1024 * 1024;
/** Progress edits of one message are at least this far apart (Discord: 2–3 s is polite). */
export const PROGRESS_EDIT_INTERVAL_MS = 2500;
/** Interaction tokens stop working after 15 minutes. */
const TOKEN_LIFETIME_MS = 15 * 60 * 1000;
/** Edits switch from the interaction token to the bot token this long after the interaction, a minute before the token dies. */
export const TOKEN_SWITCH_AFTER_MS = 14 * 60 * 1000;
/** Discord error codes the delivery reacts to. */
const INVALID_WEBHOOK_TOKEN = 50027;
const REQUEST_ENTITY_TOO_LARGE = 40005;
/** A follow-up is sent through the interaction token only while it has at least this long left. */
const TOKEN_MARGIN_MS = 30_000;
/** Said under an outcome sent privately because the channel refused the bot. */
const SENT_PRIVATELY_NOTE = '_I cannot post in this channel (I lack the permission there), so this comes to you privately._';

/** What the adapter stores with each job (`messageRefs.discord`): enough to reach the reply after a restart. */
export interface DiscordRefs {
  applicationId: string;
  interactionId: string;
  interactionToken: string;
  tokenExpiresAt: number;
  channelId: string | null;
  guildId: string | null;
  messageId?: string;
  attachmentSizeLimit?: number;
}

/**
 * What the adapter keeps per job it follows: small, and rebuildable from the job's message refs.
 * A job submitted in this process has its interaction; one followed again after a restart has
 * only the refs (and the owner's id, to mention when the reply must be posted anew).
 */
export interface Followed extends FollowedJob {
  interaction?: Replyable;
  refs?: DiscordRefs;
  /** Discord id of the job's owner (mentioned in a channel post). */
  userId?: string;
  editor: MessageEditor;
  /** Id of the reply message, once known (for the bot-token fallback). */
  messageId?: string;
  /** Set once the interaction token answered 50027: later edits go straight to the bot token. */
  tokenDead?: boolean;
  /** The step of the preview the message shows now (undefined: none). */
  previewShown?: number;
  /** Set once a bot-token edit answered 403 (50001 / 50013): no edit of this message is tried again. */
  channelForbidden?: boolean;
  /** Set once the outcome went to the user privately (it is sent at most once). */
  sentPrivately?: boolean;
}

/**
 * A message edit. With `files`, the new files replace every attachment; `clearAttachments`
 * removes them without new ones (a final text after a preview); otherwise attachments stay.
 */
type EditBody = { content: string; components: ActionRowBuilder<ButtonBuilder>[]; files?: { attachment: string | Buffer; name: string }[]; clearAttachments?: boolean };

/** The file name of a live preview on a job's message. */
export const PREVIEW_FILE_NAME = 'preview.png';

export interface DiscordDeliveryOptions {
  client: Client;
  jobs: JobService;
  logger: Logger;
  /** Binaries and the folder for re-encoded uploads. */
  fit: FitOptions;
  progressIntervalMs?: number;
  tokenSwitchAfterMs?: number;
  /** Pauses before the second and third try of a final message that failed retryably. */
  retryDelaysMs?: readonly number[];
}

export class DiscordDelivery implements FollowerPlatform<Followed> {
  readonly #options: DiscordDeliveryOptions;
  readonly #logger: Logger;
  readonly follower: JobFollower<Followed>;

  constructor(options: DiscordDeliveryOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.follower = new JobFollower({ jobs: options.jobs, logger: options.logger, platform: this, platformName: 'discord', progressIntervalMs: options.progressIntervalMs ?? PROGRESS_EDIT_INTERVAL_MS });
  }

  /** Follows a job submitted through this interaction (the one already followed under its id, given the interaction). */
  followInteraction(jobId: number, interaction: Replyable): Followed {
    const followed = this.follower.follow(jobId, () => this.#followed(jobId, { interaction, userId: interaction.user.id }));
    followed.interaction ??= interaction;
    return followed;
  }

  /** Stores the refs of a job submitted in this process (`messageRefs.discord`), with its reply's message id once known. */
  storeRefs(followed: Followed): void {
    const { interaction } = followed;
    if (interaction === undefined) return;
    void this.#options.jobs
      .setMessageRefs(followed.jobId, { discord: interactionRefs(interaction, followed.messageId) })
      .catch((error: unknown) => this.#logger.warn({ err: error, jobId: followed.jobId }, 'could not store the message refs'));
  }

  // --- FollowerPlatform -------------------------------------------------------------------------

  /** Jobs without Discord refs (other platforms, the CLI) are left alone. */
  reattach(job: JobRecord): Followed | undefined {
    const refs = parseRefs(job.messageRefs.discord);
    if (refs === undefined) return undefined;
    return this.#followed(job.id, {
      refs,
      ...(job.platform === 'discord' ? { userId: job.userExternalId } : {}),
      ...(refs.messageId === undefined ? {} : { messageId: refs.messageId }),
    });
  }

  progressText(_followed: Followed, event: ProgressEvent): string | undefined {
    return event.type === 'progress' ? progressText('discord', { jobId: event.job.id, progress: event.progress }) : undefined;
  }

  async deliverFinal(followed: Followed, event: FinalEvent): Promise<void> {
    const jobId = event.job.id;
    switch (event.type) {
      case 'succeeded':
        return this.#deliver(followed, event.job, event.result);
      case 'failed':
        return this.#sendFinal(followed, { content: failedText('discord', { jobId, message: event.message, refunded: event.refunded }), components: [], clearAttachments: followed.previewShown !== undefined });
      case 'cancelled':
        return this.#sendFinal(followed, { content: cancelledText('discord', { jobId, refunded: event.refunded }), components: [], clearAttachments: followed.previewShown !== undefined });
    }
  }

  // --- Delivery ---------------------------------------------------------------------------------

  #followed(jobId: number, source: Pick<Followed, 'interaction' | 'refs' | 'userId' | 'messageId'>): Followed {
    const followed: Followed = {
      jobId,
      ...source,
      editor: this.follower.editor(jobId, async (content) => {
        // A channel that refused the bot gets no more progress: the outcome goes privately.
        if (followed.channelForbidden === true) return;
        // A newer live preview than the one shown rides along with this progress edit, replacing it.
        const preview = followed.preview;
        const fresh = preview !== undefined && preview.step !== followed.previewShown;
        await this.#edit(followed, { content, components: [jobButtons(jobId)], ...(fresh ? { files: [{ attachment: Buffer.from(preview.png, 'base64'), name: PREVIEW_FILE_NAME }] } : {}) });
        if (fresh) followed.previewShown = preview.step;
      }),
    };
    return followed;
  }

  /**
   * Uploads the video, fitted to the interaction's upload limit (retrying at 10 MiB on a 413).
   * When it cannot be uploaded, the job's message says why, with Re-roll (it never stays on its
   * last progress line).
   */
  async #deliver(followed: Followed, job: JobRecord, result: unknown): Promise<void> {
    const file = resultFile(result);
    if (file === undefined) {
      await this.#sendFinal(followed, { content: failedText('discord', { jobId: job.id, message: MISSING_VIDEO_TEXT, refunded: false }), components: [], clearAttachments: followed.previewShown !== undefined });
      return;
    }
    const limit = Math.max(followed.interaction?.attachmentSizeLimit || followed.refs?.attachmentSizeLimit || 0, DISCORD_UPLOAD_FLOOR_BYTES);
    let failure: unknown;
    try {
      await this.#upload(followed, job, file, result, limit);
      return;
    } catch (error) {
      failure = error;
    }
    // Discord said 413 at the interaction's limit (a channel's may be lower): once more at the floor.
    if (isTooLarge(failure) && !(failure instanceof UploadTooLargeError) && limit > DISCORD_UPLOAD_FLOOR_BYTES) {
      this.#logger.warn({ jobId: job.id, limit }, 'upload refused as too large; retrying at the 10 MiB floor');
      try {
        await this.#upload(followed, job, file, result, DISCORD_UPLOAD_FLOOR_BYTES);
        return;
      } catch (error) {
        failure = error;
      }
    }
    // Sent privately already, or that failed too: nothing is left to try now (the next start will).
    if (followed.channelForbidden === true) throw failure;
    let message: string;
    if (failure instanceof UploadTooLargeError) message = failure.userMessage;
    else if (isTooLarge(failure)) message = 'The video is too large for this channel.';
    else {
      const tries = isRetryableDeliveryError(failure) ? this.#retryDelays.length + 1 : 1;
      this.#logger.warn({ jobId: job.id, err: failure, tries }, 'the upload failed; telling the user');
      message = uploadFailureText(failure, tries);
    }
    await this.#sendFinal(followed, { content: failedText('discord', { jobId: job.id, message, refunded: false }), components: [jobButtons(job.id)], clearAttachments: followed.previewShown !== undefined });
  }

  async #upload(followed: Followed, job: JobRecord, file: string, result: unknown, limit: number): Promise<void> {
    const fitted = await fitToLimit(file, limit, this.#options.fit);
    if (fitted.steps.length > 0) this.#logger.info({ jobId: job.id, steps: fitted.steps }, 'fitted the video to the upload limit');
    const bytes = fitted.bytes || (await stat(fitted.file)).size;
    const content = deliveredText('discord', job, result, { bytes, ...(fitted.note === undefined ? {} : { note: fitted.note }) });
    const name = `reelbot-${job.id}.${fitted.format}`;
    try {
      await this.#sendFinal(followed, { content, components: [jobButtons(job.id, { edit: true })], files: [{ attachment: fitted.file, name }] });
    } finally {
      // A re-encoded copy is ours to remove; the job's own output stays.
      if (fitted.file !== path.resolve(file)) await rm(fitted.file, { force: true });
    }
  }

  /**
   * Edits the reply through the interaction token while it is fresh. From
   * {@link TOKEN_SWITCH_AFTER_MS} after the interaction (a minute before the token dies), or as
   * soon as the token answers 401 / 50027, the same edit goes through the bot token on the channel
   * message instead, and the dead token is never tried again (no 50027 retry storm). A job whose
   * message id is unknown gets a new channel message that mentions its owner.
   */
  async #edit(followed: Followed, body: EditBody): Promise<void> {
    const { client } = this.#options;
    const { interaction, refs } = followed;
    const channelId = interaction?.channelId ?? refs?.channelId ?? null;
    if (interaction === undefined && refs === undefined) throw new Error('a followed job has neither an interaction nor message refs');
    if (this.#tokenUsable(followed)) {
      try {
        if (interaction !== undefined) {
          const { clearAttachments, ...reply } = body;
          const message = await interaction.editReply(clearAttachments === true ? { ...reply, attachments: [] } : reply);
          followed.messageId = message.id;
          return;
        }
        const files = await rawFiles(body);
        const message = (await client.rest.patch(Routes.webhookMessage(refs!.applicationId, refs!.interactionToken, '@original'), {
          body: restBody(body, files),
          ...(files.length === 0 ? {} : { files }),
          auth: false,
        })) as { id?: unknown };
        if (typeof message.id === 'string' && message.id !== followed.messageId) this.#rememberMessage(followed, message.id);
        return;
      } catch (error) {
        if (!(error instanceof DiscordAPIError && error.code === INVALID_WEBHOOK_TOKEN) || channelId === null) throw error;
        followed.tokenDead = true;
        this.#logger.warn({ jobId: followed.jobId }, 'interaction token expired; editing with the bot token from now on');
      }
    }
    if (channelId === null) throw new Error(`job #${followed.jobId} has no channel to post in`);
    try {
      await this.#editWithBotToken(followed, channelId, body);
    } catch (error) {
      if (isChannelForbidden(error) && followed.channelForbidden !== true) {
        followed.channelForbidden = true;
        this.#logger.warn({ jobId: followed.jobId, channelId, code: (error as DiscordAPIError).code }, 'the bot may not post in this channel; no more edits of this job there');
      }
      throw error;
    }
  }

  /** The edit through the bot token: of the channel message when its id is known, else a new one that mentions the owner. */
  async #editWithBotToken(followed: Followed, channelId: string, body: EditBody): Promise<void> {
    const { client } = this.#options;
    const files = await rawFiles(body);
    if (followed.messageId !== undefined) {
      await client.rest.patch(Routes.channelMessage(channelId, followed.messageId), { body: restBody(body, files), ...(files.length === 0 ? {} : { files }) });
      return;
    }
    const mention = followed.userId === undefined ? '' : `<@${followed.userId}> `;
    const message = (await client.rest.post(Routes.channelMessages(channelId), {
      body: {
        ...restBody({ ...body, content: fitContent(mention + body.content) }, files),
        allowed_mentions: { parse: [], users: followed.userId === undefined ? [] : [followed.userId] },
      },
      ...(files.length === 0 ? {} : { files }),
    })) as { id?: unknown };
    if (typeof message.id === 'string') this.#rememberMessage(followed, message.id);
  }

  /**
   * Sends a final message: the edit of the job's message, tried again after a pause when it fails
   * retryably; where the channel refused the bot, the same message privately instead.
   */
  async #sendFinal(followed: Followed, body: EditBody): Promise<void> {
    // A function, not a field read: the edit below can set the flag (TypeScript would not see it).
    const forbidden = (): boolean => followed.channelForbidden === true;
    if (!forbidden()) {
      try {
        await withDeliveryRetries(() => this.#edit(followed, body), this.#retryDelays, (error, tryNumber) =>
          this.#logger.warn({ jobId: followed.jobId, err: error, try: tryNumber }, 'a final message failed; trying again'),
        );
        return;
      } catch (error) {
        if (!forbidden()) throw error;
      }
    }
    await this.#sendPrivately(followed, body);
  }

  /**
   * The outcome for a job whose channel refused the bot, to its user alone, once: an ephemeral
   * follow-up on the interaction while its token lives, else a DM to the owner.
   */
  async #sendPrivately(followed: Followed, body: EditBody): Promise<void> {
    if (followed.sentPrivately === true) return;
    const { client } = this.#options;
    const files = await rawFiles(body);
    const content = fitContent(`${body.content}\n${SENT_PRIVATELY_NOTE}`);
    const applicationId = followed.interaction?.applicationId ?? followed.refs?.applicationId;
    const token = followed.interaction?.token ?? followed.refs?.interactionToken;
    const expiresAt = followed.interaction === undefined ? (followed.refs?.tokenExpiresAt ?? 0) : followed.interaction.createdTimestamp + TOKEN_LIFETIME_MS;
    if (applicationId !== undefined && token !== undefined && followed.tokenDead !== true && Date.now() < expiresAt - TOKEN_MARGIN_MS) {
      try {
        await client.rest.post(Routes.webhook(applicationId, token), {
          body: { ...restBody({ ...body, content }, files), flags: MessageFlags.Ephemeral, allowed_mentions: { parse: [] } },
          ...(files.length === 0 ? {} : { files }),
          auth: false,
        });
        followed.sentPrivately = true;
        return;
      } catch (error) {
        if (!(error instanceof DiscordAPIError && error.code === INVALID_WEBHOOK_TOKEN)) throw error;
        followed.tokenDead = true;
      }
    }
    if (followed.userId === undefined) throw new Error(`job #${followed.jobId} has no owner to send a DM to`);
    try {
      const dm = (await client.rest.post(Routes.userChannels(), { body: { recipient_id: followed.userId } })) as { id?: unknown };
      if (typeof dm.id !== 'string') throw new Error('Discord opened no DM channel');
      // No buttons in a DM: a click there would come from outside the server.
      await client.rest.post(Routes.channelMessages(dm.id), {
        body: { ...restBody({ ...body, content, components: [] }, files), allowed_mentions: { parse: [] } },
        ...(files.length === 0 ? {} : { files }),
      });
    } catch (error) {
      // The user takes no DMs from the bot (50007) or is out of its reach: there is nowhere left
      // to say it, now or at a later start, so the job counts as delivered.
      if (!(error instanceof DiscordAPIError && error.status < 500)) throw error;
      this.#logger.warn({ jobId: followed.jobId, code: error.code }, 'the channel refused the bot and the owner takes no DMs from it; the outcome is given up');
    }
    followed.sentPrivately = true;
  }

  get #retryDelays(): readonly number[] {
    return this.#options.retryDelaysMs ?? DELIVERY_RETRY_DELAYS_MS;
  }

  /** Whether edits may still use the interaction token (fresh, and never refused). */
  #tokenUsable(followed: Followed): boolean {
    if (followed.tokenDead === true) return false;
    const switchAfter = this.#options.tokenSwitchAfterMs ?? TOKEN_SWITCH_AFTER_MS;
    const createdAt = followed.interaction?.createdTimestamp ?? (followed.refs === undefined ? 0 : followed.refs.tokenExpiresAt - TOKEN_LIFETIME_MS);
    return Date.now() < createdAt + switchAfter;
  }

  /** Keeps a reattached job's message id, in memory and in its refs, so later edits find it. */
  #rememberMessage(followed: Followed, messageId: string): void {
    followed.messageId = messageId;
    if (followed.refs === undefined) return;
    followed.refs = { ...followed.refs, messageId };
    void this.#options.jobs
      .setMessageRefs(followed.jobId, { discord: followed.refs })
      .catch((error: unknown) => this.#logger.warn({ err: error, jobId: followed.jobId }, 'could not store the message id'));
  }
}

/** The refs of a job submitted through `interaction`, stored with it at admission (`messageRefs.discord`). */
export function interactionRefs(interaction: Replyable, messageId?: string): DiscordRefs {
  return {
    applicationId: interaction.applicationId,
    interactionId: interaction.id,
    interactionToken: interaction.token,
    tokenExpiresAt: interaction.createdTimestamp + TOKEN_LIFETIME_MS,
    channelId: interaction.channelId,
    guildId: interaction.guildId,
    ...(messageId === undefined ? {} : { messageId }),
    ...(interaction.attachmentSizeLimit ? { attachmentSizeLimit: interaction.attachmentSizeLimit } : {}),
  };
}

/** A 413 / 40005 from Discord, or a video no re-encode could fit. */
function isTooLarge(error: unknown): boolean {
  return error instanceof UploadTooLargeError || (error instanceof DiscordAPIError && (error.status === 413 || error.code === REQUEST_ENTITY_TOO_LARGE));
}

/** The Discord refs stored with a job, or undefined when they are missing or malformed. */
function parseRefs(value: unknown): DiscordRefs | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const refs = value as Record<string, unknown>;
  const { applicationId, interactionId, interactionToken, tokenExpiresAt, channelId, guildId, messageId, attachmentSizeLimit } = refs;
  if (typeof applicationId !== 'string' || typeof interactionId !== 'string' || typeof interactionToken !== 'string' || typeof tokenExpiresAt !== 'number') return undefined;
  return {
    applicationId,
    interactionId,
    interactionToken,
    tokenExpiresAt,
    channelId: typeof channelId === 'string' ? channelId : null,
    guildId: typeof guildId === 'string' ? guildId : null,
    ...(typeof messageId === 'string' ? { messageId } : {}),
    ...(typeof attachmentSizeLimit === 'number' ? { attachmentSizeLimit } : {}),
  };
}

interface RawUpload {
  key: string;
  name: string;
  data: Buffer;
  contentType: string;
}

async function rawFiles(body: EditBody): Promise<RawUpload[]> {
  return Promise.all(
    (body.files ?? []).map(async (file, index) => ({
      key: `files[${index}]`,
      name: file.name,
      data: typeof file.attachment === 'string' ? await readFile(file.attachment) : file.attachment,
      contentType: contentTypeOf(file.name),
    })),
  );
}

/** A message edit as REST JSON; with files, `attachments` names them (and drops the old ones). */
function restBody(body: EditBody, files: RawUpload[]): Record<string, unknown> {
  return {
    content: body.content,
    components: body.components.map((row) => row.toJSON()),
    ...(files.length === 0 ? (body.clearAttachments === true ? { attachments: [] } : {}) : { attachments: files.map((file, index) => ({ id: String(index), filename: file.name })) }),
  };
}

function contentTypeOf(name: string): string {
  return name.endsWith('.gif') ? 'image/gif' : name.endsWith('.png') ? 'image/png' : 'video/mp4';
}
