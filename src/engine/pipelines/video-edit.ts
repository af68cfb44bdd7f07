/**
 * Clip editing by instruction: Video Instruct-Pix2Pix (Text2Video-Zero's `process_pix2pix`) with
 * Fairy-style anchor attention, on an 8-channel Instruct-Pix2Pix UNet.
 *
 *   1. every input frame → VAE encoder → image latent (the posterior mode, NOT × the scaling factor, as
 *      diffusers' `prepare_image_latents`), encoded a chunk at a time;
 *   2. one noise latent per frame, randn × `initNoiseSigma`, each frame from its own seeded stream;
 *   3. each step, one UNet call on 3 guidance groups × the K anchor frames (the K/V-export UNet:
 *      anchors attend to the anchors), which gives the anchors' own prediction and every attn1
 *      block's anchor keys/values [3, 1, K·N, C]; then per chunk of the other frames one call on
 *      3 groups × the chunk (the K/V-import UNet: each frame's self-attention keys/values are the
 *      anchors' of its own group, fed in, not recomputed). Sample channels [scaleModelInput(noisy
 *      latent), image latent] with image latents [img, img, 0] and text [instruction, uncond,
 *      uncond]; guidance `uncond + g·(text − image) + gi·(image − uncond)`;
 *   4. scheduler step per frame (Euler Ancestral, the reference, or DDIM), then VAE decode.
 *
 * Reference values: the official Video-IP2P code runs 50 Euler-Ancestral steps, guidance 7.5,
 * image guidance 1.0 (diffusers' own pipeline default is 1.5), chunks of 8 with frame 0 as the one
 * anchor. Defaults here: 10 steps (Fairy's fast setting; pass 50 for the reference) and K = 3
 * anchors spread evenly over the clip, first and last frame included (Fairy); `anchors: 1` is
 * frame 0 only, as Video-IP2P.
 *
 * Deviations, each on purpose:
 * - Anchor K/V are computed once per step (as Fairy), by a separate anchor batch, and handed to
 *   every chunk as ORT tensors (the UNet's exported and imported K/V, onnx/cross-frame.ts). So
 *   `chunkSize` counts only non-anchor frames, UNet work per step is ∝ K + the other frames, and
 *   memory is set by max(K, chunkSize), not the clip length. Chunked output equals unchunked output
 *   up to float summation order. The anchors advance right after their own call (the chunks need
 *   only their keys/values of this step, already computed). Without cross-frame attention the UNet
 *   runs per frame, `chunkSize` frames per call.
 * - The reference re-seeds the generator per chunk, so chunk k's frames get the same noise as
 *   chunk 0's; here each frame has its own stream (initial noise and Euler-Ancestral step noise),
 *   so results do not depend on chunking. (The authors' chunk loop also puts frame 0 into the
 *   first chunk twice, `[0] + range(0, …)`, and returns the second copy, which has other noise
 *   than the anchor; here frame 0 is the anchor itself.) With a draws file (`draws`), x_T and each
 *   frame's step noise are read from it instead.
 * - Euler Ancestral uses "linspace" timesteps whatever the folder's `timestep_spacing` says: the
 *   reference (diffusers 0.14, pinned by Text2Video-Zero) had only linspace for this scheduler, and
 *   newer diffusers default to it. So init_noise_sigma = sigma_max (14.6146 for SD 1.x).
 * - Timesteps are fractional under linspace; they reach float exports as they are, and exports with
 *   an integer `timestep` input get them truncated (sd-components), as optimum's pipeline does.
 * - As diffusers, guidance is applied only when `guidanceScale > 1` and `imageGuidanceScale ≥ 1`;
 *   otherwise the text-conditioned prediction is used alone (the 3-group batch still runs, since
 *   the rewritten UNet is built for 3 groups).
 * - The VAE encoder gives the posterior mean (= the mode, as diffusers' `latent_dist.mode()`) in
 *   every export form: an older optimum export that samples inside the graph is rewritten at load,
 *   a `latent_parameters` one is sliced (onnx/vae-encoder.ts), so a seed always gives one edit.
 */
import { seededDraws, type DrawSource } from '../draws.js';
import { DDIMScheduler } from '../schedulers/ddim.js';
import { EulerAncestralScheduler } from '../schedulers/euler-ancestral.js';
import { checkUnetSize, concat, imagesToRgb, repeat, rgbToImages } from './latents.js';
import type { RunContext } from './types.js';
import type { StableDiffusionComponents } from './sd-components.js';
import type { Tensor } from '../onnx/session.js';

/** Noise schedulers the edit pipeline can run. */
export type VideoEditSchedulerName = 'euler-ancestral' | 'ddim';

export interface VideoEditInput {
  /** RGB24 frames, all `width × height × 3` bytes. */
  frames: readonly Uint8Array[];
  /** Pixel size; multiples of 8 (of 8 · 2^(UNet levels − 1) for the UNet, 64 is always safe). */
  width: number;
  height: number;
  /** What to change, e.g. "make it snowy". */
  instruction: string;
  negativePrompt?: string;
  /** Denoising steps: default 10 (Fairy's fast preset); 50 is the Video-IP2P reference. */
  numInferenceSteps?: number;
  /** Text guidance (reference 7.5). */
  guidanceScale?: number;
  /** Image guidance: 1.0 in the Text2Video-Zero authors' code (the default here); diffusers' IP2P default is 1.5. */
  imageGuidanceScale?: number;
  seed: number;
  /** Anchor frames K, spread evenly over the clip (frame 0 and the last included); 1 = frame 0 only. Default 3. */
  anchors?: number;
  /**
   * Frames per UNet batch (default {@link defaultChunkSize}: 8, fewer at large sizes). With cross-frame attention it counts only non-anchor frames:
   * the K anchors run once per step in their own batch, and each chunk's batch holds just its own
   * frames (so the largest batch is max(K, chunkSize) frames × 3 guidance groups). Without it, any
   * frames. It also caps the frames per VAE call ({@link vaeFramesPerCall}).
   */
  chunkSize?: number;
  /** Default Euler Ancestral, the reference. */
  scheduler?: VideoEditSchedulerName;
  /** Off: every frame edited on its own with per-frame attention (for comparisons). */
  crossFrameAttention?: boolean;
  /** Where x_T and Euler Ancestral's step noise come from (default: {@link seededDraws} of `seed`). */
  draws?: DrawSource;
}

export interface VideoEditOutput {
  frames: Uint8Array[];
  width: number;
  height: number;
  seed: number;
  /** Frame indices used as anchors (empty without cross-frame attention). */
  anchors: number[];
  promptTruncated: boolean;
  droppedText: string;
  unetCalls: number;
}


export const VIDEO_EDIT_DEFAULTS = Object.freeze({
  numInferenceSteps: 10,
  guidanceScale: 7.5,
  imageGuidanceScale: 1.0,
  anchors: 3,
  chunkSize: 8,
  scheduler: 'euler-ancestral' as VideoEditSchedulerName,
});

const SCHEDULERS: readonly VideoEditSchedulerName[] = ['euler-ancestral', 'ddim'];

/** The steps a pipeline needs from a scheduler; DDIM's noise-free step never calls `noise`. */
interface EditScheduler {
  readonly timesteps: number[];
  readonly initNoiseSigma: number;
  /** Whether `step` draws noise (Euler Ancestral) or not (DDIM, eta = 0). */
  readonly noisy: boolean;
  scaleModelInput(sample: Float32Array, timestep: number, out: Float32Array): Float32Array;
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, out: Float32Array, noise: () => Float32Array): Float32Array;
}

export class VideoEditPipeline {
  readonly #components: StableDiffusionComponents;

  constructor(components: StableDiffusionComponents) {
    this.#components = components;
  }

  async run(input: VideoEditInput, context: RunContext = {}): Promise<VideoEditOutput> {
    const sd = this.#components;
    const { signal } = context;
    // 1. Check inputs.
    const steps = input.numInferenceSteps ?? VIDEO_EDIT_DEFAULTS.numInferenceSteps;
    const guidance = input.guidanceScale ?? VIDEO_EDIT_DEFAULTS.guidanceScale;
    const imageGuidance = input.imageGuidanceScale ?? VIDEO_EDIT_DEFAULTS.imageGuidanceScale;
    const anchorCount = input.anchors ?? VIDEO_EDIT_DEFAULTS.anchors;
    const chunkSize = input.chunkSize ?? defaultChunkSize(input.width, input.height, anchorCount);
    const schedulerName = input.scheduler ?? VIDEO_EDIT_DEFAULTS.scheduler;
    const crossFrame = input.crossFrameAttention ?? true;
    checkInputs({ ...input, steps, guidance, imageGuidance, anchorCount, chunkSize, schedulerName, crossFrame });
    checkUnetSize(input.width, input.height, sd.sizeMultiple);
    if (sd.unetInChannels !== 8) {
      throw new RangeError(`Clip editing needs an instruct-edit (8-channel) UNet; ${sd.dir} has a ${sd.unetInChannels}-channel one`);
    }
    const { frames, width, height } = input;
    const numFrames = frames.length;
    const h = height / 8;
    const w = width / 8;
    const latentSize = 4 * h * w;
    const anchors = crossFrame ? anchorFrames(numFrames, anchorCount) : [];
    const chunks = crossFrame ? editChunks(numFrames, anchors, chunkSize) : plainChunks(numFrames, chunkSize);
    const withGuidance = guidance > 1 && imageGuidance >= 1;

    // 2. Text embeddings: [instruction, uncond, uncond] per frame.
    const text = await sd.encodeText(input.instruction);
    const uncond = await sd.encodeText(input.negativePrompt ?? '');

    // 3. Image latents: VAE mode, unscaled, a few frames per encoder call (at 512² one: the VAE's
    //    full-resolution activations, not the UNet, set the peak memory of an edit).
    const vaeFrames = vaeFramesPerCall(width, height, chunkSize);
    const imageLatents: Float32Array[] = [];
    for (let start = 0; start < numFrames; start += vaeFrames) {
      signal?.throwIfAborted();
      const part = frames.slice(start, start + vaeFrames);
      const encoded = await sd.encode(rgbToImages(part, height, width), part.length, height, width);
      for (let i = 0; i < part.length; i++) imageLatents.push(encoded.subarray(i * latentSize, (i + 1) * latentSize));
    }

    // 4. Timesteps.
    const scheduler = makeScheduler(sd, schedulerName, steps);
    const timesteps = scheduler.timesteps;

    // 5. Initial latents: randn × initNoiseSigma, per frame (seeded: one stream per frame, which also feeds that frame's step noise).
    const draws = input.draws ?? seededDraws(input.seed);
    draws.check({
      latentShape: [4, h, w],
      initialFrames: numFrames,
      forwardFrames: 0,
      noisySteps: scheduler.noisy ? timesteps.length : 0,
      stepFrames: numFrames,
      what: `this ${numFrames}-frame edit at ${width}×${height} with ${timesteps.length} ${schedulerName} steps`,
    });
    const latents = Array.from({ length: numFrames }, (_, frame) => draws.initialNoise(frame, latentSize, scheduler.initNoiseSigma));
    const trace = context.onLatent;
    if (trace) {
      imageLatents.forEach((latent, frame) => trace({ stage: 'image', step: -1, frame, latent: latent.slice() }));
      latents.forEach((latent, frame) => trace({ stage: 'initial', step: -1, frame, latent: latent.slice() }));
    }

    // 6. Denoising: step-major. With cross-frame attention each step first runs the K anchors alone
    //    (their own update plus every attn1 block's anchor keys/values), then every chunk of the
    //    other frames against those keys/values.
    const callsPerStep = chunks.filter((chunk) => chunk.length > 0).length + (crossFrame ? 1 : 0);
    const totalCalls = steps * callsPerStep;
    let calls = 0;
    const maxMembers = Math.max(anchors.length, ...chunks.map((chunk) => chunk.length));
    const sample = new Float32Array(3 * maxMembers * 2 * latentSize);
    const scaled = new Float32Array(latentSize);
    const guided = new Float32Array(latentSize);
    const contexts = new Map<number, Float32Array>();
    /** Fills the batch [group][member][8 channels] (latent channels, then image channels: zeros in group 2); returns it and its context. */
    const fillBatch = (members: readonly number[], t: number): { batchSample: Float32Array; batchContext: Float32Array } => {
      const m = members.length;
      for (let g = 0; g < 3; g++) {
        members.forEach((frame, j) => {
          const offset = (g * m + j) * 2 * latentSize;
          sample.set(scheduler.scaleModelInput(latents[frame]!, t, scaled), offset);
          if (g < 2) sample.set(imageLatents[frame]!, offset + latentSize);
          else sample.fill(0, offset + latentSize, offset + 2 * latentSize);
        });
      }
      let batchContext = contexts.get(m);
      if (!batchContext) {
        batchContext = concat([...repeat(text.embedding, m), ...repeat(uncond.embedding, 2 * m)]);
        contexts.set(m, batchContext);
      }
      return { batchSample: sample.subarray(0, 3 * m * 2 * latentSize), batchContext };
    };
    const advance = (noise: Float32Array, members: readonly number[], t: number): void => {
      const stepIndex = timesteps.indexOf(t);
      members.forEach((frame, j) => {
        pix2pixGuidance(noise, latentSize, members.length, j, withGuidance ? guidance : null, imageGuidance, guided);
        scheduler.step(guided, t, latents[frame]!, latents[frame]!, () => draws.stepNoise(frame, stepIndex, latentSize));
        trace?.({ stage: 'step', step: stepIndex, frame, latent: latents[frame]!.slice() });
      });
    };
    const progress = (): void => {
      calls++;
      context.onProgress?.({ step: calls, total: totalCalls, stage: 'editing' });
    };
    for (const t of timesteps) {
      let kv: Map<string, Tensor> | undefined;
      if (crossFrame) {
        signal?.throwIfAborted();
        const { batchSample, batchContext } = fillBatch(anchors, t);
        const result = await sd.unetAnchors(batchSample, 3 * anchors.length, h, w, t, batchContext);
        kv = result.kv;
        progress();
        // The anchors can advance at once: the chunks read only their keys/values, already computed.
        advance(result.noise, anchors, t);
      }
      for (const chunk of chunks) {
        if (chunk.length === 0) continue;
        signal?.throwIfAborted();
        const { batchSample, batchContext } = fillBatch(chunk, t);
        const noise = kv
          ? await sd.unetWithAnchorKv(batchSample, 3 * chunk.length, h, w, t, batchContext, kv)
          : await sd.unet(batchSample, 3 * chunk.length, h, w, t, batchContext, null);
        progress();
        advance(noise, chunk, t);
      }
    }

    // 7. Decode, as many frames per call as the encoder took (each call reports progress, so a long
    //    clip's decode never looks like a stalled engine).
    const output: Uint8Array[] = [];
    for (let start = 0; start < numFrames; start += vaeFrames) {
      signal?.throwIfAborted();
      context.onProgress?.({ step: totalCalls, total: totalCalls, stage: 'decoding' });
      const part = latents.slice(start, start + vaeFrames);
      const batch = new Float32Array(part.length * latentSize);
      part.forEach((latent, i) => {
        for (let k = 0; k < latentSize; k++) batch[i * latentSize + k] = latent[k]! / sd.vaeScalingFactor;
      });
      const images = await sd.decode(batch, part.length, h, w);
      output.push(...imagesToRgb(images, part.length, height, width));
    }
    return {
      frames: output,
      width,
      height,
      seed: input.seed,
      anchors,
      promptTruncated: text.truncated,
      droppedText: text.droppedText,
      unetCalls: calls,
    };
  }
}

/** K anchor frames spread evenly over `numFrames`: round(i·(n−1)/(K−1)); K = 1 → [0]. Distinct for K ≤ n. */
export function anchorFrames(numFrames: number, count: number): number[] {
  if (count === 1) return [0];
  return Array.from({ length: count }, (_, i) => Math.round((i * (numFrames - 1)) / (count - 1)));
}

/**
 * The non-anchor frames in order, `chunkSize` per chunk (the anchors run in their own batch, once
 * per step). A clip made only of anchors is one chunk with no other frames.
 */
export function editChunks(numFrames: number, anchors: readonly number[], chunkSize: number): number[][] {
  const isAnchor = new Set(anchors);
  const rest = Array.from({ length: numFrames }, (_, i) => i).filter((i) => !isAnchor.has(i));
  const per = chunkSize;
  const chunks: number[][] = [];
  for (let start = 0; start < rest.length; start += per) chunks.push(rest.slice(start, start + per));
  return chunks.length === 0 ? [[]] : chunks;
}

function plainChunks(numFrames: number, chunkSize: number): number[][] {
  const chunks: number[][] = [];
  for (let start = 0; start < numFrames; start += chunkSize) chunks.push(Array.from({ length: Math.min(chunkSize, numFrames - start) }, (_, i) => start + i));
  return chunks;
}

/**
 * Instruct-Pix2Pix guidance for batch item `j` of `m` per group, groups [text, image, uncond]:
 * `uncond + g·(text − image) + gi·(image − uncond)`; `g = null` takes the text prediction alone.
 */
export function pix2pixGuidance(noise: Float32Array, itemSize: number, m: number, j: number, g: number | null, gi: number, out: Float32Array): Float32Array {
  const textBase = j * itemSize;
  const imageBase = (m + j) * itemSize;
  const uncondBase = (2 * m + j) * itemSize;
  for (let k = 0; k < itemSize; k++) {
    const textPred = noise[textBase + k]!;
    if (g === null) {
      out[k] = textPred;
      continue;
    }
    const imagePred = noise[imageBase + k]!;
    const uncondPred = noise[uncondBase + k]!;
    out[k] = uncondPred + g * (textPred - imagePred) + gi * (imagePred - uncondPred);
  }
  return out;
}

function makeScheduler(sd: StableDiffusionComponents, name: VideoEditSchedulerName, steps: number): EditScheduler {
  if (name === 'ddim') {
    const ddim = new DDIMScheduler(sd.schedulerConfig);
    ddim.setTimesteps(steps);
    return {
      get timesteps() {
        return ddim.timesteps;
      },
      initNoiseSigma: ddim.initNoiseSigma,
      noisy: false,
      scaleModelInput: (sample, _t, out) => {
        out.set(sample);
        return out;
      },
      step: (modelOutput, t, sample, out) => ddim.step(modelOutput, t, sample, out),
    };
  }
  const ea = new EulerAncestralScheduler({ ...sd.schedulerConfig, timestepSpacing: 'linspace', stepsOffset: 0 });
  ea.setTimesteps(steps);
  return {
    get timesteps() {
      return ea.timesteps;
    },
    get initNoiseSigma() {
      return ea.initNoiseSigma;
    },
    noisy: true,
    scaleModelInput: (sample, t, out) => ea.scaleModelInput(sample, t, out),
    step: (modelOutput, t, sample, out, noise) => ea.step(modelOutput, t, sample, out, { noise: noise() }),
  };
}

function checkInputs(args: VideoEditInput & { steps: number; guidance: number; imageGuidance: number; anchorCount: number; chunkSize: number; schedulerName: string; crossFrame: boolean }): void {
  const { frames, width, height, steps, guidance, imageGuidance, anchorCount, chunkSize, schedulerName, crossFrame } = args;
  if (!Array.isArray(frames) || frames.length === 0) throw new RangeError(`\`frames\` must hold at least one frame, got ${Array.isArray(frames) ? 0 : typeof frames}`);
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0 && width % 8 === 0 && height % 8 === 0)) {
    throw new RangeError(`\`width\` and \`height\` have to be positive multiples of 8 but are ${width} and ${height}`);
  }
  const bytes = width * height * 3;
  frames.forEach((frame, i) => {
    if (!(frame instanceof Uint8Array) || frame.length !== bytes) {
      throw new RangeError(`\`frames[${i}]\` has ${frame instanceof Uint8Array ? frame.length : typeof frame} bytes; every frame must be RGB24 of ${width}×${height} (${bytes} bytes)`);
    }
  });
  if (typeof args.instruction !== 'string') throw new TypeError(`\`instruction\` must be a string, got ${typeof args.instruction}`);
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`\`numInferenceSteps\` must be a whole number of at least 1, got ${steps}`);
  if (!(Number.isFinite(guidance) && guidance >= 0)) throw new RangeError(`\`guidanceScale\` must be a number of at least 0, got ${guidance}`);
  if (!(Number.isFinite(imageGuidance) && imageGuidance >= 0)) throw new RangeError(`\`imageGuidanceScale\` must be a number of at least 0, got ${imageGuidance}`);
  if (!Number.isInteger(anchorCount) || anchorCount < 1 || anchorCount > frames.length) {
    throw new RangeError(`\`anchors\` must be a whole number from 1 to the ${frames.length} frames, got ${anchorCount}`);
  }
  if (!Number.isInteger(chunkSize) || chunkSize < 1) {
    throw new RangeError(`\`chunkSize\` must be a whole number of at least 1, got ${chunkSize}`);
  }
  if (!SCHEDULERS.includes(schedulerName as VideoEditSchedulerName)) {
    throw new RangeError(`\`scheduler\` must be one of ${SCHEDULERS.join(', ')}, got ${String(schedulerName)}`);
  }
}

/** Pixels of input per VAE call: one SD 1.x frame (512²). Its activations at 128 channels are about 134 MB per tensor. */
const VAE_PIXELS_PER_CALL = 512 * 512;

/** Frames per VAE encoder/decoder call: as many as fit {@link VAE_PIXELS_PER_CALL}, at least one, at most a chunk. */
export function vaeFramesPerCall(width: number, height: number, chunkSize: number): number {
  return Math.max(1, Math.min(chunkSize, Math.floor(VAE_PIXELS_PER_CALL / (width * height))));
}

/** Latent pixels per UNet chunk by default: three SD 1.x frames (64×64 latents each). */
const UNET_LATENT_PIXELS_PER_CHUNK = 3 * 64 * 64;

/**
 * The default chunk: {@link VIDEO_EDIT_DEFAULTS}.chunkSize frames, fewer at large sizes so that a
 * chunk's batch is no larger than the anchor pass's (the output does not depend on the chunking;
 * the peak memory does). At 512² with 3 anchors: 3 frames; at 128²: 8.
 */
export function defaultChunkSize(width: number, height: number, anchors: number): number {
  const latentPixels = (width / 8) * (height / 8);
  const byMemory = Math.floor(UNET_LATENT_PIXELS_PER_CHUNK / latentPixels);
  return Math.max(1, Math.min(VIDEO_EDIT_DEFAULTS.chunkSize, Math.max(anchors, byMemory)));
}
