/**
 * Clip edits on Slack: a thread reply that mentions the bot (or any reply in a configured edit
 * channel) edits the clip in the reply or in the thread's parent (looked up with
 * conversations.replies), and the result goes into the same thread; the "Edit clip" message
 * shortcut opens a modal for the instruction. Our own and other bots' messages never start
 * anything, and a reply whose thread holds no clip gets one short hint. Clips are downloaded only
 * from Slack's file hosts, with the bot token.
 */
import { rm } from 'node:fs/promises';
import type { App } from '@slack/bolt';
import { UserError } from '../../errors.js';
import type { JobService } from '../../jobs/job-service.js';
import type { Actor } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { downloadClip } from '../shared/download-clip.js';
import { GENERIC_FAILURE_TEXT, helpText, refusalText } from '../shared/texts.js';
import { parseEditCommandText, parseVideoCommandText } from '../shared/video-command.js';
import { editModal, INSTRUCTION_ACTION_ID, INSTRUCTION_BLOCK_ID, parseClipMetadata, type ClipMetadata } from './blocks.js';
import type { Submit, Submitted } from './commands.js';
import type { SlackDelivery } from './delivery.js';
import { record, remember, slackActor, str, type ModalAck } from './payload.js';
import { pictureFileOf, videoFileOf, type ClipFile, type SlackRefs } from './refs.js';

/** Slack's own file hosts: clips are downloaded only from these (over https), or the configured API origin. */
export const SLACK_FILE_HOSTS: readonly string[] = ['files.slack.com'];
/** The hint for a reply in a thread that holds no clip. */
export const NO_CLIP_HINT = 'To edit a video, reply in the thread of a message that has the video, e.g. "make it snowy". I found no video here.';

/** Where clips come from and go. */
export interface ClipDownloadOptions {
  botToken: string;
  /** Web API base of a fake Slack, whose origin clips may also come from. */
  apiUrl?: string;
  maxInputBytes: number;
  inputDir: string;
}

/** Downloads a clip from Slack (with the bot token) into the input folder; returns its path. */
export async function downloadSlackClip(clip: ClipFile, options: ClipDownloadOptions, expect: 'video' | 'picture' = 'video'): Promise<string> {
  const origin = options.apiUrl === undefined ? undefined : new URL(options.apiUrl).origin;
  const downloaded = await downloadClip({
    url: clip.url,
    allowedHosts: SLACK_FILE_HOSTS,
    ...(origin === undefined || origin === 'https://slack.com' ? {} : { extraOrigins: [origin] }),
    ...(clip.size === undefined ? {} : { declaredBytes: clip.size }),
    maxBytes: options.maxInputBytes,
    headers: { Authorization: `Bearer ${options.botToken}` },
    destDir: options.inputDir,
    fileName: clip.name,
    platformName: 'Slack',
    expect,
  });
  return downloaded.file;
}

export interface SlackEditsOptions {
  app: App;
  jobs: JobService;
  logger: Logger;
  delivery: SlackDelivery;
  submit: Submit;
  clips: ClipDownloadOptions;
  /** The bot's own user id (known once connected). */
  botUserId: () => string | undefined;
  /** Channel ids where any thread reply to a clip is an edit (no mention needed). */
  editChannels?: readonly string[];
  adminIds?: readonly string[];
}

export class SlackEdits {
  readonly #options: SlackEditsOptions;
  readonly #logger: Logger;
  /** Event ids being handled or handled in this process (a retry arriving while the first is still downloading its clip); jobs themselves are deduplicated in SQLite. */
  readonly #seenEvents = new Set<string>();

  constructor(options: SlackEditsOptions) {
    this.#options = options;
    this.#logger = options.logger;
  }

  async onMessage(event: Record<string, unknown>, body: Record<string, unknown>): Promise<void> {
    const subtype = str(event.subtype);
    if (subtype !== undefined && subtype !== 'file_share' && subtype !== 'thread_broadcast') return;
    // Never react to a bot, ourselves included: no loops.
    if (event.bot_id !== undefined || event.bot_profile !== undefined) return;
    const botUserId = this.#options.botUserId();
    const userId = str(event.user);
    const channelId = str(event.channel);
    const ts = str(event.ts);
    const threadTs = str(event.thread_ts);
    if (userId === undefined || channelId === undefined || ts === undefined || userId === botUserId) return;
    if (threadTs === undefined || threadTs === ts) return; // not a thread reply
    const text = str(event.text) ?? '';
    const mentionTag = botUserId === undefined ? undefined : `<@${botUserId}>`;
    const mentioned = mentionTag !== undefined && text.includes(mentionTag);
    if (!mentioned && !(this.#options.editChannels ?? []).includes(channelId)) return;
    const eventId = str(body.event_id) ?? `${channelId}:${ts}`;
    if (!remember(this.#seenEvents, eventId)) {
      this.#logger.info({ eventId, retry: body.retry_attempt }, 'redelivered event; already handled');
      return;
    }
    const notice = (message: string) =>
      this.#options.app.client.chat
        .postEphemeral({ channel: channelId, user: userId, thread_ts: threadTs, text: message })
        .then(() => undefined)
        .catch((error: unknown) => this.#logger.warn({ err: error }, 'could not post a notice'));

    const parentFiles = videoFileOf(event.files) === undefined ? await this.#parentFiles(channelId, threadTs) : undefined;
    const clip = videoFileOf(event.files) ?? videoFileOf(parentFiles);
    const picture = clip === undefined ? (pictureFileOf(event.files) ?? pictureFileOf(parentFiles)) : undefined;
    if (clip === undefined && picture !== undefined) {
      // A reply to a picture animates it: the reply is the prompt, with the /video options.
      const prompt = (mentionTag === undefined ? text : text.split(mentionTag).join(' ')).trim();
      const parsedVideo = parseVideoCommandText(prompt);
      if (parsedVideo.type === 'help') return notice(helpText('slack'));
      if (parsedVideo.type === 'error') return notice(refusalText(parsedVideo.error));
      const teamId = str(body.team_id) ?? str(event.team) ?? null;
      const outcome = await this.#submitPicture(picture, parsedVideo.command, {
        actor: this.#actor(userId),
        eventId: `event:${eventId}`,
        ...(teamId === null ? {} : { groupId: teamId }),
        refs: { channelId, teamId, userId, threadTs },
      });
      await notice(outcome.text);
      return;
    }
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

  /** The "Edit clip" shortcut: opens the modal at once (the trigger lives 3 s), or says why not. */
  async onEditShortcut(body: Record<string, unknown>): Promise<void> {
    const message = record(body.message);
    const channelId = str(record(body.channel)?.id);
    const userId = str(record(body.user)?.id);
    const triggerId = str(body.trigger_id);
    if (message === undefined || channelId === undefined || userId === undefined || triggerId === undefined) return;
    const client = this.#options.app.client;
    const clip = videoFileOf(message.files);
    if (clip === undefined) {
      const text = 'That message has no video to edit. Use "Edit clip" on a message with an MP4, MOV or WebM file.';
      const url = str(body.response_url);
      if (url !== undefined && (await this.#options.delivery.responseUrl(url).send({ response_type: 'ephemeral', text }))) return;
      await client.chat.postEphemeral({ channel: channelId, user: userId, text }).catch((error: unknown) => this.#logger.warn({ err: error }, 'could not post a notice'));
      return;
    }
    const threadTs = str(message.thread_ts) ?? str(message.ts) ?? '';
    const metadata: ClipMetadata = { channelId, threadTs, file: clip };
    await client.views.open({ trigger_id: triggerId, view: editModal(metadata, clip.name) as never });
  }

  /** The modal's submission: a bad instruction is shown on the field; otherwise the edit runs in the clip's thread. */
  async onEditModal(body: Record<string, unknown>, view: Record<string, unknown>, ack: ModalAck): Promise<void> {
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
    await this.#options.app.client.chat
      .postEphemeral({ channel: metadata.channelId, user: userId, thread_ts: metadata.threadTs, text: outcome.text })
      .catch((error: unknown) => this.#logger.warn({ err: error }, 'could not post a notice'));
  }

  /** Downloads the clip and submits the edit; the clip is removed again when the job is refused. */
  async #submitEdit(
    clip: ClipFile,
    command: { params: Record<string, unknown>; seed?: number },
    context: { actor: Actor; eventId: string; groupId?: string; refs: SlackRefs },
  ): Promise<Submitted> {
    let file: string;
    try {
      file = await downloadSlackClip(clip, this.#options.clips);
    } catch (error) {
      if (error instanceof UserError) return { text: refusalText(error) };
      this.#logger.warn({ err: error }, 'clip download failed');
      return { text: GENERIC_FAILURE_TEXT };
    }
    return this.#options.submit(
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

  /** The files of the thread's parent message. */
  async #parentFiles(channelId: string, threadTs: string): Promise<unknown> {
    const replies = await this.#options.app.client.conversations.replies({ channel: channelId, ts: threadTs, limit: 1, inclusive: true });
    const parent = (replies.messages ?? []).find((message) => message.ts === threadTs) ?? replies.messages?.[0];
    return (parent as { files?: unknown } | undefined)?.files;
  }

  /** Downloads a picture (sniffed as one as it arrives) and submits a text-to-video job that animates it. */
  async #submitPicture(picture: ClipFile, command: { params: Record<string, unknown>; seed?: number }, context: { actor: Actor; eventId: string; groupId?: string; refs: SlackRefs }): Promise<Submitted> {
    if (command.params.aspect !== undefined) return { text: 'A picture keeps its own shape: leave out --aspect when animating one.' };
    let file: string;
    try {
      file = await downloadSlackClip(picture, this.#options.clips, 'picture');
    } catch (error) {
      if (error instanceof UserError) return { text: refusalText(error) };
      this.#logger.warn({ err: error }, 'picture download failed');
      return { text: GENERIC_FAILURE_TEXT };
    }
    return this.#options.submit(
      {
        actor: context.actor,
        kind: 'text2video',
        params: { ...command.params, image: file },
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

  #actor(userId: string, displayName?: string): Actor {
    return slackActor(userId, displayName, this.#options.adminIds);
  }
}
