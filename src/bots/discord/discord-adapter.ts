/**
 * The Discord adapter: a discord.js Client (Guilds intent only) that routes `/video`, `/edit`,
 * `/queue`, `/usage`, `/history`, `/cancel`, `/admin …`, Apps → "Edit clip…", the buttons under
 * a job's message and the instruction modal to their handlers, and follows each job's events by
 * editing the interaction's reply. Every interaction is acknowledged (deferred) before anything
 * else is awaited, except the ones answered with a modal, which must be the first answer.
 *
 * - command-handlers.ts: `/video`, the buttons, the informational commands, and the submit.
 * - admin.ts: `/admin …`, run by the shared admin command runner.
 * - clips.ts: `/edit`, "Edit clip…" and the modal; clip downloads and their sweep.
 * - delivery.ts: following a job (the shared job follower): edits, the token switch, the upload.
 */
import { Client, Events, GatewayIntentBits, RESTEvents, SnowflakeUtil, type ChatInputCommandInteraction, type Interaction } from 'discord.js';
import type { JobService } from '../../jobs/job-service.js';
import type { Logger } from '../../log.js';
import type { DownloadLimits } from '../shared/download-slots.js';
import type { DashboardLinks, PlatformObserver } from '../shared/platform-observer.js';
import { answerSafely } from '../shared/user-commands.js';
import { answerAdmin } from './admin.js';
import { DiscordClips } from './clips.js';
import { DiscordCommands } from './command-handlers.js';
import { allCommandData, EDIT_CLIP_MENU_NAME } from './commands.js';
import { DiscordDelivery } from './delivery.js';
import { actorOf, defer, fitContent } from './replies.js';

export { DISCORD_CDN_HOSTS } from './clips.js';
export { DISCORD_UPLOAD_FLOOR_BYTES, PROGRESS_EDIT_INTERVAL_MS, TOKEN_SWITCH_AFTER_MS } from './delivery.js';
export { DELIVERY_RETRY_DELAYS_MS } from './delivery-errors.js';
export { DISCORD_CONTENT_LIMIT, fitContent } from './replies.js';

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
  /** Pauses before the second and third try of a final message that failed retryably (default {@link DELIVERY_RETRY_DELAYS_MS}; tests shorten them). */
  deliveryRetryDelaysMs?: readonly number[];
  /** Told about the gateway connection, acks and 429s (serve's metrics and readiness). */
  observer?: PlatformObserver;
  /** Sign-in links for `/admin dashboard`; without them the command says the dashboard is off. */
  dashboardLinks?: DashboardLinks;
}

export class DiscordAdapter {
  readonly client: Client;
  readonly #options: DiscordAdapterOptions;
  readonly #logger: Logger;
  readonly #delivery: DiscordDelivery;
  readonly #commands: DiscordCommands;
  readonly #clips: DiscordClips;

  /**
   * Subscribes to job events at once, so an adapter built before `JobService.start()` (as
   * `reelbot serve` does) sees the notices that recovery emits; they are handled once the client
   * is ready.
   */
  constructor(options: DiscordAdapterOptions) {
    this.#options = options;
    const logger = options.logger.child({ platform: 'discord' });
    this.#logger = logger;
    this.client = new Client({
      intents: [GatewayIntentBits.Guilds],
      // Nothing the bot posts pings anyone unless a message says so itself (a prompt's @everyone stays text).
      allowedMentions: { parse: [], repliedUser: false },
      // Video uploads can take longer than the default 15 s.
      rest: { ...(options.apiUrl === undefined ? {} : { api: options.apiUrl }), timeout: 120_000 },
    });
    const { jobs, adminIds } = options;
    this.#delivery = new DiscordDelivery({
      client: this.client,
      jobs,
      logger,
      fit: { ffmpegPath: options.ffmpegPath, ffprobePath: options.ffprobePath, tempDir: options.tempDir },
      ...(options.progressIntervalMs === undefined ? {} : { progressIntervalMs: options.progressIntervalMs }),
      ...(options.tokenSwitchAfterMs === undefined ? {} : { tokenSwitchAfterMs: options.tokenSwitchAfterMs }),
      ...(options.deliveryRetryDelaysMs === undefined ? {} : { retryDelaysMs: options.deliveryRetryDelaysMs }),
    });
    this.#commands = new DiscordCommands({ jobs, logger, delivery: this.#delivery, ...(adminIds === undefined ? {} : { adminIds }), downloadPicture: (interaction, attachment) => this.#clips.downloadPicture(interaction, attachment) });
    this.#clips = new DiscordClips({
      client: this.client,
      jobs,
      logger,
      submitAndFollow: (interaction, base) => this.#commands.submitAndFollow(interaction, base),
      tempDir: options.tempDir,
      ...(options.clipDir === undefined ? {} : { clipDir: options.clipDir }),
      ...(options.apiUrl === undefined ? {} : { apiUrl: options.apiUrl }),
      ...(options.maxClipBytes === undefined ? {} : { maxClipBytes: options.maxClipBytes }),
      ...(options.clipDownloads === undefined ? {} : { clipDownloads: options.clipDownloads }),
      ...(adminIds === undefined ? {} : { adminIds }),
    });
    if (options.observer) observeClient(this.client, options.observer);
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
    this.#logger.info({ user: this.client.user?.id }, 'discord adapter ready');
    this.#delivery.follower.open();
  }

  /**
   * Waits (up to `timeoutMs`) for the final messages of finished jobs that are still being sent:
   * a drain calls it after the job service stopped, before {@link stop}.
   */
  async finalDeliveriesSettled(timeoutMs: number): Promise<'settled' | 'timed_out'> {
    return this.#delivery.follower.finalDeliveriesSettled(timeoutMs);
  }

  /** Stops following jobs and disconnects. */
  async stop(): Promise<void> {
    this.#delivery.follower.close();
    this.#clips.stop();
    await this.client.destroy();
  }

  async #onInteraction(interaction: Interaction): Promise<void> {
    if (interaction.isChatInputCommand()) {
      const commands = this.#commands;
      switch (interaction.commandName) {
        case 'video':
          return commands.video(interaction);
        case 'edit':
          return this.#clips.onEdit(interaction);
        case 'queue':
          return this.#ephemeralCommand(interaction, () => commands.queue(interaction));
        case 'usage':
          return this.#ephemeralCommand(interaction, () => commands.usage(interaction));
        case 'history':
          return this.#ephemeralCommand(interaction, () => commands.history(interaction), () => commands.historyFiles(interaction));
        case 'cancel':
          return this.#ephemeralCommand(interaction, () => commands.cancel(interaction));
        case 'admin':
          return this.#ephemeralCommand(interaction, () =>
            answerAdmin(this.#options.jobs, actorOf(interaction, this.#options.adminIds), interaction.options, this.#options.dashboardLinks),
          );
        default:
          return;
      }
    }
    if (interaction.isButton()) return this.#commands.button(interaction);
    if (interaction.isMessageContextMenuCommand() && interaction.commandName === EDIT_CLIP_MENU_NAME) return this.#clips.onEditClipMenu(interaction);
    if (interaction.isModalSubmit()) return this.#clips.onModalSubmit(interaction);
  }

  /**
   * Runs an informational command: an ephemeral defer first (before any DB access), then the
   * handler's text as the reply. A UserError is shown as its message; anything else is logged and
   * answered with a short generic text, so no exception leaves the handler.
   */
  async #ephemeralCommand(interaction: ChatInputCommandInteraction, handler: () => Promise<string> | string, attachments?: () => Promise<{ attachment: string; name: string }[]>): Promise<void> {
    if (!(await defer(interaction, true, this.#logger))) return;
    const content = await answerSafely(handler, this.#logger, { interactionId: interaction.id, command: interaction.commandName });
    // Pictures beside the text (/history's thumbnails); a failure to gather them only drops them.
    const files = attachments === undefined ? [] : await attachments().catch((error: unknown) => {
      this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not gather the thumbnails');
      return [];
    });
    // Listings mention users; an ephemeral reply pings nobody, but say so explicitly anyway.
    await interaction
      .editReply({ content: fitContent(content), components: [], allowedMentions: { parse: [] }, ...(files.length === 0 ? {} : { files }) })
      .catch((error: unknown) => this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not edit a reply'));
  }
}

/**
 * Reports the gateway connection (down while a shard reconnects, up again when it resumes or
 * identifies anew), the time from an interaction's creation (its snowflake) to its callback (the
 * ack: a defer, a reply or a modal), and every 429 the REST client gets.
 */
function observeClient(client: Client, observer: PlatformObserver): void {
  let lost = false;
  client.once(Events.ClientReady, () => observer.connection(true));
  const down = () => {
    lost = true;
    observer.connection(false);
  };
  const up = () => {
    if (lost) observer.reconnected();
    lost = false;
    observer.connection(true);
  };
  client.on(Events.ShardReconnecting, down);
  client.on(Events.ShardDisconnect, down);
  client.on(Events.ShardResume, up);
  client.on(Events.ShardReady, () => {
    if (lost) up();
  });
  client.rest.on(RESTEvents.Response, (request, response) => {
    if (response.status === 429) observer.rateLimited();
    const callback = /^\/interactions\/(\d+)\/[^/]+\/callback/.exec(request.path);
    if (callback && response.status < 300) observer.acked(Date.now() - SnowflakeUtil.timestampFrom(callback[1]!));
  });
}
