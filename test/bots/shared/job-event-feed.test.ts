import { describe, expect, it } from 'vitest';
import { JobEventFeed } from '../../../src/bots/shared/job-event-feed.js';
import type { JobEvent, JobRecord } from '../../../src/jobs/types.js';

/** A JobService's event side: listeners, and a way to emit. */
function eventSource() {
  const listeners = new Set<(event: JobEvent) => void>();
  return {
    onEvent(listener: (event: JobEvent) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    emit: (id: number) => {
      for (const listener of listeners) listener({ type: 'cancelled', job: { id } as JobRecord, refunded: true });
    },
    get listeners() {
      return listeners.size;
    },
  };
}

describe('JobEventFeed', () => {
  it('holds events until open, delivers them in order, then passes new ones at once', () => {
    const source = eventSource();
    const seen: number[] = [];
    const feed = new JobEventFeed(source, (event) => seen.push(event.job.id));
    source.emit(1);
    source.emit(2);
    expect(seen).toEqual([]);
    feed.open();
    expect(seen).toEqual([1, 2]);
    source.emit(3);
    expect(seen).toEqual([1, 2, 3]);
  });

  it('after close, delivers nothing (held or new) and unsubscribes', () => {
    const source = eventSource();
    const seen: number[] = [];
    const feed = new JobEventFeed(source, (event) => seen.push(event.job.id));
    source.emit(1);
    feed.close();
    feed.open();
    source.emit(2);
    expect(seen).toEqual([]);
    expect(source.listeners).toBe(0);
  });
});
