/**
 * What a model folder's configs say, read instead of assumed: the default size (unet/config.json
 * `sample_size` × 8), head counts where the graph does not show them (refused rather than
 * guessed), the VAE's `scaling_factor`, the UNet's levels (size multiple); and `reelbot models
 * check` saying what will happen, per-frame UNets included.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../../src/cli.js';
import { makeModelSet } from '../../src/engine/models/make.js';
import { headsFromUnetConfig, inspectModelFolder, ModelFolderError } from '../../src/engine/onnx/model-folder.js';
import { encodeModel, int64Initializer, makeNode, onnx, readModelFile } from '../../src/engine/onnx/proto.js';
import { StableDiffusionComponents } from '../../src/engine/pipelines/sd-components.js';
import { TextToVideoZeroPipeline } from '../../src/engine/pipelines/text-to-video-zero.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/diffusers-pipeline/', import.meta.url));
const ONNX = { intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: true };

let root: string;
let tiny: string;
let copies = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'reelbot-folder-configs-'));
  tiny = join(root, 'tiny');
  await makeModelSet({ size: 'tiny', out: tiny });
}, 120_000);
afterAll(() => rm(root, { recursive: true, force: true }));

/** A copy of the tiny set that looks like an operator's export: no reelbot.json. */
async function exportLike(): Promise<string> {
  const dir = join(root, `copy-${copies++}`);
  await cp(tiny, dir, { recursive: true });
  await rm(join(dir, 'reelbot.json'));
  return dir;
}

async function editJson(path: string, edit: (json: Record<string, unknown>) => void): Promise<void> {
  const json = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  edit(json);
  await writeFile(path, JSON.stringify(json));
}

async function load(dir: string): Promise<StableDiffusionComponents> {
  return StableDiffusionComponents.load(dir, { device: 'cpu', onnx: ONNX, groups: 2 });
}

async function render(dir: string): Promise<string[]> {
  const components = await load(dir);
  try {
    const output = await new TextToVideoZeroPipeline(components).run({ prompt: 'a corgi', numFrames: 2, numInferenceSteps: 2, t0: 0, t1: 1, seed: 3, width: 64, height: 64 });
    return output.frames.map((f) => Buffer.from(f).toString('base64'));
  } finally {
    await components.release();
  }
}

async function cli(...args: string[]): Promise<{ code: number; text: string }> {
  const lines: string[] = [];
  const sink = { write: (text: string) => lines.push(text) };
  const code = await main(['node', 'reelbot', ...args], { stdout: sink, stderr: sink, env: { REELBOT_DB_PATH: join(root, 'reelbot.db') } });
  return { code, text: lines.join('') };
}

describe('the default size', () => {
  test('is unet/config.json sample_size × 8 (not 512 whatever the config says)', async () => {
    const dir = await exportLike();
    await editJson(join(dir, 'unet', 'config.json'), (c) => (c.sample_size = 12));
    expect((await inspectModelFolder(dir)).resolution).toEqual({ pixels: 96, from: 'unet/config.json' });
    const components = await load(dir);
    expect(components.resolution).toBe(96);
    expect(components.sizeMultiple).toBe(16);
    await components.release();
  });

  test('is SD 1.x 512 with a warning when no config says, and a size the UNet cannot take is refused', async () => {
    const dir = await exportLike();
    await editJson(join(dir, 'unet', 'config.json'), (c) => delete c.sample_size);
    const info = await inspectModelFolder(dir);
    expect(info.resolution).toEqual({ pixels: 512, from: 'default' });
    expect(info.warnings.join('\n')).toMatch(/no sample_size; the default size is SD 1.x's 512×512/);
    await editJson(join(dir, 'unet', 'config.json'), (c) => (c.sample_size = 9));
    await expect(inspectModelFolder(dir)).rejects.toThrow(/the default size 72 is not a multiple of 16 pixels, which this UNet \(2 levels\) needs/);
  });

  test('levels come from block_out_channels: 3 for the torch export (multiples of 32), 2 for the tiny set (16)', async () => {
    expect((await inspectModelFolder(join(FIXTURE, 'sd'))).unet).toMatchObject({ levels: 3, sizeMultiple: 32 });
    expect((await inspectModelFolder(tiny)).unet).toMatchObject({ levels: 2, sizeMultiple: 16 });
  });
});

describe('the VAE scaling factor', () => {
  test('is read from vae_decoder/config.json and used by the pipeline', async () => {
    const standard = await exportLike();
    const other = await exportLike();
    await editJson(join(other, 'vae_decoder', 'config.json'), (c) => (c.scaling_factor = 0.5));
    expect((await inspectModelFolder(standard)).vaeScalingFactor).toEqual({ value: 0.18215, from: 'vae_decoder/config.json' });
    expect((await inspectModelFolder(other)).vaeScalingFactor).toEqual({ value: 0.5, from: 'vae_decoder/config.json' });
    const components = await load(other);
    expect(components.vaeScalingFactor).toBe(0.5);
    await components.release();
    expect(await render(other)).not.toEqual(await render(standard));
  }, 60_000);

  test('falls back to vae_encoder/config.json, and a bad value names the file', async () => {
    const dir = await exportLike();
    await rm(join(dir, 'vae_decoder', 'config.json'));
    await editJson(join(dir, 'vae_encoder', 'config.json'), (c) => (c.scaling_factor = 0.13025));
    expect((await inspectModelFolder(dir)).vaeScalingFactor).toEqual({ value: 0.13025, from: 'vae_encoder/config.json' });
    await editJson(join(dir, 'vae_encoder', 'config.json'), (c) => (c.scaling_factor = 'big'));
    await expect(inspectModelFolder(dir)).rejects.toThrow(/vae_encoder\/config\.json: scaling_factor must be a positive number/);
  });
});

describe('head counts', () => {
  test('diffusers reads attention_head_dim as the head count when num_attention_heads is null; lists go per block', () => {
    const names = ['/down_blocks.0/attentions.0/transformer_blocks.0/attn1', '/unet/mid_block/attentions.0/transformer_blocks.0/attn1', '/up_blocks.1/attentions.2/transformer_blocks.0/attn1'];
    expect(headsFromUnetConfig({ attention_head_dim: 8, num_attention_heads: null }, names, 'c')).toBe(8);
    expect(headsFromUnetConfig({ attention_head_dim: 8, num_attention_heads: 5 }, names, 'c')).toBe(5);
    expect(headsFromUnetConfig({ attention_head_dim: [5, 10, 20, 20] }, names, 'c')).toEqual({ [names[0]!]: 5, [names[1]!]: 20, [names[2]!]: 20 });
    expect(headsFromUnetConfig({}, names, 'c')).toBeUndefined();
    expect(() => headsFromUnetConfig({ attention_head_dim: 'eight' }, names, 'unet/config.json')).toThrow(/unet\/config\.json: attention_head_dim must be a whole number of heads/);
  });

  test('a UNet whose graph hides them is refused without a config, and runs with the config\'s, like the original', async () => {
    const original = await exportLike();
    const hidden = await exportLike();
    // Each attn1 head-split shape goes through an Add, so it is no longer a constant the rewrite can read.
    const unetPath = join(hidden, 'unet', 'model.onnx');
    const { model } = await readModelFile(unetPath);
    const graph = model.graph as onnx.GraphProto;
    const zero = int64Initializer('hidden_heads/zero', [4], [0, 0, 0, 0]);
    const nodes: onnx.INodeProto[] = [];
    let hiddenCount = 0;
    const qOutputs = new Set((graph.node ?? []).filter((n) => n.name?.endsWith('/attn1/to_q/MatMul')).map((n) => n.output?.[0]));
    for (const node of graph.node ?? []) {
      if (node.opType === 'Reshape' && qOutputs.has(node.input?.[0] ?? '')) {
        const shape = `hidden_heads/${hiddenCount++}`;
        nodes.push(makeNode('Add', [node.input?.[1] as string, zero.name as string], [shape]));
        nodes.push(onnx.NodeProto.create({ ...node, input: [node.input?.[0] as string, shape] }));
      } else nodes.push(node);
    }
    expect(hiddenCount).toBeGreaterThan(0);
    await writeFile(unetPath, encodeModel(onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, node: nodes, initializer: [...(graph.initializer ?? []), zero] }) })));

    await editJson(join(hidden, 'unet', 'config.json'), (c) => delete c.attention_head_dim);
    const refused = inspectModelFolder(hidden);
    await expect(refused).rejects.toThrow(ModelFolderError);
    await expect(inspectModelFolder(hidden)).rejects.toThrow(/does not show the head count of .*attn1 and .*unet\/config\.json gives neither num_attention_heads nor attention_head_dim/);

    await editJson(join(hidden, 'unet', 'config.json'), (c) => (c.attention_head_dim = 2));
    const info = await inspectModelFolder(hidden);
    expect(info.unet.attention).toEqual({ mode: 'cross-frame' });
    for (const block of info.unet.selfAttention) expect(block).toMatchObject({ heads: 2, headsFrom: 'option' });
    expect(await render(hidden)).toEqual(await render(original));
  }, 60_000);
});

describe('reelbot models check', () => {
  test('says what will happen for the torch export and the built-in set', async () => {
    const check = await cli('models', 'check', join(FIXTURE, 'sd'));
    expect(check.code, check.text).toBe(0);
    for (const line of [
      'What will happen:',
      'provider: cpu for device cpu',
      'UNet: text-to-image (4 input channels): text to video',
      'attention: cross-frame (7 self-attention blocks rewritten, 4 heads from the graph)',
      'resolution: 512×512 by default (from unet/config.json); sides in multiples of 32 pixels (3 UNet levels)',
      'fp16: no (float32 UNet)',
      'VAE encoder: latent_sample, the posterior mean: used as it is',
      'VAE scaling factor: 0.18215 (from vae_decoder/config.json)',
    ]) {
      expect(check.text).toContain(line);
    }
    const builtIn = await cli('models', 'check', tiny);
    expect(builtIn.text).toContain('resolution: 64×64 by default (from reelbot.json)');
    expect(builtIn.text).toContain('weights: untrained (a built-in demo set)');
  });

  test('a UNet with no attention the rewrite can find is reported as per-frame and flickering, not refused', async () => {
    const dir = await exportLike();
    const unetPath = join(dir, 'unet', 'model.onnx');
    const { model } = await readModelFile(unetPath);
    const graph = model.graph as onnx.GraphProto;
    const renamed = (graph.node ?? []).map((n) => onnx.NodeProto.create({ ...n, name: (n.name ?? '').replaceAll('/attn1/', '/self_attention/') }));
    await writeFile(unetPath, encodeModel(onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, node: renamed }) })));
    const info = await inspectModelFolder(dir);
    expect(info.unet.attention).toEqual({ mode: 'per-frame', reason: 'no self-attention block (no node named …/attn1/to_q/MatMul)' });
    const check = await cli('models', 'check', dir);
    expect(check.code, check.text).toBe(0);
    expect(check.text).toContain('attention: per-frame: no self-attention block (no node named …/attn1/to_q/MatMul). Each frame attends only to itself, so videos will flicker');
  });

  test('the per-frame reason names a fused (--optimize) export and a dynamo-style one', async () => {
    const fused = await exportLike();
    const unetPath = join(fused, 'unet', 'model.onnx');
    const { model } = await readModelFile(unetPath);
    const graph = model.graph as onnx.GraphProto;
    // What ORT's transformer optimizer leaves: no attn1 MatMuls, one com.microsoft MultiHeadAttention per block.
    const nodes = (graph.node ?? []).map((n) => onnx.NodeProto.create({ ...n, name: (n.name ?? '').replaceAll('/attn1/', '/fused/') }));
    const q = nodes.find((n) => n.name?.endsWith('/fused/to_q/MatMul'))!.output![0]!;
    nodes.push(makeNode('MultiHeadAttention', [q, q, q], ['fused_out'], { num_heads: 2 }, { domain: 'com.microsoft' }));
    await writeFile(unetPath, encodeModel(onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, node: nodes }) })));
    expect((await inspectModelFolder(fused)).unet.attention.reason).toMatch(/already fused into com\.microsoft MultiHeadAttention nodes \(an --optimize export/);

    const dynamo = await exportLike();
    const dynamoPath = join(dynamo, 'unet', 'model.onnx');
    const plain = (graph.node ?? []).map((n, i) => onnx.NodeProto.create({ ...n, name: `node_${n.opType}_${i}` }));
    await writeFile(dynamoPath, encodeModel(onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, node: plain }) })));
    const info = await inspectModelFolder(dynamo);
    expect(info.unet.attention).toMatchObject({ mode: 'per-frame', reason: expect.stringMatching(/node names do not carry the module paths.*a dynamo export/) });
    expect(info.warnings.join('\n')).toMatch(/videos will flicker/);
  });

  test('the VAE encoder line names today\'s latent_parameters export', async () => {
    const dir = await exportLike();
    await cp(join(FIXTURE, 'vae-encoder-variants', 'latent-parameters', 'model.onnx'), join(dir, 'vae_encoder', 'model.onnx'));
    const check = await cli('models', 'check', dir);
    expect(check.text).toContain('VAE encoder: latent_parameters, mean and log-variance (optimum since 2024): the mean (first 4 channels) is used');
  });
});
