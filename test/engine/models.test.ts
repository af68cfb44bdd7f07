import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { onnx } from '../../src/engine/models/graph-builder.js';
import { Random } from '../../src/engine/random.js';
import { makeModelSet, ModelSetExistsError, type ModelSetInfo } from '../../src/engine/models/make.js';
import { createSession, releaseSession, Tensor, type InferenceSession } from '../../src/engine/onnx/session.js';
import { removeDir, tempDir } from '../helpers/harness.js';

const MODELS = ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder'] as const;
const C_TEXT = 32; // tiny's text hidden size

let dir: string;
let tiny: string;
let info: ModelSetInfo;
const sessions: InferenceSession[] = [];

async function load(path: string): Promise<InferenceSession> {
  const { session } = await createSession(path, { device: 'cpu', intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: true });
  sessions.push(session);
  return session;
}

function stats(values: Float32Array): { finite: boolean; mean: number; std: number; min: number; max: number } {
  let sum = 0;
  let finite = true;
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    if (!Number.isFinite(v)) finite = false;
    sum += v;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const mean = sum / values.length;
  let squares = 0;
  for (const v of values) squares += (v - mean) ** 2;
  return { finite, mean, std: Math.sqrt(squares / values.length), min, max };
}

function floats(tensor: Tensor | undefined): Float32Array {
  if (!tensor) throw new Error('missing output');
  return tensor.data as Float32Array;
}

/** A prompt-like batch: bos, a few tokens, then eos as padding (CLIP pads with eos). */
function inputIds(batch: number, vocabSize: number): Tensor {
  const bos = vocabSize - 2;
  const eos = vocabSize - 1;
  const ids = new BigInt64Array(batch * 77).fill(BigInt(eos));
  for (let b = 0; b < batch; b++) {
    ids[b * 77] = BigInt(bos);
    for (let j = 1; j <= 4 + b; j++) ids[b * 77 + j] = BigInt((b * 101 + j * 37) % 500);
  }
  return new Tensor('int64', ids, [batch, 77]);
}

async function runUnet(session: InferenceSession, batch: number, size: number, channels = 4): Promise<Float32Array> {
  const rng = new Random(batch * 1000 + size);
  const result = await session.run({
    sample: new Tensor('float32', rng.normals(batch * channels * size * size, 1), [batch, channels, size, size]),
    timestep: new Tensor('float32', Float32Array.from({ length: batch }, (_, i) => 981 - 40 * i), [batch]),
    encoder_hidden_states: new Tensor('float32', rng.normals(batch * 77 * C_TEXT, 1), [batch, 77, C_TEXT]),
  });
  expect(result.out_sample?.dims).toEqual([batch, 4, size, size]);
  return floats(result.out_sample);
}

beforeAll(async () => {
  dir = tempDir();
  tiny = join(dir, 'tiny');
  info = await makeModelSet({ size: 'tiny', out: tiny });
});

afterAll(async () => {
  await Promise.all(sessions.map((session) => releaseSession(session)));
  removeDir(dir);
});

describe('makeModelSet tiny', () => {
  test('writes the optimum SD 1.5 layout plus reelbot.json', () => {
    for (const model of MODELS) {
      expect(existsSync(join(tiny, model, 'model.onnx')), model).toBe(true);
      expect(existsSync(join(tiny, model, 'config.json')), model).toBe(true);
    }
    for (const file of ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json']) {
      expect(existsSync(join(tiny, 'tokenizer', file)), file).toBe(true);
    }
    const index = JSON.parse(readFileSync(join(tiny, 'model_index.json'), 'utf8'));
    expect(index._class_name).toBe('StableDiffusionPipeline');
    expect(index.scheduler).toEqual(['diffusers', 'DDIMScheduler']);
    expect(Object.keys(index)).toEqual(expect.arrayContaining(['_diffusers_version', 'text_encoder', 'tokenizer', 'unet', 'vae_encoder', 'vae_decoder']));

    const scheduler = JSON.parse(readFileSync(join(tiny, 'scheduler', 'scheduler_config.json'), 'utf8'));
    expect(scheduler).toMatchObject({
      _class_name: 'DDIMScheduler',
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      num_train_timesteps: 1000,
      steps_offset: 1,
      set_alpha_to_one: false,
      clip_sample: false,
      prediction_type: 'epsilon',
      timestep_spacing: 'leading',
    });

    const written = JSON.parse(readFileSync(join(tiny, 'reelbot.json'), 'utf8'));
    expect(written).toEqual(info);
    expect(written).toMatchObject({ builtIn: true, size: 'tiny', kind: 'text2video', seed: 0, untrainedWeights: true, resolution: 64, attentionHeads: 2, unetInChannels: 4 });
    const vocab = JSON.parse(readFileSync(join(tiny, 'tokenizer', 'vocab.json'), 'utf8'));
    expect(info.vocabSize).toBe(Object.keys(vocab).length);
    expect(info.unetGflopsPerFrame).toBeGreaterThan(0);
    // Nothing but the set itself is left in the parent folder (no temp build folders).
    expect(readdirSync(dir)).toEqual(['tiny']);
  });

  test('text encoder: input_ids [2,77] → last_hidden_state [2,77,C] and pooler_output at the eos position', async () => {
    const session = await load(join(tiny, 'text_encoder', 'model.onnx'));
    const result = await session.run({ input_ids: inputIds(2, info.vocabSize) });
    expect(result.last_hidden_state?.dims).toEqual([2, 77, C_TEXT]);
    expect(result.pooler_output?.dims).toEqual([2, C_TEXT]);
    const hidden = floats(result.last_hidden_state);
    const pooled = floats(result.pooler_output);
    const s = stats(hidden);
    expect(s.finite).toBe(true);
    expect(s.std).toBeGreaterThan(0.5);
    expect(s.std).toBeLessThan(2);
    // The first eos (highest id) of row b sits at 5 + b; pooler_output is the hidden state there.
    for (let b = 0; b < 2; b++) {
      const at = (b * 77 + 5 + b) * C_TEXT;
      expect(Array.from(pooled.subarray(b * C_TEXT, (b + 1) * C_TEXT))).toEqual(Array.from(hidden.subarray(at, at + C_TEXT)));
    }
    // Causal: the two rows share their first token, so position 0 is identical; later positions differ.
    expect(Array.from(hidden.subarray(0, C_TEXT))).toEqual(Array.from(hidden.subarray(77 * C_TEXT, 77 * C_TEXT + C_TEXT)));
    expect(Array.from(hidden.subarray(C_TEXT, 2 * C_TEXT))).not.toEqual(Array.from(hidden.subarray(78 * C_TEXT, 79 * C_TEXT)));
  });

  test('UNet runs at batch 2 and 6, 8×8 and 16×16 latents, with std ≈ 1 output', async () => {
    const session = await load(join(tiny, 'unet', 'model.onnx'));
    expect(session.inputNames).toEqual(['sample', 'timestep', 'encoder_hidden_states']);
    expect(session.outputNames).toEqual(['out_sample']);
    for (const batch of [2, 6]) {
      for (const size of [8, 16]) {
        const s = stats(await runUnet(session, batch, size));
        expect(s.finite, `${batch}×${size}`).toBe(true);
        expect(s.std, `${batch}×${size}`).toBeGreaterThan(0.5);
        expect(s.std, `${batch}×${size}`).toBeLessThan(2);
        expect(Math.abs(s.mean), `${batch}×${size}`).toBeLessThan(0.5);
      }
    }
  });

  test('UNet output depends on timestep and text, and each batch item only on itself', async () => {
    const session = await load(join(tiny, 'unet', 'model.onnx'));
    const rng = new Random(5);
    const sample = rng.normals(2 * 4 * 64, 1);
    const context = rng.normals(2 * 77 * C_TEXT, 1);
    const run = async (timesteps: number[], ctx: Float32Array): Promise<Float32Array> =>
      floats(
        (
          await session.run({
            sample: new Tensor('float32', sample, [2, 4, 8, 8]),
            timestep: new Tensor('float32', Float32Array.from(timesteps), [2]),
            encoder_hidden_states: new Tensor('float32', ctx, [2, 77, C_TEXT]),
          })
        ).out_sample,
      );
    const base = await run([981, 981], context);
    const laterT = await run([981, 1], context);
    const otherText = await run([981, 981], context.map((v) => -v));
    const item = 4 * 64;
    expect(Array.from(laterT.subarray(0, item))).toEqual(Array.from(base.subarray(0, item)));
    const diff = (a: Float32Array, b: Float32Array, from: number): number => stats(a.subarray(from, from + item).map((v, i) => v - (b[from + i] ?? 0))).std;
    expect(diff(laterT, base, item)).toBeGreaterThan(0.05);
    expect(diff(otherText, base, 0)).toBeGreaterThan(0.05);
  });

  test('VAE encodes 64×64 to an 8×8 latent and decodes back to 64×64 in (-1, 1)', async () => {
    const encoder = await load(join(tiny, 'vae_encoder', 'model.onnx'));
    const decoder = await load(join(tiny, 'vae_decoder', 'model.onnx'));
    const rng = new Random(9);
    const image = rng.normals(2 * 3 * 64 * 64, 0.5).map((v) => Math.max(-1, Math.min(1, v)));
    const encoded = await encoder.run({ sample: new Tensor('float32', image, [2, 3, 64, 64]) });
    expect(encoded.latent_sample?.dims).toEqual([2, 4, 8, 8]);
    const latent = floats(encoded.latent_sample);
    const ls = stats(latent);
    expect(ls.finite).toBe(true);
    // SD-like latent scale: ≈ 1/0.18215 before the pipeline's scaling.
    expect(ls.std * 0.18215).toBeGreaterThan(0.3);
    expect(ls.std * 0.18215).toBeLessThan(3);

    const decoded = await decoder.run({ latent_sample: new Tensor('float32', latent, [2, 4, 8, 8]) });
    expect(decoded.sample?.dims).toEqual([2, 3, 64, 64]);
    const ds = stats(floats(decoded.sample));
    expect(ds.finite).toBe(true);
    expect(ds.min).toBeGreaterThanOrEqual(-1);
    expect(ds.max).toBeLessThanOrEqual(1);
    expect(ds.std).toBeGreaterThan(0.2);
  });

  test('every UNet transformer block has the diffusers attention node names', () => {
    const model = onnx.ModelProto.decode(readFileSync(join(tiny, 'unet', 'model.onnx')));
    const nodes = model.graph?.node ?? [];
    const names = new Set(nodes.map((node) => node.name ?? ''));
    const blocks = [...new Set([...names].map((name) => /^(.*\/transformer_blocks\.0)\//.exec(name)?.[1]).filter((b) => b !== undefined))];
    expect(blocks.sort()).toEqual([
      '/down_blocks.0/attentions.0/transformer_blocks.0',
      '/mid_block/attentions.0/transformer_blocks.0',
      '/up_blocks.1/attentions.0/transformer_blocks.0',
      '/up_blocks.1/attentions.1/transformer_blocks.0',
    ]);
    for (const block of blocks) {
      for (const attn of ['attn1', 'attn2']) {
        for (const suffix of ['to_q/MatMul', 'to_k/MatMul', 'to_v/MatMul', 'Softmax', 'to_out/to_out.0/MatMul', 'to_out/to_out.0/Add']) {
          expect(names.has(`${block}/${attn}/${suffix}`), `${block}/${attn}/${suffix}`).toBe(true);
        }
      }
    }
    // Projections read torch-style `onnx::MatMul_<n>` initializers; q/k/v have no bias Add.
    const initializers = new Set((model.graph?.initializer ?? []).map((t) => t.name));
    const byName = new Map(nodes.map((node) => [node.name, node]));
    const toK = byName.get('/mid_block/attentions.0/transformer_blocks.0/attn2/to_k/MatMul');
    expect(toK?.input?.[0]).toBe('encoder_hidden_states');
    expect(toK?.input?.[1]).toMatch(/^onnx::MatMul_\d+$/);
    expect(initializers.has(toK?.input?.[1] ?? '')).toBe(true);
    expect(toK?.output).toEqual(['/mid_block/attentions.0/transformer_blocks.0/attn2/to_k/MatMul_output_0']);
    expect(nodes.some((node) => node.input?.includes(toK?.output?.[0] ?? '') && node.opType === 'Add')).toBe(false);
    expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17], ['com.microsoft', 1]]);
  });
});

describe('makeModelSet options', () => {
  test('the same seed gives byte-identical models; another seed different weights', async () => {
    const again = join(dir, 'again');
    const other = join(dir, 'other');
    await makeModelSet({ size: 'tiny', out: again });
    await makeModelSet({ size: 'tiny', out: other, seed: 1 });
    for (const model of MODELS) {
      const bytes = readFileSync(join(tiny, model, 'model.onnx'));
      expect(readFileSync(join(again, model, 'model.onnx')).equals(bytes), model).toBe(true);
      expect(readFileSync(join(other, model, 'model.onnx')).equals(bytes), model).toBe(false);
    }
    removeDir(again);
    removeDir(other);
  });

  test("instruct-edit's UNet takes 8 input channels", async () => {
    const out = join(dir, 'edit');
    const edit = await makeModelSet({ size: 'tiny', out, kind: 'instruct-edit' });
    expect(edit).toMatchObject({ kind: 'instruct-edit', unetInChannels: 8 });
    expect(JSON.parse(readFileSync(join(out, 'model_index.json'), 'utf8'))._class_name).toBe('StableDiffusionInstructPix2PixPipeline');
    const session = await load(join(out, 'unet', 'model.onnx'));
    const s = stats(await runUnet(session, 3, 8, 8));
    expect(s.finite).toBe(true);
    expect(s.std).toBeGreaterThan(0.5);
    await expect(runUnet(session, 3, 8, 4)).rejects.toThrow();
  });

  test('refuses to overwrite a non-empty folder unless force, and fills an empty one', async () => {
    await expect(makeModelSet({ size: 'tiny', out: tiny })).rejects.toBeInstanceOf(ModelSetExistsError);
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    await expect(makeModelSet({ size: 'tiny', out: file })).rejects.toBeInstanceOf(ModelSetExistsError);

    const empty = join(dir, 'empty');
    mkdirSync(empty);
    await makeModelSet({ size: 'tiny', out: empty, seed: 3 });
    expect(JSON.parse(readFileSync(join(empty, 'reelbot.json'), 'utf8')).seed).toBe(3);

    writeFileSync(join(empty, 'stray.txt'), 'old');
    await makeModelSet({ size: 'tiny', out: empty, seed: 4, force: true });
    expect(existsSync(join(empty, 'stray.txt'))).toBe(false);
    expect(JSON.parse(readFileSync(join(empty, 'reelbot.json'), 'utf8')).seed).toBe(4);
    // No temp build or old-set folders are left behind.
    expect(readdirSync(dir).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  test('rejects bad options with a message naming the option', async () => {
    await expect(makeModelSet({ size: 'huge' as 'tiny', out: join(dir, 'x') })).rejects.toThrow(/`size`/);
    await expect(makeModelSet({ size: 'tiny', out: join(dir, 'x'), seed: -1 })).rejects.toThrow(/`seed`/);
    await expect(makeModelSet({ size: 'tiny', out: join(dir, 'x'), kind: 'other' as 'text2video' })).rejects.toThrow(/`kind`/);
    expect(existsSync(join(dir, 'x'))).toBe(false);
  });
});
