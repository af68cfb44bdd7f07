/**
 * A worker engine for the Discord failure-mode tests, loaded by real worker processes through
 * `engineModule`. The prompt steers it; anything else is the MP4 test engine (test/fakes/mp4-engine.ts):
 *   "crash once"  the worker process exits during the first attempt only (a marker file remembers it)
 *   "crash"       the worker process exits on every attempt
 *   "big"         a real 640×360 H.264 MP4 of high-bitrate noise, about 14 MiB (over Discord's
 *                 10 MiB floor, under a 25 MiB boosted limit), made with the bundled ffmpeg
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { CreateEngine } from '../../../src/jobs/engine.js';
import { resolveFfmpegPaths } from '../../../src/media/ffmpeg-paths.js';
import { createEngine as createMp4Engine } from '../../fakes/mp4-engine.js';

/** Size and length of the "big" video: 48 frames of noise, lossless-ish. */
export const BIG_VIDEO = { width: 640, height: 360, fps: 12, seconds: 4 } as const;

export const createEngine: CreateEngine = async (options) => {
  const mp4 = await createMp4Engine(options);
  return {
    async run(job, context) {
      const prompt = String(job.params.prompt ?? '');
      if (prompt.includes('crash once')) {
        const marker = join(dirname(job.outputDir), `crashed-once-${job.id}`);
        if (!existsSync(marker)) {
          mkdirSync(dirname(marker), { recursive: true });
          writeFileSync(marker, String(job.attempt));
          process.exit(3);
        }
      } else if (prompt.includes('crash')) {
        process.exit(3);
      }
      if (!prompt.includes('big')) return mp4.run(job, context);
      context.onProgress({ step: 1, total: 1, stage: 'denoising' });
      mkdirSync(job.outputDir, { recursive: true });
      const file = join(job.outputDir, 'out.mp4');
      const { ffmpeg } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
      const { width, height, fps, seconds } = BIG_VIDEO;
      // Asynchronously: a blocked event loop would stop the worker's heartbeats (and get it killed as hung).
      await promisify(execFile)(ffmpeg, [
        '-nostdin', '-loglevel', 'error', '-y',
        '-f', 'lavfi', '-i', `nullsrc=s=${width}x${height}:r=${fps}:d=${seconds},geq=lum='random(1)*255':cb=128:cr=128`,
        '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'ultrafast', '-crf', '1', '-movflags', '+faststart', '-f', 'mp4', file,
      ], { signal: context.signal });
      return { file, device: options.device, frames: fps * seconds, width, height };
    },
  };
};
