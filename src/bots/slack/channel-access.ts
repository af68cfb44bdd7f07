/**
 * Whether the bot can post in a channel, asked before a job is admitted: a slash command works in
 * any channel, but the video can only be posted where the bot is a member, and finding that out
 * after the job ran would have charged for a video nobody gets. `conversations.info` says
 * `is_member` for public channels and answers `channel_not_found` for a private channel the bot
 * is not in. A member answer is remembered for a few minutes (the call is rate-limited); a
 * refusal is not, so an invite takes effect at once. When the check itself cannot be made (the
 * install lacks the `channels:read` scope, Slack is slow or down) the job is admitted as before:
 * the delivery still notices `not_in_channel` and says so.
 */
import type { Logger } from '../../log.js';

/** A member answer is trusted this long. */
export const MEMBER_CACHE_MS = 5 * 60 * 1000;
/** Channels remembered at most. */
const CACHE_LIMIT = 5_000;

/** The part of the Web API client the check uses. */
export interface ConversationsInfo {
  conversations: { info(args: { channel: string }): Promise<{ ok?: boolean; channel?: { is_member?: boolean; is_im?: boolean; is_mpim?: boolean; is_archived?: boolean } }> };
}

export interface ChannelAccessOptions {
  client: ConversationsInfo;
  logger: Logger;
  now?: () => number;
}

export class ChannelAccess {
  readonly #client: ConversationsInfo;
  readonly #logger: Logger;
  readonly #now: () => number;
  /** Channels the bot was a member of, and when that was seen. */
  readonly #members = new Map<string, number>();
  /** Lookups under way, by channel: commands arriving together share one conversations.info call. */
  readonly #pending = new Map<string, Promise<string | undefined>>();
  #warnedScope = false;

  constructor(options: ChannelAccessOptions) {
    this.#client = options.client;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Undefined when the bot can post in the channel (or it could not be told); otherwise the text
   * that tells the user why not and what to do. `botMention` is the bot's `<@U…>` when known.
   */
  async refusal(channelId: string, botMention?: string): Promise<string | undefined> {
    const seen = this.#members.get(channelId);
    if (seen !== undefined && this.#now() - seen < MEMBER_CACHE_MS) return undefined;
    const pending = this.#pending.get(`${channelId} ${botMention ?? ''}`);
    if (pending !== undefined) return pending;
    const lookup = this.#lookup(channelId, botMention).finally(() => this.#pending.delete(`${channelId} ${botMention ?? ''}`));
    this.#pending.set(`${channelId} ${botMention ?? ''}`, lookup);
    return lookup;
  }

  async #lookup(channelId: string, botMention: string | undefined): Promise<string | undefined> {
    const bot = botMention ?? '@reelbot';
    let channel: { is_member?: boolean; is_im?: boolean; is_mpim?: boolean; is_archived?: boolean } | undefined;
    try {
      channel = (await this.#client.conversations.info({ channel: channelId })).channel;
    } catch (error) {
      const code = platformErrorCode(error);
      if (code === 'channel_not_found') {
        return `I cannot see this channel (it is private and I am not in it), so I could not post a video here. Add me with \`/invite ${bot}\`, then try again. Nothing was charged.`;
      }
      if (code === 'missing_scope') {
        if (!this.#warnedScope) this.#logger.warn({ channelId }, 'cannot check channel membership before a job: the Slack app lacks the channels:read / groups:read scopes (see slack-manifest.yaml)');
        this.#warnedScope = true;
      } else {
        this.#logger.warn({ channelId, code: code ?? 'request_failed' }, 'could not check channel membership before a job; admitting it');
      }
      return undefined;
    }
    if (channel?.is_archived === true) return 'This channel is archived, so I could not post a video here. Nothing was charged.';
    // DMs and group DMs have no `is_member`: anyone who can run the command there lets the bot answer.
    if (channel?.is_member === false) {
      return `I am not a member of this channel, so I could not post the video here. Add me with \`/invite ${bot}\`, then try again. Nothing was charged.`;
    }
    if (this.#members.size >= CACHE_LIMIT) this.#members.delete(this.#members.keys().next().value!);
    this.#members.set(channelId, this.#now());
    return undefined;
  }

  /** Forgets a channel (the bot was removed from it, or a post there said `not_in_channel`). */
  forget(channelId: string): void {
    this.#members.delete(channelId);
  }
}

/** The `error` of a Web API platform error (`channel_not_found`…), when it is one. */
function platformErrorCode(error: unknown): string | undefined {
  const data = (error as { data?: { error?: unknown } } | null)?.data;
  return typeof data?.error === 'string' ? data.error : undefined;
}
