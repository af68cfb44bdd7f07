/** Queue-wide switches that survive a restart. */
import type { Db } from './db.js';

export class Settings {
  readonly #get;
  readonly #set;

  constructor(db: Db) {
    this.#get = db.prepare(`SELECT value FROM settings WHERE key = ?`);
    this.#set = db.prepare(`INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`);
  }

  queuePaused(): boolean {
    return (this.#get.get('queue_paused') as { value: string } | undefined)?.value === 'true';
  }

  setQueuePaused(paused: boolean): void {
    this.#set.run('queue_paused', String(paused));
  }
}
