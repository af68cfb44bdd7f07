import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { makeModelSet } from '../../src/engine/models/make.js';
import { StableDiffusionComponents } from '../../src/engine/pipelines/sd-components.js';
import { TextToVideoZeroPipeline } from '../../src/engine/pipelines/text-to-video-zero.js';
import { phaseSteps } from '../../src/jobs/job-params.js';
import { meanAbsFrameDiff } from '../../src/engine/video/metrics.js';
import { removeDir, tempDir } from '../helpers/harness.js';

let dir: string;
let components: StableDiffusionComponents;
let pipeline: TextToVideoZeroPipeline;

beforeAll(async () => {
  dir = tempDir();
  await makeModelSet({ size: 'tiny', kind: 'text2video', out: join(dir, 'tiny') });
  components = await StableDiffusionComponents.load(join(dir, 'tiny'), {
    device: 'cpu',
    onnx: { intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: true },
    groups: 2,
  });
  pipeline = new TextToVideoZeroPipeline(components);
});
afterAll(async () => {
  await components?.release();
  removeDir(dir);
});

const base = { prompt: 'a corgi surfing at sunset', numFrames: 4, numInferenceSteps: 6, seed: 7 };

test('renders the requested frames at the model resolution, deterministically for a seed', async () => {
  const progress: number[] = [];
  const first = await pipeline.run(base, { onProgress: (p) => p.stage === 'denoising' && progress.push(p.step) });
  expect(first.frames).toHaveLength(4);
  expect(first.frames[0]!.length).toBe(first.width * first.height * 3);
  expect(first.width).toBe(components.resolution);
  const again = await pipeline.run(base);
  expect(again.frames.map((f) => Buffer.from(f).toString('base64'))).toEqual(first.frames.map((f) => Buffer.from(f).toString('base64')));
  const other = await pipeline.run({ ...base, seed: 8 });
  expect(Buffer.from(other.frames[0]!).equals(Buffer.from(first.frames[0]!))).toBe(false);
  // One progress event per UNet call: phase A on frame 0, then every step on the chunk.
  expect(progress.length).toBe(first.unetCalls);
  expect(progress.at(-1)).toBe(first.unetCalls);
});

test('chunked output equals unchunked output: every chunk attends to the same frame 0', async () => {
  const whole = await pipeline.run({ ...base, numFrames: 5, chunkSize: 8 });
  const chunked = await pipeline.run({ ...base, numFrames: 5, chunkSize: 3 });
  let worst = 0;
  whole.frames.forEach((frame, i) => {
    const other = chunked.frames[i]!;
    for (let j = 0; j < frame.length; j++) worst = Math.max(worst, Math.abs(frame[j]! - other[j]!));
  });
  // Batch size changes the order of float sums inside ONNX Runtime: allow one level of rounding.
  expect(worst).toBeLessThanOrEqual(1);
});

test('cross-frame attention makes consecutive frames more alike (motion 0, same seed)', async () => {
  const still = { ...base, numFrames: 6, motion: { dx: 0, dy: 0 } };
  const on = meanAbsFrameDiff((await pipeline.run(still)).frames);
  const off = meanAbsFrameDiff((await pipeline.run({ ...still, crossFrameAttention: false })).frames);
  console.log(JSON.stringify({ temporal_consistency: { mad_cross_frame_on: on, mad_cross_frame_off: off, ratio: on / off } }));
  expect(on).toBeLessThan(off);
});

test('cancellation stops within one step', async () => {
  const controller = new AbortController();
  let steps = 0;
  const run = pipeline.run({ ...base, numInferenceSteps: 20 }, {
    signal: controller.signal,
    onProgress: () => {
      steps++;
      if (steps === 3) controller.abort(new Error('cancelled by test'));
    },
  });
  await expect(run).rejects.toThrow('cancelled by test');
  expect(steps).toBe(3);
});

test('bad inputs are refused by name', async () => {
  await expect(pipeline.run({ ...base, numFrames: 0 })).rejects.toThrow(/`numFrames`/);
  await expect(pipeline.run({ ...base, height: 60 })).rejects.toThrow(/multiples of 8/);
  await expect(pipeline.run({ ...base, t0: 5, t1: 5 })).rejects.toThrow(/t0/);
  // The tiny UNet has 2 levels: sides in multiples of 16, said before ORT meets the shape.
  await expect(pipeline.run({ ...base, width: 72 })).rejects.toThrow("The width must be a multiple of 16 pixels for this model's UNet, not 72 (try 80)");
  await expect(pipeline.run({ ...base, height: 40, width: 64 })).rejects.toThrow(/The height must be a multiple of 16 pixels.*not 40/);
});

test('t0 or t1 given alone is paired with a sensible other, as diffusers pairs it at 50 steps', async () => {
  // diffusers keeps 44 / 47 for the missing one, whatever the steps (and t1 < 44 alone breaks t0 < t1).
  expect(phaseSteps(50)).toEqual({ t0: 44, t1: 47 });
  expect(phaseSteps(50, 30)).toEqual({ t0: 30, t1: 47 });
  expect(phaseSteps(50, undefined, 48)).toEqual({ t0: 44, t1: 48 });
  expect(phaseSteps(50, undefined, 20)).toEqual({ t0: 19, t1: 20 });
  expect(phaseSteps(50, 47)).toEqual({ t0: 47, t1: 48 });
  // Other step counts: that count's defaults (0.88 / 0.94 of the steps), or the neighbour step.
  expect(phaseSteps(10)).toEqual({ t0: 8, t1: 9 });
  expect(phaseSteps(10, 3)).toEqual({ t0: 3, t1: 9 });
  expect(phaseSteps(10, undefined, 3)).toEqual({ t0: 2, t1: 3 });
  expect(() => phaseSteps(10, 9)).toThrow('`t0` must be a step index from 0 to 8 for 10 steps (below t1), got 9');
  expect(() => phaseSteps(10, undefined, 0)).toThrow('`t1` must be a step index from 1 to 9 for 10 steps (above t0), got 0');
  // A lone t0 at 6 steps ran into the fixed t1 = 47 before.
  const alone = await pipeline.run({ ...base, t0: 2 });
  expect(alone.frames).toHaveLength(4);
  expect(alone.unetCalls).toBe((await pipeline.run({ ...base, t0: 2, t1: 5 })).unetCalls);
});
