/**
 * An engine for the Discord adapter tests, loaded by real worker processes through
 * `engineModule`: it reports progress and writes a real (tiny) MP4 with the bundled ffmpeg, so the
 * upload is what Discord would get. The prompt (or an edit's instruction) steers it: "slow" makes
 * each of 6 steps take 300 ms, "fail" makes it fail after the steps. An edit returns a copy of
 * its clip, so a test can tell the clip went through.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError, ErrorCode } from '../../../src/errors.js';
import type { CreateEngine } from '../../../src/jobs/engine.js';
import { resolveFfmpegPaths } from '../../../src/engine/video/ffmpeg-paths.js';

export const createEngine: CreateEngine = ({ device }) => ({
  async run(job, { signal, onProgress }) {
    const prompt = String(job.params.prompt ?? job.params.instruction ?? '');
    const slow = prompt.includes('slow');
    const steps = slow ? 6 : 3;
    for (let step = 1; step <= steps; step++) {
      signal.throwIfAborted();
      if (slow) await sleep(300, undefined, { signal });
      onProgress({ step, total: steps, stage: 'denoising' });
    }
    if (prompt.includes('fail')) throw new Error('mp4 engine failure');
    mkdirSync(job.outputDir, { recursive: true });
    const file = join(job.outputDir, 'out.mp4');
    if (job.kind === 'edit') {
      try {
        copyFileSync(String(job.params.inputFile), file);
      } catch (error) {
        throw new AppError(ErrorCode.InvalidRequest, 'The clip to edit could not be read.', { cause: error });
      }
      return { file, device, frames: 8, width: 64, height: 64 };
    }
    const { ffmpeg } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
    const run = spawnSync(ffmpeg, ['-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=8:duration=1', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-f', 'mp4', file]);
    if (run.status !== 0) throw new Error(`ffmpeg failed: ${String(run.stderr)}`);
    return { file, device, frames: 8, width: 64, height: 64 };
  },
});
