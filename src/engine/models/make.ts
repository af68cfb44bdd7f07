/**
 * Builds reelbot's built-in Stable Diffusion 1.x model sets: untrained, seeded random weights in
 * the folder layout and I/O names of an `optimum-cli export onnx` SD 1.5 export, so the engine
 * and its tests run end to end with no model hub.
 *
 * ```
 * <out>/model_index.json            diffusers-style component table
 * <out>/reelbot.json                what this set is (built-in, untrained, size, GFLOP per frame…)
 * <out>/scheduler/scheduler_config.json   SD 1.5's DDIMScheduler config
 * <out>/tokenizer/                  vocab.json + merges.txt (from src/engine/text/bpe-vocab.ts)
 * <out>/text_encoder/model.onnx     input_ids → last_hidden_state, pooler_output
 * <out>/unet/model.onnx             sample, timestep, encoder_hidden_states → out_sample
 * <out>/vae_encoder/model.onnx      sample → latent_sample (posterior mean, unscaled)
 * <out>/vae_decoder/model.onnx      latent_sample → sample (Tanh, in (-1, 1))
 * ```
 * Each component folder also has a `config.json` with its shape, as optimum writes it.
 */
import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { buildBpeVocab, writeTokenizerFolder } from '../text/bpe-vocab.js';
import { deriveSeed } from './graph-builder.js';
import { SIZES, TEXT_LENGTH, type ModelSetSize } from './sizes.js';
import { buildTextEncoder } from './text-encoder.js';
import { buildUnet } from './unet.js';
import { buildVaeDecoder, buildVaeEncoder, VAE_SCALING_FACTOR } from './vae.js';

export { SIZES, type ModelSetSize } from './sizes.js';

/** What the set is for: plain text-to-video (4-channel UNet) or Instruct-Pix2Pix editing (8 channels). */
export type ModelSetKind = 'text2video' | 'instruct-edit';

/** Options of {@link makeModelSet}. */
export interface MakeModelSetOptions {
  readonly size: ModelSetSize;
  /** Folder to create. Its parent is created if needed; the set is built beside it and renamed into place. */
  readonly out: string;
  readonly kind?: ModelSetKind;
  /** Weight seed (uint32), default 0. The same seed gives byte-identical files. */
  readonly seed?: number;
  /** Replace an existing non-empty `out` (default false: refuse). */
  readonly force?: boolean;
}

/** Contents of `reelbot.json`. */
export interface ModelSetInfo {
  readonly builtIn: true;
  readonly size: ModelSetSize;
  readonly kind: ModelSetKind;
  readonly seed: number;
  readonly untrainedWeights: true;
  /** Default image size in pixels (square). */
  readonly resolution: number;
  /** Latent size at the default resolution (resolution / 8). */
  readonly latentSize: number;
  /** Latent height and width must be multiples of this (2^(levels − 1)). */
  readonly latentMultiple: number;
  readonly attentionHeads: number;
  readonly unetInChannels: number;
  readonly blockOutChannels: readonly number[];
  readonly textHiddenSize: number;
  readonly vocabSize: number;
  readonly vaeScalingFactor: number;
  /** 2 × multiply-accumulates of MatMul/Conv (attention included) per frame at the default resolution, ÷ 1e9. */
  readonly unetGflopsPerFrame: number;
  readonly vaeEncoderGflopsPerFrame: number;
  readonly vaeDecoderGflopsPerFrame: number;
}

/** Thrown when `out` exists and is not empty and `force` was not given. */
export class ModelSetExistsError extends Error {
  readonly path: string;

  constructor(path: string) {
    super(`Refusing to overwrite ${path}: it exists and is not empty. Pick another folder or pass force: true.`);
    this.name = new.target.name;
    this.path = path;
  }
}

const DIFFUSERS_VERSION = '0.27.2';
const SIZE_NAMES = Object.keys(SIZES) as ModelSetSize[];
const KINDS: readonly ModelSetKind[] = ['text2video', 'instruct-edit'];

/**
 * Builds a model set and moves it into `out` in one rename, so a half-built set never exists.
 *
 * @example
 * await makeModelSet({ size: 'tiny', out: '/tmp/models/tiny' });
 * await makeModelSet({ size: 'small', kind: 'instruct-edit', out: 'models/small-edit', seed: 7 });
 */
export async function makeModelSet(options: MakeModelSetOptions): Promise<ModelSetInfo> {
  const { size, kind, seed, force } = checkOptions(options);
  const out = resolve(options.out);
  const parent = dirname(out);
  await mkdir(parent, { recursive: true });
  if (!force && !(await isAbsentOrEmpty(out))) throw new ModelSetExistsError(out);

  const building = await mkdtemp(join(parent, `.${basename(out)}.building-`));
  try {
    const info = await writeModelSet(building, size, kind, seed);
    await moveIntoPlace(building, out, force);
    return info;
  } catch (error) {
    await rm(building, { recursive: true, force: true });
    throw error;
  }
}

function checkOptions(options: MakeModelSetOptions): { size: ModelSetSize; kind: ModelSetKind; seed: number; force: boolean } {
  const { size, out } = options;
  const kind = options.kind ?? 'text2video';
  const seed = options.seed ?? 0;
  if (!SIZE_NAMES.includes(size)) throw new TypeError(`Expected \`size\` to be one of ${SIZE_NAMES.join(', ')}, got \`${String(size)}\`.`);
  if (!KINDS.includes(kind)) throw new TypeError(`Expected \`kind\` to be one of ${KINDS.join(', ')}, got \`${String(kind)}\`.`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new TypeError(`Expected \`seed\` to be an integer from 0 to 4294967295, got \`${seed}\`.`);
  if (typeof out !== 'string' || out.trim() === '') throw new TypeError(`Expected \`out\` to be a folder path, got \`${String(out)}\`.`);
  return { size, kind, seed, force: options.force ?? false };
}

async function writeModelSet(dir: string, size: ModelSetSize, kind: ModelSetKind, seed: number): Promise<ModelSetInfo> {
  const spec = SIZES[size];
  const latentSize = spec.resolution / 8;
  const unetInChannels = kind === 'instruct-edit' ? 8 : 4;

  // 1. Tokenizer first: the text encoder's embedding table has one row per vocabulary entry.
  const vocab = buildBpeVocab();
  await writeTokenizerFolder(join(dir, 'tokenizer'), vocab);
  // Entries are ids 0..n-1; the max guards against a gap so Gather never reads past the table.
  const ids = Object.values(vocab.vocab);
  const vocabSize = ids.reduce((size, id) => Math.max(size, id + 1), ids.length);

  // 2. Models, each with its own seed stream so one component's shape never changes another's weights.
  const textConfig = { ...spec.text, vocabSize, maxLength: TEXT_LENGTH };
  const unetConfig = { ...spec.unet, inChannels: unetInChannels, crossAttentionDim: spec.text.hiddenSize, sampleSize: latentSize, textLength: TEXT_LENGTH };
  const vaeConfig = { ...spec.vae, sampleSize: spec.resolution };
  const text = buildTextEncoder(textConfig, deriveSeed(seed, 'text_encoder'));
  await writeComponent(dir, 'text_encoder', text.bytes, {
    _class_name: 'CLIPTextModel',
    architectures: ['CLIPTextModel'],
    hidden_act: 'quick_gelu',
    hidden_size: textConfig.hiddenSize,
    intermediate_size: 4 * textConfig.hiddenSize,
    max_position_embeddings: TEXT_LENGTH,
    num_attention_heads: textConfig.heads,
    num_hidden_layers: textConfig.layers,
    vocab_size: vocabSize,
  });
  const unet = buildUnet(unetConfig, deriveSeed(seed, 'unet'));
  await writeComponent(dir, 'unet', unet.bytes, {
    _class_name: 'UNet2DConditionModel',
    _diffusers_version: DIFFUSERS_VERSION,
    attention_head_dim: unetConfig.heads,
    block_out_channels: unetConfig.blockOutChannels,
    cross_attention_dim: unetConfig.crossAttentionDim,
    down_block_types: unetConfig.blockOutChannels.map((_, i, all) => (i < all.length - 1 ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
    in_channels: unetInChannels,
    layers_per_block: unetConfig.layersPerBlock,
    norm_num_groups: unetConfig.normGroups,
    out_channels: 4,
    sample_size: latentSize,
    up_block_types: unetConfig.blockOutChannels.map((_, i) => (i === 0 ? 'UpBlock2D' : 'CrossAttnUpBlock2D')),
  });
  const vaeShape = {
    _class_name: 'AutoencoderKL',
    _diffusers_version: DIFFUSERS_VERSION,
    block_out_channels: vaeConfig.blockOutChannels,
    in_channels: 3,
    latent_channels: 4,
    layers_per_block: vaeConfig.layersPerBlock,
    norm_num_groups: vaeConfig.normGroups,
    out_channels: 3,
    sample_size: spec.resolution,
    scaling_factor: VAE_SCALING_FACTOR,
  };
  const encoder = buildVaeEncoder(vaeConfig, deriveSeed(seed, 'vae_encoder'));
  await writeComponent(dir, 'vae_encoder', encoder.bytes, vaeShape);
  const decoder = buildVaeDecoder(vaeConfig, deriveSeed(seed, 'vae_decoder'));
  await writeComponent(dir, 'vae_decoder', decoder.bytes, vaeShape);

  // 3. Scheduler and the index files.
  await mkdir(join(dir, 'scheduler'));
  await writeJson(join(dir, 'scheduler', 'scheduler_config.json'), ddimSchedulerConfig());
  await writeJson(join(dir, 'model_index.json'), modelIndex(kind));
  const gflops = (macs: number): number => Math.round((2 * macs) / 1e6) / 1e3;
  const info: ModelSetInfo = {
    builtIn: true,
    size,
    kind,
    seed,
    untrainedWeights: true,
    resolution: spec.resolution,
    latentSize,
    latentMultiple: 2 ** (unetConfig.blockOutChannels.length - 1),
    attentionHeads: unetConfig.heads,
    unetInChannels,
    blockOutChannels: unetConfig.blockOutChannels,
    textHiddenSize: textConfig.hiddenSize,
    vocabSize,
    vaeScalingFactor: VAE_SCALING_FACTOR,
    unetGflopsPerFrame: gflops(unet.macs),
    vaeEncoderGflopsPerFrame: gflops(encoder.macs),
    vaeDecoderGflopsPerFrame: gflops(decoder.macs),
  };
  await writeJson(join(dir, 'reelbot.json'), info);
  return info;
}

async function writeComponent(dir: string, name: string, bytes: Uint8Array, config: Record<string, unknown>): Promise<void> {
  await mkdir(join(dir, name));
  await writeFile(join(dir, name, 'model.onnx'), bytes);
  await writeJson(join(dir, name, 'config.json'), config);
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** SD 1.5's scheduler/scheduler_config.json for DDIM (runwayml/stable-diffusion-v1-5). */
function ddimSchedulerConfig(): Record<string, unknown> {
  return {
    _class_name: 'DDIMScheduler',
    _diffusers_version: DIFFUSERS_VERSION,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    beta_start: 0.00085,
    clip_sample: false,
    clip_sample_range: 1.0,
    dynamic_thresholding_ratio: 0.995,
    num_train_timesteps: 1000,
    prediction_type: 'epsilon',
    rescale_betas_zero_snr: false,
    sample_max_value: 1.0,
    set_alpha_to_one: false,
    steps_offset: 1,
    thresholding: false,
    timestep_spacing: 'leading',
    trained_betas: null,
  };
}

/** model_index.json with optimum's ONNX component classes. */
function modelIndex(kind: ModelSetKind): Record<string, unknown> {
  return {
    _class_name: kind === 'instruct-edit' ? 'StableDiffusionInstructPix2PixPipeline' : 'StableDiffusionPipeline',
    _diffusers_version: DIFFUSERS_VERSION,
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', 'DDIMScheduler'],
    text_encoder: ['optimum', 'ORTModelTextEncoder'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['optimum', 'ORTModelUnet'],
    vae_decoder: ['optimum', 'ORTModelVaeDecoder'],
    vae_encoder: ['optimum', 'ORTModelVaeEncoder'],
  };
}

async function isAbsentOrEmpty(path: string): Promise<boolean> {
  try {
    if (!(await stat(path)).isDirectory()) return false;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw error;
  }
  return (await readdir(path)).length === 0;
}

const TAKEN = new Set(['ENOTEMPTY', 'EEXIST', 'ENOTDIR', 'EISDIR', 'EPERM']);

/** Renames the finished set onto `out`; an empty `out` folder is replaced, a non-empty one only with `force`. */
async function moveIntoPlace(building: string, out: string, force: boolean): Promise<void> {
  if (await isAbsentOrEmpty(out)) await rm(out, { recursive: true, force: true });
  try {
    await rename(building, out);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? '';
    if (!TAKEN.has(code)) throw error;
    if (!force) throw new ModelSetExistsError(out);
  }
  // Move the old set aside first, so `out` is either the old or the new set at every moment.
  const old = await mkdtemp(join(dirname(out), `.${basename(out)}.old-`));
  await rename(out, join(old, 'set'));
  await rename(building, out);
  await rm(old, { recursive: true, force: true });
}
