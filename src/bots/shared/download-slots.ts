/**
 * Caps on clip downloads held at once, per user and in total (`clipDownloads` in the config). A
 * slot is taken before a download starts and given back when the clip is no longer waiting on
 * the bot: handed to a job, refused, removed, or given up. Opening "Edit clip…" again and again
 * can then never pull more than `perUser` clips of up to `input.maxBytes` each for one user, nor
 * `total` for everyone.
 */
import { ErrorCode, UserError } from '../../errors.js';

export interface DownloadLimits {
  perUser: number;
  total: number;
}

/** The settings' defaults (src/config.ts `clipDownloads`). */
export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = Object.freeze({ perUser: 2, total: 8 });

export class DownloadSlots {
  readonly #limits: DownloadLimits;
  readonly #byUser = new Map<string, number>();
  #total = 0;

  constructor(limits: DownloadLimits = DEFAULT_DOWNLOAD_LIMITS) {
    this.#limits = limits;
  }

  /** Slots held now, in total. */
  get held(): number {
    return this.#total;
  }

  /**
   * Takes a slot for `userId` and returns the function that gives it back (calling it again does
   * nothing). Throws a UserError saying why when the user or the bot is at its cap.
   */
  take(userId: string): () => void {
    const mine = this.#byUser.get(userId) ?? 0;
    if (mine >= this.#limits.perUser) {
      throw new UserError(
        ErrorCode.DownloadsBusy,
        `You already have ${mine === 1 ? 'a clip' : `${mine} clips`} being fetched or waiting for an edit instruction (the limit is ${this.#limits.perUser}). Send the open edit form, or try again in a few minutes.`,
        { context: { held: mine, limit: this.#limits.perUser } },
      );
    }
    if (this.#total >= this.#limits.total) {
      throw new UserError(ErrorCode.DownloadsBusy, 'The bot is fetching as many clips as it can at the moment. Please try again in a minute.', {
        context: { held: this.#total, limit: this.#limits.total },
      });
    }
    this.#byUser.set(userId, mine + 1);
    this.#total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total--;
      const left = (this.#byUser.get(userId) ?? 1) - 1;
      if (left <= 0) this.#byUser.delete(userId);
      else this.#byUser.set(userId, left);
    };
  }
}
