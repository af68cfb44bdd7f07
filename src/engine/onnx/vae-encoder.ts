/**
 * @file The VAE encoder graphs optimum has exported, and how reelbot gets the posterior's mean
 * (diffusers' Instruct-Pix2Pix pipeline uses `latent_dist.mode()`, the mean) from each, so the
 * same seed always gives the same edit:
 *
 * - `latent_parameters` (optimum since October 2024): mean and log-variance, 2 × 4 channels; the
 *   mean is the first 4 channels, taken after the run.
 * - `latent_sample` computed as `mean + std · RandomNormalLike(…)` (optimum before that: it traced
 *   `latent_dist.sample()`, an unseeded draw in the graph): rewritten at load so `latent_sample`
 *   is the mean, and written beside the original (like the cross-frame UNet) to load by path.
 * - `latent_sample` with no random op (reelbot's built-in sets, exports of `.mode()`): the mean as it is.
 */
import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { GraphIndex, encodeModel, externalDataLocations, onnx, readModelFile, tensorDims } from './proto.js';
import { writeModelBeside } from './rewritten-file.js';

/** How a VAE encoder graph gives its latents. */
export type VaeEncoderOutput =
  /** `latent_sample` is the posterior mean (or mode): use it as it is. */
  | 'mean'
  /** `latent_sample` is a draw from the posterior, made inside the graph without a seed: rewrite it to the mean. */
  | 'sampled'
  /** `latent_parameters`: mean and log-variance, concatenated on the channel axis. */
  | 'parameters';

/** Latent channels of SD 1.x's VAE. */
export const VAE_LATENT_CHANNELS = 4;

/** Bumped whenever the mean rewrite's output changes, so cached files are rebuilt. */
export const VAE_MEAN_REWRITE_VERSION = 1;

const RANDOM_OPS = new Set(['RandomNormal', 'RandomNormalLike', 'RandomUniform', 'RandomUniformLike', 'Multinomial', 'Bernoulli']);

/** What {@link inspectVaeEncoder} found. */
export interface VaeEncoderGraphInfo {
  /** The graph output read: `latent_sample` or `latent_parameters`. */
  outputName: 'latent_sample' | 'latent_parameters';
  output: VaeEncoderOutput;
  /** Channels of that output when the graph fixes them (or its producing Conv shows them); null when only a run can tell. */
  channels: number | null;
  /** Channels that output must have: 4 for a latent sample, 8 for the parameters. */
  expectedChannels: number;
}

/**
 * Which of the three export forms a VAE encoder is (by its output name and whether a random op
 * feeds that output), and its output channels where the graph shows them.
 * @throws Error when the graph has neither output, or an output whose channel count is wrong
 */
export function inspectVaeEncoder(model: onnx.IModelProto, path = 'vae_encoder/model.onnx'): VaeEncoderGraphInfo {
  const graph = model.graph;
  if (!graph) throw new Error(`${path} has no graph`);
  const outputs = graph.output ?? [];
  const named = (name: string) => outputs.find((o) => o.name === name);
  const parameters = named('latent_parameters');
  const sample = named('latent_sample');
  const out = parameters ?? sample;
  if (!out) {
    throw new Error(
      `${path} is not a VAE encoder in the optimum export layout: no output latent_sample or latent_parameters (outputs: ${outputs.map((o) => o.name).join(', ') || 'none'})`,
    );
  }
  const index = new GraphIndex(graph);
  const outputName = parameters ? 'latent_parameters' : 'latent_sample';
  const dim = out.type?.tensorType?.shape?.dim?.[1];
  let channels: number | null = dim?.dimValue !== null && dim?.dimValue !== undefined && Number(dim.dimValue) > 0 ? Number(dim.dimValue) : null;
  const producer = index.producers.get(outputName);
  if (channels === null && producer?.opType === 'Conv') {
    const weight = producer.input?.[1] ? index.initializers.get(producer.input[1]) : undefined;
    if (weight) channels = tensorDims(weight)[0] ?? null;
  }
  const output: VaeEncoderOutput = parameters ? 'parameters' : dependsOnRandom(index, outputName) ? 'sampled' : 'mean';
  const expectedChannels = output === 'parameters' ? 2 * VAE_LATENT_CHANNELS : VAE_LATENT_CHANNELS;
  if (channels !== null && channels !== expectedChannels) throw new Error(channelMessage(path, outputName, channels));
  return { outputName, output, channels, expectedChannels };
}

/** The message for an encoder output with the wrong channel count (also used at run time). */
export function channelMessage(path: string, outputName: string, channels: number): string {
  return outputName === 'latent_parameters'
    ? `${path}: latent_parameters has ${channels} channels, expected ${2 * VAE_LATENT_CHANNELS} (the mean and log-variance of SD 1.x's ${VAE_LATENT_CHANNELS} latent channels)`
    : `${path}: latent_sample has ${channels} channels, expected ${VAE_LATENT_CHANNELS} (SD 1.x latents)`;
}

function dependsOnRandom(index: GraphIndex, tensor: string): boolean {
  const seen = new Set<string>();
  const stack = [tensor];
  while (stack.length > 0) {
    const name = stack.pop() as string;
    if (seen.has(name)) continue;
    seen.add(name);
    const node = index.producers.get(name);
    if (!node) continue;
    if (RANDOM_OPS.has(node.opType ?? '')) return true;
    for (const input of node.input ?? []) if (input) stack.push(input);
  }
  return false;
}

/**
 * Rewrites a sampling encoder (`latent_sample = mean + std · noise`, the noise from a random op)
 * so that `latent_sample` is the mean: the final Add is replaced by an Identity of its
 * noise-free operand, and what only fed the noise term (Exp, Clip, RandomNormalLike…) is dropped.
 * @throws Error when the output is not such an Add, naming what was found instead
 */
export function rewriteVaeEncoderToMean(model: onnx.ModelProto, path = 'vae_encoder/model.onnx'): onnx.ModelProto {
  const graph = model.graph;
  if (!graph) throw new Error(`${path} has no graph`);
  const index = new GraphIndex(graph);
  const add = index.producers.get('latent_sample');
  const unexpected = (what: string): Error =>
    new Error(
      `${path} draws latent_sample at random inside the graph (an older optimum export of latent_dist.sample()), but ${what}, ` +
        'so reelbot cannot take the distribution\'s mean from it. Export the VAE encoder again with a current optimum (it writes latent_parameters).',
    );
  if (add?.opType !== 'Add' || (add.input ?? []).length !== 2) throw unexpected(`latent_sample comes from ${add?.opType ?? 'no node'}, not from mean + std · noise`);
  const [a, b] = add.input as [string, string];
  const randomA = dependsOnRandom(index, a);
  const randomB = dependsOnRandom(index, b);
  if (randomA === randomB) throw unexpected(randomA ? 'both operands of its final Add are random' : 'neither operand of its final Add is random');
  const [mean, noise] = randomA ? [b, a] : [a, b];
  const noiseNode = index.producers.get(noise);
  // std · noise, the noise straight from the random op or through a Cast (randn_tensor's `.to(dtype)`).
  const noiseInputs = noiseNode?.opType === 'Mul' ? (noiseNode.input ?? []) : [];
  if (noiseInputs.length !== 2 || noiseInputs.filter((input) => dependsOnRandom(index, input)).length !== 1) {
    throw unexpected(`its noise term comes from ${noiseNode?.opType ?? 'no node'}, not from std · RandomNormalLike`);
  }
  const nodes = (graph.node ?? []).map((node) => (node === add ? onnx.NodeProto.create({ opType: 'Identity', name: `${add.name ?? '/Add'}/mean`, input: [mean], output: ['latent_sample'] }) : node));
  return onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...graph, node: pruneDeadNodes(nodes, graph), valueInfo: [] }) });
}

/** Keeps only the nodes some graph output depends on (the node list stays in its topological order). */
function pruneDeadNodes(nodes: onnx.INodeProto[], graph: onnx.IGraphProto): onnx.INodeProto[] {
  const producers = new Map<string, onnx.INodeProto>();
  for (const node of nodes) for (const out of node.output ?? []) if (out) producers.set(out, node);
  const live = new Set<onnx.INodeProto>();
  const stack = (graph.output ?? []).map((o) => o.name ?? '');
  const seen = new Set<string>();
  while (stack.length > 0) {
    const name = stack.pop() as string;
    if (seen.has(name)) continue;
    seen.add(name);
    const node = producers.get(name);
    if (!node || live.has(node)) continue;
    live.add(node);
    for (const input of node.input ?? []) if (input) stack.push(input);
  }
  return nodes.filter((node) => live.has(node));
}

/** Where the encoder to load is, and what its output holds. */
export interface LoadableVaeEncoder {
  /** The file to load: the original, or its mean rewrite beside it. */
  path: string;
  outputName: 'latent_sample' | 'latent_parameters';
  /** `parameters`: take the first 4 channels; `mean`: use as it is (after the rewrite, too). */
  output: 'mean' | 'parameters';
  /** Channels the output must have at run time. */
  expectedChannels: number;
}

/**
 * The encoder file that gives the posterior mean: the original for `latent_parameters` and
 * mean-only exports; for a sampling export, its rewrite written beside the original (name carries
 * a hash of the original and the rewrite version, so later loads reuse it; in the OS temp folder
 * when the model's folder is read-only and the weights are not external).
 */
export async function loadVaeEncoderForMean(encoderPath: string, options: { cacheDir?: string } = {}): Promise<LoadableVaeEncoder> {
  const { model, bytes } = await readModelFile(encoderPath);
  const info = inspectVaeEncoder(model, encoderPath);
  if (info.output !== 'sampled') {
    return { path: encoderPath, outputName: info.outputName, output: info.output, expectedChannels: info.expectedChannels };
  }
  const rewritten = rewriteVaeEncoderToMean(model, encoderPath);
  const hash = createHash('sha256').update(bytes).update(`vae-mean-${VAE_MEAN_REWRITE_VERSION}`).digest('hex').slice(0, 16);
  const fileName = `${basename(encoderPath, '.onnx')}.mean-${hash}.onnx`;
  const { path } = await writeModelBeside(encoderPath, fileName, () => encodeModel(rewritten), { cacheDir: options.cacheDir, external: externalDataLocations(model) });
  return { path, outputName: 'latent_sample', output: 'mean', expectedChannels: VAE_LATENT_CHANNELS };
}
