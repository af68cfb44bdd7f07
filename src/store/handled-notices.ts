/** Notices sent at most once (a hint to a thread): a redelivered event or a restart never repeats them. */
import type { Platform } from '../jobs/types.js';
import type { Db } from './db.js';

export class HandledNotices {
  readonly #claim;
  readonly #prune;

  constructor(db: Db) {
    this.#claim = db.prepare(`INSERT OR IGNORE INTO handled_notices (platform, key, created_at) VALUES (?, ?, ?)`);
    this.#prune = db.prepare(`DELETE FROM handled_notices WHERE created_at < ?`);
  }

  /** True the first time a key is claimed; false ever after (until pruned). */
  claim(platform: Platform, key: string, now: number): boolean {
    return this.#claim.run(platform, key, now).changes === 1;
  }

  /** Forgets notices older than `before` (ms since the epoch); returns how many. */
  prune(before: number): number {
    return this.#prune.run(before).changes;
  }
}
