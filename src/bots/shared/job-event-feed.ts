/**
 * The job events a bot adapter follows. It subscribes at once, so an adapter built before
 * `JobService.start()` (as `reelbot serve` builds them) also gets the notices that recovery emits;
 * those are held until the adapter is connected and can post them, then everything is delivered
 * as it comes.
 */
import type { JobService } from '../../jobs/job-service.js';
import type { JobEvent } from '../../jobs/types.js';

export class JobEventFeed {
  readonly #handle: (event: JobEvent) => void;
  #unsubscribe: (() => void) | undefined;
  /** Events that came before `open()`; undefined once open (or closed). */
  #held: JobEvent[] | undefined = [];

  constructor(jobs: Pick<JobService, 'onEvent'>, handle: (event: JobEvent) => void) {
    this.#handle = handle;
    this.#unsubscribe = jobs.onEvent((event) => {
      if (this.#held !== undefined) this.#held.push(event);
      else handle(event);
    });
  }

  /** Delivers the held events, in order, and every later one at once. Does nothing once closed. */
  open(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    if (this.#unsubscribe === undefined) return;
    for (const event of held) this.#handle(event);
  }

  /** Stops delivering; held events are dropped. */
  close(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#held = undefined;
  }
}
