/**
 * A deterministic engine for tests and benchmarks, loaded by real worker processes through
 * `engineModule`. Job params say what it does:
 *   ms       how long the job takes (default 0)
 *   cpu      true: spend that time computing (in slices that let heartbeats out); false: sleep
 *   steps    progress events (default 4)
 *   mode     'ok' | 'noop' (returns at once, writes nothing) | 'fail' (engine error) | 'user-error' | 'crash' (process exits) |
 *            'crash-once' (crashes when `marker` file is absent, creating it) |
 *            'hang' (blocks the event loop forever: heartbeats stop) | 'ignore-cancel'
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

export const createEngine: CreateEngine = ({ device }) => {
  const engine: Engine = {
    async run(job, { signal, onProgress }) {
      const params = job.params as { ms?: number; cpu?: boolean; steps?: number; mode?: string; marker?: string };
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
      for (let step = 1; step <= steps; step++) {
        if (mode !== 'ignore-cancel') signal.throwIfAborted();
        const slice = ms / steps;
        if (params.cpu) {
          // Compute in 5 ms slices so the worker's heartbeat timer still runs, as ONNX Runtime's async run allows.
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
      return { file, device, attempt: job.attempt, niceness: getPriority() };
    },
  };
  return engine;
};
