/**
 * A JobService's event side for tests: listeners as `onEvent` keeps them, a way to emit, and the
 * outbox as the service keeps it (a finished job's final event stays undelivered until marked).
 */
import type { FinalJobEvent } from '../../src/jobs/outbox.js';
import type { JobEvent, Platform } from '../../src/jobs/types.js';

export function eventSource(options: { undelivered?: FinalJobEvent[] } = {}) {
  const listeners = new Set<(event: JobEvent) => void>();
  const undelivered: FinalJobEvent[] = [...(options.undelivered ?? [])];
  /** Job ids marked delivered, in order (a second mark of the same job is recorded too). */
  const delivered: number[] = [];
  return {
    onEvent(listener: (event: JobEvent) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    emit(event: JobEvent) {
      if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled') undelivered.push(event);
      for (const listener of listeners) listener(event);
    },
    get listeners() {
      return listeners.size;
    },
    undeliveredOutcomes(platform: Platform): FinalJobEvent[] {
      return undelivered.filter((event) => event.job.platform === platform && !delivered.includes(event.job.id));
    },
    async markDelivered(jobId: number): Promise<void> {
      delivered.push(jobId);
    },
    delivered,
  };
}
