/**
 * The parts of a Stable Diffusion 1.x model folder that the pipelines run: tokenizer, text encoder,
 * UNet (with cross-frame attention rewritten in at load), VAE decoder and encoder, and the scheduler
 * config. Feeds follow each graph's own metadata (float32 / float16 inputs, int64 / int32 ids, a
 * timestep of rank 0 or 1), and the time spent inside `session.run` is counted for benchmarks.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inspectModelFolder, ModelFolderError } from '../onnx/model-folder.js';
import { CROSS_FRAME_ANCHORS_INPUT, crossFrameAnchors, loadRewrittenUnet } from '../onnx/cross-frame.js';
import { channelMessage, loadVaeEncoderForMean, VAE_LATENT_CHANNELS, type LoadableVaeEncoder } from '../onnx/vae-encoder.js';
import { createSession, releaseSession, Tensor, type InferenceSession, type ProviderName, type SessionLogger } from '../onnx/session.js';
import { float16ToFloat32Array, float32ArrayToFloat16 } from '../onnx/tensor.js';
import { readSchedulerConfig, type SchedulerConfig } from '../schedulers/ddim.js';
import { ClipTokenizer } from '../text/clip-tokenizer.js';

export interface ComponentOptions {
  device: string;
  onnx: { intraOpThreads: number; interOpThreads: number; fallbackToCpu: boolean };
  logger?: SessionLogger;
  /** Guidance groups in one UNet batch (2 = text-to-video CFG, 3 = instruct-pix2pix). */
  groups: number;
  /** Load the plain UNet at once (otherwise on the first run without cross-frame attention). */
  plainUnet?: boolean;
  /** Load the VAE encoder (clip editing). */
  vaeEncoder?: boolean;
  /**
   * Load the anchor K/V UNet pair at once (otherwise on the first {@link StableDiffusionComponents.unetAnchors}
   * / {@link StableDiffusionComponents.unetWithAnchorKv} call): the export variant runs the anchor frames
   * and hands back their keys/values, the import variant runs other frames against them (clip editing).
   */
  anchorKvSessions?: boolean;
}

interface Graph {
  session: InferenceSession;
  inputs: Map<string, { type: string; shape: readonly (number | string)[] }>;
  output: string;
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
  readonly crossFrameBlocks: number;
  /** Seconds spent inside session.run since load. */
  ortSeconds = 0;
  readonly #textEncoder: Graph;
  #unet: Promise<Graph> | undefined;
  readonly #openCrossFrameUnet: () => Promise<Graph>;
  #plainUnet: Promise<Graph> | undefined;
  readonly #openPlainUnet: () => Promise<Graph>;
  #anchorKvUnets: Promise<{ exporter: Graph; importer: Graph }> | undefined;
  readonly #openAnchorKvUnets: () => Promise<{ exporter: Graph; importer: Graph }>;
  readonly #vaeDecoder: Graph;
  readonly #vaeEncoder: (Graph & { encoder: LoadableVaeEncoder }) | undefined;
  readonly #groups: number;

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
    crossFrameBlocks: number;
    textEncoder: Graph;
    unet: Graph | undefined;
    openCrossFrameUnet: () => Promise<Graph>;
    textWidth: number;
    unetInChannels: number;
    plainUnet: Graph | undefined;
    openPlainUnet: () => Promise<Graph>;
    anchorKvUnets: { exporter: Graph; importer: Graph } | undefined;
    openAnchorKvUnets: () => Promise<{ exporter: Graph; importer: Graph }>;
    vaeDecoder: Graph;
    vaeEncoder: (Graph & { encoder: LoadableVaeEncoder }) | undefined;
  }) {
    this.dir = fields.dir;
    this.tokenizer = fields.tokenizer;
    this.schedulerConfig = fields.schedulerConfig;
    this.provider = fields.provider;
    this.resolution = fields.resolution;
    this.sizeMultiple = fields.sizeMultiple;
    this.vaeScalingFactor = fields.vaeScalingFactor;
    this.untrainedWeights = fields.untrainedWeights;
    this.crossFrameBlocks = fields.crossFrameBlocks;
    this.#textEncoder = fields.textEncoder;
    this.#unet = fields.unet && Promise.resolve(fields.unet);
    this.#openCrossFrameUnet = fields.openCrossFrameUnet;
    this.#plainUnet = fields.plainUnet && Promise.resolve(fields.plainUnet);
    this.#openPlainUnet = fields.openPlainUnet;
    this.#anchorKvUnets = fields.anchorKvUnets && Promise.resolve(fields.anchorKvUnets);
    this.#openAnchorKvUnets = fields.openAnchorKvUnets;
    this.#vaeDecoder = fields.vaeDecoder;
    this.#vaeEncoder = fields.vaeEncoder;
    this.#groups = fields.groups;
    this.textWidth = fields.textWidth;
    this.unetInChannels = fields.unetInChannels;
  }

  /** Loads a model folder (checked by the caller with inspectModelFolder). */
  static async load(dir: string, options: ComponentOptions): Promise<StableDiffusionComponents> {
    const open = async (path: string): Promise<{ graph: Graph; provider: ProviderName }> => {
      const created = await createSession(path, { device: options.device, ...options.onnx, logger: options.logger });
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
    const heads = info.unet.configHeads;
    const openCrossFrameUnet = async () => (await open((await loadRewrittenUnet(join(dir, 'unet', 'model.onnx'), { groups: options.groups, heads })).path)).graph;
    // The edit pipeline uses the anchor K/V pair, not this one: only load what is used.
    const unet = options.anchorKvSessions ? undefined : await openCrossFrameUnet();
    const textEncoder = await open(join(dir, 'text_encoder', 'model.onnx'));
    const vaeDecoder = await open(join(dir, 'vae_decoder', 'model.onnx'));
    const openPlainUnet = async () => (await open(join(dir, 'unet', 'model.onnx'))).graph;
    const plainUnet = options.plainUnet ? await openPlainUnet() : undefined;
    const unetPath = join(dir, 'unet', 'model.onnx');
    const openAnchorKvUnets = async () => {
      // Sequential: each rewrite writes its own cache file; the block order (anchor_k.<i>) is the same in both.
      const exporter = await open((await loadRewrittenUnet(unetPath, { groups: options.groups, heads, anchorKv: 'export' })).path);
      const importer = await open((await loadRewrittenUnet(unetPath, { groups: options.groups, heads, anchorKv: 'import' })).path);
      return { exporter: exporter.graph, importer: importer.graph };
    };
    const anchorKvUnets = options.anchorKvSessions ? await openAnchorKvUnets() : undefined;
    // The posterior mean in every export form: a sampling encoder is rewritten, latent_parameters is sliced in encode().
    const encoder = options.vaeEncoder ? await loadVaeEncoderForMean(join(dir, 'vae_encoder', 'model.onnx')) : undefined;
    const vaeEncoder = encoder ? { ...(await open(encoder.path)).graph, output: encoder.outputName, encoder } : undefined;
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
      crossFrameBlocks: info.unet.selfAttention.length,
      textWidth: info.unet.contextWidth ?? textHiddenWidth(textEncoder.graph.session),
      unetInChannels: info.unet.inChannels,
      textEncoder: textEncoder.graph,
      unet,
      openCrossFrameUnet,
      plainUnet,
      openPlainUnet,
      anchorKvUnets,
      openAnchorKvUnets,
      vaeDecoder: vaeDecoder.graph,
      vaeEncoder,
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
   * `anchors` (frame indices in each guidance group) selects cross-frame attention; `null` runs
   * the plain UNet, every frame attending to itself.
   */
  async unet(sample: Float32Array, batch: number, height: number, width: number, timestep: number, context: Float32Array, anchors: readonly number[] | null): Promise<Float32Array> {
    const graph = anchors === null ? await (this.#plainUnet ??= this.#openPlainUnet()) : await (this.#unet ??= this.#openCrossFrameUnet());
    const channels = sample.length / (batch * height * width);
    const feeds: Record<string, Tensor> = {
      sample: this.#floatTensor(graph, 'sample', sample, [batch, channels, height, width]),
      encoder_hidden_states: this.#floatTensor(graph, 'encoder_hidden_states', context, [batch, 77, context.length / (batch * 77)]),
      timestep: this.#timestepTensor(graph, timestep, batch),
    };
    if (anchors !== null) feeds[CROSS_FRAME_ANCHORS_INPUT] = crossFrameAnchors(anchors, { batch, groups: this.#groups });
    return this.#run(graph, feeds);
  }

  /**
   * The anchor pass of a K/V-cached cross-frame step: the batch is the anchor frames only, as
   * [group][anchor] (every frame of a group is an anchor, so `cross_frame_anchors` = 0…A−1).
   * Returns the anchors' own noise prediction and every attn1 block's anchor keys/values
   * (`anchor_k.<i>` / `anchor_v.<i>`, [G, 1, A·N, C]) as ORT tensors, to hand to
   * {@link unetWithAnchorKv} unchanged.
   */
  async unetAnchors(sample: Float32Array, batch: number, height: number, width: number, timestep: number, context: Float32Array): Promise<{ noise: Float32Array; kv: Map<string, Tensor> }> {
    const { exporter } = await (this.#anchorKvUnets ??= this.#openAnchorKvUnets());
    const feeds = this.#unetFeeds(exporter, sample, batch, height, width, timestep, context);
    const anchorCount = batch / this.#groups;
    feeds[CROSS_FRAME_ANCHORS_INPUT] = crossFrameAnchors(
      Array.from({ length: anchorCount }, (_, i) => i),
      { batch, groups: this.#groups },
    );
    const results = await this.#runAll(exporter, feeds);
    const kv = new Map<string, Tensor>();
    for (const name of exporter.session.outputNames) if (name !== exporter.output) kv.set(name, results[name]!);
    return { noise: this.#toFloat32(results[exporter.output]!), kv };
  }

  /**
   * A chunk pass of a K/V-cached cross-frame step: the batch holds only the chunk's frames
   * ([group][frame], no anchors); every frame's self-attention uses the anchor keys/values `kv`
   * from {@link unetAnchors} of the same step.
   */
  async unetWithAnchorKv(sample: Float32Array, batch: number, height: number, width: number, timestep: number, context: Float32Array, kv: ReadonlyMap<string, Tensor>): Promise<Float32Array> {
    const { importer } = await (this.#anchorKvUnets ??= this.#openAnchorKvUnets());
    if (batch % this.#groups !== 0) {
      throw new RangeError(`The UNet batch (${batch}) must be a multiple of the ${this.#groups} guidance groups the cross-frame rewrite was built for`);
    }
    const feeds = this.#unetFeeds(importer, sample, batch, height, width, timestep, context);
    for (const name of importer.inputs.keys()) {
      if (name in feeds) continue;
      const tensor = kv.get(name);
      if (!tensor) throw new Error(`No anchor key/value tensor \`${name}\` for the K/V-import UNet (pass the \`kv\` from unetAnchors)`);
      feeds[name] = tensor;
    }
    return this.#toFloat32((await this.#runAll(importer, feeds))[importer.output]!);
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

  /**
   * VAE encode of images in [−1, 1]: [n, 3, H, W] → the posterior mean [n, 4, H/8, W/8] (unscaled),
   * whichever form the export has (the mean itself, latent_parameters, or a sampling graph rewritten at load).
   */
  async encode(images: Float32Array, count: number, height: number, width: number): Promise<Float32Array> {
    const graph = this.#vaeEncoder;
    if (!graph) throw new Error('The VAE encoder was not loaded (pass vaeEncoder: true).');
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
    const kvUnets = await this.#anchorKvUnets;
    const graphs = [this.#textEncoder, await this.#unet, await this.#plainUnet, kvUnets?.exporter, kvUnets?.importer, this.#vaeDecoder, this.#vaeEncoder];
    await Promise.all(graphs.filter((graph): graph is Graph => graph !== undefined).map((graph) => releaseSession(graph.session)));
  }

  async #run(graph: Graph, feeds: Record<string, Tensor>): Promise<Float32Array> {
    return this.#toFloat32((await this.#runAll(graph, feeds))[graph.output]!);
  }

  async #runAll(graph: Graph, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const started = performance.now();
    const results = await graph.session.run(feeds);
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
