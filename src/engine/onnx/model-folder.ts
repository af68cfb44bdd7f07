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
 * vae_encoder/model.onnx               sample → latent_sample (needed by instruct-edit)
 * vae_decoder/model.onnx               latent_sample → sample
 * ```
 * Every problem is a {@link ModelFolderError} naming the file and what is wrong with it.
 */
import { readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { inspectSelfAttention, type CrossFrameBlock } from './cross-frame.js';
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
  selfAttention: (CrossFrameBlock | { name: string; error: string })[];
  /** Text cross-attention blocks (`…/attn2`). */
  crossAttention: string[];
}

export interface ModelFolderInfo {
  /** Absolute folder path. */
  dir: string;
  textEncoder: TextEncoderInfo;
  unet: UnetInfo;
  /** Absent in text-to-video-only folders. */
  vaeEncoder: OnnxModelInfo | null;
  vaeDecoder: OnnxModelInfo;
  tokenizer: { vocabPath: string; mergesPath: string; vocabSize: number; mergeCount: number };
  scheduler: { path: string; className: string | null; predictionType: string | null; config: Record<string, unknown> };
  modelIndex: Record<string, unknown> | null;
  /** `reelbot.json` of a built-in set. */
  reelbot: Record<string, unknown> | null;
  latentChannels: number;
  /** Things that work but deserve a look (SD 2.x width, v-prediction, unknown dims). */
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

/**
 * Inspects and validates a model folder. Reads the graphs (not the weights) and the small JSON
 * and text files; throws a {@link ModelFolderError} for the first problem that would stop a
 * pipeline.
 *
 * @example
 * const info = await inspectModelFolder('models/sd15');
 * console.log(formatModelFolderInfo(info, listProviders()));
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
  const unet = inspectUnet(unetGraph.info, unetGraph.model, warnings);
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
  if (encoder) {
    expectIo(encoder.info, ['sample'], ['latent_sample'], 'a VAE encoder');
    const channels = staticDim(findIo(encoder.info.outputs, 'latent_sample').dims, 1);
    if (channels !== null && channels !== LATENT_CHANNELS) {
      throw new ModelFolderError(encoder.info.path, `${encoder.info.path}: latent_sample has ${channels} channels, expected ${LATENT_CHANNELS} (SD 1.x latents)`);
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

  return {
    dir: root,
    textEncoder,
    unet,
    vaeEncoder: encoder?.info ?? null,
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
    warnings,
  };
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

function inspectUnet(info: OnnxModelInfo, model: onnx.ModelProto, warnings: string[]): UnetInfo {
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

  const selfAttention = inspectSelfAttention(model);
  if (selfAttention.length === 0) warnings.push(`${info.file}: no self-attention block (no node named …/attn1/to_q/MatMul); cross-frame attention cannot be applied and videos will flicker.`);
  for (const block of selfAttention) if ('error' in block) warnings.push(`${info.file}: ${block.error}`);

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
  };
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

// ---------------------------------------------------------------------------------------------
// Report text.

function formatDims(dims: ValueInfo['dims']): string {
  if (dims === null) return '(unknown shape)';
  return `[${dims.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
}

function formatModel(info: OnnxModelInfo, lines: string[]): void {
  const opset = info.opsets.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version;
  const extras = [`opset ${opset ?? '?'}`, `${info.nodeCount} nodes`];
  if (info.externalData.length > 0) extras.push(`weights in ${info.externalData.join(', ')}`);
  lines.push(`${info.file} (${extras.join(', ')})`);
  const width = Math.max(...[...info.inputs, ...info.outputs].map((i) => i.name.length), 4);
  for (const input of info.inputs) lines.push(`  in   ${input.name.padEnd(width)}  ${input.elemType.padEnd(8)} ${formatDims(input.dims)}`);
  for (const output of info.outputs) lines.push(`  out  ${output.name.padEnd(width)}  ${output.elemType.padEnd(8)} ${formatDims(output.dims)}`);
}

/**
 * The text `reelbot models check DIR` prints: providers, each model's inputs and outputs with
 * dtypes, the UNet kind, and its self-attention blocks.
 */
export function formatModelFolderInfo(info: ModelFolderInfo, providers: readonly { name: string; bundled: boolean }[]): string {
  const lines: string[] = [];
  const { unet } = info;
  lines.push(`Model folder ${info.dir}`);
  lines.push(
    `  UNet: ${unet.kind} (${unet.inChannels} input channels), ${info.latentChannels} latent channels, text width ${unet.contextWidth ?? '?'}, ${unet.sampleType} sample`,
  );
  if (info.reelbot) {
    const r = info.reelbot;
    lines.push(`  built-in set: ${String(r.size ?? '?')} ${String(r.kind ?? '')}${r.untrainedWeights ? ' (untrained weights: the output is noise-like)' : ''}`.trimEnd());
  }
  lines.push(`  scheduler: ${info.scheduler.className ?? '(no _class_name)'}, prediction_type ${info.scheduler.predictionType ?? 'epsilon (default)'}`);
  lines.push(`  tokenizer: ${info.tokenizer.vocabSize} tokens, ${info.tokenizer.mergeCount} merges`);
  lines.push(`  text encoder: ${info.textEncoder.idsType} ids, ${info.textEncoder.sequenceLength ?? '?'} tokens, width ${info.textEncoder.hiddenWidth ?? '?'}`);
  lines.push(
    `  timestep: ${unet.timestep.elemType}, ${unet.timestep.rank === null ? 'unknown rank' : unet.timestep.rank === 0 ? 'scalar' : `rank ${unet.timestep.rank} ${formatDims(unet.timestep.dims)}`}`,
  );
  lines.push(`  VAE encoder: ${info.vaeEncoder ? 'present' : 'absent (text-to-video only; editing needs it)'}`);
  lines.push('');
  lines.push(
    `ONNX Runtime providers: ${providers.map((p) => (p.bundled ? p.name : `${p.name} (needs its libraries installed)`)).join(', ') || 'none'}`,
  );
  lines.push('');
  formatModel(info.textEncoder, lines);
  formatModel(unet, lines);
  const good = unet.selfAttention.filter((b): b is CrossFrameBlock => !('error' in b));
  const headCounts = [...new Set(good.map((b) => b.heads))];
  const sources = [...new Set(good.map((b) => (b.headsFrom === 'graph' ? 'read from the graph' : 'assumed, not in the graph')))];
  lines.push(
    `  self-attention blocks (attn1): ${unet.selfAttention.length}` +
      (good.length > 0 ? `, ${headCounts.join('/')} heads (${sources.join(', ')})` : ''),
  );
  for (const block of unet.selfAttention) lines.push(`    ${block.name}${'error' in block ? `  (cannot rewrite: ${block.error})` : ''}`);
  lines.push(`  cross-attention blocks (attn2): ${unet.crossAttention.length}`);
  if (info.vaeEncoder) formatModel(info.vaeEncoder, lines);
  formatModel(info.vaeDecoder, lines);
  if (info.warnings.length > 0) {
    lines.push('');
    lines.push('Warnings:');
    for (const warning of info.warnings) lines.push(`  - ${warning}`);
  }
  return lines.join('\n');
}
