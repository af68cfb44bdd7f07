/**
 * Answering one Discord interaction: acknowledging it (defer), refusing privately, editing the
 * reply, who asked (the job core's {@link Actor}), and the buttons under a job's message.
 */
import {
  ActionRowBuilder,
  ButtonBuilder,
  ButtonStyle,
  MessageFlags,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type ModalSubmitInteraction,
} from 'discord.js';
import type { Actor } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { encodeCustomId } from '../shared/custom-id.js';
import { fitText } from '../shared/texts.js';

/** Longest message content Discord accepts. */
export const DISCORD_CONTENT_LIMIT = 2000;

/** An interaction the adapter answers with a (deferred) reply. */
export type Replyable = ChatInputCommandInteraction | ButtonInteraction | ModalSubmitInteraction;

/** Cuts a message to Discord's content limit, at a line break when there is one. */
export function fitContent(content: string, limit = DISCORD_CONTENT_LIMIT): string {
  return fitText(content, limit);
}

/** Acknowledges an interaction (ephemerally or not); false when Discord refused (a redelivery, an expired token). */
export async function defer(interaction: Replyable, ephemeral: boolean, logger: Logger): Promise<boolean> {
  try {
    await interaction.deferReply(ephemeral ? { flags: MessageFlags.Ephemeral } : {});
    return true;
  } catch (error) {
    // Typically 40060 (already acknowledged: a redelivery) or an expired token.
    logger.warn({ err: error, interactionId: interaction.id }, 'could not acknowledge an interaction');
    return false;
  }
}

/**
 * Answers a refusal (bad options, ban, quota, blocked words, a clip that cannot be used) so that
 * only its user sees it. A public deferred reply is replaced: the refusal goes out as an
 * ephemeral follow-up, then the public "thinking…" is deleted; only admitted jobs are public.
 */
export async function refuse(interaction: Replyable, content: string, logger: Logger): Promise<void> {
  if (interaction.ephemeral) {
    await safeEdit(interaction, content, logger);
    return;
  }
  try {
    await interaction.followUp({ content, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
  } catch (error) {
    logger.warn({ err: error, interactionId: interaction.id }, 'could not send a private refusal; editing the reply instead');
    await safeEdit(interaction, content, logger);
    return;
  }
  await interaction.deleteReply().catch((error: unknown) => logger.warn({ err: error, interactionId: interaction.id }, 'could not remove the deferred reply'));
}

/** Edits the reply to a text with no buttons; a failure is logged. */
export async function safeEdit(interaction: Replyable, content: string, logger: Logger): Promise<void> {
  await interaction.editReply({ content, components: [] }).catch((error: unknown) => logger.warn({ err: error, interactionId: interaction.id }, 'could not edit a reply'));
}

/** The job core's actor for the interaction's user (an admin when listed in `adminIds`; the job core's allowlist still decides). */
export function actorOf(interaction: Replyable, adminIds: readonly string[] | undefined): Actor {
  const user = interaction.user;
  return {
    platform: 'discord',
    externalId: user.id,
    displayName: user.globalName ?? user.username,
    ...(adminIds?.includes(user.id) === true ? { isAdmin: true } : {}),
    // Where the interaction came from, for the audit log.
    ...(interaction.guildId === null ? {} : { groupId: interaction.guildId }),
    ...(interaction.channelId === null ? {} : { channelId: interaction.channelId }),
  };
}

/**
 * Re-roll and Cancel while a job runs; Re-roll, Edit and 🗑 Delete under a finished video (`edit`).
 * The job row decides what a click does (and who may), so the buttons survive restarts.
 */
export function jobButtons(jobId: number, options: { edit?: boolean } = {}): ActionRowBuilder<ButtonBuilder> {
  const row = new ActionRowBuilder<ButtonBuilder>().addComponents(new ButtonBuilder().setCustomId(encodeCustomId('reroll', jobId)).setLabel('Re-roll').setStyle(ButtonStyle.Primary));
  if (options.edit === true) {
    return row.addComponents(
      new ButtonBuilder().setCustomId(encodeCustomId('edit', jobId)).setLabel('Edit').setStyle(ButtonStyle.Secondary),
      new ButtonBuilder().setCustomId(encodeCustomId('delete', jobId)).setLabel('🗑 Delete').setStyle(ButtonStyle.Danger),
    );
  }
  return row.addComponents(new ButtonBuilder().setCustomId(encodeCustomId('cancel', jobId)).setLabel('Cancel').setStyle(ButtonStyle.Danger));
}
