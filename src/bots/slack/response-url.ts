/**
 * A slash command's or an interaction's `response_url`: Slack accepts at most 5 responses to it,
 * within 30 minutes of the command. This wrapper counts the uses (the count survives a restart
 * through the job's message refs), refuses once either limit is reached, and tells the caller so,
 * who then posts with the bot token instead (`chat.postEphemeral` / `chat.postMessage`).
 */
import PQueue from 'p-queue';
import type { Logger } from '../../log.js';

/** Responses Slack accepts per `response_url`. */
export const RESPONSE_URL_MAX_USES = 5;
/** How long a `response_url` is valid after the command. */
export const RESPONSE_URL_LIFETIME_MS = 30 * 60 * 1000;
/** Margin kept before the 30 minutes run out, for the request's own travel time. */
const LIFETIME_MARGIN_MS = 10_000;
/**
 * Responses in flight at once, over all response URLs (they share Slack's one origin). A burst of
 * late answers then reuses a few kept-alive connections instead of opening one each, and the
 * acks of the commands still arriving are not crowded out by them.
 */
const SENDS_IN_FLIGHT = 4;
const sends = new PQueue({ concurrency: SENDS_IN_FLIGHT });

/** What is stored with a job so the count holds across restarts. */
export interface ResponseUrlState {
  url: string;
  issuedAt: number;
  uses: number;
}

/** The body of a response: a new message, or (for interactions) a change of the original. */
export interface ResponseBody {
  text: string;
  response_type?: 'ephemeral' | 'in_channel';
  replace_original?: boolean;
  delete_original?: boolean;
  blocks?: unknown[];
}

export class ResponseUrl {
  readonly url: string;
  readonly issuedAt: number;
  #uses: number;
  readonly #now: () => number;

  constructor(state: ResponseUrlState, now: () => number = Date.now) {
    this.url = state.url;
    this.issuedAt = state.issuedAt;
    this.#uses = state.uses;
    this.#now = now;
  }

  get uses(): number {
    return this.#uses;
  }

  /** True while a response may still be sent: fewer than 5 uses and within 30 minutes. */
  usable(): boolean {
    return this.#uses < RESPONSE_URL_MAX_USES && this.#now() < this.issuedAt + RESPONSE_URL_LIFETIME_MS - LIFETIME_MARGIN_MS;
  }

  state(): ResponseUrlState {
    return { url: this.url, issuedAt: this.issuedAt, uses: this.#uses };
  }

  /**
   * Sends one response. Returns false without a request when the URL is spent or expired, and
   * false when Slack refuses it (the use still counts: Slack may have counted it too); the caller
   * then falls back to the bot token. Never throws.
   */
  async send(body: ResponseBody, options: { timeoutMs?: number } = {}): Promise<boolean> {
    if (!this.usable()) return false;
    this.#uses++;
    return sends.add(async () => {
      try {
        const response = await fetch(this.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json; charset=utf-8' },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
        });
        await response.body?.cancel();
        return response.ok;
      } catch {
        return false;
      }
    });
  }
}

/**
 * The answer to a slash command that was acked before it ran (it writes to the database, or uploads
 * pictures first): an ephemeral message on the command's response_url, blocks and all. A refused post is logged (no token in it).
 */
export async function answerAfterAck(command: { response_url: string; command: string }, answer: string | { text: string; blocks: unknown[] }, logger: Logger): Promise<void> {
  const responseUrl = new ResponseUrl({ url: command.response_url, issuedAt: Date.now(), uses: 0 });
  const body = typeof answer === 'string' ? { text: answer } : answer;
  if (!(await responseUrl.send({ response_type: 'ephemeral', ...body }))) logger.warn({ command: command.command }, 'could not answer a command on its response_url');
}
