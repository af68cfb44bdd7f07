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
 * Each component folder also has a `config.json` with its shape, as optimum writes it. The `sd15`
 * size (SD 1.5's real architecture, 4.3 GB of fp32 weights) writes each model's weights as external
 * data, `model.onnx_data` beside a small `model.onnx`, streamed to disk as they are drawn; its
 * scheduler config is SD 1.5's own (PNDM) or instruct-pix2pix's (Euler Ancestral).
 */
import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { buildBpeVocab, writeTokenizerFolder } from '../text/bpe-vocab.js';
import { ExternalDataFile } from './external-data.js';
import { deriveSeed, type BuiltModel, type WeightStorage } from './graph-builder.js';
import { SIZES, TEXT_LENGTH, type ModelSetSize, type SizeSpec } from './sizes.js';
import { buildTextEncoder, type TextEncoderConfig } from './text-encoder.js';
import { buildUnet, type UnetConfig } from './unet.js';
import { buildVaeDecoder, buildVaeEncoder, VAE_SCALING_FACTOR, type VaeConfig } from './vae.js';

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
  /** State-dict parameters of each model (torch's `numel` sum): SD 1.5's UNet has 859,520,964. */
  readonly parameters: { readonly textEncoder: number; readonly unet: number; readonly vaeEncoder: number; readonly vaeDecoder: number };
  /** Whether the weights are in `model.onnx_data` beside each `model.onnx`. */
  readonly externalData: boolean;
}

/** The external data file beside each `model.onnx` of a set with external weights (optimum's name). */
export const EXTERNAL_DATA_FILE = 'model.onnx_data';

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

/** The shapes of a set's four models, as the builders take them. */
export interface ModelSetConfigs {
  readonly text: TextEncoderConfig;
  readonly unet: UnetConfig;
  readonly vae: VaeConfig;
}

/**
 * The builder configs of a size and kind. `tokenizerSize` is the tokenizer's vocabulary (ids
 * 0…n−1); the text encoder gets at least that many embedding rows.
 */
export function modelSetConfigs(size: ModelSetSize, kind: ModelSetKind, tokenizerSize: number): ModelSetConfigs {
  const spec: SizeSpec = SIZES[size];
  return {
    text: { ...spec.text, vocabSize: Math.max(tokenizerSize, spec.textVocabSize ?? 0), maxLength: TEXT_LENGTH },
    unet: { ...spec.unet, inChannels: kind === 'instruct-edit' ? 8 : 4, crossAttentionDim: spec.text.hiddenSize, sampleSize: spec.resolution / 8, textLength: TEXT_LENGTH },
    vae: { ...spec.vae, sampleSize: spec.resolution },
  };
}

async function writeModelSet(dir: string, size: ModelSetSize, kind: ModelSetKind, seed: number): Promise<ModelSetInfo> {
  const spec = SIZES[size];
  const latentSize = spec.resolution / 8;

  // 1. Tokenizer first: the text encoder's embedding table has one row per vocabulary entry.
  const vocab = buildBpeVocab();
  await writeTokenizerFolder(join(dir, 'tokenizer'), vocab);
  // Entries are ids 0..n-1; the max guards against a gap so Gather never reads past the table.
  const ids = Object.values(vocab.vocab);
  const configs = modelSetConfigs(size, kind, ids.reduce((count, id) => Math.max(count, id + 1), ids.length));
  const { text: textConfig, unet: unetConfig, vae: vaeConfig } = configs;
  const vocabSize = textConfig.vocabSize;
  const unetInChannels = unetConfig.inChannels;

  // 2. Models, each with its own seed stream so one component's shape never changes another's weights.
  const component = (name: string, build: (storage: WeightStorage) => BuiltModel, config: Record<string, unknown>) =>
    writeComponent(dir, name, build, config, spec.externalData);
  const text = await component('text_encoder', (storage) => buildTextEncoder(textConfig, deriveSeed(seed, 'text_encoder'), storage), {
    _class_name: 'CLIPTextModel',
    architectures: ['CLIPTextModel'],
    hidden_act: 'quick_gelu',
    hidden_size: textConfig.hiddenSize,
    intermediate_size: 4 * textConfig.hiddenSize,
    layer_norm_eps: 1e-5,
    max_position_embeddings: TEXT_LENGTH,
    num_attention_heads: textConfig.heads,
    num_hidden_layers: textConfig.layers,
    vocab_size: vocabSize,
  });
  const unet = await component('unet', (storage) => buildUnet(unetConfig, deriveSeed(seed, 'unet'), storage), unetJsonConfig(unetConfig));
  const vaeShape = vaeJsonConfig(vaeConfig);
  const encoder = await component('vae_encoder', (storage) => buildVaeEncoder(vaeConfig, deriveSeed(seed, 'vae_encoder'), storage), vaeShape);
  const decoder = await component('vae_decoder', (storage) => buildVaeDecoder(vaeConfig, deriveSeed(seed, 'vae_decoder'), storage), vaeShape);

  // 3. Scheduler and the index files.
  const scheduler = size === 'sd15' ? (kind === 'instruct-edit' ? instructPix2PixSchedulerConfig() : sd15SchedulerConfig()) : ddimSchedulerConfig();
  await mkdir(join(dir, 'scheduler'));
  await writeJson(join(dir, 'scheduler', 'scheduler_config.json'), scheduler);
  await writeJson(join(dir, 'model_index.json'), modelIndex(kind, String(scheduler._class_name)));
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
    parameters: { textEncoder: text.parameters, unet: unet.parameters, vaeEncoder: encoder.parameters, vaeDecoder: decoder.parameters },
    externalData: spec.externalData,
  };
  await writeJson(join(dir, 'reelbot.json'), info);
  return info;
}

/** `unet/config.json` as diffusers writes it for SD 1.5 (attention_head_dim is the head count in SD 1.x configs). */
function unetJsonConfig(unet: UnetConfig): Record<string, unknown> {
  return {
    _class_name: 'UNet2DConditionModel',
    _diffusers_version: DIFFUSERS_VERSION,
    act_fn: 'silu',
    attention_head_dim: unet.heads,
    block_out_channels: unet.blockOutChannels,
    center_input_sample: false,
    cross_attention_dim: unet.crossAttentionDim,
    down_block_types: unet.blockOutChannels.map((_, i, all) => (i < all.length - 1 ? 'CrossAttnDownBlock2D' : 'DownBlock2D')),
    downsample_padding: 1,
    flip_sin_to_cos: true,
    freq_shift: 0,
    in_channels: unet.inChannels,
    layers_per_block: unet.layersPerBlock,
    mid_block_scale_factor: 1,
    norm_eps: 1e-5,
    norm_num_groups: unet.normGroups,
    out_channels: 4,
    sample_size: unet.sampleSize,
    up_block_types: unet.blockOutChannels.map((_, i) => (i === 0 ? 'UpBlock2D' : 'CrossAttnUpBlock2D')),
  };
}

/** `vae_encoder/config.json` and `vae_decoder/config.json`: the AutoencoderKL config, as optimum copies it into both. */
function vaeJsonConfig(vae: VaeConfig): Record<string, unknown> {
  return {
    _class_name: 'AutoencoderKL',
    _diffusers_version: DIFFUSERS_VERSION,
    act_fn: 'silu',
    block_out_channels: vae.blockOutChannels,
    down_block_types: vae.blockOutChannels.map(() => 'DownEncoderBlock2D'),
    in_channels: 3,
    latent_channels: 4,
    layers_per_block: vae.layersPerBlock,
    mid_block_add_attention: vae.fullSd,
    norm_num_groups: vae.normGroups,
    out_channels: 3,
    sample_size: vae.sampleSize,
    scaling_factor: VAE_SCALING_FACTOR,
    up_block_types: vae.blockOutChannels.map(() => 'UpDecoderBlock2D'),
  };
}

/**
 * Builds one model into `<dir>/<name>/model.onnx` (+ `model.onnx_data` when `externalData`: the
 * weights go to disk as each tensor is drawn, so only the graph proto is ever held) and its config.json.
 */
async function writeComponent(
  dir: string,
  name: string,
  build: (storage: WeightStorage) => BuiltModel,
  config: Record<string, unknown>,
  externalData: boolean,
): Promise<BuiltModel> {
  const folder = join(dir, name);
  await mkdir(folder);
  const data = externalData ? new ExternalDataFile(join(folder, EXTERNAL_DATA_FILE)) : undefined;
  let model: BuiltModel;
  try {
    model = build(data ?? 'inline');
  } finally {
    data?.close();
  }
  await writeFile(join(folder, 'model.onnx'), model.encode());
  await writeJson(join(folder, 'config.json'), config);
  return model;
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** runwayml/stable-diffusion-v1-5's scheduler/scheduler_config.json (PNDM; reelbot's DDIM reads its shared keys, as diffusers' from_config does). */
function sd15SchedulerConfig(): Record<string, unknown> {
  return {
    _class_name: 'PNDMScheduler',
    _diffusers_version: '0.6.0',
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    beta_start: 0.00085,
    num_train_timesteps: 1000,
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
    trained_betas: null,
    clip_sample: false,
  };
}

/** timbrooks/instruct-pix2pix's scheduler/scheduler_config.json (Euler Ancestral; it has no clip_sample key). */
function instructPix2PixSchedulerConfig(): Record<string, unknown> {
  return {
    _class_name: 'EulerAncestralDiscreteScheduler',
    _diffusers_version: '0.12.0.dev0',
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    beta_start: 0.00085,
    num_train_timesteps: 1000,
    prediction_type: 'epsilon',
    steps_offset: 1,
    trained_betas: null,
  };
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
function modelIndex(kind: ModelSetKind, schedulerClass: string): Record<string, unknown> {
  return {
    _class_name: kind === 'instruct-edit' ? 'StableDiffusionInstructPix2PixPipeline' : 'StableDiffusionPipeline',
    _diffusers_version: DIFFUSERS_VERSION,
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', schedulerClass],
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
