/**
 * The VAE encoder in each form optimum has exported it (test/fixtures/diffusers-pipeline/
 * vae-encoder-variants, made from the committed torch export by scripts/make-vae-encoder-variants.ts):
 * today's `latent_parameters`, the older `latent_sample` that samples inside the graph with an
 * unseeded RandomNormalLike, and the mode export. reelbot must take the posterior mean from each,
 * so a seed gives one edit, the same with every form.
 */
import { cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { inspectModelFolder, ModelFolderError } from '../../src/engine/onnx/model-folder.js';
import { encodeModel, makeNode, makeValueInfo, DataType, onnx, readModelFile } from '../../src/engine/onnx/proto.js';
import { createSession, releaseSession, Tensor } from '../../src/engine/onnx/session.js';
import { inspectVaeEncoder, loadVaeEncoderForMean, rewriteVaeEncoderToMean } from '../../src/engine/onnx/vae-encoder.js';
import { StableDiffusionComponents } from '../../src/engine/pipelines/sd-components.js';
import { VideoEditPipeline } from '../../src/engine/pipelines/video-edit.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/diffusers-pipeline/', import.meta.url));
const MODE = join(FIXTURE, 'sd', 'vae_encoder', 'model.onnx');
const PARAMETERS = join(FIXTURE, 'vae-encoder-variants', 'latent-parameters', 'model.onnx');
const SAMPLING = join(FIXTURE, 'vae-encoder-variants', 'sampling-latent-sample', 'model.onnx');
const ONNX = { intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: true };
const SIZE = 64;

let dir: string;

/** An ip2p folder (the sd fixture with the 8-channel UNet) whose vae_encoder/model.onnx is `encoder`. */
async function editFolder(name: string, encoder: string | Uint8Array): Promise<string> {
  const folder = join(dir, name);
  await cp(join(FIXTURE, 'sd'), folder, { recursive: true });
  await rm(join(folder, 'unet'), { recursive: true });
  await cp(join(FIXTURE, 'ip2p', 'unet'), join(folder, 'unet'), { recursive: true });
  if (typeof encoder === 'string') await cp(encoder, join(folder, 'vae_encoder', 'model.onnx'));
  else await writeFile(join(folder, 'vae_encoder', 'model.onnx'), encoder);
  return folder;
}

function image(seed: number): Float32Array {
  const data = new Float32Array(3 * SIZE * SIZE);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37 + seed) * 0.8;
  return data;
}

interface Encoded {
  data: Float32Array;
  dims: readonly number[];
}

/** Runs an encoder `times` times on one session; returns each output. */
async function runEncoder(path: string, input: Float32Array, times = 1): Promise<Encoded[]> {
  const { session } = await createSession(path, { device: 'cpu', ...ONNX });
  try {
    const outputs: Encoded[] = [];
    for (let i = 0; i < times; i++) {
      const out = (await session.run({ sample: new Tensor('float32', input, [1, 3, SIZE, SIZE]) }))[session.outputNames[0]!]!;
      outputs.push({ data: out.data as Float32Array, dims: out.dims });
    }
    return outputs;
  } finally {
    await releaseSession(session);
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reelbot-vae-encoder-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('the fixtures are what optimum wrote', () => {
  test('the three forms are told apart by output name and by a random op feeding latent_sample', async () => {
    expect(inspectVaeEncoder((await readModelFile(MODE)).model)).toEqual({ outputName: 'latent_sample', output: 'mean', channels: null, expectedChannels: 4 });
    expect(inspectVaeEncoder((await readModelFile(PARAMETERS)).model)).toEqual({ outputName: 'latent_parameters', output: 'parameters', channels: 8, expectedChannels: 8 });
    expect(inspectVaeEncoder((await readModelFile(SAMPLING)).model)).toEqual({ outputName: 'latent_sample', output: 'sampled', channels: null, expectedChannels: 4 });
  });

  test('the sampling export draws new noise on every run of a session (the trap); latent_parameters holds the mean', async () => {
    const input = image(1);
    const mode = (await runEncoder(MODE, input))[0]!;
    const parameters = (await runEncoder(PARAMETERS, input))[0]!;
    // ORT seeds an unseeded RandomNormalLike the same way in every new session, then draws on: a
    // worker's second edit of the same clip with the same seed gets other noise than its first.
    const [first, second] = (await runEncoder(SAMPLING, input, 2)) as [Encoded, Encoded];
    expect(parameters.dims).toEqual([1, 8, SIZE / 8, SIZE / 8]);
    expect(mode.dims).toEqual([1, 4, SIZE / 8, SIZE / 8]);
    expect(first.dims).toEqual(mode.dims);
    expect(maxAbsDiff(first.data, second.data)).toBeGreaterThan(1e-3);
    // latent_parameters = [mean, logvar]: its first 4 channels are the mode export's output.
    expect(maxAbsDiff(parameters.data.subarray(0, mode.data.length), mode.data)).toBe(0);
  });
});

describe('reelbot takes the mean', () => {
  test('the sampling graph is rewritten to output the mean exactly, written beside the original and reused', async () => {
    const { model } = await readModelFile(SAMPLING);
    const rewritten = rewriteVaeEncoderToMean(model);
    const ops = (rewritten.graph?.node ?? []).map((n) => n.opType);
    expect(ops).not.toContain('RandomNormalLike');
    // What is left is the mode export's graph plus the Identity that names the mean latent_sample.
    expect(ops).toHaveLength(((await readModelFile(MODE)).model.graph?.node ?? []).length + 1);
    expect(ops.at(-1)).toBe('Identity');
    const folder = await editFolder('sampling-file', SAMPLING);
    const encoderPath = join(folder, 'vae_encoder', 'model.onnx');
    const loaded = await loadVaeEncoderForMean(encoderPath);
    expect(loaded).toMatchObject({ outputName: 'latent_sample', output: 'mean', expectedChannels: 4 });
    expect(loaded.path).toMatch(/vae_encoder\/model\.mean-[0-9a-f]{16}\.onnx$/);
    expect((await loadVaeEncoderForMean(encoderPath)).path).toBe(loaded.path);
    expect((await readdir(join(folder, 'vae_encoder'))).filter((f) => f.endsWith('.onnx')).sort()).toEqual(['model.mean-' + loaded.path.split('model.mean-')[1], 'model.onnx'].sort());
    const input = image(2);
    const [mean, again] = (await runEncoder(loaded.path, input, 2)) as [Encoded, Encoded];
    expect(maxAbsDiff(mean.data, again.data)).toBe(0);
    expect(maxAbsDiff(mean.data, (await runEncoder(MODE, input))[0]!.data)).toBe(0);
  });

  test('a sampling graph the rewrite does not recognise is refused with a message that says what to do', () => {
    const bad = onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 14 }],
      graph: onnx.GraphProto.create({
        name: 'bad',
        node: [makeNode('RandomNormalLike', ['sample'], ['noise'], { dtype: DataType.FLOAT }), makeNode('Sub', ['sample', 'noise'], ['latent_sample'])],
        input: [makeValueInfo('sample', DataType.FLOAT, [1, 4, 8, 8])],
        output: [makeValueInfo('latent_sample', DataType.FLOAT, [1, 4, 8, 8])],
      }),
    });
    expect(inspectVaeEncoder(bad).output).toBe('sampled');
    expect(() => rewriteVaeEncoderToMean(bad)).toThrow(/latent_sample comes from Sub, not from mean \+ std · noise.*current optimum \(it writes latent_parameters\)/);
  });

  test('the folder check and the components read every form; encode gives the same mean with each', async () => {
    const input = image(3);
    let reference: Float32Array | undefined;
    for (const [name, file, output] of [['mode', MODE, 'mean'], ['parameters', PARAMETERS, 'parameters'], ['sampling', SAMPLING, 'sampled']] as const) {
      const folder = await editFolder(`encode-${name}`, file);
      expect((await inspectModelFolder(folder)).vaeEncoder).toMatchObject({ output, outputName: name === 'parameters' ? 'latent_parameters' : 'latent_sample' });
      const components = await StableDiffusionComponents.load(folder, { device: 'cpu', onnx: ONNX, groups: 3, vaeEncoder: true });
      try {
        const latents = await components.encode(input, 1, SIZE, SIZE);
        expect(latents).toHaveLength(4 * (SIZE / 8) ** 2);
        expect(maxAbsDiff(latents, await components.encode(input, 1, SIZE, SIZE))).toBe(0);
        reference ??= latents;
        expect(maxAbsDiff(latents, reference)).toBe(0);
      } finally {
        await components.release();
      }
    }
  });

  test('the same seed gives the same edit with each form', async () => {
    const frames = Array.from({ length: 2 }, (_, f) => Uint8Array.from({ length: SIZE * SIZE * 3 }, (_, i) => (i * 7 + f * 40) % 256));
    const edits: string[][] = [];
    for (const [name, file] of [['mode', MODE], ['parameters', PARAMETERS], ['sampling', SAMPLING]] as const) {
      const components = await StableDiffusionComponents.load(await editFolder(`edit-${name}`, file), { device: 'cpu', onnx: ONNX, groups: 3, vaeEncoder: true });
      try {
        const pipeline = new VideoEditPipeline(components);
        const input = { frames, width: SIZE, height: SIZE, instruction: 'make it snowy', numInferenceSteps: 2, anchors: 1, seed: 5 };
        const once = (await pipeline.run(input)).frames.map((f) => Buffer.from(f).toString('base64'));
        const twice = (await pipeline.run(input)).frames.map((f) => Buffer.from(f).toString('base64'));
        expect(twice).toEqual(once);
        edits.push(once);
      } finally {
        await components.release();
      }
    }
    expect(edits[1]).toEqual(edits[0]);
    expect(edits[2]).toEqual(edits[0]);
  }, 60_000);
});

describe('the encoder output size is checked', () => {
  test('a latent_parameters output with the wrong channel count is refused by the folder check', async () => {
    const { model } = await readModelFile(PARAMETERS);
    const graph = model.graph as onnx.GraphProto;
    const wrong = onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, output: [makeValueInfo('latent_parameters', DataType.FLOAT, ['batch_size', 6, 'h', 'w'])] }) });
    const folder = await editFolder('wrong-static', encodeModel(wrong));
    await expect(inspectModelFolder(folder)).rejects.toThrow(ModelFolderError);
    await expect(inspectModelFolder(folder)).rejects.toThrow(/latent_parameters has 6 channels, expected 8 \(the mean and log-variance/);
  });

  test('a latent_sample of 8 channels that only a run reveals fails encode with a clear message, not garbage latents', async () => {
    // The latent_parameters graph under the old name, behind an Identity so its channels are unknown until run.
    const { model } = await readModelFile(PARAMETERS);
    const graph = model.graph as onnx.GraphProto;
    const nodes = [...(graph.node ?? []).map((n) => (n.output?.[0] === 'latent_parameters' ? onnx.NodeProto.create({ ...n, output: ['moments'] }) : n)), makeNode('Identity', ['moments'], ['latent_sample'])];
    const renamed = onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, node: nodes, output: [makeValueInfo('latent_sample', DataType.FLOAT, ['batch_size', 'c', 'h', 'w'])] }) });
    const folder = await editFolder('wrong-runtime', encodeModel(renamed));
    expect((await inspectModelFolder(folder)).vaeEncoder?.output).toBe('mean');
    const components = await StableDiffusionComponents.load(folder, { device: 'cpu', onnx: ONNX, groups: 3, vaeEncoder: true });
    try {
      await expect(components.encode(image(4), 1, SIZE, SIZE)).rejects.toThrow(/vae_encoder\/model\.onnx: latent_sample has 8 channels, expected 4/);
    } finally {
      await components.release();
    }
  });
});
