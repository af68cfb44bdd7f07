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
 */
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { App, LogLevel, webApi, type Logger as BoltLogger } from '@slack/bolt';
import { UserError } from '../../errors.js';
import type { JobService } from '../../jobs/job-service.js';
import { periodsAt } from '../../jobs/quota-policy.js';
import { type Actor, type JobEvent, type JobRecord, type JobRequest, type SubmitResult } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { MessageEditor } from '../shared/message-editor.js';
import { decodeCustomId } from '../shared/custom-id.js';
import { FinalDeliveries } from '../shared/final-deliveries.js';
import { downloadClip } from '../shared/download-clip.js';
import { fitToLimit, UploadTooLargeError } from '../shared/fit-upload.js';
import { JobEventFeed } from '../shared/job-event-feed.js';
import {
  adminStatsText,
  adminUsageText,
  AUDIT_PAGE_SIZE,
  auditText,
  cancelledText,
  describeJob,
  doneText,
  failedText,
  GENERIC_FAILURE_TEXT,
  helpText,
  historyText,
  mention,
  progressText,
  queuedText,
  quoted,
  queueText,
  refusalText,
  resultNotes,
  usageText,
} from '../shared/texts.js';
import { parseEditCommandText, parseVideoCommandText } from '../shared/video-command.js';
import { ADMIN_USAGE, parseAdminCommandText, type AdminCommand, type AdminPeriod } from './admin-command.js';
import {
  EDIT_MODAL_CALLBACK_ID,
  EDIT_SHORTCUT_CALLBACK_ID,
  editModal,
  INSTRUCTION_ACTION_ID,
  INSTRUCTION_BLOCK_ID,
  jobMessage,
  parseClipMetadata,
  type ClipMetadata,
  type SlackMessage,
} from './blocks.js';
import { ResponseUrl, type ResponseBody, type ResponseUrlState } from './response-url.js';

/** Progress edits of one message are at least this far apart. */
export const PROGRESS_EDIT_INTERVAL_MS = 3000;
/** Slack acks must arrive within 3 s; the job core gets this long before a short ack goes out instead. */
export const ACK_DEADLINE_MS = 2000;
/** Slack accepts files up to 1 GB; the adapter fits videos under this unless told otherwise. */
export const SLACK_UPLOAD_LIMIT_BYTES = 1024 * 1024 * 1024;
/** Slack's own file hosts: clips are downloaded only from these (over https), or the configured API origin. */
export const SLACK_FILE_HOSTS: readonly string[] = ['files.slack.com'];
/** The hint for a reply in a thread that holds no clip. */
export const NO_CLIP_HINT = 'To edit a video, reply in the thread of a message that has the video, e.g. "make it snowy". I found no video here.';
/** Retries of Web API calls: short, so a dead call fails while the user still waits (429s are waited out first). */
const DEFAULT_RETRY_CONFIG: webApi.RetryOptions = { retries: 4, factor: 2, minTimeout: 500, maxTimeout: 4000, randomize: true };
/** How many event ids / hinted threads are remembered in memory (the job keys live in SQLite). */
const MEMORY_LIMIT = 5000;
/** Web API errors that mean the bot cannot post in a channel. */
const NOT_IN_CHANNEL = new Set(['not_in_channel', 'channel_not_found', 'is_archived', 'restricted_action']);

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
  /** How long a slash command waits for the job core before acking without the queued text (default 2 s). */
  ackDeadlineMs?: number;
  /** Retries of failed Web API calls (default: 4 quick ones). */
  retryConfig?: webApi.RetryOptions;
  /** Clock for response_url lifetimes (tests move it). */
  now?: () => number;
}

/** What the adapter stores with each job (`messageRefs.slack`), enough to follow it after a restart. */
interface SlackRefs {
  channelId: string;
  teamId: string | null;
  userId: string;
  /** Edits: the thread the status and the result go into. */
  threadTs?: string;
  /** The job's public message, once posted. */
  statusTs?: string;
  responseUrl?: ResponseUrlState;
  /** Edits: the clip, so that Re-roll can fetch it again. */
  source?: ClipFile;
  /** The uploaded result (files.completeUploadExternal gives no message ts). */
  fileId?: string;
}

/** A video file on Slack. */
interface ClipFile {
  id: string;
  name: string;
  url: string;
  size?: number;
}

interface Followed {
  jobId: number;
  refs: SlackRefs;
  editor: MessageEditor;
  /** Progress edits are skipped until then (a 429's Retry-After). */
  rateLimitedUntil: number;
  /** chat.postMessage said the bot is not in the channel. */
  cannotPost: boolean;
}

/** The parts of a slash command payload the adapter reads. */
interface SlashCommand {
  command: string;
  text: string;
  user_id: string;
  user_name?: string;
  channel_id: string;
  team_id?: string;
  trigger_id: string;
  response_url: string;
}

type Ack = (response?: { response_type: 'ephemeral'; text: string; blocks?: unknown[] }) => Promise<void>;

export class SlackAdapter {
  readonly app: App;
  readonly #options: SlackAdapterOptions;
  readonly #logger: Logger;
  readonly #now: () => number;
  /** Posts progress edits without waiting out a 429 (it rejects at once; the edit is skipped). */
  readonly #progressClient: webApi.WebClient;
  readonly #followed = new Map<number, Followed>();
  readonly #finalDeliveries = new FinalDeliveries();
  readonly #responseUrls = new Map<string, ResponseUrl>();
  /** Event ids being handled or handled in this process (a retry arriving while the first is still downloading its clip); jobs themselves are deduplicated in SQLite. */
  readonly #seenEvents = new Set<string>();
  /** Slash-command submits by trigger id, so that a redelivery shares the first one's outcome. */
  readonly #recentSubmits = new Map<string, Promise<Submitted>>();
  #botUserId: string | undefined;
  /** The HTTP receiver's port once started (HTTP mode), for tests and logs. */
  port: number | undefined;
  /** Job events, held until the app is connected (recovery notices at JobService.start()). */
  #events: JobEventFeed;

  /**
   * Subscribes to job events at once, so recovery notices emitted by `JobService.start()` are
   * handled once the app is connected.
   */
  constructor(options: SlackAdapterOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ platform: 'slack' });
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
      logger: boltLogger(this.#logger),
      clientOptions,
      ...(mode === 'socket'
        ? { socketMode: true, appToken: options.appToken! }
        : { signingSecret: options.signingSecret!, ...(options.port === undefined ? {} : { port: options.port }) }),
    });
    this.#progressClient = new webApi.WebClient(options.botToken, {
      ...clientOptions,
      rejectRateLimitedCalls: true,
      retryConfig: { retries: 0 },
      logger: boltLogger(this.#logger),
    });
    this.#register();
    this.#events = new JobEventFeed(options.jobs, (event) => this.#onJobEvent(event));
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
    await this.app.stop().catch((error: unknown) => this.#logger.warn({ err: error }, 'error while stopping the Slack app'));
  }

  // --- Listeners --------------------------------------------------------------------------------

  #register(): void {
    const app = this.app;
    app.command('/video', async ({ command, ack }) => this.#guard('/video', () => this.#onVideo(asSlashCommand(command), ack as Ack)));
    app.command('/reelbot', async ({ command, ack }) => this.#guard('/reelbot', () => this.#onReelbot(asSlashCommand(command), ack as Ack)));
    app.command('/reelbot-admin', async ({ command, ack }) => this.#guard('/reelbot-admin', () => this.#onAdmin(asSlashCommand(command), ack as Ack)));
    app.action(/^v1:/, async ({ ack, body }) => {
      await ack();
      await this.#guard('button', () => this.#onButton(body as unknown as Record<string, unknown>));
    });
    app.shortcut(EDIT_SHORTCUT_CALLBACK_ID, async ({ ack, body }) => {
      await ack();
      await this.#guard('shortcut', () => this.#onEditShortcut(body as unknown as Record<string, unknown>));
    });
    app.view(EDIT_MODAL_CALLBACK_ID, async ({ ack, body, view }) =>
      this.#guard('modal', () => this.#onEditModal(body as unknown as Record<string, unknown>, view as unknown as Record<string, unknown>, ack as ModalAck)),
    );
    app.event('message', async ({ event, body }) => this.#guard('message', () => this.#onMessage(event as unknown as Record<string, unknown>, body as unknown as Record<string, unknown>)));
    app.error(async (error) => {
      this.#logger.error({ err: error }, 'slack listener failed');
    });
  }

  /** Runs a listener; anything thrown is logged, never shown to a user as a stack trace. */
  async #guard(what: string, handler: () => Promise<void>): Promise<void> {
    try {
      await handler();
    } catch (error) {
      this.#logger.error({ err: error, listener: what }, 'slack handler failed');
    }
  }

  // --- Slash commands ---------------------------------------------------------------------------

  async #onVideo(command: SlashCommand, ack: Ack): Promise<void> {
    const text = command.text.trim();
    const word = text.toLowerCase();
    if (word === '' || word === 'help' || word === '--help') return ack(ephemeral(helpText('slack')));
    if (word === 'queue' || word === 'usage' || word === 'history') return this.#onReelbot({ ...command, text: word }, ack);
    const parsed = parseVideoCommandText(text);
    if (parsed.type === 'help') return ack(ephemeral(helpText('slack')));
    if (parsed.type === 'error') return ack(ephemeral(refusalText(parsed.error)));
    const { command: video } = parsed;
    const responseUrl = this.#responseUrl(command.response_url);
    const refs: SlackRefs = {
      channelId: command.channel_id,
      teamId: command.team_id ?? null,
      userId: command.user_id,
      responseUrl: responseUrl.state(),
    };
    const request: JobRequest = {
      actor: this.#actor(command.user_id, command.user_name),
      kind: video.kind,
      params: video.params,
      ...(video.seed === undefined ? {} : { seed: video.seed }),
      eventId: `command:${command.trigger_id}`,
      ...(command.team_id === undefined ? {} : { groupId: command.team_id }),
      channelId: command.channel_id,
      messageRefs: { slack: refs },
    };
    await this.#submitWithAck(request, refs, ack, responseUrl);
  }

  /**
   * Submits and acks with the outcome when the job core answers before the ack deadline;
   * otherwise acks with a short text first and sends the outcome through the response_url.
   */
  async #submitWithAck(request: JobRequest, refs: SlackRefs, ack: Ack, responseUrl: ResponseUrl): Promise<void> {
    const key = request.eventId ?? '';
    const earlier = this.#recentSubmits.get(key);
    if (earlier !== undefined) {
      // A redelivery while this process still remembers the first: answer from it (the job core
      // would say the same, from SQLite, a little later).
      const first = await earlier;
      const job = first.submitted?.job;
      await ack(ephemeral(job === undefined ? first.text : `This request already made job #${job.id}; it is ${this.#options.jobs.status(job.id)?.job.state ?? job.state}.`));
      return;
    }
    const outcome = this.#submit(request, refs);
    if (key !== '') {
      if (this.#recentSubmits.size >= MEMORY_LIMIT) this.#recentSubmits.delete(this.#recentSubmits.keys().next().value!);
      this.#recentSubmits.set(key, outcome);
    }
    const timer = delay(this.#options.ackDeadlineMs ?? ACK_DEADLINE_MS);
    const first = await Promise.race([outcome.then((value) => ({ value })), timer.promise.then(() => undefined)]);
    timer.cancel();
    if (first !== undefined) {
      const { text, submitted } = first.value;
      // A new job's notice carries its Cancel button (the public message comes when it starts).
      await ack(first.value.created !== true || submitted === undefined ? ephemeral(text) : { ...ephemeral(text), blocks: jobMessage(text, submitted.job.id, { buttons: 'cancel' }).blocks });
      return;
    }
    await ack(ephemeral('Working on it…'));
    const late = await outcome;
    // A new job keeps the response_url's use count in its refs (a duplicate's refs are not ours to change).
    await this.#notify(refs, responseUrl, late.text, late.created === true ? late.submitted?.job.id : undefined);
  }

  /**
   * Submits a job and says what to tell its user. A new job (`created`) is followed at once, so
   * none of its events is missed; its public message is posted when it starts, so a long queue
   * does not flood the channel.
   */
  async #submit(request: JobRequest, refs: SlackRefs, onRefused?: () => Promise<void>): Promise<Submitted> {
    let submitted: SubmitResult;
    try {
      submitted = await this.#options.jobs.submit(request);
    } catch (error) {
      await onRefused?.();
      if (error instanceof UserError) return { text: refusalText(error) };
      this.#logger.error({ err: error }, 'submit failed');
      return { text: GENERIC_FAILURE_TEXT };
    }
    const { job } = submitted;
    if (submitted.duplicate) {
      await onRefused?.();
      this.#logger.info({ jobId: job.id, eventId: request.eventId }, 'redelivered request; the job exists');
      return { text: `This request already made job #${job.id}; it is ${job.state}.`, submitted };
    }
    const text = queuedText('slack', { jobId: job.id, position: submitted.position, etaMs: submitted.etaMs, quotaLeft: submitted.quotaLeft, prompt: describeJob(job) });
    this.#follow(job.id, refs);
    return { text, submitted, created: true };
  }

  /** `/reelbot usage|history [page]|queue|cancel [job]|help`. */
  async #onReelbot(command: SlashCommand, ack: Ack): Promise<void> {
    const [verb = 'help', arg] = command.text.trim().split(/\s+/);
    const actor = this.#actor(command.user_id, command.user_name);
    const jobs = this.#options.jobs;
    const answer = async (): Promise<string> => {
      switch (verb.toLowerCase()) {
        case 'usage':
          return usageText('slack', jobs.usage(actor));
        case 'history': {
          const page = arg === undefined ? 1 : Number(arg);
          if (!Number.isSafeInteger(page) || page < 1) return `The page must be a whole number from 1 up, got \`${arg ?? ''}\`.`;
          const list = jobs.history(actor, page, HISTORY_PAGE_SIZE);
          const hasMore = list.length === HISTORY_PAGE_SIZE && jobs.history(actor, page + 1, HISTORY_PAGE_SIZE).length > 0;
          return historyText('slack', { jobs: list, page, hasMore });
        }
        case 'queue':
          return queueText('slack', jobs.queue(), { platform: 'slack', groupId: command.team_id ?? null, externalId: command.user_id });
        case 'cancel': {
          const jobId = arg === undefined ? this.#latestActiveJob(actor) : Number(arg.replace(/^#/, ''));
          if (jobId === undefined) return 'You have no queued or running job to cancel.';
          if (!Number.isSafeInteger(jobId) || jobId < 1) return `Give the job number to cancel, like \`/reelbot cancel 12\`; got \`${arg ?? ''}\`.`;
          const { job, outcome } = await jobs.cancel(actor, jobId);
          return outcome === 'cancelled' ? `Job #${job.id} is cancelled.` : `Cancelling job #${job.id}…`;
        }
        case 'help':
          return `${helpText('slack')}\n\`/reelbot usage\` your quota and recent videos · \`/reelbot history [page]\` · \`/reelbot queue\` · \`/reelbot cancel [job]\``;
        default:
          return `Unknown command \`${verb}\`. Try \`/reelbot usage\`, \`/reelbot history\`, \`/reelbot queue\`, \`/reelbot cancel\` or \`/reelbot help\`.`;
      }
    };
    await ack(ephemeral(await this.#answerSafely(answer, { command: command.command })));
  }

  /** `/reelbot-admin …`: parsed here, allowed or refused by the JobService's admin allowlist. */
  async #onAdmin(command: SlashCommand, ack: Ack): Promise<void> {
    const actor = this.#actor(command.user_id, command.user_name);
    const parsed = parseAdminCommandText(command.text);
    // Refuse a non-admin before saying anything about the grammar.
    if (!this.#options.jobs.isAdmin(actor)) return ack(ephemeral('Only the bot admins can use /reelbot-admin.'));
    if (!parsed.ok) return ack(ephemeral(parsed.message));
    await ack(ephemeral(await this.#answerSafely(() => this.#runAdmin(actor, parsed.command), { command: command.command })));
  }

  async #runAdmin(actor: Actor, command: AdminCommand): Promise<string> {
    const jobs = this.#options.jobs;
    const target = (userId: string) => ({ platform: 'slack' as const, externalId: userId });
    switch (command.type) {
      case 'help':
        return ADMIN_USAGE;
      case 'usage': {
        const report = jobs.usageReport(actor, { since: periodStart(command.period, this.#now()), ...(command.userId === undefined ? {} : { target: target(command.userId) }) });
        return adminUsageText('slack', {
          periodLabel: PERIOD_LABELS[command.period],
          ...(command.userId === undefined ? {} : { userExternalId: command.userId }),
          total: report.total,
          topUsers: report.topUsers.map((row) => ({ jobs: row.jobs, gpuSeconds: row.gpuSeconds, externalId: row.user?.externalId ?? null })),
          byGroup: report.byGroup,
        });
      }
      case 'stats':
        return adminStatsText('slack', { periodLabel: PERIOD_LABELS[command.period], ...jobs.stats(actor, periodStart(command.period, this.#now())) });
      case 'quota': {
        const user = await jobs.setQuota(actor, target(command.userId), {
          ...(command.tier === undefined ? {} : { tier: command.tier }),
          ...(command.override === undefined ? {} : { override: command.override }),
        });
        const limits = Object.entries(user.quotaOverride ?? {})
          .map(([key, value]) => `${key} ${value ?? 'tier default'}`)
          .join(', ');
        return `Quota of ${mention(user.externalId)}: tier ${user.tier ?? 'default'}${limits === '' ? '' : `; ${limits}`}.`;
      }
      case 'ban': {
        const user = await jobs.setBanned(actor, target(command.userId), true, command.reason);
        return `${mention(user.externalId)} is banned${command.reason === undefined ? '' : `: ${command.reason}`}. Their queued jobs are cancelled.`;
      }
      case 'unban': {
        const user = await jobs.setBanned(actor, target(command.userId), false);
        return `${mention(user.externalId)} may make videos again.`;
      }
      case 'audit': {
        const entries = jobs.auditLog(actor, { limit: AUDIT_PAGE_SIZE + 1, offset: (command.page - 1) * AUDIT_PAGE_SIZE });
        return auditText('slack', { entries: entries.slice(0, AUDIT_PAGE_SIZE), page: command.page, hasMore: entries.length > AUDIT_PAGE_SIZE });
      }
      case 'queue':
        if (command.action === 'pause') {
          await jobs.pauseQueue(actor);
          return 'The queue is paused: running jobs finish, new ones wait.';
        }
        if (command.action === 'resume') {
          await jobs.resumeQueue(actor);
          return 'The queue is running again.';
        }
        {
          const cleared = await jobs.clearQueue(actor);
          return `Cleared the queue: ${cleared} ${cleared === 1 ? 'job' : 'jobs'} cancelled and refunded.`;
        }
    }
  }

  /** Runs a command's handler; a UserError becomes its message, anything else a generic text. */
  async #answerSafely(handler: () => Promise<string> | string, context: Record<string, unknown>): Promise<string> {
    try {
      return await handler();
    } catch (error) {
      if (error instanceof UserError) return refusalText(error);
      this.#logger.error({ err: error, ...context }, 'command failed');
      return GENERIC_FAILURE_TEXT;
    }
  }

  #latestActiveJob(actor: Actor): number | undefined {
    const pageSize = 50;
    for (let page = 1; ; page++) {
      const list = this.#options.jobs.history(actor, page, pageSize);
      const active = list.find((job) => job.state === 'queued' || job.state === 'running');
      if (active !== undefined) return active.id;
      if (list.length < pageSize) return undefined;
    }
  }

  // --- Buttons ----------------------------------------------------------------------------------

  async #onButton(body: Record<string, unknown>): Promise<void> {
    const user = record(body.user);
    const userId = str(user?.id);
    const actionId = str(record(arrayOf(body.actions)[0])?.action_id);
    const channelId = str(record(body.channel)?.id) ?? str(record(body.container)?.channel_id);
    const triggerId = str(body.trigger_id);
    if (userId === undefined || actionId === undefined || channelId === undefined) return;
    const responseUrl = str(body.response_url);
    const reply = async (text: string) => {
      const url = responseUrl === undefined ? undefined : this.#responseUrl(responseUrl);
      if (url !== undefined && (await url.send({ response_type: 'ephemeral', replace_original: false, text }))) return;
      await this.app.client.chat.postEphemeral({ channel: channelId, user: userId, text }).catch((error: unknown) => this.#logger.warn({ err: error }, 'could not answer a click'));
    };
    const button = decodeCustomId(actionId);
    if (button === null) {
      await reply('This button is from an older version of the bot; please run /video again.');
      return;
    }
    const actor = this.#actor(userId, str(user?.username) ?? str(user?.name));
    if (button.action === 'cancel') {
      await reply(
        await this.#answerSafely(async () => {
          const { job, outcome } = await this.#options.jobs.cancel(actor, button.jobId);
          return outcome === 'cancelled' ? `Job #${job.id} is cancelled.` : `Cancelling job #${job.id}…`;
        }, { button: actionId }),
      );
      return;
    }
    if (button.action !== 'reroll') {
      await reply('This button does not belong to this bot.');
      return;
    }
    const original = this.#options.jobs.status(button.jobId)?.job;
    if (original === undefined) {
      await reply(`There is no job #${button.jobId} any more.`);
      return;
    }
    const originalRefs = parseRefs(original.messageRefs.slack);
    const refs: SlackRefs = {
      channelId,
      teamId: str(record(body.team)?.id) ?? null,
      userId,
      ...(originalRefs?.threadTs === undefined ? {} : { threadTs: originalRefs.threadTs }),
      ...(responseUrl === undefined ? {} : { responseUrl: this.#responseUrl(responseUrl).state() }),
      ...(originalRefs?.source === undefined ? {} : { source: originalRefs.source }),
    };
    let params = original.params;
    let downloaded: string | undefined;
    if (original.kind === 'edit') {
      // The clip of an edit is removed once the job is final: fetch it again from Slack.
      if (originalRefs?.source === undefined) {
        await reply('The clip of that edit is gone; reply in its thread again to edit it anew.');
        return;
      }
      try {
        downloaded = await this.#download(originalRefs.source);
      } catch (error) {
        await reply(error instanceof UserError ? refusalText(error) : GENERIC_FAILURE_TEXT);
        if (!(error instanceof UserError)) this.#logger.warn({ err: error }, 'clip download failed');
        return;
      }
      params = { ...original.params, inputFile: downloaded };
    }
    // No seed: the service draws a new one.
    const outcome = await this.#submit(
      {
        actor,
        kind: original.kind,
        params,
        eventId: `action:${triggerId ?? `${actionId}:${str(record(arrayOf(body.actions)[0])?.action_ts) ?? ''}`}`,
        ...(refs.teamId === null ? {} : { groupId: refs.teamId }),
        channelId,
        messageRefs: { slack: refs },
      },
      refs,
      downloaded === undefined ? undefined : () => rm(downloaded, { force: true }),
    );
    await reply(outcome.text);
  }

  // --- Editing clips: thread replies, the shortcut and its modal --------------------------------

  async #onMessage(event: Record<string, unknown>, body: Record<string, unknown>): Promise<void> {
    const subtype = str(event.subtype);
    if (subtype !== undefined && subtype !== 'file_share' && subtype !== 'thread_broadcast') return;
    // Never react to a bot, ourselves included: no loops.
    if (event.bot_id !== undefined || event.bot_profile !== undefined) return;
    const userId = str(event.user);
    const channelId = str(event.channel);
    const ts = str(event.ts);
    const threadTs = str(event.thread_ts);
    if (userId === undefined || channelId === undefined || ts === undefined || userId === this.#botUserId) return;
    if (threadTs === undefined || threadTs === ts) return; // not a thread reply
    const text = str(event.text) ?? '';
    const mentionTag = this.#botUserId === undefined ? undefined : `<@${this.#botUserId}>`;
    const mentioned = mentionTag !== undefined && text.includes(mentionTag);
    if (!mentioned && !(this.#options.editChannels ?? []).includes(channelId)) return;
    const eventId = str(body.event_id) ?? `${channelId}:${ts}`;
    if (!this.#remember(this.#seenEvents, eventId)) {
      this.#logger.info({ eventId, retry: body.retry_attempt }, 'redelivered event; already handled');
      return;
    }
    const notice = (message: string) =>
      this.app.client.chat
        .postEphemeral({ channel: channelId, user: userId, thread_ts: threadTs, text: message })
        .then(() => undefined)
        .catch((error: unknown) => this.#logger.warn({ err: error }, 'could not post a notice'));

    const clip = videoFileOf(event.files) ?? (await this.#parentClip(channelId, threadTs));
    if (clip === undefined) {
      // One hint per thread, whatever the number of replies or redeliveries.
      if (await this.#options.jobs.claimNotice('slack', `hint:${channelId}:${threadTs}`)) await notice(NO_CLIP_HINT);
      return;
    }
    const instruction = mentionTag === undefined ? text : text.split(mentionTag).join(' ');
    const parsed = parseEditCommandText(instruction.trim());
    if (parsed.type === 'help') return notice(helpText('slack'));
    if (parsed.type === 'error') return notice(refusalText(parsed.error));
    const teamId = str(body.team_id) ?? str(event.team) ?? null;
    const refs: SlackRefs = { channelId, teamId, userId, threadTs, source: clip };
    const outcome = await this.#submitEdit(clip, parsed.command, {
      actor: this.#actor(userId),
      eventId: `event:${eventId}`,
      ...(teamId === null ? {} : { groupId: teamId }),
      refs,
    });
    // The queued text (or the refusal) goes to the user privately, in the thread.
    await notice(outcome.text);
  }

  /** Downloads the clip and submits the edit; the clip is removed again when the job is refused. */
  async #submitEdit(
    clip: ClipFile,
    command: { params: Record<string, unknown>; seed?: number },
    context: { actor: Actor; eventId: string; groupId?: string; refs: SlackRefs },
  ): Promise<Submitted> {
    let file: string;
    try {
      file = await this.#download(clip);
    } catch (error) {
      if (error instanceof UserError) return { text: refusalText(error) };
      this.#logger.warn({ err: error }, 'clip download failed');
      return { text: GENERIC_FAILURE_TEXT };
    }
    return this.#submit(
      {
        actor: context.actor,
        kind: 'edit',
        params: { ...command.params, inputFile: file },
        ...(command.seed === undefined ? {} : { seed: command.seed }),
        eventId: context.eventId,
        ...(context.groupId === undefined ? {} : { groupId: context.groupId }),
        channelId: context.refs.channelId,
        messageRefs: { slack: context.refs },
      },
      context.refs,
      () => rm(file, { force: true }),
    );
  }

  /** The "Edit clip" shortcut: opens the modal at once (the trigger lives 3 s), or says why not. */
  async #onEditShortcut(body: Record<string, unknown>): Promise<void> {
    const message = record(body.message);
    const channelId = str(record(body.channel)?.id);
    const userId = str(record(body.user)?.id);
    const triggerId = str(body.trigger_id);
    if (message === undefined || channelId === undefined || userId === undefined || triggerId === undefined) return;
    const clip = videoFileOf(message.files);
    if (clip === undefined) {
      const text = 'That message has no video to edit. Use "Edit clip" on a message with an MP4, MOV or WebM file.';
      const url = str(body.response_url);
      if (url !== undefined && (await this.#responseUrl(url).send({ response_type: 'ephemeral', text }))) return;
      await this.app.client.chat.postEphemeral({ channel: channelId, user: userId, text }).catch((error: unknown) => this.#logger.warn({ err: error }, 'could not post a notice'));
      return;
    }
    const threadTs = str(message.thread_ts) ?? str(message.ts) ?? '';
    const metadata: ClipMetadata = { channelId, threadTs, file: clip };
    await this.app.client.views.open({ trigger_id: triggerId, view: editModal(metadata, clip.name) as never });
  }

  /** The modal's submission: a bad instruction is shown on the field; otherwise the edit runs in the clip's thread. */
  async #onEditModal(body: Record<string, unknown>, view: Record<string, unknown>, ack: ModalAck): Promise<void> {
    const metadata = parseClipMetadata(view.private_metadata);
    const userId = str(record(body.user)?.id);
    if (metadata === undefined || userId === undefined) {
      await ack();
      return;
    }
    const values = record(record(record(view.state)?.values)?.[INSTRUCTION_BLOCK_ID])?.[INSTRUCTION_ACTION_ID];
    const instruction = str(record(values)?.value) ?? '';
    const parsed = parseEditCommandText(instruction.trim());
    if (parsed.type !== 'command') {
      const message = parsed.type === 'error' ? refusalText(parsed.error) : 'Write what should change, like "make it snowy".';
      await ack({ response_action: 'errors', errors: { [INSTRUCTION_BLOCK_ID]: message.slice(0, 2000) } });
      return;
    }
    await ack();
    const teamId = str(record(body.team)?.id) ?? null;
    const refs: SlackRefs = { channelId: metadata.channelId, teamId, userId, threadTs: metadata.threadTs, source: metadata.file };
    const outcome = await this.#submitEdit(metadata.file, parsed.command, {
      actor: this.#actor(userId, str(record(body.user)?.username) ?? str(record(body.user)?.name)),
      eventId: `view:${str(view.id) ?? ''}:${str(view.hash) ?? ''}`,
      ...(teamId === null ? {} : { groupId: teamId }),
      refs,
    });
    await this.app.client.chat
      .postEphemeral({ channel: metadata.channelId, user: userId, thread_ts: metadata.threadTs, text: outcome.text })
      .catch((error: unknown) => this.#logger.warn({ err: error }, 'could not post a notice'));
  }

  /** The first video file of the thread's parent message, or undefined. */
  async #parentClip(channelId: string, threadTs: string): Promise<ClipFile | undefined> {
    const replies = await this.app.client.conversations.replies({ channel: channelId, ts: threadTs, limit: 1, inclusive: true });
    const parent = (replies.messages ?? []).find((message) => message.ts === threadTs) ?? replies.messages?.[0];
    return videoFileOf((parent as { files?: unknown } | undefined)?.files);
  }

  async #download(clip: ClipFile): Promise<string> {
    const origin = this.#options.apiUrl === undefined ? undefined : new URL(this.#options.apiUrl).origin;
    const downloaded = await downloadClip({
      url: clip.url,
      allowedHosts: SLACK_FILE_HOSTS,
      ...(origin === undefined || origin === 'https://slack.com' ? {} : { extraOrigins: [origin] }),
      ...(clip.size === undefined ? {} : { declaredBytes: clip.size }),
      maxBytes: this.#options.maxInputBytes,
      headers: { Authorization: `Bearer ${this.#options.botToken}` },
      destDir: this.#options.inputDir,
      fileName: clip.name,
      platformName: 'Slack',
    });
    return downloaded.file;
  }

  // --- Job events -------------------------------------------------------------------------------

  #onJobEvent(event: JobEvent): void {
    const { job } = event;
    if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled') void this.#removeInput(job);
    const followed = this.#followed.get(job.id) ?? this.#reattach(event);
    if (followed === undefined) return;
    const jobId = job.id;
    switch (event.type) {
      case 'started':
      case 'progress': {
        const line = event.type === 'progress' ? progressText('slack', { jobId, progress: event.progress }) : `${bold(jobId)} is running…`;
        followed.editor.progress(`${line}\n${whoAndWhat(job, followed.refs)}`);
        return;
      }
      case 'succeeded':
        this.#finish(followed, () => this.#deliver(followed, job, event.result));
        return;
      case 'failed':
        this.#finish(followed, () => this.#showFinal(followed, failedText('slack', { jobId, message: event.message, refunded: event.refunded }), true));
        return;
      case 'cancelled': {
        const text = cancelledText('slack', { jobId, refunded: event.refunded });
        // A job cancelled before it started has no public message: tell its owner only.
        this.#finish(followed, () => (followed.refs.statusTs === undefined ? this.#notify(followed.refs, this.#storedResponseUrl(followed.refs), text, followed.jobId) : this.#showFinal(followed, text, false)));
        return;
      }
      default:
        return;
    }
  }

  /** Follows a job this process did not submit (recovered after a restart) from its stored refs. */
  #reattach(event: JobEvent): Followed | undefined {
    if (event.type === 'queued') return undefined; // a submit in progress follows its own job
    const refs = parseRefs(event.job.messageRefs.slack);
    if (refs === undefined) return undefined;
    this.#logger.info({ jobId: event.job.id, event: event.type }, 'following a job from its stored message refs');
    return this.#follow(event.job.id, refs);
  }

  #finish(followed: Followed, show: () => Promise<void>): void {
    this.#followed.delete(followed.jobId);
    void this.#finalDeliveries.track(
      followed.editor.now(show, { final: true }).catch((error: unknown) => this.#logger.error({ err: error, jobId: followed.jobId }, 'could not post the outcome of a job')),
    );
  }

  /** Uploads the video into the channel (the thread, for edits), then shows the done text on the job's message. */
  async #deliver(followed: Followed, job: JobRecord, result: unknown): Promise<void> {
    const file = typeof result === 'object' && result !== null && typeof (result as { file?: unknown }).file === 'string' ? (result as { file: string }).file : undefined;
    if (file === undefined) {
      await this.#showFinal(followed, failedText('slack', { jobId: job.id, message: 'The video file is missing.', refunded: false }), true);
      return;
    }
    let fitted;
    try {
      fitted = await fitToLimit(file, this.#options.uploadLimitBytes ?? SLACK_UPLOAD_LIMIT_BYTES, {
        ffmpegPath: this.#options.ffmpegPath,
        ffprobePath: this.#options.ffprobePath,
        tempDir: this.#options.tempDir,
      });
    } catch (error) {
      const message = error instanceof UploadTooLargeError ? error.userMessage : 'The video could not be prepared for Slack.';
      if (!(error instanceof UploadTooLargeError)) this.#logger.error({ err: error, jobId: job.id }, 'fitting the upload failed');
      await this.#showFinal(followed, failedText('slack', { jobId: job.id, message, refunded: false }), true);
      return;
    }
    try {
      if (fitted.steps.length > 0) this.#logger.info({ jobId: job.id, steps: fitted.steps }, 'fitted the video to the upload limit');
      const bytes = fitted.bytes || (await stat(fitted.file)).size;
      const fields = result as Record<string, unknown>;
      const text = doneText('slack', {
        jobId: job.id,
        kind: job.kind,
        text: describeJob(job),
        seed: job.seed,
        elapsedMs: (job.finishedAt ?? Date.now()) - (job.startedAt ?? job.queuedAt),
        bytes,
        ...numberField(fields, 'frames'),
        ...numberField(fields, 'width'),
        ...numberField(fields, 'height'),
        ...(fitted.note === undefined ? {} : { note: fitted.note }),
        ...resultNotes(fields),
      });
      const uploaded = await this.#upload(followed, job, fitted.file, `reelbot-${job.id}.${fitted.format}`);
      if (!uploaded.ok) {
        const message = uploaded.notInChannel
          ? 'I cannot post in this channel. Invite me with `/invite @reelbot` and press Re-roll.'
          : 'Slack did not take the upload of the video. Press Re-roll to make it again.';
        await this.#showFinal(followed, failedText('slack', { jobId: job.id, message, refunded: false }), true);
        return;
      }
      this.#storeRefs(followed, { fileId: uploaded.fileId });
      await this.#showFinal(followed, text, true);
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
        const response = await this.app.client.files.uploadV2(
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
  async #showFinal(followed: Followed, text: string, buttons: boolean): Promise<void> {
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
    if (kind === 'progress' && (this.#now() < followed.rateLimitedUntil || followed.cannotPost)) return;
    // The first post is never dropped: only edits of an existing message go through the impatient client.
    const client = kind === 'progress' && refs.statusTs !== undefined ? this.#progressClient : this.app.client;
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
        followed.rateLimitedUntil = this.#now() + retryAfter * 1000;
        this.#logger.info({ jobId: followed.jobId, retryAfter }, 'progress edit rate-limited; skipping edits until Retry-After');
        return;
      }
      const code = slackErrorCode(error);
      if (code !== undefined && NOT_IN_CHANNEL.has(code)) {
        const first = !followed.cannotPost;
        followed.cannotPost = true;
        if (kind === 'progress' && !first) return;
        const hint = first ? '\n_I cannot post in this channel; invite me with `/invite @reelbot` to get the video here._' : '';
        await this.#notify(refs, this.#storedResponseUrl(refs), `${message.text}${hint}`, followed.jobId);
        return;
      }
      throw error;
    }
  }

  #storedResponseUrl(refs: SlackRefs): ResponseUrl | undefined {
    return refs.responseUrl === undefined ? undefined : this.#responseUrl(refs.responseUrl.url, refs.responseUrl);
  }

  /**
   * A private notice to the job's user: the response_url while it lasts, else an ephemeral
   * message. With a job id, the response_url's new use count is stored in the job's refs, so that
   * the 5 uses hold across a restart.
   */
  async #notify(refs: SlackRefs, responseUrl: ResponseUrl | undefined, text: string, jobId?: number): Promise<void> {
    if (responseUrl !== undefined) {
      const usable = responseUrl.usable();
      const sent = await responseUrl.send({ response_type: 'ephemeral', text } satisfies ResponseBody);
      refs.responseUrl = responseUrl.state();
      if (usable && jobId !== undefined) {
        // The job may be followed through another copy of its refs (its first events can come before submit returns).
        const followed = this.#followed.get(jobId);
        const stored = followed === undefined ? refs : (followed.refs = { ...followed.refs, responseUrl: responseUrl.state() });
        void this.#options.jobs
          .setMessageRefs(jobId, { slack: stored })
          .catch((error: unknown) => this.#logger.warn({ err: error, jobId }, 'could not store the response_url use count'));
      }
      if (sent) return;
    }
    await this.app.client.chat
      .postEphemeral({ channel: refs.channelId, user: refs.userId, ...(refs.threadTs === undefined ? {} : { thread_ts: refs.threadTs }), text })
      .catch((error: unknown) => this.#logger.warn({ err: error }, 'could not post a notice'));
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

  // --- Helpers ----------------------------------------------------------------------------------

  #follow(jobId: number, refs: SlackRefs): Followed {
    const existing = this.#followed.get(jobId);
    if (existing !== undefined) return existing;
    const followed: Followed = {
      jobId,
      refs,
      rateLimitedUntil: 0,
      cannotPost: false,
      editor: new MessageEditor({
        intervalMs: this.#options.progressIntervalMs ?? PROGRESS_EDIT_INTERVAL_MS,
        send: (content) => this.#show(followed, jobMessage(content, jobId), 'progress'),
        onError: (error) => this.#logger.warn({ err: error, jobId }, 'progress edit failed'),
      }),
    };
    this.#followed.set(jobId, followed);
    return followed;
  }

  #storeRefs(followed: Followed, change: Partial<SlackRefs>): void {
    followed.refs = { ...followed.refs, ...change };
    void this.#options.jobs
      .setMessageRefs(followed.jobId, { slack: followed.refs })
      .catch((error: unknown) => this.#logger.warn({ err: error, jobId: followed.jobId }, 'could not store the message refs'));
  }

  /** One tracker per response_url, so every path that answers through it shares its 5 uses. */
  #responseUrl(url: string, state?: ResponseUrlState): ResponseUrl {
    let tracker = this.#responseUrls.get(url);
    if (tracker === undefined) {
      tracker = new ResponseUrl(state ?? { url, issuedAt: this.#now(), uses: 0 }, this.#now);
      if (this.#responseUrls.size >= MEMORY_LIMIT) this.#responseUrls.delete(this.#responseUrls.keys().next().value!);
      this.#responseUrls.set(url, tracker);
    }
    return tracker;
  }

  /** Adds a key to a bounded set; false when it was there already. */
  #remember(set: Set<string>, key: string): boolean {
    if (set.has(key)) return false;
    if (set.size >= MEMORY_LIMIT) set.delete(set.values().next().value!);
    set.add(key);
    return true;
  }

  #actor(userId: string, displayName?: string): Actor {
    return {
      platform: 'slack',
      externalId: userId,
      ...(displayName === undefined ? {} : { displayName }),
      ...(this.#options.adminIds?.includes(userId) === true ? { isAdmin: true } : {}),
    };
  }
}

/** What a submit tells the user, and whether it made a new job. */
interface Submitted {
  text: string;
  submitted?: SubmitResult;
  created?: boolean;
}

type ModalAck = (response?: { response_action: 'errors'; errors: Record<string, string> }) => Promise<void>;

const HISTORY_PAGE_SIZE = 10;

const PERIOD_LABELS: Record<AdminPeriod, string> = { today: 'today (UTC)', month: 'this month (UTC)', all: 'all time' };

function periodStart(period: AdminPeriod, now: number): number {
  if (period === 'all') return 0;
  const periods = periodsAt(now);
  return period === 'today' ? periods.dayStart : periods.monthStart;
}

/** The second line of a running job's message: who asked for what. */
function whoAndWhat(job: JobRecord, refs: SlackRefs): string {
  const text = describeJob(job);
  return `_${job.kind === 'edit' ? 'Edit' : 'Video'} for ${mention(refs.userId)}${text === '' ? '' : `: ${quoted('slack', text, 120)}`}_`;
}

function ephemeral(text: string): { response_type: 'ephemeral'; text: string } {
  return { response_type: 'ephemeral', text };
}

function bold(jobId: number): string {
  return `*Job #${jobId}*`;
}

function delay(ms: number): { promise: Promise<void>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

function asSlashCommand(command: Record<string, unknown> | object): SlashCommand {
  const c = command as Record<string, unknown>;
  return {
    command: str(c.command) ?? '',
    text: str(c.text) ?? '',
    user_id: str(c.user_id) ?? '',
    ...(str(c.user_name) === undefined ? {} : { user_name: str(c.user_name)! }),
    channel_id: str(c.channel_id) ?? '',
    ...(str(c.team_id) === undefined ? {} : { team_id: str(c.team_id)! }),
    trigger_id: str(c.trigger_id) ?? '',
    response_url: str(c.response_url) ?? '',
  };
}

const VIDEO_TYPES = new Set(['mp4', 'mov', 'webm', 'mkv', 'm4v', 'gif']);

/** The first video among a message's files, with its private download link. */
export function videoFileOf(files: unknown): ClipFile | undefined {
  for (const entry of arrayOf(files)) {
    const file = record(entry);
    if (file === undefined) continue;
    const mimetype = str(file.mimetype) ?? '';
    const filetype = (str(file.filetype) ?? '').toLowerCase();
    if (!mimetype.startsWith('video/') && !VIDEO_TYPES.has(filetype)) continue;
    const url = str(file.url_private_download) ?? str(file.url_private);
    const id = str(file.id);
    if (url === undefined || id === undefined) continue;
    const size = typeof file.size === 'number' ? file.size : undefined;
    return { id, name: str(file.name) ?? `${id}.${filetype || 'mp4'}`, url, ...(size === undefined ? {} : { size }) };
  }
  return undefined;
}

function parseRefs(value: unknown): SlackRefs | undefined {
  const refs = record(value);
  if (refs === undefined) return undefined;
  const channelId = str(refs.channelId);
  const userId = str(refs.userId);
  if (channelId === undefined || userId === undefined) return undefined;
  const responseUrl = record(refs.responseUrl);
  const source = record(refs.source);
  const url = str(responseUrl?.url);
  return {
    channelId,
    userId,
    teamId: str(refs.teamId) ?? null,
    ...(str(refs.threadTs) === undefined ? {} : { threadTs: str(refs.threadTs)! }),
    ...(str(refs.statusTs) === undefined ? {} : { statusTs: str(refs.statusTs)! }),
    ...(str(refs.fileId) === undefined ? {} : { fileId: str(refs.fileId)! }),
    ...(url === undefined || typeof responseUrl?.issuedAt !== 'number' || typeof responseUrl.uses !== 'number'
      ? {}
      : { responseUrl: { url, issuedAt: responseUrl.issuedAt, uses: responseUrl.uses } }),
    ...(source === undefined ? {} : { source: videoFileOf([{ ...source, mimetype: 'video/mp4', url_private_download: source.url }]) }),
  } as SlackRefs;
}

/** Seconds of a 429's Retry-After, when the error is a rejected rate-limited call. */
function rateLimitSeconds(error: unknown): number | undefined {
  const e = error as { code?: unknown; retryAfter?: unknown };
  return e?.code === webApi.ErrorCode.RateLimitedError && typeof e.retryAfter === 'number' ? e.retryAfter : undefined;
}

/** The `error` of a Web API platform error (`not_in_channel`…). */
function slackErrorCode(error: unknown): string | undefined {
  const e = error as { code?: unknown; data?: { error?: unknown } };
  return e?.code === webApi.ErrorCode.PlatformError && typeof e.data?.error === 'string' ? e.data.error : undefined;
}

function numberField<K extends string>(result: Record<string, unknown>, key: K): Partial<Record<K, number>> {
  const value = result[key];
  return typeof value === 'number' && Number.isFinite(value) ? ({ [key]: value } as Partial<Record<K, number>>) : {};
}

function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function arrayOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Bolt's logger on pino, with anything token-shaped scrubbed from the text. */
function boltLogger(logger: Logger): BoltLogger {
  const child = logger.child({ module: 'bolt' });
  const scrub = (parts: unknown[]) => parts.map((part) => (typeof part === 'string' ? part : part instanceof Error ? part.message : safeJson(part))).join(' ').replace(/\bx(?:ox[a-z]|app)-[A-Za-z0-9-]+/g, '[redacted]');
  let level = LogLevel.INFO;
  return {
    debug: (...msg: unknown[]) => child.debug(scrub(msg)),
    info: (...msg: unknown[]) => child.info(scrub(msg)),
    warn: (...msg: unknown[]) => child.warn(scrub(msg)),
    error: (...msg: unknown[]) => child.error(scrub(msg)),
    setLevel: (next: LogLevel) => {
      level = next;
    },
    getLevel: () => level,
    setName: () => undefined,
  };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}
