/**
 * How the Discord delivery reads a failed final message: what is worth another try (a 5xx after
 * discord.js's own immediate retries, a dropped or timed-out connection), what means the bot may
 * not post in the channel (403: Missing Access / Missing Permissions), and what the user is told
 * when the video could not be uploaded. Only codes and statuses are read: a Discord error's
 * message and request body never reach the user.
 */
import { DiscordAPIError, HTTPError } from 'discord.js';

/** Pauses before the second and third try of a final message. */
export const DELIVERY_RETRY_DELAYS_MS: readonly number[] = [2_000, 8_000];
/** Discord error codes: the bot cannot see the channel, or may not post / attach there. */
const MISSING_ACCESS = 50001;
const MISSING_PERMISSIONS = 50013;
/** Errors of a connection that went wrong (dropped, refused, timed out), from undici and Node. */
const NETWORK_CODE = /^(UND_ERR_|E(CONNRESET|CONNREFUSED|PIPE|TIMEDOUT|AI_AGAIN|NOTFOUND|HOSTUNREACH|NETUNREACH)$)/;

/** A 5xx (discord.js already retried it at once) or a connection failure: worth a later try. */
export function isRetryableDeliveryError(error: unknown): boolean {
  if (error instanceof HTTPError || error instanceof DiscordAPIError) return error.status >= 500;
  if (!(error instanceof Error)) return false;
  if (error.name === 'AbortError') return true; // the request timed out
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && NETWORK_CODE.test(code);
}

/** Discord said the bot may not post (or attach files) in the channel: no edit there will work. */
export function isChannelForbidden(error: unknown): boolean {
  return error instanceof DiscordAPIError && (error.code === MISSING_ACCESS || error.code === MISSING_PERMISSIONS);
}

/**
 * Runs `attempt`, trying again after each of `delaysMs` while it fails with a retryable error;
 * the last error is thrown. `onRetry` hears each failure that is tried again.
 */
export async function withDeliveryRetries<T>(attempt: () => Promise<T>, delaysMs: readonly number[], onRetry: (error: unknown, tryNumber: number) => void): Promise<T> {
  for (let tryNumber = 1; ; tryNumber++) {
    try {
      return await attempt();
    } catch (error) {
      const delay = delaysMs[tryNumber - 1];
      if (delay === undefined || !isRetryableDeliveryError(error)) throw error;
      onRetry(error, tryNumber);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** What the user reads in the job's message when its video could not be uploaded (not for its size). */
export function uploadFailureText(error: unknown, tries: number): string {
  if (isRetryableDeliveryError(error)) {
    const what = error instanceof HTTPError || error instanceof DiscordAPIError ? `server error ${error.status}` : 'the connection dropped';
    return `The video was made, but Discord kept failing to take the upload (${what}, ${tries} ${tries === 1 ? 'try' : 'tries'}). Press Re-roll to make it again.`;
  }
  if (error instanceof DiscordAPIError || error instanceof HTTPError) {
    const code = error instanceof DiscordAPIError ? ` (error ${String(error.code)})` : ` (status ${error.status})`;
    return `The video was made, but Discord refused the upload${code}. Press Re-roll to make it again.`;
  }
  // Not Discord's answer: the file could not be read or re-encoded here.
  return 'The video was made, but it could not be prepared for the upload. Press Re-roll to make it again.';
}
