/**
 * The `sd15` size without building it (4.3 GB): its models counted by the builders' counting mode
 * against the parameter counts of the real SD 1.5 modules, and the external-data writer it uses
 * checked on tiny models (same weights as inline, loaded by path, aligned offsets).
 */
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../../src/cli.js';
import { EXTERNAL_DATA_ALIGNMENT, ExternalDataFile } from '../../src/engine/models/external-data.js';
import { EXTERNAL_DATA_THRESHOLD, onnx, type BuiltModel, type WeightStorage } from '../../src/engine/models/graph-builder.js';
import { EXTERNAL_DATA_FILE, modelSetConfigs } from '../../src/engine/models/make.js';
import { SIZES } from '../../src/engine/models/sizes.js';
import { buildTextEncoder } from '../../src/engine/models/text-encoder.js';
import { buildUnet } from '../../src/engine/models/unet.js';
import { buildVaeDecoder, buildVaeEncoder } from '../../src/engine/models/vae.js';
import { createSession, releaseSession, Tensor, type InferenceSession } from '../../src/engine/onnx/session.js';
import { Random } from '../../src/engine/random.js';
import { removeDir, tempDir } from '../helpers/harness.js';

// From the real modules (torch, `sum(p.numel() for p in m.parameters())`):
// runwayml/stable-diffusion-v1-5 unet, openai/clip-vit-large-patch14 CLIPTextModel, SD's AutoencoderKL.
const SD15_UNET_PARAMETERS = 859_520_964;
const CLIP_L_TEXT_PARAMETERS = 123_060_480;
const SD_VAE_PARAMETERS = 83_653_863;

const TOKENIZER_SIZE = 1514; // any size below CLIP's 49408: the table keeps CLIP's rows

describe('sd15 size, counted without drawing any weight', () => {
  const t2v = modelSetConfigs('sd15', 'text2video', TOKENIZER_SIZE);
  const edit = modelSetConfigs('sd15', 'instruct-edit', TOKENIZER_SIZE);

  test('the UNet has SD 1.5\'s 859,520,964 parameters; the instruct-edit one 4 more input channels of conv_in', () => {
    expect(t2v.unet).toMatchObject({ blockOutChannels: [320, 640, 1280, 1280], layersPerBlock: 2, heads: 8, normGroups: 32, crossAttentionDim: 768, inChannels: 4, sampleSize: 64 });
    expect(buildUnet(t2v.unet, 0, 'count').parameters).toBe(SD15_UNET_PARAMETERS);
    expect(edit.unet.inChannels).toBe(8);
    expect(buildUnet(edit.unet, 0, 'count').parameters).toBe(SD15_UNET_PARAMETERS + 4 * 320 * 3 * 3);
  });

  test('the text encoder is CLIP ViT-L/14\'s text model (123,060,480 parameters, 49408 token rows)', () => {
    expect(t2v.text).toMatchObject({ hiddenSize: 768, layers: 12, heads: 12, vocabSize: 49408, maxLength: 77 });
    expect(buildTextEncoder(t2v.text, 0, 'count').parameters).toBe(CLIP_L_TEXT_PARAMETERS);
    // A tokenizer larger than CLIP's would get a row per entry, never fewer.
    expect(modelSetConfigs('sd15', 'text2video', 50_000).text.vocabSize).toBe(50_000);
  });

  test('encoder + decoder are SD\'s AutoencoderKL (83,653,863 parameters with quant convs and mid-block attention)', () => {
    const encoder = buildVaeEncoder(t2v.vae, 0, 'count');
    const decoder = buildVaeDecoder(t2v.vae, 0, 'count');
    expect(encoder.parameters + decoder.parameters).toBe(SD_VAE_PARAMETERS);
  });

  test('FLOPs per frame at 512² follow from the shapes (2 × MACs of every Conv and MatMul, attention included)', () => {
    const unet = buildUnet(t2v.unet, 0, 'count');
    // ≈ 0.8 TFLOP per sample per call; the convs alone are about half of it.
    expect((2 * unet.macs) / 1e9).toBeCloseTo(803.27, 1);
    expect(() => unet.encode()).toThrow(/only counted/);
  });

  test('the size asks for external data; the small sets keep their weights inline', () => {
    expect(SIZES.sd15.externalData).toBe(true);
    expect(SIZES.sd15.resolution).toBe(512);
    expect(SIZES.small.externalData).toBe(false);
    expect(SIZES.tiny.externalData).toBe(false);
  });
});

describe('external data on tiny models', () => {
  let dir: string;
  const sessions: InferenceSession[] = [];
  const tiny = modelSetConfigs('tiny', 'text2video', TOKENIZER_SIZE);

  async function load(path: string): Promise<InferenceSession> {
    const { session } = await createSession(path, { device: 'cpu', intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: true });
    sessions.push(session);
    return session;
  }

  /** Builds into `<dir>/<name>/model.onnx` (+ model.onnx_data when external), as make.ts does. */
  function write(name: string, build: (storage: WeightStorage) => BuiltModel, external: boolean): string {
    const folder = join(dir, name);
    mkdirSync(folder, { recursive: true });
    const data = external ? new ExternalDataFile(join(folder, EXTERNAL_DATA_FILE)) : undefined;
    const model = build(data ?? 'inline');
    data?.close();
    writeFileSync(join(folder, 'model.onnx'), model.encode());
    return join(folder, 'model.onnx');
  }

  beforeAll(() => {
    dir = tempDir();
  });

  afterAll(async () => {
    await Promise.all(sessions.map((session) => releaseSession(session)));
    removeDir(dir);
  });

  test('a UNet with external weights gives the same output as the inline one, loaded by path', async () => {
    const inline = write('inline-unet', (storage) => buildUnet(tiny.unet, 7, storage), false);
    const external = write('external-unet', (storage) => buildUnet(tiny.unet, 7, storage), true);
    const dataPath = join(dir, 'external-unet', EXTERNAL_DATA_FILE);
    // The graph file keeps only the small tensors; the weights are in model.onnx_data.
    expect(statSync(external).size).toBeLessThan(statSync(inline).size / 4);
    expect(statSync(dataPath).size).toBeGreaterThan(statSync(inline).size / 2);

    const rng = new Random(3);
    const feeds = {
      sample: new Tensor('float32', rng.normals(2 * 4 * 8 * 8, 1), [2, 4, 8, 8]),
      timestep: new Tensor('float32', Float32Array.from([981, 500]), [2]),
      encoder_hidden_states: new Tensor('float32', rng.normals(2 * 77 * 32, 1), [2, 77, 32]),
    };
    const a = (await (await load(inline)).run(feeds)).out_sample?.data as Float32Array;
    const b = (await (await load(external)).run(feeds)).out_sample?.data as Float32Array;
    expect(b.length).toBe(2 * 4 * 8 * 8);
    expect(Array.from(b)).toEqual(Array.from(a));
  });

  test('external initializers are page-aligned slices of model.onnx_data; small ones and constants stay inline', () => {
    const path = write('layout-text', (storage) => buildTextEncoder(tiny.text, 1, storage), true);
    const dataSize = statSync(join(dir, 'layout-text', EXTERNAL_DATA_FILE)).size;
    const model = onnx.ModelProto.decode(readFileSync(path));
    const initializers = model.graph?.initializer ?? [];
    let external = 0;
    let end = 0;
    for (const tensor of initializers) {
      const count = (tensor.dims ?? []).reduce<number>((a, d) => a * Number(d), 1);
      const bytes = 4 * count;
      if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
        external += 1;
        const entry = Object.fromEntries((tensor.externalData ?? []).map((e) => [e.key, e.value]));
        expect(entry.location).toBe(EXTERNAL_DATA_FILE);
        expect(Number(entry.offset) % EXTERNAL_DATA_ALIGNMENT, tensor.name ?? '').toBe(0);
        expect(Number(entry.length)).toBe(bytes);
        expect(bytes).toBeGreaterThanOrEqual(EXTERNAL_DATA_THRESHOLD);
        expect(tensor.rawData?.length ?? 0).toBe(0);
        expect(Number(entry.offset)).toBeGreaterThanOrEqual(end); // no overlaps, in order
        end = Number(entry.offset) + bytes;
      } else if (tensor.dataType === onnx.TensorProto.DataType.FLOAT && bytes >= EXTERNAL_DATA_THRESHOLD) {
        // Only constants (the causal mask) stay inline at this size.
        expect(tensor.name, tensor.name ?? '').toMatch(/Constant/);
      }
    }
    expect(external).toBeGreaterThan(5);
    expect(end).toBe(dataSize);
    expect(initializers.some((t) => t.name === 'text_model.embeddings.token_embedding.weight' && t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)).toBe(true);
  });

  test('the full-SD VAE (mid-block attention, diffusers downsample padding) runs at a tiny width', async () => {
    const vae = { ...tiny.vae, fullSd: true };
    const encoderPath = write('vae-encoder', (storage) => buildVaeEncoder(vae, 2, storage), true);
    const decoderPath = write('vae-decoder', (storage) => buildVaeDecoder(vae, 3, storage), true);
    const names = new Set((onnx.ModelProto.decode(readFileSync(encoderPath)).graph?.node ?? []).map((node) => node.name));
    for (const node of ['/encoder/mid_block/attentions.0/to_q/MatMul', '/encoder/mid_block/attentions.0/to_out/to_out.0/Add', '/encoder/down_blocks.0/downsamplers.0/Pad']) {
      expect(names.has(node), node).toBe(true);
    }
    const image = new Random(4).normals(3 * 64 * 64, 0.5).map((v) => Math.max(-1, Math.min(1, v)));
    const latent = (await (await load(encoderPath)).run({ sample: new Tensor('float32', image, [1, 3, 64, 64]) })).latent_sample;
    expect(latent?.dims).toEqual([1, 4, 8, 8]);
    const decoded = (await (await load(decoderPath)).run({ latent_sample: latent! })).sample;
    expect(decoded?.dims).toEqual([1, 3, 64, 64]);
    expect(Array.from(decoded?.data as Float32Array).every((v) => Number.isFinite(v) && v >= -1 && v <= 1)).toBe(true);
    // The attention counts: without it the parameters drop by its four projections, norm and biases.
    const withAttention = buildVaeEncoder(vae, 2, 'count').parameters;
    const without = buildVaeEncoder({ ...vae, fullSd: false }, 2, 'count').parameters;
    const c = vae.blockOutChannels[3];
    expect(withAttention - without).toBe(4 * (c * c + c) + 2 * c);
  });
});

describe('reelbot models make --size', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => removeDir(dir));

  async function cli(args: string[]): Promise<{ code: number; output: string }> {
    let output = '';
    const sink = { write: (text: string) => (output += text) };
    const code = await main(['node', 'reelbot', ...args], { stdout: sink, stderr: sink, env: {} });
    return { code, output };
  }

  test('offers sd15 among the sizes and refuses an unknown one before writing anything', async () => {
    const out = join(dir, 'huge');
    const refused = await cli(['models', 'make', '--size', 'huge', out]);
    expect(refused.code).not.toBe(0);
    expect(refused.output).toContain('--size must be one of tiny, small, sd15; got "huge"');
    expect(() => statSync(out)).toThrow();
    const help = await cli(['models', 'make', '--help']);
    expect(help.output.replace(/\s+/g, ' ')).toContain("sd15 (SD 1.5's full architecture");
  });

  test('makes a tiny set with inline weights and says what it made', async () => {
    const made = await cli(['models', 'make', '--size', 'tiny', '--kind', 'instruct-edit', join(dir, 'tiny-edit')]);
    expect(made.code).toBe(0);
    expect(made.output).toContain('Made the tiny instruct-edit set');
    const info = JSON.parse(readFileSync(join(dir, 'tiny-edit', 'reelbot.json'), 'utf8'));
    expect(info).toMatchObject({ size: 'tiny', kind: 'instruct-edit', untrainedWeights: true, externalData: false });
    expect(info.parameters.unet).toBe(buildUnet(modelSetConfigs('tiny', 'instruct-edit', info.vocabSize).unet, 0, 'count').parameters);
    expect(() => statSync(join(dir, 'tiny-edit', 'unet', EXTERNAL_DATA_FILE))).toThrow();
  });
});
