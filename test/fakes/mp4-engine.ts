/**
 * An engine for the bot adapter tests, loaded by real worker processes through `engineModule`:
 * it reports progress and writes a real (tiny) MP4 with the bundled ffmpeg, so an upload is what
 * the platform would get. The prompt (or an edit's instruction) steers it: "slow" makes each of 6
 * steps take 300 ms ("long": 1 s, for a job still running when a test has killed something),
 * "stubborn" makes it ignore a cancel (it runs on until its worker is killed), "preview" attaches a live preview to each progress (a 2-frame strip of 8×8
 * frames in one colour per step: `previewColour`), "fail" makes it fail after the steps, "untrained" sets `untrainedWeights` and
 * "per-frame" sets `crossFrameUnavailable` in the result (as the built-in engine does for a
 * built-in set and for a UNet run per frame). An edit must name an `inputFile` that
 * is an MP4 (the downloaded clip); it returns a copy of that clip, with its size as `inputBytes`,
 * so a test can tell which file went through.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError, ErrorCode } from '../../src/errors.js';
import type { CreateEngine } from '../../src/jobs/engine.js';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { encodePng } from '../../src/media/png.js';
import type { JobPreview } from '../../src/jobs/types.js';

/** Absolute path of this module, for `engineModule`. */
export const MP4_ENGINE = fileURLToPath(import.meta.url);

/** The colour (RGB) of every pixel of the preview at a step. */
export function previewColour(step: number): [number, number, number] {
  return [(step * 40) % 256, 255 - ((step * 40) % 256), 128];
}

function previewAt(step: number): JobPreview {
  const width = 16;
  const height = 8;
  const rgb = new Uint8Array(width * height * 3);
  for (let pixel = 0; pixel < width * height; pixel++) rgb.set(previewColour(step), pixel * 3);
  return { png: encodePng(rgb, width, height).toString('base64'), width, height, frames: [0, 1], step };
}

export const createEngine: CreateEngine = ({ device }) => ({
  async run(job, { signal, onProgress }) {
    const text = String(job.params.prompt ?? job.params.instruction ?? '');
    let input: Buffer | undefined;
    if (job.kind === 'edit') {
      try {
        input = readFileSync(String(job.params.inputFile));
      } catch (error) {
        throw new AppError(ErrorCode.InvalidRequest, 'The clip to edit could not be read.', { cause: error });
      }
      if (input.subarray(4, 8).toString('latin1') !== 'ftyp') throw new AppError(ErrorCode.InvalidRequest, 'The clip to edit is not an MP4.');
    }
    const long = text.includes('long');
    const slow = long || text.includes('slow');
    const stubborn = text.includes('stubborn');
    const steps = slow ? 6 : 3;
    for (let step = 1; step <= steps; step++) {
      if (!stubborn) signal.throwIfAborted();
      if (slow) await sleep(long ? 1000 : 300, undefined, stubborn ? {} : { signal });
      onProgress({ step, total: steps, stage: 'denoising', ...(text.includes('preview') ? { preview: previewAt(step) } : {}) });
    }
    if (text.includes('fail')) throw new Error('mp4 engine failure');
    const notes = { untrainedWeights: text.includes('untrained'), crossFrameUnavailable: text.includes('per-frame') };
    mkdirSync(job.outputDir, { recursive: true });
    const file = join(job.outputDir, 'out.mp4');
    if (input !== undefined) {
      writeFileSync(file, input);
      return { file, device, frames: 8, width: 64, height: 64, inputBytes: input.length, ...notes };
    }
    const { ffmpeg } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
    const run = spawnSync(ffmpeg, ['-nostdin', '-loglevel', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=64x64:rate=8:duration=1', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-f', 'mp4', file]);
    if (run.status !== 0) throw new Error(`ffmpeg failed: ${String(run.stderr)}`);
    return { file, device, frames: 8, width: 64, height: 64, ...notes };
  },
});
