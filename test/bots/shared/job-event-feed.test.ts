import { describe, expect, it } from 'vitest';
import { JobEventFeed } from '../../../src/bots/shared/job-event-feed.js';
import type { JobRecord } from '../../../src/jobs/types.js';
import { eventSource as sharedEventSource } from '../../helpers/event-source.js';

/** A source that emits a cancelled event of job `id`. */
function eventSource() {
  const source = sharedEventSource();
  return Object.assign(source, { emitJob: (id: number) => source.emit({ type: 'cancelled', job: { id } as JobRecord, refunded: true }) });
}

describe('JobEventFeed', () => {
  it('holds events until open, delivers them in order, then passes new ones at once', () => {
    const source = eventSource();
    const seen: number[] = [];
    const feed = new JobEventFeed(source, (event) => seen.push(event.job.id));
    source.emitJob(1);
    source.emitJob(2);
    expect(seen).toEqual([]);
    feed.open();
    expect(seen).toEqual([1, 2]);
    source.emitJob(3);
    expect(seen).toEqual([1, 2, 3]);
  });

  it('after close, delivers nothing (held or new) and unsubscribes', () => {
    const source = eventSource();
    const seen: number[] = [];
    const feed = new JobEventFeed(source, (event) => seen.push(event.job.id));
    source.emitJob(1);
    feed.close();
    feed.open();
    source.emitJob(2);
    expect(seen).toEqual([]);
    expect(source.listeners).toBe(0);
  });
});
