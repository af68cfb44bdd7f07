/**
 * A deterministic engine for tests and benchmarks, loaded by real worker processes through
 * `engineModule` (it runs on the worker's engine thread). Job params say what it does:
 *   ms       how long the job takes (default 0)
 *   cpu      true: spend that time computing (in 5 ms slices); false: sleep
 *   steps    progress events (default 4)
 *   loadMs   `prepare` blocks its thread this long, once per worker (as loading a model does)
 *   mode     'ok' | 'noop' (returns at once, writes nothing) | 'fail' (engine error) | 'user-error' | 'crash' (process exits) |
 *            'crash-once' (crashes when `marker` file is absent, creating it) | 'ignore-cancel' |
 *            'block' (one synchronous call of `ms` that blocks the engine thread, as a real session.run does) |
 *            'hang' (blocks the engine thread forever) | 'never' (awaits a promise that never settles) |
 *            'freeze' (stops the whole worker process with SIGSTOP: its heartbeats stop)
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError, ErrorCode } from '../../src/errors.js';
import type { CreateEngine, Engine } from '../../src/jobs/engine.js';

function busy(ms: number): void {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
}

type FakeParams = { ms?: number; cpu?: boolean; steps?: number; loadMs?: number; mode?: string; marker?: string };

export const createEngine: CreateEngine = ({ device }) => {
  let loaded = false;
  const engine: Engine = {
    async prepare(job) {
      const { loadMs } = job.params as FakeParams;
      if (loaded || !loadMs) return;
      busy(loadMs);
      loaded = true;
    },
    async run(job, { signal, onProgress }) {
      const params = job.params as FakeParams;
      const mode = params.mode ?? 'ok';
      const steps = params.steps ?? 4;
      const ms = params.ms ?? 0;
      if (mode === 'noop') return {};
      if (mode === 'crash') process.exit(3);
      if (mode === 'crash-once' && params.marker && !existsSync(params.marker)) {
        writeFileSync(params.marker, String(job.attempt));
        process.exit(3);
      }
      if (mode === 'hang') for (;;) busy(1000);
      if (mode === 'never') await new Promise(() => undefined);
      if (mode === 'freeze') process.kill(process.pid, 'SIGSTOP');
      if (mode === 'block') {
        onProgress({ step: 0, total: 1, stage: 'denoising' });
        busy(ms);
        signal.throwIfAborted(); // a cancel sent during the call is seen after it, as at a real step's end
        onProgress({ step: 1, total: 1, stage: 'denoising' });
      }
      for (let step = 1; step <= steps && mode !== 'block'; step++) {
        if (mode !== 'ignore-cancel') signal.throwIfAborted();
        const slice = ms / steps;
        if (params.cpu) {
          // Compute in 5 ms slices, yielding between them so that a cancel reaches the engine thread.
          for (let done = 0; done < slice; done += 5) {
            busy(Math.min(5, slice - done));
            await new Promise((resolve) => setImmediate(resolve));
          }
        } else if (slice > 0) {
          await sleep(slice, undefined, mode === 'ignore-cancel' ? {} : { signal }).catch((error: unknown) => {
            if (signal.aborted) throw signal.reason;
            throw error;
          });
        }
        onProgress({ step, total: steps, stage: 'denoising' });
      }
      if (mode === 'fail') throw new Error('fake engine failure');
      if (mode === 'user-error') throw new AppError(ErrorCode.EngineFailed, 'The clip could not be read.');
      mkdirSync(job.outputDir, { recursive: true });
      const file = join(job.outputDir, 'out.txt');
      writeFileSync(file, `job ${job.id} seed ${job.seed} on ${device}`);
      return { file, device, attempt: job.attempt, niceness: getPriority(), pid: process.pid };
    },
  };
  return engine;
};
