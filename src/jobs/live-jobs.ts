/**
 * What the job core holds in memory about the jobs it is serving now: the queued ones (their kind
 * and work, for starts and ETAs) and the running ones. The
 * database says what state a job is in; this says where it stands among the others.
 */
import type { JobKind } from './types.js';

/** What the service keeps of a running job. */
export interface Running {
  kind: JobKind;
  /** Its work units (for its ETA). */
  units: number;
  /** When the engine's `run` began; undefined while the worker starts and loads the models. */
  runningSince: number | undefined;
  cancelRequested: boolean;
}

export interface Waiting {
  kind: JobKind;
  units: number;
}

export class LiveJobs {
  /** Queued jobs: their kind (which slots can start them) and work units (for ETAs). */
  readonly waiting = new Map<number, Waiting>();
  /** Work units of the queued jobs, per kind: the work ahead is costed at each kind's current rate. */
  readonly waitingUnits: Record<JobKind, number> = { text2video: 0, edit: 0 };
  /**
   * Running jobs: their kind, and when the engine's `run` began (undefined while the worker starts
   * and loads the models: that time is in no estimate, so the job's ETA does not count it down).
   */
  readonly running = new Map<number, Running>();

  addWaiting(jobId: number, waiting: Waiting): void {
    this.waiting.set(jobId, waiting);
    this.waitingUnits[waiting.kind] += waiting.units;
  }

  removeWaiting(jobId: number): void {
    const waiting = this.waiting.get(jobId);
    if (!waiting) return;
    this.waiting.delete(jobId);
    this.waitingUnits[waiting.kind] -= waiting.units;
  }
}

/** How long a running job's engine `run` has gone on (0 while it is still loading). */
export function ranFor(runningSince: number | undefined, now: number): number {
  return runningSince === undefined ? 0 : now - runningSince;
}
