/**
 * The engine of `npm run bench:discord`, loaded by real worker processes through `engineModule`:
 * every job computes for BENCH_JOB_MS (default 60 s) in 5 ms slices, which keeps its worker's CPU
 * busy and its heartbeats flowing, and stops when the job is cancelled or the pool shuts down.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CreateEngine } from '../src/jobs/engine.js';

function busy(ms: number): void {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
}

export const createEngine: CreateEngine = ({ device }) => ({
  async run(job, { signal, onProgress }) {
    const total = Number(process.env.BENCH_JOB_MS ?? 60_000);
    const started = performance.now();
    let step = 0;
    while (performance.now() - started < total) {
      signal.throwIfAborted();
      busy(5);
      await new Promise((resolve) => setImmediate(resolve));
      const done = Math.floor(((performance.now() - started) / total) * 10);
      if (done > step) onProgress({ step: (step = done), total: 10, stage: 'denoising' });
    }
    mkdirSync(job.outputDir, { recursive: true });
    const file = join(job.outputDir, 'out.txt');
    writeFileSync(file, `bench job ${job.id} on ${device}`);
    return { file, device };
  },
});
