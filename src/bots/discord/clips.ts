/**
 * Clip edits on Discord: `/edit` (an attachment), Apps → "Edit clip…" on a message with a video,
 * and the Edit button under a result; the last two ask for the instruction in a modal. Clips are
 * downloaded at once (their signed links expire), only from Discord's CDN over https (or the
 * configured API host), each download holding one of the user's slots. Old downloaded clips are
 * removed by the retention sweep (src/jobs/retention.ts), which keeps those a queued edit needs.
 */
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  ActionRowBuilder,
  MessageFlags,
  ModalBuilder,
  Routes,
  TextInputBuilder,
  TextInputStyle,
  type APIAttachment,
  type APIMessage,
  type Attachment,
  type ChatInputCommandInteraction,
  type Client,
  type MessageContextMenuCommandInteraction,
  type ModalSubmitInteraction,
} from 'discord.js';
import { ErrorCode, UserError } from '../../errors.js';
import type { JobService } from '../../jobs/job-service.js';
import type { JobRequest } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { decodeClipModalId, decodeCustomId, encodeClipModalId } from '../shared/custom-id.js';
import { downloadClip, type DownloadedClip } from '../shared/download-clip.js';
import { DownloadSlots, type DownloadLimits } from '../shared/download-slots.js';
import { GENERIC_FAILURE_TEXT, refusalText, resultFile } from '../shared/texts.js';
import { parseEditCommandText, type EditCommand } from '../shared/video-command.js';
import { INSTRUCTION_MAX_LENGTH } from './commands.js';
import { actorOf, defer, refuse, type Replyable } from './replies.js';

/** Hosts Discord serves attachments from; clips are fetched from nowhere else (over https). */
export const DISCORD_CDN_HOSTS: readonly string[] = ['cdn.discordapp.com', 'media.discordapp.net'];
/** Largest clip the bot downloads when no limit is given (the job core's `input.maxBytes` default). */
const DEFAULT_MAX_CLIP_BYTES = 50 * 1024 * 1024;
/** A clip downloaded for an "Edit clip…" modal nobody submitted is removed after this long. */
const PENDING_CLIP_TTL_MS = 15 * 60 * 1000;
/** File extensions of the video formats the editor accepts, for attachments without a content type. */
const VIDEO_EXTENSIONS = ['.mp4', '.m4v', '.mov', '.webm', '.mkv', '.gif', '.avi'];

/** A clip downloaded for an open "Edit clip…" modal, with the download slot it holds. */
interface PendingClip {
  download: Promise<DownloadedClip>;
  timer: NodeJS.Timeout;
  /** Gives the user's download slot back (once the clip is claimed or dropped). */
  release: () => void;
}

/** Submits a job for an interaction and follows it; true when a new job was made. */
export type SubmitAndFollow = (interaction: Replyable, base: Omit<JobRequest, 'eventId' | 'groupId' | 'channelId'>) => Promise<boolean>;

export interface DiscordClipsOptions {
  client: Client;
  jobs: JobService;
  logger: Logger;
  submitAndFollow: SubmitAndFollow;
  /** Existing folder for re-encoded uploads (clips go to `<tempDir>/clips` unless `clipDir` says otherwise). */
  tempDir: string;
  clipDir?: string;
  /** REST base of a fake Discord, whose host clips may also come from. */
  apiUrl?: string;
  maxClipBytes?: number;
  clipDownloads?: DownloadLimits;
  adminIds?: readonly string[];
}

export class DiscordClips {
  readonly #options: DiscordClipsOptions;
  readonly #logger: Logger;
  /** Clips being downloaded for an open "Edit clip…" modal, by `<userId>:<messageId>`. */
  readonly #pendingClips = new Map<string, PendingClip>();
  /** Caps on the clips being fetched or waiting for their instruction. */
  readonly #downloadSlots: DownloadSlots;

  constructor(options: DiscordClipsOptions) {
    this.#options = options;
    this.#logger = options.logger;
    this.#downloadSlots = new DownloadSlots(options.clipDownloads);
  }

  /** Drops the clips of modals never sent. */
  stop(): void {
    for (const [key, pending] of this.#pendingClips) this.#dropPendingClip(key, pending);
  }

  /** `/edit clip instruction`: downloads the attachment at once (its link expires), then submits the edit. */
  async onEdit(interaction: ChatInputCommandInteraction): Promise<void> {
    if (!(await defer(interaction, false, this.#logger))) return;
    const command = await this.#editCommand(interaction, interaction.options.getString('instruction') ?? '');
    if (command === undefined) return;
    const attachment = interaction.options.getAttachment('clip');
    if (attachment === null || !isVideoAttachment(attachment)) {
      await refuse(interaction, notAVideoText(attachment?.name), this.#logger);
      return;
    }
    const clip = await this.#tryDownload(interaction, async () => {
      const release = this.#downloadSlots.take(interaction.user.id);
      try {
        return await this.#download(attachment);
      } finally {
        release();
      }
    });
    if (clip !== undefined) await this.#submitEdit(interaction, command, clip.file, true);
  }

  /**
   * Apps → "Edit clip…" on a message: shows the instruction modal (the answer to the interaction,
   * so nothing else may come first) and starts downloading the clip at once, because the
   * attachment's signed link can expire before the modal is submitted. Opening it again on the
   * same message reuses the download under way; each download holds one of the user's slots
   * ({@link DownloadSlots}) until its form is sent or given up, and a user past the cap is refused
   * privately, with no modal and no download.
   */
  async onEditClipMenu(interaction: MessageContextMenuCommandInteraction): Promise<void> {
    const attachment = videoAttachmentIn([...interaction.targetMessage.attachments.values()]);
    if (attachment === undefined || attachment.size > this.#maxClipBytes) {
      const content = attachment === undefined ? notAVideoText(undefined) : tooLargeText(attachment.size, this.#maxClipBytes);
      await interaction.reply({ content, flags: MessageFlags.Ephemeral }).catch((error: unknown) => this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not answer'));
      return;
    }
    const key = `${interaction.user.id}:${interaction.targetId}`;
    const earlier = this.#pendingClips.get(key);
    let release: (() => void) | undefined;
    if (earlier === undefined) {
      try {
        release = this.#downloadSlots.take(interaction.user.id);
      } catch (error) {
        if (!(error instanceof UserError)) throw error;
        await interaction.reply({ content: refusalText(error), flags: MessageFlags.Ephemeral }).catch((failure: unknown) => this.#logger.warn({ err: failure, interactionId: interaction.id }, 'could not answer'));
        return;
      }
    }
    try {
      await interaction.showModal(instructionModal(encodeClipModalId(interaction.targetId), 'Edit clip'));
    } catch (error) {
      release?.();
      this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not show the edit form');
      return;
    }
    if (earlier !== undefined) {
      // The same clip again: its download is under way or done; it gets a fresh time to live.
      clearTimeout(earlier.timer);
      earlier.timer = setTimeout(() => this.#dropPendingClip(key, earlier), PENDING_CLIP_TTL_MS);
      earlier.timer.unref();
      return;
    }
    const download = this.#download(attachment);
    // Awaited when the modal comes back; until then a failure must not count as unhandled.
    download.catch(() => undefined);
    const pending: PendingClip = { download, release: release!, timer: setTimeout(() => this.#dropPendingClip(key, pending), PENDING_CLIP_TTL_MS) };
    pending.timer.unref();
    this.#pendingClips.set(key, pending);
  }

  /** The instruction modal came back: from "Edit clip…" (`v1:clip:<messageId>`) or a result's Edit button (`v1:edit:<jobId>`). */
  async onModalSubmit(interaction: ModalSubmitInteraction): Promise<void> {
    const messageId = decodeClipModalId(interaction.customId);
    const button = messageId === null ? decodeCustomId(interaction.customId) : null;
    if (messageId === null && button?.action !== 'edit') {
      await interaction.reply({ content: 'This form is from an older version of the bot; please start the edit again.', flags: MessageFlags.Ephemeral }).catch(() => undefined);
      return;
    }
    if (!(await defer(interaction, false, this.#logger))) return;
    const command = await this.#editCommand(interaction, interaction.fields.getTextInputValue('instruction'));
    if (messageId !== null) {
      if (command === undefined) {
        this.#dropPendingClip(`${interaction.user.id}:${messageId}`);
        return;
      }
      const clip = await this.#tryDownload(interaction, () => this.#claimClip(interaction, messageId));
      if (clip !== undefined) await this.#submitEdit(interaction, command, clip.file, true);
      return;
    }
    if (command === undefined || button === null) return;
    const source = this.#options.jobs.status(button.jobId)?.job;
    const file = source?.state === 'succeeded' ? resultFile(source.result) : undefined;
    if (file === undefined || !(await isFile(file))) {
      await refuse(interaction, `The video of job #${button.jobId} is no longer kept. Use /edit with the clip attached instead.`, this.#logger);
      return;
    }
    // The job's own output is the clip; the engine copies it, so it is never ours to remove.
    await this.#submitEdit(interaction, command, file, false);
  }

  /** Parses the instruction; answers a refusal or the help itself and returns undefined then. */
  async #editCommand(interaction: Replyable, text: string): Promise<EditCommand | undefined> {
    const parsed = parseEditCommandText(text);
    if (parsed.type === 'command') return parsed.command;
    await refuse(interaction, parsed.type === 'error' ? refusalText(parsed.error) : editHelpText(), this.#logger);
    return undefined;
  }

  /**
   * The clip of an "Edit clip…" modal: the download started when the modal opened or, when there
   * is none (the bot restarted) or its link had expired, a fresh download from the message as
   * Discord returns it now (with newly signed links).
   */
  async #claimClip(interaction: ModalSubmitInteraction, messageId: string): Promise<DownloadedClip> {
    const key = `${interaction.user.id}:${messageId}`;
    const pending = this.#pendingClips.get(key);
    if (pending !== undefined) {
      this.#pendingClips.delete(key);
      clearTimeout(pending.timer);
      try {
        return await pending.download;
      } catch (error) {
        if (!(error instanceof UserError && error.code === ErrorCode.InputDownloadFailed)) throw error;
        this.#logger.info({ messageId }, 'the clip download failed; fetching the message again for fresh links');
      } finally {
        // The clip is now this submit's (a job's, or removed when none takes it).
        pending.release();
      }
    }
    const channelId = interaction.channelId;
    let message: APIMessage;
    try {
      if (channelId === null) throw new Error('the modal has no channel');
      message = (await this.#options.client.rest.get(Routes.channelMessage(channelId, messageId))) as APIMessage;
    } catch (error) {
      this.#logger.warn({ err: error, messageId }, 'could not fetch the message of a clip');
      throw new UserError(ErrorCode.InputDownloadFailed, 'I could not read that message again (it may be deleted, or I cannot see this channel). Use /edit with the clip attached instead.');
    }
    const attachment = videoAttachmentIn(message.attachments);
    if (attachment === undefined) throw new UserError(ErrorCode.InputNotVideo, notAVideoText(undefined));
    return this.#download(attachment);
  }

  /**
   * Fetches a picture to animate (`/video image:`) like a clip: Discord's hosts only, over https,
   * within the clip size cap; its content is checked by the engine. Undefined when refused (the
   * user was answered).
   */
  async downloadPicture(interaction: Replyable, attachment: Attachment): Promise<string | undefined> {
    return (await this.#tryDownload(interaction, () => this.#download(attachment, 'picture')))?.file;
  }

  #download(attachment: Pick<Attachment | APIAttachment, 'url' | 'size'> & { name?: string; filename?: string }, expect: 'video' | 'picture' = 'video'): Promise<DownloadedClip> {
    return downloadClip({
      expect,
      url: attachment.url,
      allowedHosts: DISCORD_CDN_HOSTS,
      ...(this.#options.apiUrl === undefined ? {} : { extraOrigins: [this.#options.apiUrl] }),
      declaredBytes: attachment.size,
      maxBytes: this.#maxClipBytes,
      destDir: this.#clipDir,
      platformName: 'Discord',
      ...(attachment.name ?? attachment.filename ? { fileName: attachment.name ?? attachment.filename } : {}),
    });
  }

  /** Runs a download; a refusal is shown to the user, anything else logged and answered generically. */
  async #tryDownload(interaction: Replyable, download: () => Promise<DownloadedClip>): Promise<DownloadedClip | undefined> {
    try {
      return await download();
    } catch (error) {
      if (error instanceof UserError) {
        await refuse(interaction, refusalText(error), this.#logger);
      } else {
        this.#logger.error({ err: error, interactionId: interaction.id }, 'clip download failed');
        await refuse(interaction, GENERIC_FAILURE_TEXT, this.#logger);
      }
      return undefined;
    }
  }

  /** Submits an edit of `inputFile`; a clip we downloaded is removed again when no job took it. */
  async #submitEdit(interaction: Replyable, command: EditCommand, inputFile: string, downloaded: boolean): Promise<void> {
    const created = await this.#options.submitAndFollow(interaction, {
      actor: actorOf(interaction, this.#options.adminIds),
      kind: 'edit',
      params: { ...command.params, inputFile },
      ...(command.seed === undefined ? {} : { seed: command.seed }),
    });
    if (!created && downloaded) await rm(inputFile, { force: true });
  }

  #dropPendingClip(key: string, pending = this.#pendingClips.get(key)): void {
    if (pending === undefined) return;
    clearTimeout(pending.timer);
    if (this.#pendingClips.get(key) === pending) this.#pendingClips.delete(key);
    void pending.download
      .then((clip) => rm(clip.file, { force: true }))
      .catch(() => undefined)
      .finally(() => pending.release());
  }

  get #clipDir(): string {
    return this.#options.clipDir ?? path.join(this.#options.tempDir, 'clips');
  }

  get #maxClipBytes(): number {
    return this.#options.maxClipBytes ?? DEFAULT_MAX_CLIP_BYTES;
  }
}

/** The modal that asks for an edit instruction (its one field is `instruction`). */
export function instructionModal(customId: string, title: string): ModalBuilder {
  return new ModalBuilder()
    .setCustomId(customId)
    .setTitle(title)
    .addComponents(
      new ActionRowBuilder<TextInputBuilder>().addComponents(
        new TextInputBuilder()
          .setCustomId('instruction')
          .setLabel('How should the clip change?')
          .setStyle(TextInputStyle.Paragraph)
          .setPlaceholder('make it snowy --anchors 4')
          .setRequired(true)
          .setMaxLength(INSTRUCTION_MAX_LENGTH),
      ),
    );
}

/** Whether a path names an existing file (a job's clip or result still kept). */
export async function isFile(file: unknown): Promise<boolean> {
  if (typeof file !== 'string') return false;
  return stat(file).then((info) => info.isFile(), () => false);
}

/** The first attachment that is a video (by content type, or by extension when Discord gave none). */
function videoAttachmentIn<A extends { content_type?: string | null | undefined; contentType?: string | null; name?: string; filename?: string }>(attachments: readonly A[]): A | undefined {
  return attachments.find((attachment) => isVideoAttachment(attachment));
}

function isVideoAttachment(attachment: { content_type?: string | null | undefined; contentType?: string | null; name?: string; filename?: string }): boolean {
  const type = (attachment.contentType ?? attachment.content_type ?? '').toLowerCase();
  if (type.startsWith('video/') || type === 'image/gif') return true;
  if (type !== '') return false;
  return VIDEO_EXTENSIONS.includes(path.extname(attachment.name ?? attachment.filename ?? '').toLowerCase());
}

function notAVideoText(name: string | undefined): string {
  return `${name === undefined ? 'That message has no video' : `${name} is not a video`} to edit. Edits take MP4, MOV, WebM, MKV, GIF or AVI clips.`;
}

function tooLargeText(bytes: number, maxBytes: number): string {
  return `That clip is ${(bytes / 2 ** 20).toFixed(1)} MiB; clips up to ${(maxBytes / 2 ** 20).toFixed(1)} MiB can be edited.`;
}

function editHelpText(): string {
  return 'Say how the clip should change, like "make it snowy". Options: --anchors N, --steps N, --image-guidance X, --seed N.';
}
