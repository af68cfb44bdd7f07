/**
 * UNets the cross-frame rewrite cannot read, and fp16 UNets, on the torch-exported
 * diffusers-pipeline set (variants made by test/fixtures/unet-variants.ts):
 * - attention renamed (dynamo export) or already fused into MultiHeadAttention (ORT's optimizer):
 *   the model loads anyway and runs per frame, the log says the videos will flicker, and the
 *   engine's result carries `crossFrameUnavailable: true`; its frames equal the original model's
 *   run with cross-frame attention off;
 * - fp16 (initializers, constants and float I/O): the UNet loads on the CPU, with float32 attention
 *   around MultiHeadAttention, and every kind of call matches the fp32 model within fp16 rounding.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine/index.js';
import { loadRewrittenUnet } from '../../src/engine/onnx/cross-frame-file.js';
import { readModelFile } from '../../src/engine/onnx/proto.js';
import { StableDiffusionComponents } from '../../src/engine/pipelines/sd-components.js';
import { TextToVideoZeroPipeline } from '../../src/engine/pipelines/text-to-video-zero.js';
import { VideoEditPipeline } from '../../src/engine/pipelines/video-edit.js';
import type { EngineSettings } from '../../src/jobs/engine.js';
import { DIFFUSERS_PIPELINE, diffusersSetWithUnet, fuseSelfAttention, renameSelfAttentionNodes, toFloat16 } from '../fixtures/unet-variants.js';

const ONNX = { intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: false };
const SIZE = 64;

let dir: string;
const lines: Record<string, unknown>[] = [];
const logger = {
  info: (obj: object, msg?: string) => lines.push({ level: 'info', ...obj, msg }),
  warn: (obj: object, msg?: string) => lines.push({ level: 'warn', ...obj, msg }),
};
let original: StableDiffusionComponents;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reelbot-unet-variants-'));
  original = await StableDiffusionComponents.load(await diffusersSetWithUnet(join(dir, 'original'), 'sd', (m) => m), { device: 'cpu', onnx: ONNX, groups: 2 });
});
afterAll(async () => {
  await original.release();
  await rm(dir, { recursive: true, force: true });
});

function maxByteDifference(a: readonly Uint8Array[], b: readonly Uint8Array[]): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  a.forEach((frame, f) => {
    for (let i = 0; i < frame.length; i++) max = Math.max(max, Math.abs(frame[i]! - b[f]![i]!));
  });
  return max;
}

function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

const t2v = { prompt: 'a corgi surfing', seed: 3, numFrames: 3, numInferenceSteps: 3, width: SIZE, height: SIZE, motion: { dx: 8, dy: 0 } };

describe('a UNet whose self-attention the rewrite cannot find', () => {
  it.each([
    ['renamed nodes (dynamo export)', renameSelfAttentionNodes],
    ['attention fused into MultiHeadAttention', (m: Parameters<typeof renameSelfAttentionNodes>[0]) => fuseSelfAttention(m, 4)],
  ])('%s: loads, runs per frame and says the videos will flicker', async (name, transform) => {
    lines.length = 0;
    const set = await diffusersSetWithUnet(join(dir, name.replace(/\W+/g, '-')), 'sd', transform);
    await expect(loadRewrittenUnet(join(set, 'unet', 'model.onnx'))).rejects.toThrow(/cross-frame|self-attention|Softmax/);
    const components = await StableDiffusionComponents.load(set, { device: 'cpu', onnx: ONNX, groups: 2, logger });
    try {
      expect(components.crossFrameUnavailable).toBe(true);
      expect(components.crossFrameBlocks).toBe(0);
      expect(lines).toContainEqual(expect.objectContaining({ level: 'warn', msg: expect.stringContaining('videos will flicker') }));
      const video = await new TextToVideoZeroPipeline(components).run(t2v);
      const perFrame = await new TextToVideoZeroPipeline(original).run({ ...t2v, crossFrameAttention: false });
      const crossFrame = await new TextToVideoZeroPipeline(original).run(t2v);
      // Exactly the original model with cross-frame attention off, which differs from it on.
      expect(maxByteDifference(video.frames, perFrame.frames)).toBeLessThanOrEqual(1);
      expect(maxByteDifference(perFrame.frames, crossFrame.frames)).toBeGreaterThan(4);
    } finally {
      await components.release();
    }
  }, 60_000);

  it('the clip edit runs on a fused 8-channel UNet, per frame', async () => {
    const set = await diffusersSetWithUnet(join(dir, 'ip2p-fused'), 'ip2p', (m) => fuseSelfAttention(m, 4));
    const components = await StableDiffusionComponents.load(set, { device: 'cpu', onnx: ONNX, groups: 3, vaeEncoder: true });
    try {
      expect(components.crossFrameUnavailable).toBe(true);
      const frames = (await new TextToVideoZeroPipeline(original).run(t2v)).frames;
      const input = { frames, width: SIZE, height: SIZE, instruction: 'make it snowy', numInferenceSteps: 2, seed: 5, anchors: 2 };
      const edited = await new VideoEditPipeline(components).run(input);
      expect(edited.frames).toHaveLength(3);
      const perFrame = await new VideoEditPipeline(components).run({ ...input, crossFrameAttention: false });
      expect(maxByteDifference(edited.frames, perFrame.frames)).toBeLessThanOrEqual(1);
    } finally {
      await components.release();
    }
  }, 60_000);

  it('the engine renders on it and its result says crossFrameUnavailable', async () => {
    const set = await diffusersSetWithUnet(join(dir, 'engine-renamed'), 'sd', renameSelfAttentionNodes);
    const settings: EngineSettings = {
      modelDir: set,
      editModelDir: '',
      onnx: ONNX,
      ffmpegPath: '',
      ffprobePath: '',
      input: { maxBytes: 2 ** 24, maxDurationSeconds: 30, maxWidth: 1024, maxHeight: 1024, maxFrames: 16, maxFps: 30 },
      editSteps: 2,
      workerCount: 1,
    };
    const logged: string[] = [];
    const engine = await createEngine({ device: 'cpu', settings, logger: pino({ level: 'info' }, { write: (line: string) => logged.push(line) }) });
    const context = { signal: new AbortController().signal, onProgress: () => undefined };
    const job = { id: 1, kind: 'text2video' as const, params: { prompt: 'a corgi', numFrames: 2, numInferenceSteps: 2, width: SIZE, height: SIZE }, seed: 1, device: 'cpu', outputDir: join(dir, 'job-1'), attempt: 1 };
    try {
      const result = await engine.run(job, context);
      expect(result).toMatchObject({ frames: 2, crossFrameUnavailable: true });
      expect(logged.join('')).toContain('videos will flicker');
      expect(logged.join('')).not.toMatch(/\n\s+at /); // no stack trace in the log
    } finally {
      await engine.dispose?.();
    }
    // A UNet the rewrite reads leaves the field out.
    const plainEngine = await createEngine({ device: 'cpu', settings: { ...settings, modelDir: join(dir, 'original') }, logger: pino({ level: 'silent' }) });
    try {
      expect(await plainEngine.run({ ...job, id: 2, outputDir: join(dir, 'job-2') }, context)).not.toHaveProperty('crossFrameUnavailable');
    } finally {
      await plainEngine.dispose?.();
    }
  }, 60_000);
});

describe('an fp16 UNet on the CPU', () => {
  let fp16: StableDiffusionComponents;
  let fp32Edit: StableDiffusionComponents;
  let fp16Edit: StableDiffusionComponents;
  beforeAll(async () => {
    const set = await diffusersSetWithUnet(join(dir, 'fp16'), 'sd', toFloat16);
    fp16 = await StableDiffusionComponents.load(set, { device: 'cpu', onnx: ONNX, groups: 2 });
    fp32Edit = await StableDiffusionComponents.load(await diffusersSetWithUnet(join(dir, 'ip2p'), 'ip2p', (m) => m), { device: 'cpu', onnx: ONNX, groups: 3 });
    fp16Edit = await StableDiffusionComponents.load(await diffusersSetWithUnet(join(dir, 'ip2p-fp16'), 'ip2p', toFloat16), { device: 'cpu', onnx: ONNX, groups: 3 });
  });
  afterAll(async () => {
    await Promise.all([fp16.release(), fp32Edit.release(), fp16Edit.release()]);
  });

  it('is rewritten with float32 MultiHeadAttention between Casts, its keys/values in float16', async () => {
    const fixture = join(DIFFUSERS_PIPELINE, 'sd', 'unet', 'model.onnx');
    expect((await readModelFile(fixture)).model.graph?.input?.[0]?.type?.tensorType?.elemType).toBe(1);
    const rewritten = await loadRewrittenUnet(join(dir, 'fp16', 'unet', 'model.onnx'), { float32Attention: true });
    expect(rewritten.kvType).toBe('float16');
    const { model } = await readModelFile(rewritten.path);
    const nodes = model.graph?.node ?? [];
    const mha = nodes.filter((n) => n.opType === 'MultiHeadAttention');
    expect(mha).toHaveLength(7);
    const producers = new Map(nodes.flatMap((n) => (n.output ?? []).map((o) => [o, n] as const)));
    for (const node of mha) for (const input of node.input ?? []) expect(producers.get(input)?.opType).toBe('Cast');
    expect(fp16.crossFrameBlocks).toBe(7);
    expect(fp16.crossFrameUnavailable).toBe(false);
  });

  it('every kind of UNet call matches the fp32 model within fp16 rounding', async () => {
    const frames = 3;
    const random = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + seed) * 0.8);
    const latent = 4 * 8 * 8;
    const context = (batch: number): Float32Array => random(batch * 77 * 32, 2);
    const measured: string[] = [];
    const compare = (what: string, a: Float32Array, b: Float32Array): void => {
      const diff = maxAbsDifference(a, b);
      const scale = b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      measured.push(`${what}: ${diff.toExponential(2)} (outputs up to ${scale.toFixed(2)})`);
      // fp16 keeps 11 bits (~5e-4 relative per rounding of weights, activations and outputs);
      // measured 2.9e-3…3.6e-3 on outputs of about 1 through the 7 attention blocks.
      expect(diff, what).toBeLessThan(1e-2 * Math.max(1, scale));
    };
    for (const anchors of [null, [0]] as const) {
      const sample = random(2 * frames * latent, 1);
      compare(`t2v anchors ${JSON.stringify(anchors)}`, await fp16.unet(sample, 2 * frames, 8, 8, 500, context(2 * frames), anchors), await original.unet(sample, 2 * frames, 8, 8, 500, context(2 * frames), anchors));
    }
    // The edit's anchor pass (2 anchors) and a chunk pass importing their keys/values (3 frames).
    const editSample = (count: number, seed: number): Float32Array => random(3 * count * 8 * 8 * 8, seed);
    const a32 = await fp32Edit.unetAnchors(editSample(2, 3), 6, 8, 8, 500, context(6));
    const a16 = await fp16Edit.unetAnchors(editSample(2, 3), 6, 8, 8, 500, context(6));
    expect([...a16.kv.values()].every((tensor) => tensor.type === 'float16')).toBe(true);
    compare('edit anchor pass', a16.noise, a32.noise);
    compare('edit chunk pass', await fp16Edit.unetWithAnchorKv(editSample(3, 4), 9, 8, 8, 500, context(9), a16.kv), await fp32Edit.unetWithAnchorKv(editSample(3, 4), 9, 8, 8, 500, context(9), a32.kv));
    console.info(`fp16 vs fp32 UNet max abs diffs:\n  ${measured.join('\n  ')}`);
  });

  it('on a GPU device whose provider does not start, falls back to the CPU with the float32-attention graph', async () => {
    // No GPU here: WebGPU fails to start (onnx-runtime.md §4), which is the path under test.
    const onGpu = await StableDiffusionComponents.load(join(dir, 'fp16'), { device: 'webgpu', onnx: { ...ONNX, fallbackToCpu: true }, groups: 2 });
    try {
      expect(onGpu.provider).toBe('cpu');
      expect(onGpu.crossFrameBlocks).toBe(7);
      const sample = Float32Array.from({ length: 4 * 4 * 8 * 8 }, (_, i) => Math.sin(i));
      const context = Float32Array.from({ length: 4 * 77 * 32 }, (_, i) => Math.cos(i));
      const diff = maxAbsDifference(await onGpu.unet(sample, 4, 8, 8, 500, context, [0]), await fp16.unet(sample, 4, 8, 8, 500, context, [0]));
      expect(diff).toBe(0);
    } finally {
      await onGpu.release();
    }
  });

  it('renders a video', async () => {
    const video = await new TextToVideoZeroPipeline(fp16).run(t2v);
    const reference = await new TextToVideoZeroPipeline(original).run(t2v);
    expect(video.frames).toHaveLength(3);
    const diff = maxByteDifference(video.frames, reference.frames);
    console.info(`fp16 vs fp32 render, max byte difference: ${diff}`);
    expect(diff).toBeLessThanOrEqual(4);
  }, 60_000);
});
