/**
 * The parts of a Stable Diffusion 1.x model folder that the pipelines run: tokenizer, text encoder,
 * UNet (with cross-frame attention rewritten in at load), VAE decoder and encoder, and the scheduler
 * config. Feeds follow each graph's own metadata (float32 / float16 inputs, int64 / int32 ids, a
 * timestep of rank 0 or 1), and the time spent inside `session.run` is counted for benchmarks.
 *
 * The UNet is one session on one rewritten graph (src/engine/onnx/cross-frame.ts) for every kind
 * of call: per frame, shared anchors, the anchor pass that hands back its keys/values and the
 * chunk passes that import them, so a worker holds its weights once. A UNet whose attention the
 * rewrite cannot find is loaded as it is and runs per frame (`crossFrameUnavailable`).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inspectModelFolder, ModelFolderError } from '../onnx/model-folder.js';
import { channelMessage, loadVaeEncoderForMean, VAE_LATENT_CHANNELS, type LoadableVaeEncoder } from '../onnx/vae-encoder.js';
import { crossFrameFeeds, exportedKvNames, importExportedKv, perFrame } from '../onnx/cross-frame-feeds.js';
import type { HeadsOption } from '../onnx/cross-frame.js';
import { CrossFrameUnavailableError, loadRewrittenUnet, type RewrittenUnet } from '../onnx/cross-frame-file.js';
import { createSession, parseDevice, releaseSession, SessionCreateError, Tensor, type InferenceSession, type ProviderName, type SessionLogger } from '../onnx/session.js';
import { float16ToFloat32Array, float32ArrayToFloat16 } from '../onnx/tensor.js';
import { readSchedulerConfig, type SchedulerConfig } from '../schedulers/ddim.js';
import { ClipTokenizer } from '../text/clip-tokenizer.js';

export interface ComponentOptions {
  device: string;
  onnx: { intraOpThreads: number; interOpThreads: number; fallbackToCpu: boolean };
  logger?: SessionLogger;
  /** Guidance groups in one UNet batch (2 = text-to-video CFG, 3 = instruct-pix2pix). */
  groups: number;
  /** Load the VAE encoder (clip editing). */
  vaeEncoder?: boolean;
}

interface Graph {
  session: InferenceSession;
  inputs: Map<string, { type: string; shape: readonly (number | string)[] }>;
  output: string;
}

interface UnetGraph extends Graph {
  /** Rewritten attn1 blocks; 0 when the plain graph was loaded (per-frame attention only). */
  blocks: number;
  kvType: 'float32' | 'float16';
}

export interface EncodedPrompt {
  embedding: Float32Array;
  truncated: boolean;
  droppedText: string;
}

/** The width of the text encoder's `last_hidden_state` (SD 1.x: 768) when the UNet does not fix it. */
function textHiddenWidth(session: InferenceSession): number {
  const hidden = session.outputMetadata.find((meta) => meta.name === 'last_hidden_state');
  const width = hidden?.isTensor ? hidden.shape[2] : undefined;
  return typeof width === 'number' ? width : 768;
}

export class StableDiffusionComponents {
  readonly dir: string;
  readonly tokenizer: ClipTokenizer;
  readonly schedulerConfig: SchedulerConfig;
  readonly provider: ProviderName;
  /** Width of the text embedding (768 for SD 1.x). */
  readonly textWidth: number;
  /** The UNet's input channels: 4 (text-to-image) or 8 (instruct-edit). */
  readonly unetInChannels: number;
  /** Default pixel resolution: unet/config.json sample_size × 8 (512 for SD 1.x); the built-in sets say theirs in reelbot.json. */
  readonly resolution: number;
  /** Pixel sides must be multiples of this (8 · 2^(UNet levels − 1): 64 for SD 1.x). */
  readonly sizeMultiple: number;
  /** The VAE's latent scaling factor from its config (0.18215 for SD 1.x). */
  readonly vaeScalingFactor: number;
  /** True for a built-in set (its reelbot.json says its weights are untrained). */
  readonly untrainedWeights: boolean;
  /** Self-attention blocks rewritten for cross-frame attention (0 when {@link crossFrameUnavailable}). */
  readonly crossFrameBlocks: number;
  /**
   * True when the rewrite could not find the UNet's self-attention (already fused, other node
   * names): the plain graph was loaded and every call runs per frame, so videos flicker.
   */
  readonly crossFrameUnavailable: boolean;
  /** Seconds spent inside session.run since load. */
  ortSeconds = 0;
  readonly #textEncoder: Graph;
  readonly #unet: UnetGraph;
  readonly #vaeDecoder: Graph;
  #vaeEncoder: (Graph & { encoder: LoadableVaeEncoder }) | undefined;
  readonly #openVaeEncoder: () => Promise<Graph & { encoder: LoadableVaeEncoder }>;
  readonly #groups: number;
  /** The last anchor pass's keys/values when they live in GPU memory (disposed at the next pass). */
  #gpuKv: Tensor[] = [];

  private constructor(fields: {
    groups: number;
    dir: string;
    tokenizer: ClipTokenizer;
    schedulerConfig: SchedulerConfig;
    provider: ProviderName;
    resolution: number;
    sizeMultiple: number;
    vaeScalingFactor: number;
    untrainedWeights: boolean;
    textEncoder: Graph;
    unet: UnetGraph;
    textWidth: number;
    unetInChannels: number;
    vaeDecoder: Graph;
    vaeEncoder: (Graph & { encoder: LoadableVaeEncoder }) | undefined;
    openVaeEncoder: () => Promise<Graph & { encoder: LoadableVaeEncoder }>;
  }) {
    this.dir = fields.dir;
    this.tokenizer = fields.tokenizer;
    this.schedulerConfig = fields.schedulerConfig;
    this.provider = fields.provider;
    this.resolution = fields.resolution;
    this.sizeMultiple = fields.sizeMultiple;
    this.vaeScalingFactor = fields.vaeScalingFactor;
    this.untrainedWeights = fields.untrainedWeights;
    this.crossFrameBlocks = fields.unet.blocks;
    this.crossFrameUnavailable = fields.unet.blocks === 0;
    this.#textEncoder = fields.textEncoder;
    this.#unet = fields.unet;
    this.#vaeDecoder = fields.vaeDecoder;
    this.#vaeEncoder = fields.vaeEncoder;
    this.#openVaeEncoder = fields.openVaeEncoder;
    this.#groups = fields.groups;
    this.textWidth = fields.textWidth;
    this.unetInChannels = fields.unetInChannels;
  }

  /** Loads a model folder (checked by the caller with inspectModelFolder). */
  static async load(dir: string, options: ComponentOptions): Promise<StableDiffusionComponents> {
    const open: OpenSession = async (path, extra = {}) => {
      const created = await createSession(path, {
        device: extra.device ?? options.device,
        ...options.onnx,
        ...(extra.fallbackToCpu === undefined ? {} : { fallbackToCpu: extra.fallbackToCpu }),
        logger: options.logger,
        gpuBufferOutputs: extra.gpuBufferOutputs,
      });
      const inputs = new Map<string, { type: string; shape: readonly (number | string)[] }>();
      for (const meta of created.session.inputMetadata) {
        if (meta.isTensor) inputs.set(meta.name, { type: meta.type, shape: meta.shape });
      }
      return { graph: { session: created.session, inputs, output: created.session.outputNames[0]! }, provider: created.provider };
    };
    // Every file and input name checked first: a clear message naming the file beats an ORT error.
    const info = await inspectModelFolder(dir);
    if (info.unet.inChannels !== (options.groups === 3 ? 8 : 4)) {
      throw new ModelFolderError(join(dir, 'unet', 'model.onnx'),
        `${join(dir, 'unet', 'model.onnx')} is a ${info.unet.kind} UNet (${info.unet.inChannels} input channels); this pipeline needs ${options.groups === 3 ? 'an instruct-edit (8-channel)' : 'a text-to-image (4-channel)'} one`);
    }
    const tokenizer = await ClipTokenizer.load(join(dir, 'tokenizer'));
    const schedulerConfig = readSchedulerConfig(JSON.parse(await readFile(join(dir, 'scheduler', 'scheduler_config.json'), 'utf8')));
    const unet = await openUnet(join(dir, 'unet', 'model.onnx'), info.unet.sampleType === 'float16', info.unet.configHeads, options, open);
    const textEncoder = await open(join(dir, 'text_encoder', 'model.onnx'));
    const vaeDecoder = await open(join(dir, 'vae_decoder', 'model.onnx'));
    // The posterior mean in every export form: a sampling encoder is rewritten, latent_parameters is sliced in encode().
    const openVaeEncoder = async (): Promise<Graph & { encoder: LoadableVaeEncoder }> => {
      const encoder = await loadVaeEncoderForMean(join(dir, 'vae_encoder', 'model.onnx'));
      return { ...(await open(encoder.path)).graph, output: encoder.outputName, encoder };
    };
    const vaeEncoder = options.vaeEncoder ? await openVaeEncoder() : undefined;
    // The text encoder's `last_hidden_state` is the first output by the export's convention; pick it by name when present.
    if (textEncoder.graph.session.outputNames.includes('last_hidden_state')) textEncoder.graph.output = 'last_hidden_state';
    return new StableDiffusionComponents({
      groups: options.groups,
      dir,
      tokenizer,
      schedulerConfig,
      provider: textEncoder.provider,
      resolution: info.resolution.pixels,
      sizeMultiple: info.unet.sizeMultiple,
      vaeScalingFactor: info.vaeScalingFactor.value,
      untrainedWeights: info.reelbot?.untrainedWeights === true,
      textWidth: info.unet.contextWidth ?? textHiddenWidth(textEncoder.graph.session),
      unetInChannels: info.unet.inChannels,
      textEncoder: textEncoder.graph,
      unet,
      vaeDecoder: vaeDecoder.graph,
      vaeEncoder,
      openVaeEncoder,
    });
  }

  /** Tokenizes and encodes one prompt → [77, textWidth]. */
  async encodeText(text: string): Promise<EncodedPrompt> {
    const { ids, truncated, droppedText } = this.tokenizer.encode(text);
    const input = this.#textEncoder.inputs.get('input_ids');
    const tensor =
      input?.type === 'int32'
        ? new Tensor('int32', Int32Array.from(ids), [1, ids.length])
        : new Tensor('int64', BigInt64Array.from(Array.from(ids, (id) => BigInt(id))), [1, ids.length]);
    const output = await this.#run(this.#textEncoder, { input_ids: tensor });
    return { embedding: output, truncated, droppedText };
  }

  /**
   * One UNet call on a batch: sample [batch, channels, h, w], context [batch, 77, textWidth].
   * `anchors` (frame indices in each guidance group) selects cross-frame attention, every frame
   * attending to those frames; `null` runs per-frame attention, every frame attending to itself.
   * Without cross-frame attention ({@link crossFrameUnavailable}) every call runs per frame.
   */
  async unet(sample: Float32Array, batch: number, height: number, width: number, timestep: number, context: Float32Array, anchors: readonly number[] | null): Promise<Float32Array> {
    const graph = this.#unet;
    const feeds = this.#unetFeeds(graph, sample, batch, height, width, timestep, context);
    if (graph.blocks > 0) {
      const call = anchors === null ? perFrame(batch) : { batch, framesPerGroup: this.#framesPerGroup(batch), anchors };
      Object.assign(feeds, crossFrameFeeds({ ...call, blocks: graph.blocks, kvType: graph.kvType }));
    }
    return this.#run(graph, feeds);
  }

  /**
   * The anchor pass of a K/V-cached cross-frame step: the batch is the anchor frames only, as
   * [group][anchor], every one attending to all of them. Returns the anchors' own noise prediction
   * and every attn1 block's anchor keys/values (by the input names `anchor_k.<i>` / `anchor_v.<i>`,
   * [G, A·N, C]) as ORT tensors, to hand to {@link unetWithAnchorKv} unchanged. Without cross-frame
   * attention the map is empty and the anchors run per frame.
   */
  async unetAnchors(sample: Float32Array, batch: number, height: number, width: number, timestep: number, context: Float32Array): Promise<{ noise: Float32Array; kv: Map<string, Tensor> }> {
    const graph = this.#unet;
    const feeds = this.#unetFeeds(graph, sample, batch, height, width, timestep, context);
    if (graph.blocks === 0) return { noise: await this.#run(graph, feeds), kv: new Map() };
    const frames = this.#framesPerGroup(batch);
    const all = Array.from({ length: frames }, (_, i) => i);
    Object.assign(feeds, crossFrameFeeds({ batch, framesPerGroup: frames, anchors: all, exportFrames: all, blocks: graph.blocks, kvType: graph.kvType }));
    // The previous step's keys/values are no longer read once a new anchor pass starts.
    this.#disposeGpuKv();
    const results = await this.#runAll(graph, feeds, [graph.output, ...exportedKvNames(graph.blocks)]);
    const kv = importExportedKv(results, graph.blocks);
    this.#gpuKv = [...kv.values()].filter((tensor) => tensor.location === 'gpu-buffer');
    return { noise: this.#toFloat32(results[graph.output]!), kv };
  }

  /**
   * A chunk pass of a K/V-cached cross-frame step: the batch holds only the chunk's frames
   * ([group][frame], no anchors); every frame's self-attention uses the anchor keys/values `kv`
   * from {@link unetAnchors} of the same step (without cross-frame attention: per frame, `kv` unused).
   */
  async unetWithAnchorKv(sample: Float32Array, batch: number, height: number, width: number, timestep: number, context: Float32Array, kv: ReadonlyMap<string, Tensor>): Promise<Float32Array> {
    const graph = this.#unet;
    const feeds = this.#unetFeeds(graph, sample, batch, height, width, timestep, context);
    if (graph.blocks > 0) {
      Object.assign(feeds, crossFrameFeeds({ batch, framesPerGroup: this.#framesPerGroup(batch), anchors: [], imported: kv, blocks: graph.blocks, kvType: graph.kvType }));
    }
    return this.#run(graph, feeds);
  }

  #framesPerGroup(batch: number): number {
    if (!(Number.isInteger(batch) && batch >= 1) || batch % this.#groups !== 0) {
      throw new RangeError(`The UNet batch (${batch}) must be a multiple of the ${this.#groups} guidance groups of this pipeline`);
    }
    return batch / this.#groups;
  }

  #disposeGpuKv(): void {
    for (const tensor of this.#gpuKv) tensor.dispose();
    this.#gpuKv = [];
  }

  #unetFeeds(graph: Graph, sample: Float32Array, batch: number, height: number, width: number, timestep: number, context: Float32Array): Record<string, Tensor> {
    const channels = sample.length / (batch * height * width);
    return {
      sample: this.#floatTensor(graph, 'sample', sample, [batch, channels, height, width]),
      encoder_hidden_states: this.#floatTensor(graph, 'encoder_hidden_states', context, [batch, 77, context.length / (batch * 77)]),
      timestep: this.#timestepTensor(graph, timestep, batch),
    };
  }

  /** VAE decode of latents already divided by the scaling factor: [n, 4, h, w] → [n, 3, 8h, 8w]. */
  async decode(latents: Float32Array, count: number, height: number, width: number): Promise<Float32Array> {
    return this.#run(this.#vaeDecoder, { latent_sample: this.#floatTensor(this.#vaeDecoder, 'latent_sample', latents, [count, 4, height, width]) });
  }

  /** Loads the VAE encoder if it was not loaded with the rest (a text-to-video model animating a picture). */
  async ensureVaeEncoder(): Promise<void> {
    this.#vaeEncoder ??= await this.#openVaeEncoder();
  }

  /**
   * VAE encode of images in [−1, 1]: [n, 3, H, W] → the posterior mean [n, 4, H/8, W/8] (unscaled),
   * whichever form the export has (the mean itself, latent_parameters, or a sampling graph rewritten at load).
   */
  async encode(images: Float32Array, count: number, height: number, width: number): Promise<Float32Array> {
    const graph = this.#vaeEncoder;
    if (!graph) throw new Error('The VAE encoder was not loaded (pass vaeEncoder: true, or call ensureVaeEncoder()).');
    const output = (await this.#runAll(graph, { sample: this.#floatTensor(graph, 'sample', images, [count, 3, height, width]) }))[graph.output]!;
    const channels = output.dims[1];
    if (output.dims.length !== 4 || channels !== graph.encoder.expectedChannels) {
      throw new ModelFolderError(join(this.dir, 'vae_encoder', 'model.onnx'), channelMessage(join(this.dir, 'vae_encoder', 'model.onnx'), graph.output, channels ?? 0));
    }
    const data = this.#toFloat32(output);
    if (graph.encoder.output !== 'parameters') return data;
    // [n, mean 4 + logvar 4, h, w] → the mean's 4 channels of each item.
    const plane = (output.dims[2] ?? 0) * (output.dims[3] ?? 0);
    const mean = new Float32Array(count * VAE_LATENT_CHANNELS * plane);
    for (let n = 0; n < count; n++) mean.set(data.subarray(n * channels * plane, (n * channels + VAE_LATENT_CHANNELS) * plane), n * VAE_LATENT_CHANNELS * plane);
    return mean;
  }

  async release(): Promise<void> {
    this.#disposeGpuKv();
    const graphs = [this.#textEncoder, this.#unet, this.#vaeDecoder, this.#vaeEncoder];
    await Promise.all(graphs.filter((graph): graph is Graph => graph !== undefined).map((graph) => releaseSession(graph.session)));
  }

  async #run(graph: Graph, feeds: Record<string, Tensor>): Promise<Float32Array> {
    return this.#toFloat32((await this.#runAll(graph, feeds))[graph.output]!);
  }

  /** Runs a graph, fetching only `fetches` (default: its main output), so nothing else is copied out of ORT. */
  async #runAll(graph: Graph, feeds: Record<string, Tensor>, fetches: readonly string[] = [graph.output]): Promise<Record<string, Tensor>> {
    const started = performance.now();
    const results = await graph.session.run(feeds, [...fetches]);
    this.ortSeconds += (performance.now() - started) / 1000;
    return results as Record<string, Tensor>;
  }

  #toFloat32(output: Tensor): Float32Array {
    const data = output.data;
    if (output.type === 'float16') return float16ToFloat32Array(data as Uint16Array);
    return data as Float32Array;
  }

  #floatTensor(graph: Graph, name: string, data: Float32Array, dims: number[]): Tensor {
    if (graph.inputs.get(name)?.type === 'float16') return new Tensor('float16', float32ArrayToFloat16(data), dims);
    return new Tensor('float32', data, dims);
  }

  /** The timestep as the export wants it: float32/float16/int64, scalar or one per batch item. */
  #timestepTensor(graph: Graph, timestep: number, batch: number): Tensor {
    const input = graph.inputs.get('timestep');
    const dims = input && input.shape.length === 0 ? [] : [batch];
    const count = dims.length === 0 ? 1 : batch;
    switch (input?.type) {
      // Integer exports get whole timesteps (Euler Ancestral's linspace ones are fractional), truncated as optimum's pipeline does.
      case 'int64':
        return new Tensor('int64', new BigInt64Array(count).fill(BigInt(Math.trunc(timestep))), dims);
      case 'int32':
        return new Tensor('int32', new Int32Array(count).fill(Math.trunc(timestep)), dims);
      case 'float16':
        return new Tensor('float16', float32ArrayToFloat16(new Float32Array(count).fill(timestep)), dims);
      default:
        return new Tensor('float32', new Float32Array(count).fill(timestep), dims);
    }
  }
}

type OpenSession = (path: string, extra?: { device?: string; fallbackToCpu?: boolean; gpuBufferOutputs?: string[] }) => Promise<{ graph: Graph; provider: ProviderName }>;

/**
 * The UNet's one session: the rewritten graph (cross-frame attention), or the plain graph when the
 * rewrite cannot find its attention (logged: videos will flicker). A float16 UNet gets float32
 * attention on the CPU provider, which has no float16 MultiHeadAttention kernel, and keeps float16
 * on a GPU provider; when that provider does not start, the CPU fallback loads the float32-attention
 * graph. On WebGPU the anchor keys/values stay in GPU memory between calls.
 */
async function openUnet(path: string, float16: boolean, heads: HeadsOption | undefined, options: ComponentOptions, open: OpenSession): Promise<UnetGraph> {
  const onCpu = parseDevice(options.device).kind === 'cpu';
  let rewritten: RewrittenUnet;
  try {
    rewritten = await loadRewrittenUnet(path, { heads, float32Attention: float16 && onCpu });
  } catch (error) {
    if (!(error instanceof CrossFrameUnavailableError)) throw error;
    options.logger?.warn(
      { model: path, reason: error.message },
      'cross-frame attention is unavailable for this UNet: it runs per frame, so videos will flicker',
    );
    const { graph } = await open(path);
    return { ...graph, blocks: 0, kvType: float16 ? 'float16' : 'float32' };
  }
  const withBlocks = (graph: Graph, from: RewrittenUnet): UnetGraph => ({ ...graph, blocks: from.blocks.length, kvType: from.kvType });
  const gpuBufferOutputs = exportedKvNames(rewritten.blocks.length);
  if (!float16 || onCpu) return withBlocks((await open(rewritten.path, { gpuBufferOutputs })).graph, rewritten);
  try {
    return withBlocks((await open(rewritten.path, { fallbackToCpu: false, gpuBufferOutputs })).graph, rewritten);
  } catch (error) {
    if (!(error instanceof SessionCreateError) || !options.onnx.fallbackToCpu) throw error;
    const forCpu = await loadRewrittenUnet(path, { heads, float32Attention: true });
    return withBlocks((await open(forCpu.path, { device: 'cpu' })).graph, forCpu);
  }
}
