/** Platform event ids already turned into a job, so a redelivered event never makes a second one. */
import type { Db } from './db.js';
import type { Platform } from '../jobs/types.js';

export class ProcessedEvents {
  readonly #find;
  readonly #record;

  constructor(db: Db) {
    this.#find = db.prepare(`SELECT job_id FROM processed_events WHERE platform = ? AND event_id = ?`);
    this.#record = db.prepare(`INSERT INTO processed_events (platform, event_id, job_id, created_at) VALUES (?, ?, ?, ?)`);
  }

  /** The job an event made, if it was seen before. */
  jobFor(platform: Platform, eventId: string): number | undefined {
    return (this.#find.get(platform, eventId) as { job_id: number } | undefined)?.job_id;
  }

  record(platform: Platform, eventId: string, jobId: number, now: number): void {
    this.#record.run(platform, eventId, jobId, now);
  }
}
