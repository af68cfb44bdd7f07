import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { makeModelSet } from '../../src/engine/models/make.js';
import { StableDiffusionComponents } from '../../src/engine/pipelines/sd-components.js';
import { anchorFrames, defaultChunkSize, editChunks, vaeFramesPerCall, VideoEditPipeline, type VideoEditInput } from '../../src/engine/pipelines/video-edit.js';
import { meanAbsFrameDiff } from '../../src/engine/video/metrics.js';
import { removeDir, tempDir } from '../helpers/harness.js';

let dir: string;
let components: StableDiffusionComponents;
let pipeline: VideoEditPipeline;

const SIZE = 64;

/** A diagonal colour gradient sliding 3 px right per frame. */
function movingGradient(count: number, size = SIZE): Uint8Array[] {
  return Array.from({ length: count }, (_, f) => {
    const frame = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const p = (y * size + x) * 3;
        frame[p] = ((x + 3 * f) * 4) % 256;
        frame[p + 1] = (y * 4) % 256;
        frame[p + 2] = ((x + y + 3 * f) * 2) % 256;
      }
    }
    return frame;
  });
}

beforeAll(async () => {
  dir = tempDir();
  await makeModelSet({ size: 'tiny', kind: 'instruct-edit', out: join(dir, 'tiny-edit') });
  components = await StableDiffusionComponents.load(join(dir, 'tiny-edit'), {
    device: 'cpu',
    onnx: { intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: true },
    groups: 3,
    vaeEncoder: true,
  });
  pipeline = new VideoEditPipeline(components);
});
afterAll(async () => {
  await components?.release();
  removeDir(dir);
});

const clip = movingGradient(8);
const base: VideoEditInput = { frames: clip, width: SIZE, height: SIZE, instruction: 'make it snowy', numInferenceSteps: 4, seed: 11 };

const b64 = (frames: Uint8Array[]): string[] => frames.map((f) => Buffer.from(f).toString('base64'));

function worstDiff(a: Uint8Array[], b: Uint8Array[]): number {
  let worst = 0;
  a.forEach((frame, i) => {
    const other = b[i]!;
    for (let j = 0; j < frame.length; j++) worst = Math.max(worst, Math.abs(frame[j]! - other[j]!));
  });
  return worst;
}

test('anchors are spread over the clip, first and last included; chunks hold the other frames', () => {
  expect(anchorFrames(8, 3)).toEqual([0, 4, 7]);
  expect(anchorFrames(10, 3)).toEqual([0, 5, 9]);
  expect(anchorFrames(8, 1)).toEqual([0]);
  expect(anchorFrames(3, 3)).toEqual([0, 1, 2]);
  expect(editChunks(8, [0, 4, 7], 2)).toEqual([[1, 2], [3, 5], [6]]);
  expect(editChunks(3, [0, 1, 2], 8)).toEqual([[]]);
});

test('edits every frame at the input size, deterministically for a seed, one progress event per UNet call', async () => {
  const progress: number[] = [];
  const first = await pipeline.run(base, { onProgress: (p) => p.stage === 'editing' && progress.push(p.step) });
  expect(first.frames).toHaveLength(clip.length);
  expect(first.width).toBe(SIZE);
  expect(first.height).toBe(SIZE);
  for (const frame of first.frames) expect(frame.length).toBe(SIZE * SIZE * 3);
  expect(first.anchors).toEqual([0, 4, 7]);
  // 8 frames, chunk 8: per step one anchor call (3 anchors) and one call for the 5 others.
  expect(first.unetCalls).toBe(8);
  expect(progress).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  const again = await pipeline.run(base);
  expect(b64(again.frames)).toEqual(b64(first.frames));
  const other = await pipeline.run({ ...base, seed: 12 });
  expect(Buffer.from(other.frames[1]!).equals(Buffer.from(first.frames[1]!))).toBe(false);
  // DDIM also runs (deterministic sampler).
  const ddim = await pipeline.run({ ...base, scheduler: 'ddim' });
  expect(ddim.frames).toHaveLength(clip.length);
});

test('chunked output equals unchunked output: every chunk attends to the same anchors', async () => {
  const whole = await pipeline.run({ ...base, chunkSize: 8 });
  const chunked = await pipeline.run({ ...base, chunkSize: 1 }); // the anchor call + 5 one-frame chunks per step
  expect(chunked.unetCalls).toBe(4 * 6);
  // Batch size changes the order of float sums inside ONNX Runtime: allow one level of rounding.
  expect(worstDiff(whole.frames, chunked.frames)).toBeLessThanOrEqual(1);
  // Without cross-frame attention frames are independent, so chunking cannot matter either.
  const plainWhole = await pipeline.run({ ...base, crossFrameAttention: false, chunkSize: 8 });
  const plainChunked = await pipeline.run({ ...base, crossFrameAttention: false, chunkSize: 3 });
  expect(worstDiff(plainWhole.frames, plainChunked.frames)).toBeLessThanOrEqual(1);
});

test('anchor attention makes consecutive edited frames more alike than editing each frame alone', async () => {
  const input = { ...base, frames: movingGradient(8) };
  const on = meanAbsFrameDiff((await pipeline.run(input)).frames);
  const off = meanAbsFrameDiff((await pipeline.run({ ...input, crossFrameAttention: false })).frames);
  console.log(JSON.stringify({ edit_temporal_consistency: { mad_anchors_on: on, mad_anchors_off: off, ratio: on / off } }));
  expect(on).toBeLessThan(off);
});

test('cancellation stops within one step', async () => {
  const controller = new AbortController();
  let calls = 0;
  const run = pipeline.run({ ...base, numInferenceSteps: 20 }, {
    signal: controller.signal,
    onProgress: (p) => {
      if (p.stage !== 'editing') return;
      calls++;
      if (calls === 3) controller.abort(new Error('cancelled by test'));
    },
  });
  await expect(run).rejects.toThrow('cancelled by test');
  expect(calls).toBe(3);
});

test('bad inputs are refused by name', async () => {
  await expect(pipeline.run({ ...base, frames: [] })).rejects.toThrow(/`frames`/);
  await expect(pipeline.run({ ...base, frames: [clip[0]!, movingGradient(1, 32)[0]!] })).rejects.toThrow(/`frames\[1\]`/);
  await expect(pipeline.run({ ...base, anchors: 0 })).rejects.toThrow(/`anchors`/);
  await expect(pipeline.run({ ...base, anchors: 9 })).rejects.toThrow(/`anchors`/);
  await expect(pipeline.run({ ...base, width: 60 })).rejects.toThrow(/multiples of 8/);
  await expect(pipeline.run({ ...base, chunkSize: 0 })).rejects.toThrow(/`chunkSize`/);
  await expect(pipeline.run({ ...base, numInferenceSteps: 0 })).rejects.toThrow(/`numInferenceSteps`/);
});

test('the VAE takes one 512² frame per call, and small frames a chunk at a time', () => {
  expect(vaeFramesPerCall(512, 512, 8)).toBe(1);
  expect(vaeFramesPerCall(512, 384, 8)).toBe(1);
  expect(vaeFramesPerCall(256, 256, 8)).toBe(4);
  expect(vaeFramesPerCall(128, 128, 8)).toBe(8);
  expect(vaeFramesPerCall(1024, 1024, 8)).toBe(1);
});

test('the default chunk shrinks at large sizes to the anchor pass\'s batch, and stays 8 at small ones', () => {
  expect(defaultChunkSize(512, 512, 3)).toBe(3);
  expect(defaultChunkSize(512, 384, 3)).toBe(4);
  expect(defaultChunkSize(128, 128, 3)).toBe(8);
  expect(defaultChunkSize(1024, 1024, 1)).toBe(1);
  expect(defaultChunkSize(1024, 1024, 5)).toBe(5);
});
