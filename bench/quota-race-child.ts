/**
 * One process of the quota race bench (forked by bench/jobs.ts). It opens the shared SQLite file,
 * builds the real Admission (one BEGIN IMMEDIATE transaction per admission) over the store repos,
 * says `ready`, waits for `go`, then admits its jobs for the one user as fast as it can and
 * reports what was accepted and what was refused. No worker pool is started, and nothing is
 * written to stdout.
 *
 * JobService is not used here: its submit() refuses every request until start(), and start()
 * would recover other processes' jobs and spawn workers.
 */
import { loadConfig } from '../src/config.js';
import { AppError } from '../src/errors.js';
import { Admission } from '../src/jobs/admission.js';
import type { JobRequest } from '../src/jobs/types.js';
import { openDatabase } from '../src/store/db.js';
import { JobRepo } from '../src/store/job-repo.js';
import { ProcessedEvents } from '../src/store/processed-events.js';
import { QuotaLedger } from '../src/store/quota-ledger.js';
import { UserRepo } from '../src/store/user-repo.js';

export interface RaceChildInit {
  dbPath: string;
  quota: Record<string, unknown>;
  admissions: number;
  user: string;
  index: number;
}

export type RaceParentMessage = { type: 'init'; init: RaceChildInit } | { type: 'go'; at: number };

export type RaceChildMessage =
  | { type: 'ready' }
  | {
      type: 'done';
      accepted: number[];
      refused: Record<string, number>;
      errors: string[];
      /** Admissions that took over 1 ms: they waited for another process's write lock. */
      waited: number;
      firstAdmitAt: number;
      lastAdmitAt: number;
    };

function send(message: RaceChildMessage): void {
  process.send!(message);
}

let admission: Admission | undefined;
let close: (() => void) | undefined;
let init: RaceChildInit | undefined;

process.on('message', (message: RaceParentMessage) => void onMessage(message));

async function onMessage(message: RaceParentMessage): Promise<void> {
  if (message.type === 'init') {
    init = message.init;
    const config = loadConfig({ overrides: { dbPath: init.dbPath, logLevel: 'silent', quota: init.quota } });
    // The parent has applied the migrations already; opening again only checks them.
    const db = openDatabase(config.dbPath);
    admission = new Admission(db, config.quota, {
      jobs: new JobRepo(db),
      users: new UserRepo(db),
      ledger: new QuotaLedger(db),
      events: new ProcessedEvents(db),
    });
    close = () => db.close();
    send({ type: 'ready' });
    return;
  }
  if (message.type === 'go') {
    // Line the processes up on one wall-clock instant, closer than message delivery alone would.
    while (Date.now() < message.at) {
      /* spin */
    }
    const accepted: number[] = [];
    const refused: Record<string, number> = {};
    const errors: string[] = [];
    const request: JobRequest = {
      actor: { platform: 'discord', externalId: init!.user },
      kind: 'text2video',
      params: { prompt: 'a race at the quota edge', steps: 0, ms: 0 },
    };
    let waited = 0;
    const firstAdmitAt = Date.now();
    for (let i = 0; i < init!.admissions; i++) {
      const t0 = performance.now();
      try {
        const { job } = admission!.admit(request, { seed: init!.index * 1000 + i, priority: 0, estimatedGpuSeconds: 60, now: Date.now() });
        accepted.push(job.id);
      } catch (error) {
        if (error instanceof AppError) refused[error.code] = (refused[error.code] ?? 0) + 1;
        else errors.push(String((error as Error)?.message ?? error));
      }
      if (performance.now() - t0 > 1) waited++;
      // Between admissions, yield as a bot process between two requests would.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const lastAdmitAt = Date.now();
    close?.();
    send({ type: 'done', accepted, refused, errors, waited, firstAdmitAt, lastAdmitAt });
    process.disconnect();
  }
}
