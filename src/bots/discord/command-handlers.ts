/**
 * What the Discord commands a member uses do: `/video` and the Re-roll / Cancel / Edit buttons
 * under a job's message, `/queue`, `/usage`, `/history` and `/cancel`, and the submit that every
 * new job (an edit too) goes through: the job core admits it, the reply shows its place in the
 * queue, and {@link DiscordDelivery} follows it from there.
 */
import { rm } from 'node:fs/promises';
import { MessageFlags, Routes, type Attachment, type ButtonInteraction, type ChatInputCommandInteraction } from 'discord.js';
import { UserError } from '../../errors.js';
import type { JobService } from '../../jobs/job-service.js';
import type { JobRequest, SubmitResult } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { decodeCustomId, encodeCustomId } from '../shared/custom-id.js';
import { describeJob, GENERIC_FAILURE_TEXT, queuedText, queueText, refusalText, usageText } from '../shared/texts.js';
import { cancelAnswer, historyAnswer, historyThumbnails } from '../shared/user-commands.js';
import { videoCommandFromOptions } from '../shared/video-command.js';
import { instructionModal, isFile } from './clips.js';
import { interactionRefs, type DiscordDelivery } from './delivery.js';
import { actorOf, defer, jobButtons, refuse, safeEdit, type Replyable } from './replies.js';

export interface DiscordCommandsOptions {
  jobs: JobService;
  logger: Logger;
  delivery: DiscordDelivery;
  adminIds?: readonly string[];
  /** Fetches a `/video image:` attachment to a local file; undefined when refused (already answered). */
  downloadPicture(interaction: Replyable, attachment: Attachment): Promise<string | undefined>;
}

export class DiscordCommands {
  readonly #options: DiscordCommandsOptions;
  readonly #logger: Logger;

  constructor(options: DiscordCommandsOptions) {
    this.#options = options;
    this.#logger = options.logger;
  }

  queue(interaction: ChatInputCommandInteraction): string {
    return queueText('discord', this.#options.jobs.queue(), { platform: 'discord', groupId: interaction.guildId, externalId: interaction.user.id });
  }

  usage(interaction: ChatInputCommandInteraction): string {
    return usageText('discord', this.#options.jobs.usage(this.#actor(interaction)));
  }

  history(interaction: ChatInputCommandInteraction): string {
    // Discord enforces min_value 1; a smaller value from elsewhere is read as page 1.
    const page = Math.max(1, interaction.options.getInteger('page') ?? 1);
    return historyAnswer('discord', this.#options.jobs, this.#actor(interaction), page);
  }

  /** The thumbnails of the results on the asked history page, as attachments `job-<id>.png`. */
  async historyFiles(interaction: ChatInputCommandInteraction): Promise<{ attachment: string; name: string }[]> {
    const page = Math.max(1, interaction.options.getInteger('page') ?? 1);
    return (await historyThumbnails(this.#options.jobs, this.#actor(interaction), page)).map(({ jobId, file }) => ({ attachment: file, name: `job-${jobId}.png` }));
  }

  cancel(interaction: ChatInputCommandInteraction): Promise<string> {
    return cancelAnswer(this.#options.jobs, this.#actor(interaction), interaction.options.getInteger('job') ?? undefined);
  }

  async video(interaction: ChatInputCommandInteraction): Promise<void> {
    // Acknowledge first: the token dies 3 s after the interaction unless answered.
    if (!(await defer(interaction, false, this.#logger))) return;
    const options = interaction.options;
    const parsed = videoCommandFromOptions({
      prompt: options.getString('prompt'),
      frames: options.getInteger('frames'),
      seed: options.getInteger('seed'),
      motion: options.getString('motion'),
      negative: options.getString('negative'),
      steps: options.getInteger('steps'),
      fps: options.getInteger('fps'),
      duration: options.getNumber('duration'),
      aspect: options.getString('aspect'),
      smooth: options.getBoolean('smooth'),
    });
    if (parsed.type !== 'command') {
      await refuse(interaction, parsed.type === 'error' ? refusalText(parsed.error) : 'Use /video with a prompt.', this.#logger);
      return;
    }
    const { command } = parsed;
    // A picture to animate: fetched (Discord's hosts only, size-capped) before the submit; the
    // engine checks its content. It keeps its own shape, so an aspect or size is refused with it.
    const attachment = options.getAttachment('image');
    let image: string | undefined;
    if (attachment !== null) {
      if (command.params.aspect !== undefined) {
        await refuse(interaction, 'A picture keeps its own shape: leave out the aspect ratio when animating one.', this.#logger);
        return;
      }
      image = await this.#options.downloadPicture(interaction, attachment);
      if (image === undefined) return; // refused (and answered) by the download
    }
    const created = await this.submitAndFollow(interaction, {
      actor: this.#actor(interaction),
      kind: command.kind,
      params: image === undefined ? command.params : { ...command.params, image },
      ...(command.seed === undefined ? {} : { seed: command.seed }),
    });
    if (!created && image !== undefined) await rm(image, { force: true });
  }

  async button(interaction: ButtonInteraction): Promise<void> {
    const button = decodeCustomId(interaction.customId);
    if (button === null) {
      await interaction.reply({ content: 'This button is from an older version of the bot; please run /video again.', flags: MessageFlags.Ephemeral }).catch(() => undefined);
      return;
    }
    if (button.action === 'cancel') {
      if (!(await defer(interaction, true, this.#logger))) return;
      try {
        await safeEdit(interaction, await cancelAnswer(this.#options.jobs, this.#actor(interaction), button.jobId), this.#logger);
      } catch (error) {
        if (!(error instanceof UserError)) throw error;
        await refuse(interaction, refusalText(error), this.#logger);
      }
      return;
    }
    if (button.action === 'delete') {
      await this.#deleteResult(interaction, button.jobId);
      return;
    }
    if (button.action === 'reroll') {
      if (!(await defer(interaction, false, this.#logger))) return;
      const original = this.#options.jobs.status(button.jobId)?.job;
      if (original === undefined) {
        await refuse(interaction, `There is no job #${button.jobId} any more.`, this.#logger);
        return;
      }
      if (original.kind === 'edit' && !(await isFile(original.params.inputFile))) {
        await refuse(interaction, `The clip of job #${original.id} is no longer kept. Use /edit with the clip attached to edit it again.`, this.#logger);
        return;
      }
      // No seed: the service draws a new one.
      await this.submitAndFollow(interaction, { actor: this.#actor(interaction), kind: original.kind, params: original.params });
      return;
    }
    // Edit: a modal asks for the instruction. No defer first: a deferred interaction cannot show a modal.
    await interaction
      .showModal(instructionModal(encodeCustomId('edit', button.jobId), `Edit the video of job #${button.jobId}`))
      .catch((error: unknown) => this.#logger.warn({ err: error, interactionId: interaction.id }, 'could not show the edit form'));
  }

  /** Submits, shows the queued text and follows the job; true when a new job was made. */
  async submitAndFollow(interaction: Replyable, base: Omit<JobRequest, 'eventId' | 'groupId' | 'channelId'>): Promise<boolean> {
    const { jobs, delivery } = this.#options;
    let submitted: SubmitResult;
    try {
      submitted = await jobs.submit({
        ...base,
        eventId: interaction.id,
        // Outside any guild (a DM): the job core refuses it unless direct messages are allowed.
        ...(interaction.guildId === null ? { directMessage: true } : { groupId: interaction.guildId }),
        ...(interaction.channelId === null ? {} : { channelId: interaction.channelId }),
        // In the admission transaction: a job is never without the refs that let it be delivered.
        messageRefs: { discord: interactionRefs(interaction) },
      });
    } catch (error) {
      if (error instanceof UserError) {
        await refuse(interaction, refusalText(error), this.#logger);
      } else {
        // The reply is already deferred: it must not stay "thinking…" for ever.
        this.#logger.error({ err: error, interactionId: interaction.id }, 'could not submit a job');
        await refuse(interaction, GENERIC_FAILURE_TEXT, this.#logger);
      }
      return false;
    }
    const { job } = submitted;
    if (submitted.duplicate) {
      // A redelivered interaction shares the first delivery's reply, which already shows this job.
      const refs = job.messageRefs.discord as { interactionId?: unknown } | undefined;
      if (delivery.follower.get(job.id) !== undefined || refs?.interactionId === interaction.id) {
        this.#logger.info({ jobId: job.id, interactionId: interaction.id }, 'redelivered interaction; the job exists');
        return false;
      }
      const where = job.channelId === null ? '' : ` in <#${job.channelId}>`;
      await safeEdit(interaction, `This request already made job #${job.id}${where}; it is ${job.state}.`, this.#logger);
      return false;
    }
    const followed = delivery.followInteraction(job.id, interaction);
    await followed.editor
      .now(async () => {
        const message = await interaction.editReply({
          content: queuedText('discord', { jobId: job.id, position: submitted.position, etaMs: submitted.etaMs, quotaLeft: submitted.quotaLeft, prompt: describeJob(job) }),
          components: [jobButtons(job.id)],
        });
        followed.messageId = message.id;
        delivery.storeRefs(followed);
      })
      .catch((error: unknown) => this.#logger.warn({ err: error, jobId: job.id }, 'could not show the queued message'));
    return true;
  }

  /**
   * 🗑 Delete (owner or admin, the job core decides): the stored output goes first, then the message
   * the button is on; the clicker is told privately. Anyone else is refused privately and nothing changes.
   */
  async #deleteResult(interaction: ButtonInteraction, jobId: number): Promise<void> {
    if (!(await defer(interaction, true, this.#logger))) return;
    try {
      await this.#options.jobs.deleteResult(this.#actor(interaction), jobId);
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      await safeEdit(interaction, refusalText(error), this.#logger);
      return;
    }
    let removed = true;
    if (interaction.channelId !== null) {
      await interaction.client.rest.delete(Routes.channelMessage(interaction.channelId, interaction.message.id)).catch((error: unknown) => {
        removed = false;
        this.#logger.warn({ err: error, jobId }, 'could not delete the message of a deleted result');
      });
    }
    await safeEdit(interaction, removed ? `Deleted job #${jobId}'s video and its message.` : `Deleted job #${jobId}'s video; its message could not be removed.`, this.#logger);
  }

  #actor(interaction: Replyable) {
    return actorOf(interaction, this.#options.adminIds);
  }
}
