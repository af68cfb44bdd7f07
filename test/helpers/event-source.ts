/** A JobService's event side for tests: listeners as `onEvent` keeps them, and a way to emit. */
import type { JobEvent } from '../../src/jobs/types.js';

export function eventSource() {
  const listeners = new Set<(event: JobEvent) => void>();
  return {
    onEvent(listener: (event: JobEvent) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    emit(event: JobEvent) {
      for (const listener of listeners) listener(event);
    },
    get listeners() {
      return listeners.size;
    },
  };
}
