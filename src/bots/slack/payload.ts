/**
 * Reading Slack payloads (slash commands, actions, events, views arrive as loosely typed JSON),
 * the job core's actor for a Slack user, and the shape of an ephemeral answer.
 */
import type { Actor } from '../../jobs/types.js';

/** The parts of a slash command payload the adapter reads. */
export interface SlashCommand {
  command: string;
  text: string;
  user_id: string;
  user_name?: string;
  channel_id: string;
  team_id?: string;
  trigger_id: string;
  response_url: string;
}

export type Ack = (response?: { response_type: 'ephemeral'; text: string; blocks?: unknown[] }) => Promise<void>;

export type ModalAck = (response?: { response_action: 'errors'; errors: Record<string, string> }) => Promise<void>;

export function asSlashCommand(command: Record<string, unknown> | object): SlashCommand {
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

/** The job core's actor for a Slack user (an admin when listed in `adminIds`; the job core's allowlist still decides). */
export function slackActor(
  userId: string,
  displayName: string | undefined,
  adminIds: readonly string[] | undefined,
  where: { teamId?: string | undefined; channelId?: string | undefined } = {},
): Actor {
  return {
    platform: 'slack',
    externalId: userId,
    ...(displayName === undefined ? {} : { displayName }),
    ...(adminIds?.includes(userId) === true ? { isAdmin: true } : {}),
    // Where the command ran, for the audit log.
    ...(where.teamId === undefined ? {} : { groupId: where.teamId }),
    ...(where.channelId === undefined || where.channelId === '' ? {} : { channelId: where.channelId }),
  };
}

export function ephemeral(text: string): { response_type: 'ephemeral'; text: string } {
  return { response_type: 'ephemeral', text };
}

export function record(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

export function arrayOf(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

export function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** How many event ids, submits and response_urls are remembered in memory (the job keys live in SQLite). */
export const MEMORY_LIMIT = 5000;

/** Adds a key to a set bounded by {@link MEMORY_LIMIT} (the oldest key goes); false when it was there already. */
export function remember(set: Set<string>, key: string): boolean {
  if (set.has(key)) return false;
  if (set.size >= MEMORY_LIMIT) set.delete(set.values().next().value!);
  set.add(key);
  return true;
}
