/**
 * An engine for the Slack adapter tests, loaded by real worker processes through `engineModule`:
 * it reports progress and writes a real (tiny) MP4 with the bundled ffmpeg. An edit job must
 * name an `inputFile` that exists and is an MP4 (the downloaded clip): its size comes back in the
 * result as `inputBytes`. The prompt or instruction steers it: "slow" makes each of 6 steps take
 * 300 ms, "fail" makes it fail after the steps.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CreateEngine } from '../../../src/jobs/engine.js';
import { resolveFfmpegPaths } from '../../../src/engine/video/ffmpeg-paths.js';

export const createEngine: CreateEngine = ({ device }) => ({
  async run(job, { signal, onProgress }) {
    const text = String(job.params.prompt ?? job.params.instruction ?? '');
    let inputBytes: number | undefined;
    if (job.kind === 'edit') {
      const input = readFileSync(String(job.params.inputFile));
      if (input.subarray(4, 8).toString('latin1') !== 'ftyp') throw new Error('the input clip is not an MP4');
      inputBytes = input.length;
    }
    const slow = text.includes('slow');
    const steps = slow ? 6 : 3;
    for (let step = 1; step <= steps; step++) {
      signal.throwIfAborted();
      if (slow) await sleep(300, undefined, { signal });
      onProgress({ step, total: steps, stage: 'denoising' });
    }
    if (text.includes('fail')) throw new Error('mp4 engine failure');
    mkdirSync(job.outputDir, { recursive: true });
    const file = join(job.outputDir, 'out.mp4');
    const { ffmpeg } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
    const run = spawnSync(ffmpeg, ['-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=8:duration=1', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-f', 'mp4', file]);
    if (run.status !== 0) throw new Error(`ffmpeg failed: ${String(run.stderr)}`);
    return { file, device, frames: 8, width: 64, height: 64, ...(inputBytes === undefined ? {} : { inputBytes }) };
  },
});
