import { cp, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeModelSet } from '../../src/engine/models/make.js';
import { CROSS_FRAME_ANCHORS_INPUT, rewriteCrossFrameAttention } from '../../src/engine/onnx/cross-frame.js';
import { crossFrameFeeds } from '../../src/engine/onnx/cross-frame-feeds.js';
import { loadRewrittenUnet } from '../../src/engine/onnx/cross-frame-file.js';
import { ModelFolderError, inspectModelFolder } from '../../src/engine/onnx/model-folder.js';
import { formatModelFolderInfo } from '../../src/engine/onnx/model-folder-report.js';
import { DataType, decodeModel, encodeModel, float32Initializer, makeNode, makeValueInfo, onnx } from '../../src/engine/onnx/proto.js';
import { createSession, listProviders, releaseSession, type InferenceSession, type Tensor } from '../../src/engine/onnx/session.js';
import { float32Tensor } from '../../src/engine/onnx/tensor.js';

let root: string;
let tiny: string;
let tinyEdit: string;
let copies = 0;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'reelbot-onnx-folder-'));
  tiny = join(root, 'tiny');
  tinyEdit = join(root, 'tiny-edit');
  await makeModelSet({ size: 'tiny', out: tiny });
  await makeModelSet({ size: 'tiny', out: tinyEdit, kind: 'instruct-edit' });
}, 120_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fresh copy of a built-in set to break. */
async function copyOf(source: string): Promise<string> {
  const dir = join(root, `copy-${copies++}`);
  await cp(source, dir, { recursive: true });
  return dir;
}

/** A one-node graph with the given I/O (inspect never runs it). */
function fakeModel(inputs: [string, number, (number | string)[]][], outputs: [string, number, (number | string)[]][]): Uint8Array {
  const first = inputs[0]?.[0] ?? 'x';
  return encodeModel(
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: onnx.GraphProto.create({
        name: 'fake',
        node: outputs.map(([name]) => makeNode('Identity', [first], [name])),
        input: inputs.map(([name, type, dims]) => makeValueInfo(name, type, dims)),
        output: outputs.map(([name, type, dims]) => makeValueInfo(name, type, dims)),
      }),
    }),
  );
}

const F = DataType.FLOAT;

describe('inspectModelFolder on the built-in tiny sets', () => {
  it('reads the text-to-video set', async () => {
    const info = await inspectModelFolder(tiny);
    expect(info.unet).toMatchObject({ kind: 'text-to-image', inChannels: 4, outChannels: 4, contextWidth: 32, sampleType: 'float32' });
    expect(info.unet.timestep).toEqual({ elemType: 'float32', rank: 1, dims: ['batch_size'] });
    expect(info.unet.inputs.map((i) => [i.name, i.elemType])).toEqual([
      ['sample', 'float32'],
      ['timestep', 'float32'],
      ['encoder_hidden_states', 'float32'],
    ]);
    expect(info.textEncoder).toMatchObject({ hiddenWidth: 32, sequenceLength: 77, idsType: 'int64' });
    expect(info.unet.selfAttention.length).toBeGreaterThan(0);
    for (const block of info.unet.selfAttention) {
      expect(block).toMatchObject({ heads: 2, headsFrom: 'graph' });
      expect(block.name).toMatch(/\/attn1$/);
    }
    expect(info.unet.crossAttention.length).toBe(info.unet.selfAttention.length);
    expect(info.vaeEncoder).not.toBeNull();
    expect(info.reelbot).toMatchObject({ builtIn: true, size: 'tiny' });
    expect(info.warnings).toEqual([]);

    const text = formatModelFolderInfo(info, listProviders());
    expect(text).toContain(`Model folder ${tiny}`);
    expect(text).toContain('UNet: text-to-image (4 input channels), 4 latent channels, text width 32');
    expect(text).toMatch(/ONNX Runtime providers: cpu, .*cuda \(needs its libraries installed\)/);
    expect(text).toMatch(/in {3}sample +float32 +\[batch_size, 4, height, width\]/);
    expect(text).toContain(`self-attention blocks (attn1): ${info.unet.selfAttention.length}, 2 heads (read from the graph)`);
    expect(text).toContain('/down_blocks.0/attentions.0/transformer_blocks.0/attn1');
  });

  it('reads the instruct-edit set', async () => {
    const info = await inspectModelFolder(tinyEdit);
    expect(info.unet).toMatchObject({ kind: 'instruct-edit', inChannels: 8, outChannels: 4 });
  });

  it('cross-frame rewrite of the tiny UNet runs, gives finite outputs, and keeps frame 0 as it was', async () => {
    const info = await inspectModelFolder(tiny);
    const unetBytes = await readFile(info.unet.path);
    const { model, blocks, details } = rewriteCrossFrameAttention(decodeModel(unetBytes));
    expect(blocks).toEqual(info.unet.selfAttention.map((b) => b.name));
    expect(details.every((d) => d.heads === 2 && d.headsFrom === 'graph')).toBe(true);

    const options = { device: 'cpu', intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: false } as const;
    const plain = (await createSession(unetBytes, options)).session;
    const cross = (await createSession(encodeModel(model), options)).session;
    const frames = 3;
    const batch = 2 * frames;
    const latent = 8;
    let seed = 7;
    const random = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return (seed / 2 ** 32) * 2 - 1;
    };
    const sample = Float32Array.from({ length: batch * 4 * latent * latent }, random);
    const context = Float32Array.from({ length: batch * 77 * 32 }, random);
    const feeds = {
      sample: float32Tensor(sample, [batch, 4, latent, latent]),
      timestep: float32Tensor(new Float32Array(batch).fill(981), [batch]),
      encoder_hidden_states: float32Tensor(context, [batch, 77, 32]),
    };
    const run = async (session: InferenceSession, extra: Record<string, Tensor> = {}): Promise<Float32Array> =>
      (await session.run({ ...feeds, ...extra })).out_sample?.data as Float32Array;
    const crossOut = await run(cross, crossFrameFeeds({ batch, framesPerGroup: frames, anchors: [0], blocks: blocks.length, kvType: 'float32' }));
    const plainOut = await run(plain);
    expect(crossOut.length).toBe(batch * 4 * latent * latent);
    expect(crossOut.every(Number.isFinite)).toBe(true);
    const frameSize = 4 * latent * latent;
    let frame0 = 0;
    let frame1 = 0;
    for (const b of [0, frames]) {
      for (let i = b * frameSize; i < (b + 1) * frameSize; i++) frame0 = Math.max(frame0, Math.abs((crossOut[i] ?? 0) - (plainOut[i] ?? 0)));
    }
    for (let i = frameSize; i < 2 * frameSize; i++) frame1 = Math.max(frame1, Math.abs((crossOut[i] ?? 0) - (plainOut[i] ?? 0)));
    console.info(`tiny built-in UNet, anchors [0]: frame 0 vs plain UNet max abs diff ${frame0.toExponential(2)}, frame 1 ${frame1.toExponential(2)}`);
    expect(frame0).toBeLessThanOrEqual(1e-4);
    expect(frame1).toBeGreaterThan(frame0);
    // Two anchors, another frame count, the same session.
    const two = await cross.run({
      sample: float32Tensor(sample.subarray(0, 4 * frameSize), [4, 4, latent, latent]),
      timestep: float32Tensor(new Float32Array(4).fill(981), [4]),
      encoder_hidden_states: float32Tensor(context.subarray(0, 4 * 77 * 32), [4, 77, 32]),
      ...crossFrameFeeds({ batch: 4, framesPerGroup: 2, anchors: [0, -1], blocks: blocks.length, kvType: 'float32' }),
    });
    expect((two.out_sample?.data as Float32Array).every(Number.isFinite)).toBe(true);
    await releaseSession(plain);
    await releaseSession(cross);
  });

  it('loadRewrittenUnet writes the rewritten tiny UNet beside the original', async () => {
    const dir = await copyOf(tiny);
    const result = await loadRewrittenUnet(join(dir, 'unet/model.onnx'));
    expect(result.path).toMatch(/unet\/model\.crossframe-[0-9a-f]{16}\.onnx$/);
    const { session } = await createSession(result.path, { device: 'cpu', intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: false });
    expect(session.inputNames).toContain(CROSS_FRAME_ANCHORS_INPUT);
    await releaseSession(session);
  });
});

describe('inspectModelFolder errors', () => {
  it('names a missing file', async () => {
    const dir = await copyOf(tiny);
    await unlink(join(dir, 'unet/model.onnx'));
    const error = await inspectModelFolder(dir).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelFolderError);
    expect((error as ModelFolderError).message).toBe(`${join(dir, 'unet/model.onnx')} is missing: this folder is not a complete Stable Diffusion export`);
    expect((error as ModelFolderError).path).toBe(join(dir, 'unet/model.onnx'));
  });

  it('lists several missing files at once', async () => {
    const dir = await copyOf(tiny);
    await unlink(join(dir, 'tokenizer/merges.txt'));
    await unlink(join(dir, 'vae_decoder/model.onnx'));
    await expect(inspectModelFolder(dir)).rejects.toThrow(
      `${join(dir, 'vae_decoder/model.onnx')} and ${join(dir, 'tokenizer/merges.txt')} are missing: this folder is not a complete Stable Diffusion export`,
    );
  });

  it('says when the path is not a folder', async () => {
    await expect(inspectModelFolder(join(root, 'nope'))).rejects.toThrow(`${join(root, 'nope')} is not a folder`);
  });

  it('recognises an SDXL UNet by its inputs', async () => {
    const dir = await copyOf(tiny);
    await writeFile(
      join(dir, 'unet/model.onnx'),
      fakeModel(
        [
          ['sample', F, ['batch', 4, 'h', 'w']],
          ['timestep', F, ['batch']],
          ['encoder_hidden_states', F, ['batch', 77, 2048]],
          ['text_embeds', F, ['batch', 1280]],
          ['time_ids', F, ['batch', 6]],
        ],
        [['out_sample', F, ['batch', 4, 'h', 'w']]],
      ),
    );
    await expect(inspectModelFolder(dir)).rejects.toThrow(/unet\/model\.onnx is not a Stable Diffusion UNet in the SD 1\.x optimum export layout: unexpected inputs text_embeds, time_ids .*SDXL UNet/);
  });

  it('names wrong input names', async () => {
    const dir = await copyOf(tiny);
    await writeFile(join(dir, 'vae_decoder/model.onnx'), fakeModel([['z', F, ['batch', 4, 'h', 'w']]], [['sample', F, ['batch', 3, 'H', 'W']]]));
    await expect(inspectModelFolder(dir)).rejects.toThrow(
      `${join(dir, 'vae_decoder/model.onnx')} is not a VAE decoder in the SD 1.x optimum export layout: no input latent_sample; unexpected input z`,
    );
  });

  it('refuses UNet input channels other than 4 or 8', async () => {
    const dir = await copyOf(tiny);
    await writeFile(
      join(dir, 'unet/model.onnx'),
      fakeModel(
        [
          ['sample', F, ['batch', 9, 'h', 'w']],
          ['timestep', F, ['batch']],
          ['encoder_hidden_states', F, ['batch', 77, 32]],
        ],
        [['out_sample', F, ['batch', 4, 'h', 'w']]],
      ),
    );
    await expect(inspectModelFolder(dir)).rejects.toThrow(/unet\/model\.onnx: sample has 9 channels, expected 4 \(text-to-image\) or 8 \(instruct-pix2pix\)/);
  });

  it('reads the channels from conv_in when the dim is symbolic, and refuses latent channels other than 4', async () => {
    const dir = await copyOf(tiny);
    const unet = onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: onnx.GraphProto.create({
        name: 'unet',
        node: [makeNode('Conv', ['sample', 'w_in'], ['out_sample'], {}, { name: '/conv_in/Conv' })],
        initializer: [float32Initializer('w_in', [8, 4, 1, 1], new Float32Array(32))],
        input: [
          makeValueInfo('sample', F, ['batch', 'channels', 'h', 'w']),
          makeValueInfo('timestep', DataType.INT64, ['batch']),
          makeValueInfo('encoder_hidden_states', F, ['batch', 77, 32]),
        ],
        output: [makeValueInfo('out_sample', F, ['batch', 'channels', 'h', 'w'])],
      }),
    });
    await writeFile(join(dir, 'unet/model.onnx'), encodeModel(unet));
    await expect(inspectModelFolder(dir)).rejects.toThrow(/unet\/model\.onnx: out_sample has 8 channels, expected 4 latent channels/);
  });

  it('refuses a text width mismatch between the text encoder and the UNet', async () => {
    const dir = await copyOf(tiny);
    await writeFile(
      join(dir, 'text_encoder/model.onnx'),
      fakeModel([['input_ids', DataType.INT32, ['batch', 77]]], [['last_hidden_state', F, ['batch', 77, 768]]]),
    );
    await expect(inspectModelFolder(dir)).rejects.toThrow(
      `Text width mismatch: ${join(dir, 'text_encoder/model.onnx')} outputs last_hidden_state of width 768, but ${join(dir, 'unet/model.onnx')} expects encoder_hidden_states of width 32`,
    );
  });

  it('refuses a VAE decoder with other than 4 latent channels', async () => {
    const dir = await copyOf(tiny);
    await writeFile(join(dir, 'vae_decoder/model.onnx'), fakeModel([['latent_sample', F, ['batch', 16, 'h', 'w']]], [['sample', F, ['batch', 3, 'H', 'W']]]));
    await expect(inspectModelFolder(dir)).rejects.toThrow(/vae_decoder\/model\.onnx: latent_sample has 16 channels, expected 4/);
  });

  it('needs the VAE encoder for an instruct-edit UNet', async () => {
    const dir = await copyOf(tinyEdit);
    await rm(join(dir, 'vae_encoder'), { recursive: true });
    await expect(inspectModelFolder(dir)).rejects.toThrow(/vae_encoder\/model\.onnx is missing: an instruct-edit \(8-channel\) UNet needs the VAE encoder/);
    // …but a text-to-video folder does not.
    const plain = await copyOf(tiny);
    await rm(join(plain, 'vae_encoder'), { recursive: true });
    expect((await inspectModelFolder(plain)).vaeEncoder).toBeNull();
  });

  it('names missing external data without reading it', async () => {
    const dir = await copyOf(tiny);
    const path = join(dir, 'unet/model.onnx');
    const model = decodeModel(await readFile(path));
    const graph = model.graph!;
    const first = graph.initializer?.[0];
    if (!first) throw new Error('the tiny UNet has no initializer');
    const external = onnx.TensorProto.create({
      name: first.name,
      dims: first.dims,
      dataType: first.dataType,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: 'model.onnx_data' },
        { key: 'offset', value: '0' },
        { key: 'length', value: String(first.rawData?.length ?? 0) },
      ],
    });
    const rewritten = onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, initializer: [external, ...(graph.initializer ?? []).slice(1)] }) });
    await writeFile(path, encodeModel(rewritten));
    await expect(inspectModelFolder(dir)).rejects.toThrow(`${path} keeps its weights in model.onnx_data, but ${join(dir, 'unet/model.onnx_data')} is missing`);
    // A data file that is present is only checked for, not read: an empty one passes inspection.
    await writeFile(join(dir, 'unet/model.onnx_data'), '');
    expect((await inspectModelFolder(dir)).unet.externalData).toEqual(['model.onnx_data']);
  });

  it('names a file that is not an ONNX model, and broken JSON', async () => {
    const dir = await copyOf(tiny);
    await writeFile(join(dir, 'vae_decoder/model.onnx'), 'not a protobuf at all, just text');
    await expect(inspectModelFolder(dir)).rejects.toThrow(`${join(dir, 'vae_decoder/model.onnx')} is not a readable ONNX model`);
    const other = await copyOf(tiny);
    await writeFile(join(other, 'scheduler/scheduler_config.json'), '{ nope');
    await expect(inspectModelFolder(other)).rejects.toThrow(`${join(other, 'scheduler/scheduler_config.json')} is not valid JSON`);
  });
});
