/**
 * The Slack adapter: a Bolt App (Socket Mode by default, or the HTTP receiver with signing-secret
 * checks) that turns Slack input into JobService calls and follows each job's events.
 *
 * - `/video <prompt> [--frames N …]` is acknowledged at once with an ephemeral "queued #n, ETA,
 *   quota left" (or, when the job core is slow, with a short "working on it" and the queued text
 *   through the command's `response_url` later). The job's public message in the channel is posted
 *   with the bot token and updated at most every 3 s (coalesced; a 429 skips progress edits until
 *   its Retry-After has passed and never holds up the job); the finished MP4 is uploaded into the
 *   channel with files.uploadV2, and the message keeps its Re-roll / Cancel buttons.
 * - A thread reply that mentions the bot (or any reply in a configured edit channel) edits the
 *   clip in the reply or in the thread's parent (looked up with conversations.replies); the result
 *   goes into the same thread. The "Edit clip" message shortcut opens a modal for the instruction.
 * - `/reelbot usage|history|queue|cancel|help` and `/reelbot-admin …` (the job core checks the
 *   admin allowlist and writes the audit log).
 *
 * Redeliveries make no second job: slash commands, clicks and modal submissions are keyed on
 * their trigger / view id, events on their `event_id`, and the JobService deduplicates those keys
 * in SQLite. A `response_url` is used at most 5 times and within 30 minutes; after that the bot
 * token posts instead. Our own and other bots' messages never start anything, and a reply whose
 * thread holds no clip gets one short hint. After a restart, jobs are followed again from the refs
 * stored with them (`messageRefs.slack`).
 *
 * This file is the app wiring and the routing of Slack input to:
 * - commands.ts: `/video`, `/reelbot …`, the buttons, and the submit every new job goes through;
 * - admin.ts: `/reelbot-admin …`, run by the shared admin command runner;
 * - edits.ts: thread replies, the "Edit clip" shortcut and its modal;
 * - delivery.ts: following a job (the shared job follower): the public message, the upload, notices.
 */
import { App, webApi } from '@slack/bolt';
import type { JobService } from '../../jobs/job-service.js';
import type { Logger } from '../../log.js';
import type { DashboardLinks, PlatformObserver } from '../shared/platform-observer.js';
import { onAdminCommand } from './admin.js';
import { EDIT_MODAL_CALLBACK_ID, EDIT_SHORTCUT_CALLBACK_ID } from './blocks.js';
import { boltLogger } from './bolt-logger.js';
import { ChannelAccess } from './channel-access.js';
import { SlackCommands } from './commands.js';
import { SlackDelivery } from './delivery.js';
import { SlackEdits, type ClipDownloadOptions } from './edits.js';
import { asSlashCommand, type Ack, type ModalAck } from './payload.js';

export { ACK_DEADLINE_MS } from './commands.js';
export { PROGRESS_EDIT_INTERVAL_MS, SLACK_UPLOAD_LIMIT_BYTES } from './delivery.js';
export { NO_CLIP_HINT, SLACK_FILE_HOSTS } from './edits.js';
export { videoFileOf } from './refs.js';

/** Retries of Web API calls: short, so a dead call fails while the user still waits (429s are waited out first). */
const DEFAULT_RETRY_CONFIG: webApi.RetryOptions = { retries: 4, factor: 2, minTimeout: 500, maxTimeout: 4000, randomize: true };

export interface SlackAdapterOptions {
  /** `xoxb-…`. */
  botToken: string;
  /** `xapp-…` with `connections:write`; Socket Mode. */
  appToken?: string;
  /** HTTP mode: checks `X-Slack-Signature` on every request. */
  signingSecret?: string;
  /** Default `socket`. */
  mode?: 'socket' | 'http';
  /** HTTP mode: port (0 = any free one) and host to listen on. */
  port?: number;
  host?: string;
  /** Web API base, e.g. `https://slack.com/api/` or a fake's `http://127.0.0.1:PORT/api/`. */
  apiUrl?: string;
  jobs: JobService;
  logger: Logger;
  ffmpegPath: string;
  ffprobePath: string;
  /** Existing folder for re-encoded uploads. */
  tempDir: string;
  /** Folder for downloaded clips; each is removed once its job is final (or refused). */
  inputDir: string;
  /** Largest clip downloaded for an edit. */
  maxInputBytes: number;
  /** Slack user ids treated as admins; the JobService allowlist still decides. */
  adminIds?: readonly string[];
  /** Channel ids where any thread reply to a clip is an edit (no mention needed). */
  editChannels?: readonly string[];
  /** Shortest time between two progress edits of one message (default 3 s). */
  progressIntervalMs?: number;
  /** Upload limit the video is fitted to (default 1 GiB). */
  uploadLimitBytes?: number;
  /** How long a slash command waits for the job core before acking without the queued text (default 100 ms). */
  ackDeadlineMs?: number;
  /** Retries of failed Web API calls (default: 4 quick ones). */
  retryConfig?: webApi.RetryOptions;
  /** Clock for response_url lifetimes (tests move it). */
  now?: () => number;
  /** Told about the Socket Mode connection, ack times and 429s (serve's metrics and readiness). */
  observer?: PlatformObserver;
  /** Sign-in links for `/reelbot-admin dashboard`; without them the command says the dashboard is off. */
  dashboardLinks?: DashboardLinks;
}

export class SlackAdapter {
  readonly app: App;
  readonly #options: SlackAdapterOptions;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #delivery: SlackDelivery;
  readonly #commands: SlackCommands;
  readonly #edits: SlackEdits;
  #botUserId: string | undefined;
  /** The HTTP receiver's port once started (HTTP mode), for tests and logs. */
  port: number | undefined;

  /**
   * Subscribes to job events at once, so recovery notices emitted by `JobService.start()` are
   * handled once the app is connected.
   */
  constructor(options: SlackAdapterOptions) {
    this.#options = options;
    const logger = options.logger.child({ platform: 'slack' });
    this.#logger = logger;
    this.#now = options.now ?? Date.now;
    const mode = options.mode ?? 'socket';
    if (mode === 'socket' && !options.appToken) throw new TypeError('Slack Socket Mode needs the app-level token (REELBOT_SLACK_APP_TOKEN, xapp-…).');
    if (mode === 'http' && !options.signingSecret) throw new TypeError('Slack HTTP mode needs the signing secret (REELBOT_SLACK_SIGNING_SECRET).');
    const clientOptions: webApi.WebClientOptions = {
      ...(options.apiUrl === undefined ? {} : { slackApiUrl: options.apiUrl }),
      retryConfig: options.retryConfig ?? DEFAULT_RETRY_CONFIG,
      // Uploads of large videos take a while; a hung call still ends.
      timeout: 120_000,
    };
    this.app = new App({
      token: options.botToken,
      logger: boltLogger(logger),
      clientOptions,
      // No listener reads Bolt's conversation context; its store costs every envelope a lookup.
      convoStore: false,
      ...(mode === 'socket'
        ? { socketMode: true, appToken: options.appToken! }
        : { signingSecret: options.signingSecret!, ...(options.port === undefined ? {} : { port: options.port }) }),
    });
    const progressClient = new webApi.WebClient(options.botToken, {
      ...clientOptions,
      rejectRateLimitedCalls: true,
      retryConfig: { retries: 0 },
      logger: boltLogger(logger),
    });
    const app = this.app;
    const { jobs, adminIds } = options;
    const admins = adminIds === undefined ? {} : { adminIds };
    this.#delivery = new SlackDelivery({
      app,
      progressClient,
      jobs,
      logger,
      now: this.#now,
      fit: { ffmpegPath: options.ffmpegPath, ffprobePath: options.ffprobePath, tempDir: options.tempDir },
      inputDir: options.inputDir,
      ...(options.uploadLimitBytes === undefined ? {} : { uploadLimitBytes: options.uploadLimitBytes }),
      ...(options.progressIntervalMs === undefined ? {} : { progressIntervalMs: options.progressIntervalMs }),
    });
    const clips: ClipDownloadOptions = {
      botToken: options.botToken,
      ...(options.apiUrl === undefined ? {} : { apiUrl: options.apiUrl }),
      maxInputBytes: options.maxInputBytes,
      inputDir: options.inputDir,
    };
    const channelAccess = new ChannelAccess({ client: app.client, logger, now: this.#now });
    this.#commands = new SlackCommands({ app, jobs, logger, delivery: this.#delivery, channelAccess, botUserId: () => this.#botUserId, clips, ...(options.ackDeadlineMs === undefined ? {} : { ackDeadlineMs: options.ackDeadlineMs }), ...admins });
    this.#edits = new SlackEdits({
      app,
      jobs,
      logger,
      delivery: this.#delivery,
      submit: (request, refs, onRefused) => this.#commands.submit(request, refs, onRefused),
      clips,
      botUserId: () => this.#botUserId,
      ...(options.editChannels === undefined ? {} : { editChannels: options.editChannels }),
      ...admins,
    });
    if (options.observer) this.#observe(options.observer, [this.app.client, progressClient]);
    this.#register();
  }

  /** Connects (Socket Mode) or listens (HTTP mode); resolves once Slack input can arrive. */
  async start(): Promise<void> {
    const auth = await this.app.client.auth.test();
    this.#botUserId = typeof auth.user_id === 'string' ? auth.user_id : undefined;
    if ((this.#options.mode ?? 'socket') === 'http') {
      const server = (await this.app.start({ port: this.#options.port ?? 3000, host: this.#options.host ?? '0.0.0.0' })) as import('node:http').Server;
      const address = server.address();
      this.port = typeof address === 'object' && address !== null ? address.port : undefined;
    } else {
      await this.app.start();
    }
    this.#logger.info({ botUserId: this.#botUserId, mode: this.#options.mode ?? 'socket', port: this.port }, 'slack adapter ready');
    if ((this.#options.mode ?? 'socket') === 'http') this.#options.observer?.connection(true);
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
    await this.app.stop().catch((error: unknown) => this.#logger.warn({ err: error }, 'error while stopping the Slack app'));
  }

  #register(): void {
    const app = this.app;
    const commands = this.#commands;
    const edits = this.#edits;
    const admin = {
      jobs: this.#options.jobs,
      logger: this.#logger,
      now: this.#now,
      ...(this.#options.adminIds === undefined ? {} : { adminIds: this.#options.adminIds }),
      ...(this.#options.dashboardLinks === undefined ? {} : { dashboardLinks: this.#options.dashboardLinks }),
    };
    const timed = <A extends (...args: never[]) => Promise<unknown>>(ack: A): A => this.#timedAck(ack);
    app.command('/video', async ({ command, ack }) => this.#guard('/video', () => commands.video(asSlashCommand(command), timed(ack as Ack))));
    app.command('/reelbot', async ({ command, ack }) => this.#guard('/reelbot', () => commands.reelbot(asSlashCommand(command), timed(ack as Ack))));
    app.command('/reelbot-admin', async ({ command, ack }) => this.#guard('/reelbot-admin', () => onAdminCommand(asSlashCommand(command), timed(ack as Ack), admin)));
    app.action(/^v1:/, async ({ ack, body }) => {
      await timed(ack)();
      await this.#guard('button', () => commands.button(body as unknown as Record<string, unknown>));
    });
    app.shortcut(EDIT_SHORTCUT_CALLBACK_ID, async ({ ack, body }) => {
      await timed(ack)();
      await this.#guard('shortcut', () => edits.onEditShortcut(body as unknown as Record<string, unknown>));
    });
    app.view(EDIT_MODAL_CALLBACK_ID, async ({ ack, body, view }) =>
      this.#guard('modal', () => edits.onEditModal(body as unknown as Record<string, unknown>, view as unknown as Record<string, unknown>, timed(ack as ModalAck))),
    );
    app.event('message', async ({ event, body }) => this.#guard('message', () => edits.onMessage(event as unknown as Record<string, unknown>, body as unknown as Record<string, unknown>)));
    app.error(async (error) => {
      this.#logger.error({ err: error }, 'slack listener failed');
    });
  }

  /** The ack, telling the observer how long after the listener started it was sent. */
  #timedAck<A extends (...args: never[]) => Promise<unknown>>(ack: A): A {
    const observer = this.#options.observer;
    if (!observer) return ack;
    const started = Date.now();
    return (async (...args: never[]) => {
      const result = await ack(...args);
      observer.acked(Date.now() - started);
      return result;
    }) as A;
  }

  /**
   * Reports the Socket Mode connection (its client's connected / reconnecting / disconnected
   * events; an HTTP receiver is up once it listens) and each 429 of the Web API clients.
   */
  #observe(observer: PlatformObserver, clients: webApi.WebClient[]): void {
    for (const client of clients) client.on(webApi.WebClientEvent.RATE_LIMITED, () => observer.rateLimited());
    // Bolt keeps its receiver to itself; a Socket Mode receiver's `client` is a public SocketModeClient.
    const socket = (this.app as unknown as { receiver?: { client?: import('node:events').EventEmitter } }).receiver?.client;
    if (!socket) return;
    let lost = false;
    socket.on('connected', () => {
      if (lost) observer.reconnected();
      lost = false;
      observer.connection(true);
    });
    const down = () => {
      lost = true;
      observer.connection(false);
    };
    socket.on('reconnecting', down);
    socket.on('disconnected', down);
  }

  /** Runs a listener; anything thrown is logged, never shown to a user as a stack trace. */
  async #guard(what: string, handler: () => Promise<void>): Promise<void> {
    try {
      await handler();
    } catch (error) {
      this.#logger.error({ err: error, listener: what }, 'slack handler failed');
    }
  }
}
