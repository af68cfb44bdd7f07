/**
 * What the Slack commands a member uses do: `/video <prompt> [--frames N …]` (acknowledged at once
 * with an ephemeral "queued #n, ETA, quota left", or, when the job core is slow, with a short
 * "working on it" and the queued text through the command's `response_url` later),
 * `/reelbot usage|history|queue|cancel|help`, the Re-roll / Cancel buttons, and the submit that
 * every new job (an edit too) goes through. Redeliveries make no second job: commands and clicks
 * are keyed on their trigger id, and the job service deduplicates those keys in SQLite.
 */
import { readFile, rm } from 'node:fs/promises';
import type { App } from '@slack/bolt';
import { UserError } from '../../errors.js';
import type { JobService } from '../../jobs/job-service.js';
import type { Actor, JobRequest, SubmitResult } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { decodeCustomId } from '../shared/custom-id.js';
import { describeJob, GENERIC_FAILURE_TEXT, helpText, queuedText, queueText, refusalText, usageText } from '../shared/texts.js';
import { answerSafely, cancelAnswer, historyAnswer, historyThumbnails } from '../shared/user-commands.js';
import { parseVideoCommandText } from '../shared/video-command.js';
import { historyMessage, jobMessage, type SlackMessage } from './blocks.js';
import { uploadBotImage } from './bot-files.js';
import type { ChannelAccess } from './channel-access.js';
import type { SlackDelivery } from './delivery.js';
import { downloadSlackClip, type ClipDownloadOptions } from './edits.js';
import { arrayOf, ephemeral, MEMORY_LIMIT, record, slackActor, str, type Ack, type SlashCommand } from './payload.js';
import { parseRefs, type SlackRefs } from './refs.js';
import { answerAfterAck, type ResponseUrl } from './response-url.js';

/**
 * Slack acks must arrive within 3 s, but a slash command should be answered at once: the job core
 * gets this long to admit the job, so that the ack can carry the queued text; when it takes longer
 * (a burst of commands, the first channel check, a foreign lock) a short ack goes out and the
 * queued text follows through the response_url.
 */
export const ACK_DEADLINE_MS = 100;

/** What a submit tells the user, and whether it made a new job. */
export interface Submitted {
  text: string;
  submitted?: SubmitResult;
  created?: boolean;
}

/** Submits a job and follows it; `onRefused` runs when no new job was made (to remove a downloaded clip). */
export type Submit = (request: JobRequest, refs: SlackRefs, onRefused?: () => Promise<void>) => Promise<Submitted>;

export interface SlackCommandsOptions {
  app: App;
  jobs: JobService;
  logger: Logger;
  delivery: SlackDelivery;
  /** Whether the bot may post in a job's channel, asked before the job is admitted. */
  channelAccess: ChannelAccess;
  /** The bot's user id once connected (for the `/invite <@bot>` hint). */
  botUserId: () => string | undefined;
  /** Where a Re-roll of an edit fetches its clip again. */
  clips: ClipDownloadOptions;
  /** How long a slash command waits for the job core before acking without the queued text (default 2 s). */
  ackDeadlineMs?: number;
  adminIds?: readonly string[];
}

export class SlackCommands {
  readonly #options: SlackCommandsOptions;
  readonly #logger: Logger;
  /** Slash-command submits by trigger id, so that a redelivery shares the first one's outcome. */
  readonly #recentSubmits = new Map<string, Promise<Submitted>>();

  constructor(options: SlackCommandsOptions) {
    this.#options = options;
    this.#logger = options.logger;
  }

  async video(command: SlashCommand, ack: Ack): Promise<void> {
    const text = command.text.trim();
    const word = text.toLowerCase();
    if (word === '' || word === 'help' || word === '--help') return ack(ephemeral(helpText('slack')));
    if (word === 'queue' || word === 'usage' || word === 'history') return this.reelbot({ ...command, text: word }, ack);
    const parsed = parseVideoCommandText(text);
    if (parsed.type === 'help') return ack(ephemeral(helpText('slack')));
    if (parsed.type === 'error') return ack(ephemeral(refusalText(parsed.error)));
    const { command: video } = parsed;
    const responseUrl = this.#options.delivery.responseUrl(command.response_url);
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

  /** `/reelbot usage|history [page]|queue|cancel [job]|help`. */
  async reelbot(command: SlashCommand, ack: Ack): Promise<void> {
    const [verb = 'help', arg] = command.text.trim().split(/\s+/);
    const actor = slackActor(command.user_id, command.user_name, this.#options.adminIds, { teamId: command.team_id, channelId: command.channel_id });
    const jobs = this.#options.jobs;
    let acked = false;
    let withThumbnails: SlackMessage | undefined;
    const answer = async (): Promise<string> => {
      switch (verb.toLowerCase()) {
        case 'usage':
          return usageText('slack', jobs.usage(actor));
        case 'history': {
          const page = arg === undefined ? 1 : Number(arg);
          if (!Number.isSafeInteger(page) || page < 1) return `The page must be a whole number from 1 up, got \`${arg ?? ''}\`.`;
          const text = historyAnswer('slack', jobs, actor, page);
          const thumbnails = await historyThumbnails(jobs, actor, page);
          if (thumbnails.length === 0) return text;
          // Uploading the thumbnails may outlast Slack's 3 s: acked first, answered on the response_url.
          await ack();
          acked = true;
          withThumbnails = historyMessage(text, await this.#uploadThumbnails(thumbnails));
          return text;
        }
        case 'queue':
          return queueText('slack', jobs.queue(), { platform: 'slack', groupId: command.team_id ?? null, externalId: command.user_id });
        case 'cancel': {
          const jobId = arg === undefined ? undefined : Number(arg.replace(/^#/, ''));
          if (jobId !== undefined && (!Number.isSafeInteger(jobId) || jobId < 1)) return `Give the job number to cancel, like \`/reelbot cancel 12\`; got \`${arg ?? ''}\`.`;
          // A cancel writes: acked first, answered on the response_url.
          await ack();
          acked = true;
          return cancelAnswer(jobs, actor, jobId);
        }
        case 'help':
          return `${helpText('slack')}\n\`/reelbot usage\` your quota and recent videos · \`/reelbot history [page]\` · \`/reelbot queue\` · \`/reelbot cancel [job]\``;
        default:
          return `Unknown command \`${verb}\`. Try \`/reelbot usage\`, \`/reelbot history\`, \`/reelbot queue\`, \`/reelbot cancel\` or \`/reelbot help\`.`;
      }
    };
    const text = await answerSafely(answer, this.#logger, { command: command.command });
    if (acked) await answerAfterAck(command, withThumbnails ?? text, this.#logger);
    else await ack(ephemeral(text));
  }

  /** Uploads the thumbnails as the bot's own files (shared nowhere); one that fails is left out. */
  async #uploadThumbnails(thumbnails: readonly { jobId: number; file: string }[]): Promise<{ jobId: number; fileId: string }[]> {
    const uploaded: { jobId: number; fileId: string }[] = [];
    for (const { jobId, file } of thumbnails) {
      try {
        uploaded.push({ jobId, fileId: await uploadBotImage(this.#options.app.client, await readFile(file), `job-${jobId}.png`, `reelbot #${jobId}`) });
      } catch (error) {
        this.#logger.warn({ err: error, jobId }, 'could not upload a history thumbnail');
      }
    }
    return uploaded;
  }

  async button(body: Record<string, unknown>): Promise<void> {
    const { app, delivery, jobs } = this.#options;
    const user = record(body.user);
    const userId = str(user?.id);
    const actionId = str(record(arrayOf(body.actions)[0])?.action_id);
    const channelId = str(record(body.channel)?.id) ?? str(record(body.container)?.channel_id);
    const triggerId = str(body.trigger_id);
    if (userId === undefined || actionId === undefined || channelId === undefined) return;
    const responseUrl = str(body.response_url);
    const reply = async (text: string) => {
      const url = responseUrl === undefined ? undefined : delivery.responseUrl(responseUrl);
      if (url !== undefined && (await url.send({ response_type: 'ephemeral', replace_original: false, text }))) return;
      await app.client.chat.postEphemeral({ channel: channelId, user: userId, text }).catch((error: unknown) => this.#logger.warn({ err: error }, 'could not answer a click'));
    };
    const button = decodeCustomId(actionId);
    if (button === null) {
      await reply('This button is from an older version of the bot; please run /video again.');
      return;
    }
    const actor = this.#actor(userId, str(user?.username) ?? str(user?.name));
    if (button.action === 'cancel') {
      await reply(await answerSafely(() => cancelAnswer(jobs, actor, button.jobId), this.#logger, { button: actionId }));
      return;
    }
    if (button.action === 'delete') {
      await reply(await answerSafely(() => this.#deleteResult(actor, button.jobId), this.#logger, { button: actionId }));
      return;
    }
    if (button.action !== 'reroll') {
      await reply('This button does not belong to this bot.');
      return;
    }
    const original = jobs.status(button.jobId)?.job;
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
      ...(responseUrl === undefined ? {} : { responseUrl: delivery.responseUrl(responseUrl).state() }),
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
        downloaded = await downloadSlackClip(originalRefs.source, this.#options.clips);
      } catch (error) {
        await reply(error instanceof UserError ? refusalText(error) : GENERIC_FAILURE_TEXT);
        if (!(error instanceof UserError)) this.#logger.warn({ err: error }, 'clip download failed');
        return;
      }
      params = { ...original.params, inputFile: downloaded };
    }
    // No seed: the service draws a new one.
    const outcome = await this.submit(
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

  /**
   * Submits a job and says what to tell its user. A channel the bot cannot post in is refused
   * first (no job, no charge; the text says how to invite the bot). A new job (`created`) is
   * followed at once, so none of its events is missed; its public message is posted when it
   * starts, so a long queue does not flood the channel.
   */
  async submit(request: JobRequest, refs: SlackRefs, onRefused?: () => Promise<void>): Promise<Submitted> {
    const botUserId = this.#options.botUserId();
    const noAccess = await this.#options.channelAccess.refusal(refs.channelId, botUserId === undefined ? undefined : `<@${botUserId}>`);
    if (noAccess !== undefined) {
      await onRefused?.();
      this.#logger.info({ channelId: refs.channelId, eventId: request.eventId }, 'refused a job in a channel the bot cannot post in');
      return { text: noAccess };
    }
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
    this.#options.delivery.follow(job.id, refs);
    return { text, submitted, created: true };
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
      // would say the same, from SQLite, a little later). While the first is still being admitted
      // the retry gets the short ack: the first delivery's answer follows.
      const first = await withinDeadline(earlier, this.#options.ackDeadlineMs ?? ACK_DEADLINE_MS);
      if (first === undefined) return ack(ephemeral('Working on it…'));
      const job = first.value.submitted?.job;
      await ack(ephemeral(job === undefined ? first.value.text : `This request already made job #${job.id}; it is ${this.#options.jobs.status(job.id)?.job.state ?? job.state}.`));
      return;
    }
    const outcome = this.submit(request, refs);
    if (key !== '') {
      if (this.#recentSubmits.size >= MEMORY_LIMIT) this.#recentSubmits.delete(this.#recentSubmits.keys().next().value!);
      this.#recentSubmits.set(key, outcome);
    }
    const first = await withinDeadline(outcome, this.#options.ackDeadlineMs ?? ACK_DEADLINE_MS);
    if (first !== undefined) {
      const { text, submitted } = first.value;
      // A new job's notice carries its Cancel button (the public message comes when it starts).
      await ack(first.value.created !== true || submitted === undefined ? ephemeral(text) : { ...ephemeral(text), blocks: jobMessage(text, submitted.job.id, { buttons: 'cancel' }).blocks });
      return;
    }
    await ack(ephemeral('Working on it…'));
    const late = await outcome;
    // A new job keeps the response_url's use count in its refs (a duplicate's refs are not ours to change).
    await this.#options.delivery.notify(refs, responseUrl, late.text, late.created === true ? late.submitted?.job.id : undefined);
  }

  /**
   * 🗑 Delete (owner or admin, the job core decides): the stored output first, then the uploaded
   * video (files.delete, which takes its message with it) and the job's own message (chat.delete).
   */
  async #deleteResult(actor: Actor, jobId: number): Promise<string> {
    const job = await this.#options.jobs.deleteResult(actor, jobId);
    const refs = parseRefs(job.messageRefs.slack);
    const { client } = this.#options.app;
    let removed = true;
    const log = (what: string) => (error: unknown) => {
      removed = false;
      this.#logger.warn({ err: error, jobId }, `could not delete ${what} of a deleted result`);
    };
    if (refs?.fileId !== undefined && refs.fileId !== 'unknown') await client.files.delete({ file: refs.fileId }).catch(log('the video file'));
    if (refs?.statusTs !== undefined) await client.chat.delete({ channel: refs.channelId, ts: refs.statusTs }).catch(log('the message'));
    return removed ? `Deleted job #${jobId}'s video and its message.` : `Deleted job #${jobId}'s video; its message could not be removed.`;
  }

  #actor(userId: string, displayName?: string): Actor {
    return slackActor(userId, displayName, this.#options.adminIds);
  }
}

/** `{ value }` when `promise` settles within `ms`, undefined when the time runs out first. */
async function withinDeadline<T>(promise: Promise<T>, ms: number): Promise<{ value: T } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined);
  });
  try {
    return await Promise.race([promise.then((value) => ({ value })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
