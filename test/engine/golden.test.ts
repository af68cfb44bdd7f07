/**
 * Golden parity with diffusers: reelbot's Text2Video-Zero and clip-edit pipelines against
 * diffusers 0.31's own TextToVideoZeroPipeline and StableDiffusionInstructPix2PixPipeline (with the
 * Text2Video-Zero authors' CrossFrameAttnProcessor, and K anchors' keys/values for Fairy-style
 * editing), step by step, on the committed tiny export test/fixtures/diffusers-pipeline, with the
 * very same random draws (test/fixtures/golden, written by scripts/golden-diffusers-reference.py).
 *
 * Tolerances (test/helpers/golden.ts TOLERANCE): torch (Debian's 1.13, CPU) and onnxruntime 1.30
 * (CPU) compute the same float32 graphs with other kernels and summation orders (ORT's fused
 * MultiHeadAttention and its conv algorithms against torch's bmm/softmax and im2col), so each UNet,
 * VAE or text-encoder call differs by a few float32 ulps of its largest values, ~1e-7…1e-6
 * relative. Along a trajectory that difference is carried from step to step and multiplied by
 * guidance 7.5 (a difference of two predictions times 7.5), so latents are compared relative to
 * their largest value: measured worst 2.1e-6 over every case (50 steps included), bound 2e-5. Real
 * slips land far outside it (tried): swapped guidance halves 0.06…0.7, the forward jump's product of
 * alphas off by one step 6e-4…1.4e-3; a missing 1/0.18215 leaves the latents alone but moves pixels
 * by 174. Pixels: 1 of 255, for VAE outputs within 1e-6 of a rounding boundary (reelbot rounds half
 * up, numpy half to even); measured 1.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DrawsFile } from '../../src/engine/draws.js';
import { framesTensor, LatentRecorder } from '../../src/engine/pipelines/latent-dump.js';
import { StableDiffusionComponents } from '../../src/engine/pipelines/sd-components.js';
import { TextToVideoZeroPipeline, type TextToVideoZeroInput } from '../../src/engine/pipelines/text-to-video-zero.js';
import { VideoEditPipeline, type VideoEditInput } from '../../src/engine/pipelines/video-edit.js';
import type { NamedTensor } from '../../src/engine/safetensors.js';
import { compareWithReference, copyPipelineFixture, GOLDEN, goldenCases, goldenClip, maxAbs, maxAbsDiff, readTensors, TOLERANCE, type GoldenCase } from '../helpers/golden.js';

const cases = await goldenCases();
let dir: string;
let t2v: StableDiffusionComponents;
let edit: StableDiffusionComponents;
const onnx = { intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: true };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reelbot-golden-'));
  const { sd, ip2p } = await copyPipelineFixture(dir);
  t2v = await StableDiffusionComponents.load(sd, { device: 'cpu', onnx, groups: 2 });
  edit = await StableDiffusionComponents.load(ip2p, { device: 'cpu', onnx, groups: 3, vaeEncoder: true });
}, 60_000);
afterAll(async () => {
  await t2v?.release();
  await edit?.release();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs one case through reelbot with the case's draws; its latents and frames as tensors. */
async function runReelbot(golden: GoldenCase): Promise<{ tensors: Map<string, NamedTensor>; anchors?: number[] }> {
  const draws = DrawsFile.fromBytes(await readFile(join(GOLDEN, golden.draws)), golden.draws);
  const recorder = new LatentRecorder();
  const { height, width } = golden.input as { height: number; width: number };
  const latentShape = [4, height / 8, width / 8] as const;
  let frames: Uint8Array[];
  let anchors: number[] | undefined;
  if (golden.pipeline === 'text-to-video-zero') {
    const input = { ...(golden.input as unknown as TextToVideoZeroInput), seed: 0, draws };
    frames = (await new TextToVideoZeroPipeline(t2v).run(input, { onLatent: recorder.record })).frames;
  } else {
    const clip = await goldenClip(golden.clip!);
    const input = { ...(golden.input as unknown as Omit<VideoEditInput, 'frames' | 'seed'>), frames: clip.frames, seed: 0, draws };
    const out = await new VideoEditPipeline(edit).run(input, { onLatent: recorder.record });
    frames = out.frames;
    anchors = out.anchors;
  }
  const tensors = recorder.tensors(latentShape);
  tensors.set('frames', framesTensor(frames, width, height));
  return { tensors, anchors };
}

describe.each(cases.map((golden) => [golden.name, golden] as const))('%s', (_name, golden) => {
  test('matches diffusers step by step, with the same draws', async () => {
    const components = golden.pipeline === 'text-to-video-zero' ? t2v : edit;
    const reference = await readTensors(join(GOLDEN, golden.reference));
    // The text side first: tokens and embeddings (a mismatch here would explain any below).
    const prompt = (golden.input.prompt ?? golden.input.instruction) as string;
    expect(Array.from(components.tokenizer.encode(prompt).ids)).toEqual(golden.promptTokens);
    for (const [name, text] of [['text.prompt', prompt], ['text.uncond', '']] as const) {
      const ref = reference.get(name)!.data as Float32Array;
      const error = maxAbsDiff((await components.encodeText(text)).embedding, ref) / maxAbs(ref);
      expect(error, `${name} relative error`).toBeLessThanOrEqual(TOLERANCE.text);
    }

    const ours = await runReelbot(golden);
    if (golden.anchorFrames) expect(ours.anchors).toEqual(golden.anchorFrames);
    const result = compareWithReference(reference, ours.tensors);
    console.log(JSON.stringify({ golden: golden.name, points: result.points, worst_latent_relative_error: Number(result.worst.toExponential(2)), at: result.at, max_pixel_difference: result.maxPixelDifference }));
    expect(result.missing).toEqual([]);
    expect(result.points).toBeGreaterThanOrEqual(golden.timesteps.length);
    expect(result.worst, `worst latent error at ${result.at}`).toBeLessThanOrEqual(TOLERANCE.latent);
    expect(result.maxPixelDifference).toBeLessThanOrEqual(TOLERANCE.pixels);
  }, 120_000);
});
