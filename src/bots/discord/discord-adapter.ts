/**
 * The Discord adapter: a discord.js Client (Guilds intent only) that turns `/video` and the
 * buttons under a job's message into JobService calls, and follows the job's events by editing
 * the interaction's reply: queued → throttled progress → the MP4 with Re-roll / Edit / Cancel
 * buttons, or the failure. `/queue`, `/usage`, `/history`, `/cancel` and `/admin …` answer with
 * ephemeral replies. Clip edits come from `/edit` (an attachment), Apps → "Edit clip…" on a
 * message with a video, and the Edit button under a result; the last two ask for the instruction
 * in a modal. Clips are downloaded at once, only from Discord's CDN over https (or the configured
 * API host). Every interaction is acknowledged (deferred) before anything else is awaited, except
 * the ones answered with a modal, which must be the first answer.
 * After a restart, jobs it did not submit in this process are followed again from the Discord
 * refs stored with them (`messageRefs.discord`): the reply is edited through the interaction
 * webhook while its token lives, and through the bot token in the channel after that.
 */
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  ActionRowBuilder,
  ButtonBuilder,
  ButtonStyle,
  Client,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  MessageFlags,
  ModalBuilder,
  Routes,
  TextInputBuilder,
  TextInputStyle,
  type APIAttachment,
  type APIMessage,
  type Attachment,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Interaction,
  type MessageContextMenuCommandInteraction,
  type ModalSubmitInteraction,
} from 'discord.js';
import { ErrorCode, UserError } from '../../errors.js';
import type { JobService } from '../../jobs/job-service.js';
import { periodsAt } from '../../jobs/quota-policy.js';
import type { Actor, JobEvent, JobRecord, JobRequest, SubmitResult, UserRecord } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { decodeClipModalId, decodeCustomId, encodeClipModalId, encodeCustomId } from '../shared/custom-id.js';
import { FinalDeliveries } from '../shared/final-deliveries.js';
import { downloadClip, type DownloadedClip } from '../shared/download-clip.js';
import { DownloadSlots, type DownloadLimits } from '../shared/download-slots.js';
import { fitToLimit, UploadTooLargeError } from '../shared/fit-upload.js';
import { JobEventFeed } from '../shared/job-event-feed.js';
import { adminStatsText, GENERIC_FAILURE_TEXT, adminUsageText, cancelledText, describeJob, doneText, failedText, historyText, progressText, queuedText, queueText, refusalText, resultNotes, usageText } from '../shared/texts.js';
import { parseEditCommandText, videoCommandFromOptions, type EditCommand } from '../shared/video-command.js';
import { ADMIN_PERIODS, allCommandData, EDIT_CLIP_MENU_NAME, HISTORY_PAGE_SIZE, INSTRUCTION_MAX_LENGTH, type AdminPeriod } from './commands.js';
import { MessageEditor } from '../shared/message-editor.js';

/** Discord's per-file default; any interaction may upload this much. */
export const DISCORD_UPLOAD_FLOOR_BYTES = 10 * 1024 * 1024;
/** Progress edits of one message are at least this far apart (Discord: 2–3 s is polite). */
export const PROGRESS_EDIT_INTERVAL_MS = 2500;
/** Interaction tokens stop working after 15 minutes. */
const TOKEN_LIFETIME_MS = 15 * 60 * 1000;
/** Edits switch from the interaction token to the bot token this long after the interaction, a minute before the token dies. */
export const TOKEN_SWITCH_AFTER_MS = 14 * 60 * 1000;
/** Discord error codes the adapter reacts to. */
const INVALID_WEBHOOK_TOKEN = 50027;
const REQUEST_ENTITY_TOO_LARGE = 40005;
/** Longest message content Discord accepts. */
export const DISCORD_CONTENT_LIMIT = 2000;
/** Hosts Discord serves attachments from; clips are fetched from nowhere else (over https). */
export const DISCORD_CDN_HOSTS: readonly string[] = ['cdn.discordapp.com', 'media.discordapp.net'];
/** Largest clip the bot downloads when no limit is given (the job core's `input.maxBytes` default). */
const DEFAULT_MAX_CLIP_BYTES = 50 * 1024 * 1024;
/** A clip downloaded for an "Edit clip…" modal nobody submitted is removed after this long. */
const PENDING_CLIP_TTL_MS = 15 * 60 * 1000;
/** Downloaded clips are kept this long (so Re-roll of an edit and a restart mid-queue still find them). */
export const CLIP_RETENTION_MS = 24 * 60 * 60 * 1000;
/** File extensions of the video formats the editor accepts, for attachments without a content type. */
const VIDEO_EXTENSIONS = ['.mp4', '.m4v', '.mov', '.webm', '.mkv', '.gif', '.avi'];
/** Job states `/cancel` without a job number looks for. */
const ACTIVE_STATES: readonly JobRecord['state'][] = ['queued', 'running'];

export interface DiscordAdapterOptions {
  token: string;
  /** REST base without the version, e.g. `https://discord.com/api` or a fake's `http://127.0.0.1:PORT/api`. */
  apiUrl?: string;
  jobs: JobService;
  logger: Logger;
  ffmpegPath: string;
  ffprobePath: string;
  /** Existing folder for re-encoded uploads. */
  tempDir: string;
  /** Register the slash commands globally when the client is ready (default true). */
  registerCommands?: boolean;
  /** Shortest time between two progress edits of one message (default {@link PROGRESS_EDIT_INTERVAL_MS}). */
  progressIntervalMs?: number;
  /** Discord user ids treated as admins (cancel any job). The JobService allowlist still decides. */
  adminIds?: readonly string[];
  /**
   * Folder for clips downloaded to edit (default `<tempDir>/clips`). It should outlive the process
   * (the job core's output folder is a good place), since a queued edit reads its clip after a restart.
   */
  clipDir?: string;
  /** Largest clip accepted, in bytes (the job core's `input.maxBytes`; default 50 MiB). */
  maxClipBytes?: number;
  /** Clip downloads held at once, per user and in total (the config's `clipDownloads`; default 2 and 8). */
  clipDownloads?: DownloadLimits;
  /** When edits stop using the interaction token (default {@link TOKEN_SWITCH_AFTER_MS}; tests shorten it). */
  tokenSwitchAfterMs?: number;
}

type Replyable = ChatInputCommandInteraction | ButtonInteraction | ModalSubmitInteraction;

/** What the adapter stores with each job (`messageRefs.discord`): enough to reach the reply after a restart. */
interface DiscordRefs {
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
interface Followed {
  jobId: number;
  interaction?: Replyable;
  refs?: DiscordRefs;
  /** Discord id of the job's owner (mentioned in a channel post). */
  userId?: string;
  editor: MessageEditor;
  /** Id of the reply message, once known (for the bot-token fallback). */
  messageId?: string;
  /** Set once the interaction token answered 50027: later edits go straight to the bot token. */
  tokenDead?: boolean;
}

/** A clip downloaded for an open "Edit clip…" modal, with the download slot it holds. */
interface PendingClip {
  download: Promise<DownloadedClip>;
  timer: NodeJS.Timeout;
  /** Gives the user's download slot back (once the clip is claimed or dropped). */
  release: () => void;
}

type EditBody = { content: string; components: ActionRowBuilder<ButtonBuilder>[]; files?: { attachment: string; name: string }[] };

export class DiscordAdapter {
  readonly client: Client;
  #options: DiscordAdapterOptions;
  #logger: Logger;
  #followed = new Map<number, Followed>();
  readonly #finalDeliveries = new FinalDeliveries();
  /** Job events, held until the client is ready (recovery notices at JobService.start()). */
  #events: JobEventFeed;
  /** Clips being downloaded for an open "Edit clip…" modal, by `<userId>:<messageId>`. */
  #pendingClips = new Map<string, PendingClip>();
  /** Caps on the clips being fetched or waiting for their instruction. */
  readonly #downloadSlots: DownloadSlots;
  /** Removes old downloaded clips every hour. */
  #clipSweep: NodeJS.Timeout | undefined;

  /**
   * Subscribes to job events at once, so an adapter built before `JobService.start()` (as
   * `reelbot serve` does) sees the notices that recovery emits; they are handled once the client
   * is ready.
   */
  constructor(options: DiscordAdapterOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ platform: 'discord' });
    this.client = new Client({
      intents: [GatewayIntentBits.Guilds],
      // Nothing the bot posts pings anyone unless a message says so itself (a prompt's @everyone stays text).
      allowedMentions: { parse: [], repliedUser: false },
      // Video uploads can take longer than the default 15 s.
      rest: { ...(options.apiUrl === undefined ? {} : { api: options.apiUrl }), timeout: 120_000 },
    });
    this.#events = new JobEventFeed(options.jobs, (event) => this.#onJobEvent(event));
    this.#downloadSlots = new DownloadSlots(options.clipDownloads);
  }

  /** Logs in and resolves once the gateway is ready (and the commands are registered, unless turned off). */
  async start(): Promise<void> {
    this.client.on(Events.InteractionCreate, (interaction) => {
      void this.#onInteraction(interaction).catch((error: unknown) => this.#logger.error({ err: error, interactionId: interaction.id }, 'interaction handler failed'));
    });
    const ready = new Promise<void>((resolve) => this.client.once(Events.ClientReady, () => resolve()));
    await this.client.login(this.#options.token);
    await ready;
    if (this.#options.registerCommands !== false) await this.client.application?.commands.set(allCommandData());
    await this.#removeOldClips();
    this.#clipSweep = setInterval(() => void this.#removeOldClips(), 60 * 60 * 1000);
    this.#clipSweep.unref();
    this.#logger.info({ user: this.client.user?.id }, 'discord adapter ready');
    this.#events.open();
  }

  /**
   * Waits (up to `timeoutMs`) for the final messages of finished jobs that are still being sent:
   * a drain calls it after the job service stopped, before {@link stop}.
   */
  async finalDeliveriesSettled(timeoutMs: number): Promise<'settled' | 'timed_out'> {
    return this.#finalDeliveries.settled(timeoutMs);
  }

  /** Stops following jobs and disconnects. */
  async stop(): Promise<void> {
    this.#events.close();
    for (const followed of this.#followed.values()) followed.editor.close();
    this.#followed.clear();
    for (const [key, pending] of this.#pendingClips) this.#dropPendingClip(key, pending);
    clearInterval(this.#clipSweep);
    await this.client.destroy();
  }

  // --- Interactions -----------------------------------------------------------------------------

  async #onInteraction(interaction: Interaction): Promise<void> {
    if (interaction.isChatInputCommand()) {
      switch (interaction.commandName) {
        case 'video':
          return this.#onVideo(interaction);
        case 'edit':
          return this.#onEdit(interaction);
        case 'queue':
          return this.#ephemeralCommand(interaction, () => this.#onQueue(interaction));
        case 'usage':
          return this.#ephemeralCommand(interaction, () => this.#onUsage(interaction));
        case 'history':
          return this.#ephemeralCommand(interaction, () => this.#onHistory(interaction));
        case 'cancel':
          return this.#ephemeralCommand(interaction, () => this.#onCancel(interaction));
        case 'admin':
          return this.#ephemeralCommand(interaction, () => this.#onAdmin(interaction));
        default:
          return;
      }
    }
    if (interaction.isButton()) return this.#onButton(interaction);
    if (interaction.isMessageContextMenuCommand() && interaction.commandName === EDIT_CLIP_MENU_NAME) return this.#onEditClipMenu(interaction);
    if (interaction.isModalSubmit()) return this.#onModalSubmit(interaction);
  }

  /**
   * Runs an informational command: an ephemeral defer first (before any DB access), then the
   * handler's text as the reply. A UserError is shown as its message; anything else is logged and
   * answered with a short generic text, so no exception leaves the handler.
   */
  async #ephemeralCommand(interaction: ChatInputCommandInteraction, handler: () => Promise<string> | string): Promise<void> {
    if (!(await this.#defer(interaction, true))) return;
    let content: string;
    try {
      content = await handler();
    } catch (error) {
      if (error instanceof UserError) {
        content = refusalText(error);
      } else {
        this.#logger.error({ err: error, interactionId: interaction.id, command: interaction.commandName }, 'command failed');
        content = GENERIC_FAILURE_TEXT;
      }
    }
    // Listings mention users; an ephemeral reply pings nobody, but say so explicitly anyway.
    await interaction
      .editReply({ content: fitContent(content), components: [], allowedMentions: { parse: [] } })
      .catch((error: unknown) => this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not edit a reply'));
  }

  #onQueue(interaction: ChatInputCommandInteraction): string {
    return queueText('discord', this.#options.jobs.queue(), { platform: 'discord', groupId: interaction.guildId, externalId: interaction.user.id });
  }

  #onUsage(interaction: ChatInputCommandInteraction): string {
    return usageText('discord', this.#options.jobs.usage(this.#actor(interaction)));
  }

  #onHistory(interaction: ChatInputCommandInteraction): string {
    // Discord enforces min_value 1; a smaller value from elsewhere is read as page 1.
    const page = Math.max(1, interaction.options.getInteger('page') ?? 1);
    const actor = this.#actor(interaction);
    const jobs = this.#options.jobs.history(actor, page, HISTORY_PAGE_SIZE);
    const hasMore = jobs.length === HISTORY_PAGE_SIZE && this.#options.jobs.history(actor, page + 1, HISTORY_PAGE_SIZE).length > 0;
    return historyText('discord', { jobs, page, hasMore });
  }

  async #onCancel(interaction: ChatInputCommandInteraction): Promise<string> {
    const actor = this.#actor(interaction);
    const jobId = interaction.options.getInteger('job') ?? this.#latestActiveJob(actor);
    if (jobId === undefined) return 'You have no queued or running job to cancel.';
    const { job, outcome } = await this.#options.jobs.cancel(actor, jobId);
    return outcome === 'cancelled' ? `Job #${job.id} is cancelled.` : `Cancelling job #${job.id}…`;
  }

  /**
   * `/admin …`. Discord hides the command from members without Manage Server; the JobService
   * admin allowlist decides (a non-admin gets its NotAdmin UserError, and nothing changes).
   */
  async #onAdmin(interaction: ChatInputCommandInteraction): Promise<string> {
    const jobs = this.#options.jobs;
    const actor = this.#actor(interaction);
    const options = interaction.options;
    const group = options.getSubcommandGroup(false);
    const sub = options.getSubcommand(true);
    const target = (): { platform: 'discord'; externalId: string } => ({ platform: 'discord', externalId: options.getUser('user', true).id });
    if (group === 'queue') {
      switch (sub) {
        case 'pause':
          await jobs.pauseQueue(actor);
          return 'The queue is paused: running jobs finish, new ones wait.';
        case 'resume':
          await jobs.resumeQueue(actor);
          return 'The queue is running again.';
        case 'clear': {
          const cleared = await jobs.clearQueue(actor);
          return `Cleared the queue: ${cleared} ${cleared === 1 ? 'job' : 'jobs'} cancelled and refunded.`;
        }
        default:
          return `Unknown command /admin queue ${sub}.`;
      }
    }
    if (group === 'quota' && sub === 'set') {
      const tier = options.getString('tier');
      const jobsPerDay = options.getInteger('jobs_per_day');
      const gpuSecondsPerDay = options.getInteger('gpu_seconds_per_day');
      const override: NonNullable<UserRecord['quotaOverride']> = {
        ...(jobsPerDay === null ? {} : { jobsPerDay }),
        ...(gpuSecondsPerDay === null ? {} : { gpuSecondsPerDay }),
      };
      if (tier === null && Object.keys(override).length === 0) return 'Give a tier, jobs_per_day or gpu_seconds_per_day.';
      const user = await jobs.setQuota(actor, target(), { ...(tier === null ? {} : { tier }), ...(Object.keys(override).length === 0 ? {} : { override }) });
      const limits = Object.entries(user.quotaOverride ?? {})
        .map(([key, value]) => `${key} ${value ?? 'tier default'}`)
        .join(', ');
      return `Quota of <@${user.externalId}>: tier ${user.tier ?? 'default'}${limits === '' ? '' : `; ${limits}`}.`;
    }
    if (group !== null) return `Unknown command /admin ${group} ${sub}.`;
    switch (sub) {
      case 'usage': {
        const period = adminPeriod(options.getString('period'));
        const user = options.getUser('user');
        const report = jobs.usageReport(actor, { since: periodStart(period), ...(user === null ? {} : { target: { platform: 'discord', externalId: user.id } }) });
        return adminUsageText('discord', {
          periodLabel: PERIOD_LABELS[period],
          ...(user === null ? {} : { userExternalId: user.id }),
          total: report.total,
          topUsers: report.topUsers.map((row) => ({ jobs: row.jobs, gpuSeconds: row.gpuSeconds, externalId: row.user?.externalId ?? null })),
          byGroup: report.byGroup,
        });
      }
      case 'stats': {
        const period = adminPeriod(options.getString('period'));
        return adminStatsText('discord', { periodLabel: PERIOD_LABELS[period], ...jobs.stats(actor, periodStart(period)) });
      }
      case 'ban': {
        const reason = options.getString('reason');
        const user = await jobs.setBanned(actor, target(), true, reason ?? undefined);
        return `<@${user.externalId}> is banned${reason === null ? '' : `: ${reason}`}. Their queued jobs are cancelled.`;
      }
      case 'unban': {
        const user = await jobs.setBanned(actor, target(), false);
        return `<@${user.externalId}> may make videos again.`;
      }
      default:
        return `Unknown command /admin ${sub}.`;
    }
  }

  /** The id of the actor's most recent queued or running job (history is newest first). */
  #latestActiveJob(actor: Actor): number | undefined {
    const pageSize = 50;
    for (let page = 1; ; page++) {
      const jobs = this.#options.jobs.history(actor, page, pageSize);
      const active = jobs.find((job) => ACTIVE_STATES.includes(job.state));
      if (active !== undefined) return active.id;
      if (jobs.length < pageSize) return undefined;
    }
  }

  async #onVideo(interaction: ChatInputCommandInteraction): Promise<void> {
    // Acknowledge first: the token dies 3 s after the interaction unless answered.
    if (!(await this.#defer(interaction, false))) return;
    const options = interaction.options;
    const parsed = videoCommandFromOptions({
      prompt: options.getString('prompt'),
      frames: options.getInteger('frames'),
      seed: options.getInteger('seed'),
      motion: options.getString('motion'),
      negative: options.getString('negative'),
      steps: options.getInteger('steps'),
      fps: options.getInteger('fps'),
    });
    if (parsed.type !== 'command') {
      await this.#refuse(interaction, parsed.type === 'error' ? refusalText(parsed.error) : 'Use /video with a prompt.');
      return;
    }
    const { command } = parsed;
    await this.#submitAndFollow(interaction, {
      actor: this.#actor(interaction),
      kind: command.kind,
      params: command.params,
      ...(command.seed === undefined ? {} : { seed: command.seed }),
    });
  }

  async #onButton(interaction: ButtonInteraction): Promise<void> {
    const button = decodeCustomId(interaction.customId);
    if (button === null) {
      await interaction.reply({ content: 'This button is from an older version of the bot; please run /video again.', flags: MessageFlags.Ephemeral }).catch(() => undefined);
      return;
    }
    if (button.action === 'cancel') {
      if (!(await this.#defer(interaction, true))) return;
      try {
        const { job, outcome } = await this.#options.jobs.cancel(this.#actor(interaction), button.jobId);
        await this.#safeEdit(interaction, outcome === 'cancelled' ? `Job #${job.id} is cancelled.` : `Cancelling job #${job.id}…`);
      } catch (error) {
        if (!(error instanceof UserError)) throw error;
        await this.#refuse(interaction, refusalText(error));
      }
      return;
    }
    if (button.action === 'reroll') {
      if (!(await this.#defer(interaction, false))) return;
      const original = this.#options.jobs.status(button.jobId)?.job;
      if (original === undefined) {
        await this.#refuse(interaction, `There is no job #${button.jobId} any more.`);
        return;
      }
      if (original.kind === 'edit' && !(await isFile(original.params.inputFile))) {
        await this.#refuse(interaction, `The clip of job #${original.id} is no longer kept. Use /edit with the clip attached to edit it again.`);
        return;
      }
      // No seed: the service draws a new one.
      await this.#submitAndFollow(interaction, { actor: this.#actor(interaction), kind: original.kind, params: original.params });
      return;
    }
    // Edit: a modal asks for the instruction. No defer first: a deferred interaction cannot show a modal.
    await interaction
      .showModal(instructionModal(encodeCustomId('edit', button.jobId), `Edit the video of job #${button.jobId}`))
      .catch((error: unknown) => this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not show the edit form'));
  }

  // --- Edits ------------------------------------------------------------------------------------

  /** `/edit clip instruction`: downloads the attachment at once (its link expires), then submits the edit. */
  async #onEdit(interaction: ChatInputCommandInteraction): Promise<void> {
    if (!(await this.#defer(interaction, false))) return;
    const command = await this.#editCommand(interaction, interaction.options.getString('instruction') ?? '');
    if (command === undefined) return;
    const attachment = interaction.options.getAttachment('clip');
    if (attachment === null || !isVideoAttachment(attachment)) {
      await this.#refuse(interaction, notAVideoText(attachment?.name));
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
  async #onEditClipMenu(interaction: MessageContextMenuCommandInteraction): Promise<void> {
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
  async #onModalSubmit(interaction: ModalSubmitInteraction): Promise<void> {
    const messageId = decodeClipModalId(interaction.customId);
    const button = messageId === null ? decodeCustomId(interaction.customId) : null;
    if (messageId === null && button?.action !== 'edit') {
      await interaction.reply({ content: 'This form is from an older version of the bot; please start the edit again.', flags: MessageFlags.Ephemeral }).catch(() => undefined);
      return;
    }
    if (!(await this.#defer(interaction, false))) return;
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
      await this.#refuse(interaction, `The video of job #${button.jobId} is no longer kept. Use /edit with the clip attached instead.`);
      return;
    }
    // The job's own output is the clip; the engine copies it, so it is never ours to remove.
    await this.#submitEdit(interaction, command, file, false);
  }

  /** Parses the instruction; answers a refusal or the help itself and returns undefined then. */
  async #editCommand(interaction: Replyable, text: string): Promise<EditCommand | undefined> {
    const parsed = parseEditCommandText(text);
    if (parsed.type === 'command') return parsed.command;
    await this.#refuse(interaction, parsed.type === 'error' ? refusalText(parsed.error) : editHelpText());
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
      message = (await this.client.rest.get(Routes.channelMessage(channelId, messageId))) as APIMessage;
    } catch (error) {
      this.#logger.warn({ err: error, messageId }, 'could not fetch the message of a clip');
      throw new UserError(ErrorCode.InputDownloadFailed, 'I could not read that message again (it may be deleted, or I cannot see this channel). Use /edit with the clip attached instead.');
    }
    const attachment = videoAttachmentIn(message.attachments);
    if (attachment === undefined) throw new UserError(ErrorCode.InputNotVideo, notAVideoText(undefined));
    return this.#download(attachment);
  }

  #download(attachment: Pick<Attachment | APIAttachment, 'url' | 'size'> & { name?: string; filename?: string }): Promise<DownloadedClip> {
    return downloadClip({
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
        await this.#refuse(interaction, refusalText(error));
      } else {
        this.#logger.error({ err: error, interactionId: interaction.id }, 'clip download failed');
        await this.#refuse(interaction, GENERIC_FAILURE_TEXT);
      }
      return undefined;
    }
  }

  /** Submits an edit of `inputFile`; a clip we downloaded is removed again when no job took it. */
  async #submitEdit(interaction: Replyable, command: EditCommand, inputFile: string, downloaded: boolean): Promise<void> {
    const created = await this.#submitAndFollow(interaction, {
      actor: this.#actor(interaction),
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

  /** Removes downloaded clips older than {@link CLIP_RETENTION_MS}. */
  async #removeOldClips(): Promise<void> {
    const dir = this.#clipDir;
    const names = await readdir(dir).catch(() => [] as string[]);
    const cutoff = Date.now() - CLIP_RETENTION_MS;
    for (const name of names.filter((entry) => entry.startsWith('clip-'))) {
      const file = path.join(dir, name);
      const info = await stat(file).catch(() => undefined);
      if (info !== undefined && info.mtimeMs < cutoff) await rm(file, { force: true });
    }
  }

  get #clipDir(): string {
    return this.#options.clipDir ?? path.join(this.#options.tempDir, 'clips');
  }

  get #maxClipBytes(): number {
    return this.#options.maxClipBytes ?? DEFAULT_MAX_CLIP_BYTES;
  }

  /** Submits, shows the queued text and follows the job; true when a new job was made. */
  async #submitAndFollow(interaction: Replyable, base: Omit<JobRequest, 'eventId' | 'groupId' | 'channelId'>): Promise<boolean> {
    let submitted: SubmitResult;
    try {
      submitted = await this.#options.jobs.submit({
        ...base,
        eventId: interaction.id,
        // Outside any guild (a DM): the job core refuses it unless direct messages are allowed.
        ...(interaction.guildId === null ? { directMessage: true } : { groupId: interaction.guildId }),
        ...(interaction.channelId === null ? {} : { channelId: interaction.channelId }),
      });
    } catch (error) {
      if (error instanceof UserError) {
        await this.#refuse(interaction, refusalText(error));
      } else {
        // The reply is already deferred: it must not stay "thinking…" for ever.
        this.#logger.error({ err: error, interactionId: interaction.id }, 'could not submit a job');
        await this.#refuse(interaction, GENERIC_FAILURE_TEXT);
      }
      return false;
    }
    const { job } = submitted;
    if (submitted.duplicate) {
      // A redelivered interaction shares the first delivery's reply, which already shows this job.
      const refs = job.messageRefs.discord as { interactionId?: unknown } | undefined;
      if (this.#followed.has(job.id) || refs?.interactionId === interaction.id) {
        this.#logger.info({ jobId: job.id, interactionId: interaction.id }, 'redelivered interaction; the job exists');
        return false;
      }
      const where = job.channelId === null ? '' : ` in <#${job.channelId}>`;
      await this.#safeEdit(interaction, `This request already made job #${job.id}${where}; it is ${job.state}.`);
      return false;
    }
    const followed = this.#follow(job.id, { interaction });
    this.#storeRefs(job.id, followed);
    await followed.editor
      .now(async () => {
        const message = await interaction.editReply({
          content: queuedText('discord', { jobId: job.id, position: submitted.position, etaMs: submitted.etaMs, quotaLeft: submitted.quotaLeft, prompt: describeJob(job) }),
          components: [this.#buttons(job.id)],
        });
        followed.messageId = message.id;
        this.#storeRefs(job.id, followed);
      })
      .catch((error: unknown) => this.#logger.warn({ err: error, jobId: job.id }, 'could not show the queued message'));
    return true;
  }

  // --- Job events -------------------------------------------------------------------------------

  #onJobEvent(event: JobEvent): void {
    const followed = this.#followed.get(event.job.id) ?? this.#reattach(event);
    if (followed === undefined) return;
    const jobId = event.job.id;
    switch (event.type) {
      case 'progress':
        followed.editor.progress(progressText('discord', { jobId, progress: event.progress }));
        return;
      case 'succeeded':
        this.#finish(jobId, followed, () => this.#deliver(followed, event.job, event.result));
        return;
      case 'failed':
        this.#finish(jobId, followed, () =>
          this.#edit(followed, { content: failedText('discord', { jobId, message: event.message, refunded: event.refunded }), components: [] }),
        );
        return;
      case 'cancelled':
        this.#finish(jobId, followed, () => this.#edit(followed, { content: cancelledText('discord', { jobId, refunded: event.refunded }), components: [] }));
        return;
      default:
        return;
    }
  }

  /**
   * Follows a job this process did not submit (it was recovered after a restart) from the refs
   * stored with it. Jobs without Discord refs (other platforms, the CLI) are left alone.
   */
  #reattach(event: JobEvent): Followed | undefined {
    if (event.type === 'queued') return undefined; // a submit in progress stores its refs after this
    const refs = parseRefs(event.job.messageRefs.discord);
    if (refs === undefined) return undefined;
    const jobId = event.job.id;
    this.#logger.info({ jobId, event: event.type }, 'following a job from its stored message refs');
    return this.#follow(jobId, {
      refs,
      ...(event.job.platform === 'discord' ? { userId: event.job.userExternalId } : {}),
      ...(refs.messageId === undefined ? {} : { messageId: refs.messageId }),
    });
  }

  #finish(jobId: number, followed: Followed, edit: () => Promise<void>): void {
    this.#followed.delete(jobId);
    void this.#finalDeliveries.track(
      followed.editor.now(edit, { final: true }).catch((error: unknown) => this.#logger.error({ err: error, jobId }, 'could not post the outcome of a job')),
    );
  }

  /** Uploads the video, fitted to the interaction's upload limit (retrying at 10 MiB on a 413). */
  async #deliver(followed: Followed, job: JobRecord, result: unknown): Promise<void> {
    const file = typeof result === 'object' && result !== null && typeof (result as { file?: unknown }).file === 'string' ? (result as { file: string }).file : undefined;
    if (file === undefined) {
      await this.#edit(followed, { content: failedText('discord', { jobId: job.id, message: 'The video file is missing.', refunded: false }), components: [] });
      return;
    }
    const limit = Math.max(followed.interaction?.attachmentSizeLimit || followed.refs?.attachmentSizeLimit || 0, DISCORD_UPLOAD_FLOOR_BYTES);
    try {
      await this.#upload(followed, job, file, result as Record<string, unknown>, limit);
    } catch (error) {
      if (error instanceof DiscordAPIError && (error.status === 413 || error.code === REQUEST_ENTITY_TOO_LARGE) && limit > DISCORD_UPLOAD_FLOOR_BYTES) {
        this.#logger.warn({ jobId: job.id, limit }, 'upload refused as too large; retrying at the 10 MiB floor');
        await this.#upload(followed, job, file, result as Record<string, unknown>, DISCORD_UPLOAD_FLOOR_BYTES);
        return;
      }
      if (error instanceof UploadTooLargeError || (error instanceof DiscordAPIError && (error.status === 413 || error.code === REQUEST_ENTITY_TOO_LARGE))) {
        const message = error instanceof UploadTooLargeError ? error.userMessage : 'The video is too large for this channel.';
        await this.#edit(followed, { content: failedText('discord', { jobId: job.id, message, refunded: false }), components: [this.#buttons(job.id)] });
        return;
      }
      throw error;
    }
  }

  async #upload(followed: Followed, job: JobRecord, file: string, result: Record<string, unknown>, limit: number): Promise<void> {
    const fitted = await fitToLimit(file, limit, { ffmpegPath: this.#options.ffmpegPath, ffprobePath: this.#options.ffprobePath, tempDir: this.#options.tempDir });
    if (fitted.steps.length > 0) this.#logger.info({ jobId: job.id, steps: fitted.steps }, 'fitted the video to the upload limit');
    const bytes = fitted.bytes || (await stat(fitted.file)).size;
    const elapsedMs = (job.finishedAt ?? Date.now()) - (job.startedAt ?? job.queuedAt);
    const content = doneText('discord', {
      jobId: job.id,
      kind: job.kind,
      text: describeJob(job),
      seed: job.seed,
      elapsedMs,
      bytes,
      ...numberField(result, 'frames'),
      ...numberField(result, 'width'),
      ...numberField(result, 'height'),
      ...(fitted.note === undefined ? {} : { note: fitted.note }),
      ...resultNotes(result),
    });
    const name = `reelbot-${job.id}.${fitted.format}`;
    try {
      await this.#edit(followed, { content, components: [this.#buttons(job.id, { edit: true })], files: [{ attachment: fitted.file, name }] });
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
    const { interaction, refs } = followed;
    const channelId = interaction?.channelId ?? refs?.channelId ?? null;
    if (interaction === undefined && refs === undefined) throw new Error('a followed job has neither an interaction nor message refs');
    if (this.#tokenUsable(followed)) {
      try {
        if (interaction !== undefined) {
          const message = await interaction.editReply(body);
          followed.messageId = message.id;
          return;
        }
        const files = await rawFiles(body);
        const message = (await this.client.rest.patch(Routes.webhookMessage(refs!.applicationId, refs!.interactionToken, '@original'), {
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
    const files = await rawFiles(body);
    if (followed.messageId !== undefined) {
      await this.client.rest.patch(Routes.channelMessage(channelId, followed.messageId), { body: restBody(body, files), ...(files.length === 0 ? {} : { files }) });
      return;
    }
    const mention = followed.userId === undefined ? '' : `<@${followed.userId}> `;
    const message = (await this.client.rest.post(Routes.channelMessages(channelId), {
      body: {
        ...restBody({ ...body, content: fitContent(mention + body.content) }, files),
        allowed_mentions: { parse: [], users: followed.userId === undefined ? [] : [followed.userId] },
      },
      ...(files.length === 0 ? {} : { files }),
    })) as { id?: unknown };
    if (typeof message.id === 'string') this.#rememberMessage(followed, message.id);
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

  // --- Helpers ----------------------------------------------------------------------------------

  #follow(jobId: number, source: { interaction: Replyable } | { refs: DiscordRefs; userId?: string; messageId?: string }): Followed {
    const followed: Followed = {
      jobId,
      ...source,
      ...('interaction' in source ? { userId: source.interaction.user.id } : {}),
      editor: new MessageEditor({
        intervalMs: this.#options.progressIntervalMs ?? PROGRESS_EDIT_INTERVAL_MS,
        send: async (content) => {
          await this.#edit(followed, { content, components: [this.#buttons(jobId)] });
        },
        onError: (error) => this.#logger.warn({ err: error, jobId }, 'progress edit failed'),
      }),
    };
    this.#followed.set(jobId, followed);
    return followed;
  }

  #storeRefs(jobId: number, followed: Followed): void {
    const { interaction } = followed;
    if (interaction === undefined) return;
    const refs: DiscordRefs = {
      applicationId: interaction.applicationId,
      interactionId: interaction.id,
      interactionToken: interaction.token,
      tokenExpiresAt: interaction.createdTimestamp + TOKEN_LIFETIME_MS,
      channelId: interaction.channelId,
      guildId: interaction.guildId,
      ...(followed.messageId === undefined ? {} : { messageId: followed.messageId }),
      ...(interaction.attachmentSizeLimit ? { attachmentSizeLimit: interaction.attachmentSizeLimit } : {}),
    };
    void this.#options.jobs
      .setMessageRefs(jobId, { discord: refs })
      .catch((error: unknown) => this.#logger.warn({ err: error, jobId }, 'could not store the message refs'));
  }

  async #defer(interaction: Replyable, ephemeral: boolean): Promise<boolean> {
    try {
      await interaction.deferReply(ephemeral ? { flags: MessageFlags.Ephemeral } : {});
      return true;
    } catch (error) {
      // Typically 40060 (already acknowledged: a redelivery) or an expired token.
      this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not acknowledge an interaction');
      return false;
    }
  }

  /**
   * Answers a refusal (bad options, ban, quota, blocked words, a clip that cannot be used) so that
   * only its user sees it. A public deferred reply is replaced: the refusal goes out as an
   * ephemeral follow-up, then the public "thinking…" is deleted; only admitted jobs are public.
   */
  async #refuse(interaction: Replyable, content: string): Promise<void> {
    if (interaction.ephemeral) {
      await this.#safeEdit(interaction, content);
      return;
    }
    try {
      await interaction.followUp({ content, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
    } catch (error) {
      this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not send a private refusal; editing the reply instead');
      await this.#safeEdit(interaction, content);
      return;
    }
    await interaction.deleteReply().catch((error: unknown) => this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not remove the deferred reply'));
  }

  async #safeEdit(interaction: Replyable, content: string): Promise<void> {
    await interaction.editReply({ content, components: [] }).catch((error: unknown) => this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not edit a reply'));
  }

  #actor(interaction: Replyable): Actor {
    const user = interaction.user;
    return {
      platform: 'discord',
      externalId: user.id,
      displayName: user.globalName ?? user.username,
      ...(this.#options.adminIds?.includes(user.id) === true ? { isAdmin: true } : {}),
    };
  }

  /**
   * Re-roll and Cancel, and Edit under a finished video; the job row decides what a click does,
   * so the buttons survive restarts.
   */
  #buttons(jobId: number, options: { edit?: boolean } = {}): ActionRowBuilder<ButtonBuilder> {
    const row = new ActionRowBuilder<ButtonBuilder>().addComponents(new ButtonBuilder().setCustomId(encodeCustomId('reroll', jobId)).setLabel('Re-roll').setStyle(ButtonStyle.Primary));
    if (options.edit === true) row.addComponents(new ButtonBuilder().setCustomId(encodeCustomId('edit', jobId)).setLabel('Edit').setStyle(ButtonStyle.Secondary));
    return row.addComponents(new ButtonBuilder().setCustomId(encodeCustomId('cancel', jobId)).setLabel('Cancel').setStyle(ButtonStyle.Danger));
  }
}

const PERIOD_LABELS: Record<AdminPeriod, string> = { today: 'today (UTC)', month: 'this month (UTC)', all: 'all time' };

function adminPeriod(value: string | null): AdminPeriod {
  return ADMIN_PERIODS.find((period) => period === value) ?? 'today';
}

/** Start of an admin report period, in ms since the epoch. */
function periodStart(period: AdminPeriod, now = Date.now()): number {
  if (period === 'all') return 0;
  const periods = periodsAt(now);
  return period === 'today' ? periods.dayStart : periods.monthStart;
}

function numberField<K extends string>(result: Record<string, unknown>, key: K): Partial<Record<K, number>> {
  const value = result[key];
  return typeof value === 'number' && Number.isFinite(value) ? ({ [key]: value } as Partial<Record<K, number>>) : {};
}

/** Cuts a message to Discord's content limit, at a line break when there is one. */
export function fitContent(content: string, limit = DISCORD_CONTENT_LIMIT): string {
  if (content.length <= limit) return content;
  const cut = content.slice(0, limit - 2);
  const lineEnd = cut.lastIndexOf('\n');
  return `${lineEnd > limit / 2 ? cut.slice(0, lineEnd) : cut}\n…`;
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
  return Promise.all((body.files ?? []).map(async (file, index) => ({ key: `files[${index}]`, name: file.name, data: await readFile(file.attachment), contentType: contentTypeOf(file.name) })));
}

/** A message edit as REST JSON; with files, `attachments` names them (and drops the old ones). */
function restBody(body: EditBody, files: RawUpload[]): Record<string, unknown> {
  return {
    content: body.content,
    components: body.components.map((row) => row.toJSON()),
    ...(files.length === 0 ? {} : { attachments: files.map((file, index) => ({ id: String(index), filename: file.name })) }),
  };
}

/** The modal that asks for an edit instruction (its one field is `instruction`). */
function instructionModal(customId: string, title: string): ModalBuilder {
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

/** The `file` of a job's result, when it has one. */
function resultFile(result: unknown): string | undefined {
  const file = typeof result === 'object' && result !== null ? (result as { file?: unknown }).file : undefined;
  return typeof file === 'string' && file !== '' ? file : undefined;
}

async function isFile(file: unknown): Promise<boolean> {
  if (typeof file !== 'string') return false;
  return stat(file).then((info) => info.isFile(), () => false);
}

function contentTypeOf(name: string): string {
  return name.endsWith('.gif') ? 'image/gif' : 'video/mp4';
}
