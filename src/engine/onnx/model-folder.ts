/**
 * @file Reads and checks a Stable Diffusion 1.x model folder in the optimum export layout
 * (/work/shared/pipelines.md §4b) without loading any weights: each `model.onnx` graph is decoded
 * with onnx-proto and its external data files (`model.onnx_data`) are only checked to exist.
 *
 * ```
 * model_index.json                     optional
 * reelbot.json                         optional: reelbot's built-in sets
 * scheduler/scheduler_config.json
 * tokenizer/vocab.json, merges.txt
 * text_encoder/model.onnx              input_ids → last_hidden_state
 * unet/model.onnx                      sample, timestep, encoder_hidden_states → out_sample
 * vae_encoder/model.onnx               sample → latent_sample or latent_parameters (needed by instruct-edit)
 * vae_decoder/model.onnx               latent_sample → sample
 * unet/, vae_decoder/, vae_encoder/config.json   optional: sample_size, head counts, levels, scaling_factor
 * ```
 * Every problem is a {@link ModelFolderError} naming the file and what is wrong with it.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { inspectSelfAttention, type CrossFrameBlock, type HeadsOption, type SelfAttentionProblem } from './cross-frame.js';
import { inspectVaeEncoder, type VaeEncoderOutput } from './vae-encoder.js';
import {
  GraphIndex,
  describeValueInfo,
  externalDataLocations,
  readModelFile,
  tensorDims,
  toNumber,
  type ElemType,
  type ValueInfo,
  type onnx,
} from './proto.js';

/** A model folder that cannot be used, with the file at fault. */
export class ModelFolderError extends Error {
  /** The file (or folder) the problem is in. */
  readonly path: string;

  constructor(path: string, message: string) {
    super(message);
    this.name = new.target.name;
    this.path = path;
  }
}

/** What the UNet is for, from its input channels: 4 latent channels, or 4 + 4 image-conditioning channels. */
export type UnetKind = 'text-to-image' | 'instruct-edit';

/** One ONNX graph of the folder. */
export interface OnnxModelInfo {
  /** Absolute path of the `.onnx` file. */
  path: string;
  /** Path relative to the folder, e.g. `unet/model.onnx`. */
  file: string;
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producer: string;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  nodeCount: number;
  initializerCount: number;
  /** External data files the weights are in (relative to the model's folder); checked to exist, never read. */
  externalData: string[];
}

export interface TextEncoderInfo extends OnnxModelInfo {
  /** Width of `last_hidden_state` (768 for SD 1.x); null when the graph leaves it open. */
  hiddenWidth: number | null;
  /** Token count of `input_ids` (77); null when dynamic. */
  sequenceLength: number | null;
  idsType: ElemType;
}

export interface UnetInfo extends OnnxModelInfo {
  kind: UnetKind;
  inChannels: number;
  outChannels: number;
  /** Width of `encoder_hidden_states` (768 for SD 1.x). */
  contextWidth: number | null;
  /** `float32` or `float16`: the dtype of `sample`. */
  sampleType: ElemType;
  /** The `timestep` input differs between exporters: int64 [batch], float32 [batch] or a float32 scalar. */
  timestep: { elemType: ElemType; rank: number | null; dims: (number | string | null)[] | null };
  /** Self-attention blocks (`…/attn1`), with heads and scale as the cross-frame rewrite sees them. */
  selfAttention: (CrossFrameBlock | SelfAttentionProblem)[];
  /** Text cross-attention blocks (`…/attn2`). */
  crossAttention: string[];
  /**
   * `cross-frame` when every self-attention block can be rewritten; `per-frame` when none was found
   * or one cannot be (each frame then attends only to itself, and videos flicker), with the reason.
   */
  attention: { mode: 'cross-frame' | 'per-frame'; reason?: string };
  /** Head counts from unet/config.json for blocks whose graph does not show them (passed to the rewrite). */
  configHeads: HeadsOption | undefined;
  /** Resolution levels (down blocks): `block_out_channels` of unet/config.json, else counted in the graph. */
  levels: number;
  /** Pixel sides must be multiples of this: VAE scale 8 · 2^(levels − 1). */
  sizeMultiple: number;
  /** True when `sample` is float16 (runs natively on GPU providers; the CPU provider casts around its kernels). */
  fp16: boolean;
}

export interface VaeEncoderInfo extends OnnxModelInfo {
  /** `latent_parameters` (optimum now) or `latent_sample`. */
  outputName: 'latent_sample' | 'latent_parameters';
  /**
   * `mean`: latent_sample is the posterior mean, used as it is; `sampled`: latent_sample is drawn
   * inside the graph without a seed (older optimum), rewritten at load to output the mean;
   * `parameters`: mean and log-variance, of which the first 4 channels (the mean) are used.
   */
  output: VaeEncoderOutput;
}

export interface ModelFolderInfo {
  /** Absolute folder path. */
  dir: string;
  textEncoder: TextEncoderInfo;
  unet: UnetInfo;
  /** Absent in text-to-video-only folders. */
  vaeEncoder: VaeEncoderInfo | null;
  vaeDecoder: OnnxModelInfo;
  tokenizer: { vocabPath: string; mergesPath: string; vocabSize: number; mergeCount: number };
  scheduler: { path: string; className: string | null; predictionType: string | null; config: Record<string, unknown> };
  modelIndex: Record<string, unknown> | null;
  /** `reelbot.json` of a built-in set. */
  reelbot: Record<string, unknown> | null;
  latentChannels: number;
  /** Default square size in pixels, and where it was read. */
  resolution: { pixels: number; from: 'reelbot.json' | 'unet/config.json' | 'default' };
  /** The VAE's latent scaling factor (0.18215 for SD 1.x), and where it was read. */
  vaeScalingFactor: { value: number; from: string };
  /** Things that work but deserve a look (SD 2.x width, v-prediction, unknown dims, per-frame attention). */
  warnings: string[];
}

const REQUIRED = [
  'text_encoder/model.onnx',
  'unet/model.onnx',
  'vae_decoder/model.onnx',
  'tokenizer/vocab.json',
  'tokenizer/merges.txt',
  'scheduler/scheduler_config.json',
] as const;

const LATENT_CHANNELS = 4;
/** Pixels per latent cell: 2^(VAE levels − 1) = 8 for SD's VAE, which the pipelines assume. */
const VAE_SCALE = 8;
/** SD 1.x's VAE scaling factor, used only when no config says it (with a warning). */
const SD1_VAE_SCALING_FACTOR = 0.18215;
/** SD 1.x's default size in pixels, used only when no config says it (with a warning). */
const SD1_RESOLUTION = 512;

/**
 * Inspects and validates a model folder. Reads the graphs (not the weights) and the small JSON
 * and text files; throws a {@link ModelFolderError} for the first problem that would stop a
 * pipeline.
 *
 * @example
 * const info = await inspectModelFolder('models/sd15');
 * console.log(formatModelFolderInfo(info, listProviders())); // model-folder-report.ts
 */
export async function inspectModelFolder(dir: string): Promise<ModelFolderInfo> {
  const root = resolve(dir);
  const rootStat = await stat(root).catch(() => undefined);
  if (!rootStat?.isDirectory()) throw new ModelFolderError(root, `${root} is not a folder: expected a Stable Diffusion 1.x model folder (optimum ONNX export layout)`);

  const missing: string[] = [];
  for (const file of REQUIRED) if (!(await isFile(join(root, file)))) missing.push(join(root, file));
  if (missing.length > 0) {
    const list = missing.length === 1 ? `${missing[0]} is missing` : `${missing.slice(0, -1).join(', ')} and ${missing[missing.length - 1]} are missing`;
    throw new ModelFolderError(missing[0] as string, `${list}: this folder is not a complete Stable Diffusion export`);
  }
  const warnings: string[] = [];

  // 1. Graphs.
  const text = await readGraph(root, 'text_encoder/model.onnx');
  const unetGraph = await readGraph(root, 'unet/model.onnx');
  const decoder = await readGraph(root, 'vae_decoder/model.onnx');
  const encoder = (await isFile(join(root, 'vae_encoder/model.onnx'))) ? await readGraph(root, 'vae_encoder/model.onnx') : null;

  const unetConfig = await readOptionalJson(join(root, 'unet/config.json'));
  const vaeConfigPath = (await isFile(join(root, 'vae_decoder/config.json')))
    ? join(root, 'vae_decoder/config.json')
    : (await isFile(join(root, 'vae_encoder/config.json')))
      ? join(root, 'vae_encoder/config.json')
      : undefined;
  const vaeConfig = vaeConfigPath ? await readJsonObject(vaeConfigPath) : null;

  // 2. Text encoder.
  expectIo(text.info, ['input_ids'], ['last_hidden_state'], 'a CLIP text encoder');
  const ids = findIo(text.info.inputs, 'input_ids');
  if (ids.elemType !== 'int64' && ids.elemType !== 'int32') {
    throw new ModelFolderError(text.info.path, `${text.info.path}: input_ids is ${ids.elemType}, expected int64 or int32 token ids`);
  }
  const hidden = findIo(text.info.outputs, 'last_hidden_state');
  const hiddenWidth = staticDim(hidden.dims, 2);
  const textEncoder: TextEncoderInfo = { ...text.info, hiddenWidth, sequenceLength: staticDim(ids.dims, 1), idsType: ids.elemType };

  // 3. UNet.
  const unet = inspectUnet(unetGraph.info, unetGraph.model, unetConfig, warnings);
  if (hiddenWidth !== null && unet.contextWidth !== null && hiddenWidth !== unet.contextWidth) {
    throw new ModelFolderError(
      unet.path,
      `Text width mismatch: ${text.info.path} outputs last_hidden_state of width ${hiddenWidth}, but ${unet.path} expects encoder_hidden_states of width ${unet.contextWidth}; the two models are from different checkpoints`,
    );
  }
  if (hiddenWidth === null || unet.contextWidth === null) warnings.push('The text width is not fixed in the graphs, so the text encoder and UNet could not be checked against each other.');

  // 4. VAE.
  expectIo(decoder.info, ['latent_sample'], ['sample'], 'a VAE decoder');
  const decoderChannels = staticDim(findIo(decoder.info.inputs, 'latent_sample').dims, 1) ?? firstConvInChannels(decoder.model, 'latent_sample');
  if (decoderChannels !== null && decoderChannels !== LATENT_CHANNELS) {
    throw new ModelFolderError(decoder.info.path, `${decoder.info.path}: latent_sample has ${decoderChannels} channels, expected ${LATENT_CHANNELS} (SD 1.x latents)`);
  }
  let vaeEncoder: VaeEncoderInfo | null = null;
  if (encoder) {
    expectIo(encoder.info, ['sample'], [], 'a VAE encoder');
    try {
      const found = inspectVaeEncoder(encoder.model, encoder.info.path);
      vaeEncoder = { ...encoder.info, outputName: found.outputName, output: found.output };
    } catch (error) {
      throw new ModelFolderError(encoder.info.path, (error as Error).message);
    }
  } else if (unet.kind === 'instruct-edit') {
    const path = join(root, 'vae_encoder/model.onnx');
    throw new ModelFolderError(path, `${path} is missing: an instruct-edit (8-channel) UNet needs the VAE encoder to read the video it edits`);
  }

  // 5. Tokenizer, scheduler, optional JSON.
  const vocabPath = join(root, 'tokenizer/vocab.json');
  const vocab = await readJsonObject(vocabPath);
  const mergesPath = join(root, 'tokenizer/merges.txt');
  const merges = (await readFile(mergesPath, 'utf8')).split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#version'));
  const schedulerPath = join(root, 'scheduler/scheduler_config.json');
  const schedulerConfig = await readJsonObject(schedulerPath);
  const predictionType = typeof schedulerConfig.prediction_type === 'string' ? schedulerConfig.prediction_type : null;
  if (predictionType && predictionType !== 'epsilon') warnings.push(`The scheduler's prediction_type is ${predictionType}; the pipelines expect epsilon (SD 1.x).`);
  const modelIndexPath = join(root, 'model_index.json');
  const modelIndex = (await isFile(modelIndexPath)) ? await readJsonObject(modelIndexPath) : null;
  const reelbotPath = join(root, 'reelbot.json');
  const reelbot = (await isFile(reelbotPath)) ? await readJsonObject(reelbotPath) : null;
  // The built-in sets are deliberately narrow; only a downloaded export should be SD 1.x's 768.
  if (unet.contextWidth !== null && unet.contextWidth !== 768 && reelbot?.builtIn !== true) {
    warnings.push(`Text width ${unet.contextWidth}: SD 1.x uses 768 (1024 is SD 2.x). The pipelines are written for SD 1.x.`);
  }

  // 6. What the configs say: default size, VAE scale and scaling factor.
  const vaeLevels = Array.isArray(vaeConfig?.block_out_channels) ? vaeConfig.block_out_channels.length : null;
  if (vaeLevels !== null && 2 ** (vaeLevels - 1) !== VAE_SCALE) {
    throw new ModelFolderError(vaeConfigPath as string, `${vaeConfigPath}: a VAE with ${vaeLevels} levels scales by ${2 ** (vaeLevels - 1)}; reelbot's pipelines need SD's ${VAE_SCALE}× VAE`);
  }
  const resolution = readResolution(root, reelbot, unetConfig, warnings);
  if (resolution.pixels % unet.sizeMultiple !== 0) {
    throw new ModelFolderError(
      join(root, resolution.from),
      `${join(root, resolution.from)}: the default size ${resolution.pixels} is not a multiple of ${unet.sizeMultiple} pixels, which this UNet (${unet.levels} levels) needs`,
    );
  }
  const vaeScalingFactor = readScalingFactor(root, vaeConfig, vaeConfigPath, modelIndex, warnings);

  return {
    dir: root,
    textEncoder,
    unet,
    vaeEncoder,
    vaeDecoder: decoder.info,
    tokenizer: { vocabPath, mergesPath, vocabSize: Object.keys(vocab).length, mergeCount: merges.length },
    scheduler: {
      path: schedulerPath,
      className: typeof schedulerConfig._class_name === 'string' ? schedulerConfig._class_name : null,
      predictionType,
      config: schedulerConfig,
    },
    modelIndex,
    reelbot,
    latentChannels: LATENT_CHANNELS,
    resolution,
    vaeScalingFactor,
    warnings,
  };
}

/** reelbot.json's `resolution` (built-in sets), else unet/config.json `sample_size` × 8, else SD 1.x's 512 with a warning. */
function readResolution(root: string, reelbot: Record<string, unknown> | null, unetConfig: Record<string, unknown> | null, warnings: string[]): ModelFolderInfo['resolution'] {
  const positiveInteger = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value > 0;
  if (reelbot && positiveInteger(reelbot.resolution)) return { pixels: reelbot.resolution, from: 'reelbot.json' };
  const sampleSize = unetConfig?.sample_size;
  if (sampleSize !== undefined && sampleSize !== null) {
    if (!positiveInteger(sampleSize)) {
      throw new ModelFolderError(join(root, 'unet/config.json'), `${join(root, 'unet/config.json')}: sample_size must be a whole number of latent cells (64 for SD 1.x), got ${JSON.stringify(sampleSize)}`);
    }
    return { pixels: sampleSize * VAE_SCALE, from: 'unet/config.json' };
  }
  warnings.push(`unet/config.json has no sample_size; the default size is SD 1.x's ${SD1_RESOLUTION}×${SD1_RESOLUTION}.`);
  return { pixels: SD1_RESOLUTION, from: 'default' };
}

/** The VAE config's `scaling_factor` (vae_decoder's, else vae_encoder's), else model_index.json's, else SD 1.x's with a warning. */
function readScalingFactor(
  root: string,
  vaeConfig: Record<string, unknown> | null,
  vaeConfigPath: string | undefined,
  modelIndex: Record<string, unknown> | null,
  warnings: string[],
): ModelFolderInfo['vaeScalingFactor'] {
  const candidates: [unknown, string][] = [
    [vaeConfig?.scaling_factor, vaeConfigPath ? vaeConfigPath.slice(root.length + 1) : ''],
    [modelIndex?.scaling_factor, 'model_index.json'],
  ];
  for (const [value, from] of candidates) {
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new ModelFolderError(join(root, from), `${join(root, from)}: scaling_factor must be a positive number (0.18215 for SD 1.x), got ${JSON.stringify(value)}`);
    }
    return { value, from };
  }
  warnings.push(`No VAE config gives scaling_factor; SD 1.x's ${SD1_VAE_SCALING_FACTOR} is used.`);
  return { value: SD1_VAE_SCALING_FACTOR, from: 'default' };
}

/**
 * Head counts from a diffusers UNet config for the rewrite: `num_attention_heads`, or
 * `attention_head_dim` when that is null (diffusers' own reading: SD 1.x's `attention_head_dim: 8`
 * is its head count). A list has one entry per down block; the mid block takes the last, up block
 * i the reversed list's i-th, as UNet2DConditionModel builds them.
 */
export function headsFromUnetConfig(config: Record<string, unknown> | null, blockNames: readonly string[], path: string): HeadsOption | undefined {
  if (!config) return undefined;
  const key = config.num_attention_heads !== undefined && config.num_attention_heads !== null ? 'num_attention_heads' : 'attention_head_dim';
  const value = config[key];
  if (value === undefined || value === null) return undefined;
  const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1;
  if (isCount(value)) return value;
  if (!Array.isArray(value) || value.length === 0 || !value.every(isCount)) {
    throw new ModelFolderError(path, `${path}: ${key} must be a whole number of heads or one per down block, got ${JSON.stringify(value)}`);
  }
  const perDown = value as number[];
  const heads: Record<string, number> = {};
  for (const name of blockNames) {
    // Exports may scope the UNet under a wrapper (`/unet/down_blocks.1/…`).
    const down = /\/down_blocks\.(\d+)\//.exec(name);
    const up = /\/up_blocks\.(\d+)\//.exec(name);
    const count = down ? perDown[Number(down[1])] : up ? [...perDown].reverse()[Number(up[1])] : name.includes('/mid_block/') ? perDown.at(-1) : undefined;
    if (count !== undefined) heads[name] = count;
  }
  return heads;
}

async function readGraph(root: string, file: string): Promise<{ info: OnnxModelInfo; model: onnx.ModelProto }> {
  const path = join(root, file);
  let model: onnx.ModelProto;
  try {
    ({ model } = await readModelFile(path));
  } catch (error) {
    throw new ModelFolderError(path, (error as Error).message);
  }
  const graph = model.graph;
  if (!graph) throw new ModelFolderError(path, `${path} has no graph`);
  const externalData = externalDataLocations(model);
  for (const location of externalData) {
    const dataPath = join(dirname(path), location);
    if (!(await isFile(dataPath))) {
      throw new ModelFolderError(dataPath, `${path} keeps its weights in ${location}, but ${dataPath} is missing; copy it next to model.onnx`);
    }
  }
  const initializers = new Set((graph.initializer ?? []).map((i) => i.name));
  return {
    model,
    info: {
      path,
      file,
      irVersion: toNumber(model.irVersion),
      opsets: (model.opsetImport ?? []).map((o) => ({ domain: o.domain ?? '', version: toNumber(o.version) })),
      producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
      // Old exports list initializers among the inputs; those are not feeds.
      inputs: (graph.input ?? []).filter((i) => !initializers.has(i.name)).map(describeValueInfo),
      outputs: (graph.output ?? []).map(describeValueInfo),
      nodeCount: (graph.node ?? []).length,
      initializerCount: (graph.initializer ?? []).length,
      externalData,
    },
  };
}

/** Checks the input and output names; extra inputs are errors (nothing would feed them), extra outputs are fine. */
function expectIo(info: OnnxModelInfo, inputs: readonly string[], outputs: readonly string[], what: string, family?: string): void {
  const have = info.inputs.map((i) => i.name);
  const missingInputs = inputs.filter((name) => !have.includes(name));
  const extraInputs = have.filter((name) => !inputs.includes(name));
  const missingOutputs = outputs.filter((name) => !info.outputs.some((o) => o.name === name));
  if (missingInputs.length === 0 && extraInputs.length === 0 && missingOutputs.length === 0) return;
  const problems: string[] = [];
  if (missingInputs.length > 0) problems.push(`no input ${missingInputs.join(', ')}`);
  if (extraInputs.length > 0) problems.push(`unexpected input${extraInputs.length > 1 ? 's' : ''} ${extraInputs.join(', ')}`);
  if (missingOutputs.length > 0) problems.push(`no output ${missingOutputs.join(', ')}`);
  throw new ModelFolderError(
    info.path,
    `${info.path} is not ${what} in the SD 1.x optimum export layout: ${problems.join('; ')} ` +
      `(inputs: ${have.join(', ') || 'none'}; outputs: ${info.outputs.map((o) => o.name).join(', ') || 'none'}; expected inputs ${inputs.join(', ')} and outputs ${outputs.join(', ')})` +
      (family ? `. ${family}` : ''),
  );
}

/** Recognises UNets of other model families by their extra inputs, to say what the folder is. */
function otherFamily(inputs: readonly string[]): string | undefined {
  if (inputs.includes('text_embeds') || inputs.includes('time_ids')) {
    return 'Its text_embeds/time_ids inputs are those of an SDXL UNet; reelbot runs Stable Diffusion 1.x (512×512, 768-wide CLIP text) models only';
  }
  if (inputs.some((name) => /down_block_additional_residual|mid_block_additional_residual|controlnet/i.test(name))) {
    return 'Its residual inputs are those of a ControlNet-conditioned UNet; reelbot needs a plain SD 1.x UNet';
  }
  if (inputs.includes('timestep_cond')) return 'Its timestep_cond input is that of an LCM UNet with guidance embedding; reelbot needs a plain SD 1.x UNet';
  return undefined;
}

function inspectUnet(info: OnnxModelInfo, model: onnx.ModelProto, config: Record<string, unknown> | null, warnings: string[]): UnetInfo {
  expectIo(info, ['sample', 'timestep', 'encoder_hidden_states'], ['out_sample'], 'a Stable Diffusion UNet', otherFamily(info.inputs.map((i) => i.name)));
  const sample = findIo(info.inputs, 'sample');
  const out = findIo(info.outputs, 'out_sample');
  const context = findIo(info.inputs, 'encoder_hidden_states');
  const timestep = findIo(info.inputs, 'timestep');
  const graph = model.graph as onnx.IGraphProto;
  const index = new GraphIndex(graph);

  const inChannels = staticDim(sample.dims, 1) ?? firstConvInChannels(model, 'sample');
  if (inChannels === null) throw new ModelFolderError(info.path, `${info.path}: cannot tell the UNet's input channels (sample has no fixed channel dim and no Conv reads it)`);
  if (inChannels !== 4 && inChannels !== 8) {
    throw new ModelFolderError(info.path, `${info.path}: sample has ${inChannels} channels, expected 4 (text-to-image) or 8 (instruct-pix2pix); inpainting (9) and other UNets are not supported`);
  }
  const outChannels = staticDim(out.dims, 1) ?? lastConvOutChannels(model, 'out_sample');
  if (outChannels !== null && outChannels !== LATENT_CHANNELS) {
    throw new ModelFolderError(info.path, `${info.path}: out_sample has ${outChannels} channels, expected ${LATENT_CHANNELS} latent channels`);
  }
  if (outChannels === null) warnings.push(`${info.file}: the output channel count is not fixed in the graph; assumed ${LATENT_CHANNELS}.`);

  let contextWidth = staticDim(context.dims, 2);
  if (contextWidth === null) {
    // The attn2 key projection's weight is [context width, inner width].
    const toK = index.nodesEndingWith('/attn2/to_k/MatMul')[0];
    const weight = toK?.input?.[1] ? index.initializers.get(toK.input[1]) : undefined;
    if (weight) contextWidth = tensorDims(weight)[0] ?? null;
  }

  const configPath = join(dirname(info.path), 'config.json');
  const blockNames = index.nodesEndingWith('/attn1/to_q/MatMul').map((n) => (n.name ?? '').slice(0, -'/to_q/MatMul'.length));
  const configHeads = headsFromUnetConfig(config, blockNames, configPath);
  const selfAttention = inspectSelfAttention(model, { heads: configHeads });
  const unknownHeads = selfAttention.find((block) => 'headsUnknown' in block && block.headsUnknown);
  if (unknownHeads) {
    throw new ModelFolderError(
      info.path,
      `${info.path}: the graph does not show the head count of ${unknownHeads.name} and ${config ? `${configPath} gives neither num_attention_heads nor attention_head_dim` : `there is no ${configPath}`}; ` +
        'copy the UNet\'s config.json from the model it was exported from (SD 1.x: attention_head_dim 8) rather than let reelbot guess',
    );
  }
  const problem = selfAttention.find((block): block is SelfAttentionProblem => 'error' in block);
  const attention: UnetInfo['attention'] =
    selfAttention.length === 0
      ? { mode: 'per-frame', reason: noSelfAttentionReason(index) }
      : problem
        ? { mode: 'per-frame', reason: problem.error }
        : { mode: 'cross-frame' };
  if (attention.mode === 'per-frame') {
    warnings.push(`${info.file}: ${attention.reason}. Cross-frame attention cannot be applied: the UNet runs per frame and videos will flicker.`);
  }
  const configLevels = Array.isArray(config?.block_out_channels) && config.block_out_channels.length > 0 ? config.block_out_channels.length : null;
  const graphLevels = countDownBlocks(index);
  const levels = configLevels ?? graphLevels ?? 4;
  if (configLevels === null && graphLevels === null) warnings.push(`${info.file}: neither unet/config.json nor the graph shows the UNet's levels; assumed SD 1.x's 4 (sizes in multiples of 64).`);

  return {
    ...info,
    kind: inChannels === 8 ? 'instruct-edit' : 'text-to-image',
    inChannels,
    outChannels: outChannels ?? LATENT_CHANNELS,
    contextWidth,
    sampleType: sample.elemType,
    timestep: { elemType: timestep.elemType, rank: timestep.dims === null ? null : timestep.dims.length, dims: timestep.dims },
    selfAttention,
    crossAttention: index.nodesEndingWith('/attn2/to_q/MatMul').map((n) => (n.name ?? '').slice(0, -'/to_q/MatMul'.length)),
    attention,
    configHeads,
    levels,
    sizeMultiple: VAE_SCALE * 2 ** (levels - 1),
    fp16: sample.elemType === 'float16',
  };
}

const FUSED_ATTENTION_OPS = new Set(['Attention', 'MultiHeadAttention', 'PackedAttention', 'PackedMultiHeadAttention', 'GroupQueryAttention']);

/** Why a UNet shows no self-attention block the rewrite can use, as far as the graph tells. */
function noSelfAttentionReason(index: GraphIndex): string {
  const fused = (index.graph.node ?? []).find((n) => n.domain === 'com.microsoft' && FUSED_ATTENTION_OPS.has(n.opType ?? ''));
  if (fused) {
    return `no self-attention block: its attention is already fused into com.microsoft ${fused.opType} nodes (an --optimize export, or ORT's transformer optimizer); export again without --optimize for cross-frame attention`;
  }
  if (!(index.graph.node ?? []).some((n) => /\/(down|up)_blocks\.\d+\//.test(n.name ?? ''))) {
    return "no self-attention block: its node names do not carry the module paths (…/attn1/to_q/MatMul) that torch's TorchScript exporter writes (a dynamo export?); export with optimum's default exporter for cross-frame attention";
  }
  return 'no self-attention block (no node named …/attn1/to_q/MatMul)';
}

/** Down blocks counted from node names (`/down_blocks.<i>/…`); null when the graph has no such names. */
function countDownBlocks(index: GraphIndex): number | null {
  let most = -1;
  for (const node of index.graph.node ?? []) {
    const match = /\/down_blocks\.(\d+)\//.exec(node.name ?? '');
    if (match) most = Math.max(most, Number(match[1]));
  }
  return most >= 0 ? most + 1 : null;
}

function findIo(list: readonly ValueInfo[], name: string): ValueInfo {
  const found = list.find((i) => i.name === name);
  if (!found) throw new Error(`internal: ${name} checked but not found`);
  return found;
}

function staticDim(dims: ValueInfo['dims'], axis: number): number | null {
  const d = dims?.[axis];
  return typeof d === 'number' ? d : null;
}

/** Input channels of the first Conv that reads `input` (its weight is [out, in, kh, kw]). */
function firstConvInChannels(model: onnx.ModelProto, input: string): number | null {
  const graph = model.graph as onnx.IGraphProto;
  const index = new GraphIndex(graph);
  const conv = (index.consumers.get(input) ?? []).find((n) => n.opType === 'Conv');
  const weight = conv?.input?.[1] ? index.initializers.get(conv.input[1]) : undefined;
  return weight ? (tensorDims(weight)[1] ?? null) : null;
}

/** Output channels of the Conv that produces `output` (directly). */
function lastConvOutChannels(model: onnx.ModelProto, output: string): number | null {
  const index = new GraphIndex(model.graph as onnx.IGraphProto);
  const conv = index.producers.get(output);
  if (conv?.opType !== 'Conv') return null;
  const weight = conv.input?.[1] ? index.initializers.get(conv.input[1]) : undefined;
  return weight ? (tensorDims(weight)[0] ?? null) : null;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function readOptionalJson(path: string): Promise<Record<string, unknown> | null> {
  return (await isFile(path)) ? readJsonObject(path) : null;
}

async function readJsonObject(path: string): Promise<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new ModelFolderError(path, `${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ModelFolderError(path, `${path} should hold a JSON object`);
  return value as Record<string, unknown>;
}
