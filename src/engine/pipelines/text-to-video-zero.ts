/**
 * Text2Video-Zero (Khachatryan et al., arXiv 2303.13439), zero-shot text-to-video on a Stable
 * Diffusion 1.x model, following the authors' code as diffusers' TextToVideoZeroPipeline runs it:
 *
 *   1. one latent x_T for frame 0; DDIM with guidance down to t1, then on to t0;
 *   2. frames 1…m−1: frame 0's latent at t0 warped by a global translation δ·k (motion field,
 *      reflection padding), then pushed forward t0 → t1 with the DDPM forward jump;
 *   3. all frames denoised from t1 with cross-frame attention (every frame's self-attention keys and
 *      values are frame 0's, per guidance group) and classifier-free guidance 7.5;
 *   4. VAE decode.
 *
 * Deviations, each on purpose:
 * - t0 / t1 are DDIM step indices as in the reference (44 / 47 of 50 steps). For other step counts
 *   the defaults keep the same fractions (0.88 / 0.94 of the steps, t1 > t0), so a 10-step render
 *   still has the two phases.
 * - The reference re-seeds and re-runs frame 0 for every chunk of a long video; here frame 0's
 *   trajectory is computed once and every chunk attends to it, and the noise of each frame comes
 *   from its own seeded stream, so chunked output equals unchunked output. (diffusers' documented
 *   chunk loop also puts frame 0 into the first chunk twice, `[0] + range(0, …)`, and returns the
 *   second copy, a re-noised one; here frame 0 of the video is frame 0's own trajectory.) With a
 *   draws file (`draws`), x_T and each frame's forward noise are read from it instead.
 * - As diffusers, guidance is applied only when `guidanceScale > 1`; otherwise the text-conditioned
 *   prediction is used alone (diffusers then runs one group; here the 2-group batch still runs, since
 *   the rewritten UNet is built for 2 groups). diffusers 0.31's own pipeline cannot run that case
 *   (it concatenates the missing negative embeddings); the golden reference patches it.
 * - Frame 0's DDIM phase runs the cross-frame UNet with anchor 0 on a one-frame batch, which is the
 *   plain UNet (a frame attending to itself), as in diffusers.
 */
import { DDIMScheduler, ddpmForwardFactor } from '../schedulers/ddim.js';
import { seededDraws, type DrawSource } from '../draws.js';
import type { JobPreview } from '../../jobs/types.js';
import { applyGuidance, checkUnetSize, concat, imagesToRgb, repeat, rgbToImages, warpLatent } from './latents.js';
import { phaseSteps } from '../../jobs/job-params.js';
import type { RunContext } from './types.js';
import type { StableDiffusionComponents } from './sd-components.js';

export interface TextToVideoZeroInput {
  prompt: string;
  negativePrompt?: string;
  /** Frames in the video (reference default 8). */
  numFrames?: number;
  /** DDIM steps (reference 50). */
  numInferenceSteps?: number;
  guidanceScale?: number;
  seed: number;
  /** Motion field strength δx, δy in pixels of a 512 grid per frame (reference 12, 12). */
  motion?: { dx: number; dy: number };
  /**
   * DDIM step indices of the two phases (reference 44 / 47 for 50 steps). Either may be given
   * alone: the other is derived by {@link phaseSteps}.
   */
  t0?: number;
  t1?: number;
  /** Pixel size; multiples of 8 · 2^(levels−1); default the model's resolution. */
  height?: number;
  width?: number;
  /** Frames per UNet batch, frame 0 included (reference 8). */
  chunkSize?: number;
  /** Off: every frame attends only to itself (for comparisons); on is the method. */
  crossFrameAttention?: boolean;
  /** Where x_T and the forward-jump noise come from (default: {@link seededDraws} of `seed`). */
  draws?: DrawSource;
  /**
   * A picture to animate: RGB24 at `width × height`. It becomes frame 0's start as in image-to-image
   * (VAE-encoded, noised to the step that `strength` selects); the motion and cross-frame attention
   * then animate it. The other frames start from it as Text2Video-Zero's frames start from frame 0.
   */
  image?: Uint8Array;
  /** How much of the picture is redrawn (0 < strength ≤ 1, diffusers img2img's `strength`; default 0.8). */
  strength?: number;
}

export interface TextToVideoZeroOutput {
  frames: Uint8Array[];
  width: number;
  height: number;
  seed: number;
  promptTruncated: boolean;
  droppedText: string;
  unetCalls: number;
}


export const TEXT_TO_VIDEO_ZERO_DEFAULTS = Object.freeze({
  numFrames: 8,
  numInferenceSteps: 50,
  guidanceScale: 7.5,
  motion: Object.freeze({ dx: 12, dy: 12 }),
  chunkSize: 8,
  /** diffusers StableDiffusionImg2ImgPipeline's default. */
  strength: 0.8,
});

export class TextToVideoZeroPipeline {
  readonly #components: StableDiffusionComponents;

  constructor(components: StableDiffusionComponents) {
    this.#components = components;
  }

  async run(input: TextToVideoZeroInput, context: RunContext = {}): Promise<TextToVideoZeroOutput> {
    const sd = this.#components;
    const { signal, preview } = context;
    // 1. Check inputs.
    const numFrames = input.numFrames ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.numFrames;
    const steps = input.numInferenceSteps ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.numInferenceSteps;
    const guidance = input.guidanceScale ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.guidanceScale;
    const { dx, dy } = input.motion ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.motion;
    const chunkSize = input.chunkSize ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.chunkSize;
    const height = input.height ?? sd.resolution;
    const width = input.width ?? sd.resolution;
    const strength = input.strength ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.strength;
    checkInputs({ numFrames, steps, guidance, chunkSize, height, width, sizeMultiple: sd.sizeMultiple, image: input.image, strength });
    const phases = phaseSteps(steps, input.t0, input.t1);
    const crossFrame = input.crossFrameAttention ?? true;
    const h = height / 8;
    const w = width / 8;
    const latentSize = 4 * h * w;
    const draws = input.draws ?? seededDraws(input.seed);
    draws.check({ latentShape: [4, h, w], initialFrames: 1, forwardFrames: numFrames - 1, noisySteps: 0, stepFrames: 0, what: `this ${numFrames}-frame render at ${width}×${height}` });
    const trace = context.onLatent;

    // 2. Text embeddings: [uncond, text].
    const text = await sd.encodeText(input.prompt);
    const uncond = await sd.encodeText(input.negativePrompt ?? '');

    // 3. Timesteps; the two phase boundaries as timestep values. With a picture, the first
    //    steps are skipped as image-to-image skips them (`imageStartStep`), and the phases move
    //    after that step, keeping their distance.
    const scheduler = new DDIMScheduler(sd.schedulerConfig);
    scheduler.setTimesteps(steps);
    const timesteps = scheduler.timesteps;
    const first = input.image === undefined ? 0 : imageStartStep(steps, strength);
    const gap = phases.t1 - phases.t0;
    const startAll = Math.max(steps - phases.t1 - 1, first); // index of the first step with every frame (timestep T1)
    const startWarp = startAll + gap; // index where frame 0 reaches T0
    if (startWarp > steps - 1) {
      throw new RangeError(`\`strength\` ${strength} leaves ${steps - first} of the ${steps} steps, too few for Text2Video-Zero's two phases (at least ${gap + 1}); raise the strength or the steps`);
    }
    const T1 = timesteps[startAll]!;
    const T0 = timesteps[startWarp]!;
    const others = otherFrameChunks(numFrames, chunkSize);
    const callsPerStep = crossFrame ? 1 + others.length : Math.ceil(numFrames / chunkSize);
    const totalCalls = startWarp - first + (steps - startAll) * callsPerStep;
    let calls = 0;
    const progress = (showing?: () => { latents: Float32Array[]; frames: number[] }) => {
      calls++;
      let shown: JobPreview | undefined;
      if (showing && preview?.due()) {
        const { latents, frames } = showing();
        shown = preview.make(latents, frames, h, w, calls);
      }
      context.onProgress?.({ step: calls, total: totalCalls, stage: 'denoising', ...(shown ? { preview: shown } : {}) });
    };

    // 4. Frame 0: x_T (or the picture's latent noised to the first step), DDIM with guidance to T1 (kept), then to T0.
    const frame0 = input.image === undefined ? draws.initialNoise(0, latentSize) : await imageLatent(sd, scheduler, input.image, height, width, timesteps[first]!, draws.initialNoise(0, latentSize));
    let frame0AtT1 = frame0;
    const pairContext = concat([uncond.embedding, text.embedding]);
    const pairSample = new Float32Array(2 * latentSize);
    const guided = new Float32Array(latentSize);
    for (let i = first; i < startWarp; i++) {
      signal?.throwIfAborted();
      if (i === startAll) frame0AtT1 = frame0.slice();
      pairSample.set(frame0, 0);
      pairSample.set(frame0, latentSize);
      const noise = await sd.unet(pairSample, 2, h, w, timesteps[i]!, pairContext, crossFrame ? [0] : null);
      applyGuidance(noise, latentSize, 1, guidance, guided);
      const t = timesteps[i]!;
      const before = preview ? frame0.slice() : frame0;
      scheduler.step(guided, t, frame0, frame0); // in place
      trace?.({ stage: 'frame0', step: i, frame: 0, latent: frame0.slice() });
      progress(() => ({ latents: [scheduler.predictOriginal(guided, t, before)], frames: [0] }));
    }
    if (startAll === startWarp) frame0AtT1 = frame0.slice();
    const frame0AtT0 = frame0;

    // 5. Frames 1…m−1: warp frame 0 at T0 by δ·k, then DDPM forward T0 → T1 with each frame's own noise.
    const factor = ddpmForwardFactor(scheduler.alphas, T0, T1);
    const keep = Math.sqrt(factor);
    const add = Math.sqrt(1 - factor);
    const latents: Float32Array[] = [frame0AtT1];
    for (let k = 1; k < numFrames; k++) {
      const warped = warpLatent(frame0AtT0, 4, h, w, dx * k, dy * k, new Float32Array(latentSize));
      const eps = draws.forwardNoise(k, latentSize);
      for (let j = 0; j < latentSize; j++) warped[j] = keep * warped[j]! + add * eps[j]!;
      latents.push(warped);
    }
    if (trace) latents.forEach((latent, frame) => trace({ stage: 'initial', step: -1, frame, latent: latent.slice() }));

    // 6. All frames from T1, step-major. With cross-frame attention each step first runs frame 0
    //    (the anchor) alone, which gives its own update and every attn1 block's keys/values; then
    //    each chunk of the other frames attends to those keys/values. So frame 0 is computed once per
    //    step whatever the length, and memory is set by the chunk, not the video.
    const shown = preview ? preview.pick(numFrames) : [];
    const lastNoise = new Map<number, Float32Array>();
    const maxMembers = crossFrame ? Math.max(1, ...others.map((chunk) => chunk.length)) : Math.min(chunkSize, numFrames);
    const batchSample = new Float32Array(2 * maxMembers * latentSize);
    const chunkGuided = new Float32Array(maxMembers * latentSize);
    const contexts = new Map<number, Float32Array>();
    const contextFor = (n: number): Float32Array => {
      let batchContext = contexts.get(n);
      if (!batchContext) {
        batchContext = concat([...repeat(uncond.embedding, n), ...repeat(text.embedding, n)]);
        contexts.set(n, batchContext);
      }
      return batchContext;
    };
    const fill = (members: readonly number[]): Float32Array => {
      const n = members.length;
      members.forEach((frame, index) => {
        batchSample.set(latents[frame]!, index * latentSize);
        batchSample.set(latents[frame]!, (n + index) * latentSize);
      });
      return batchSample.subarray(0, 2 * n * latentSize);
    };
    const advance = (noise: Float32Array, members: readonly number[], i: number): void => {
      const n = members.length;
      const out = chunkGuided.subarray(0, n * latentSize);
      applyGuidance(noise, latentSize, n, guidance, out);
      members.forEach((frame, index) => {
        const eps = out.subarray(index * latentSize, (index + 1) * latentSize);
        if (shown.includes(frame)) lastNoise.set(frame, eps.slice());
        scheduler.step(eps, timesteps[i]!, latents[frame]!, latents[frame]!); // in place
        trace?.({ stage: 'step', step: i, frame, latent: latents[frame]!.slice() });
      });
    };
    // x̂0 of the shown frames at the step just taken (from the noise each one got at that step).
    const showing = (i: number) => () => ({
      // After the last step the latents are the result; before it, DDIM (eta 0) gives x̂0 back from
      // x_prev and the same noise at the previous timestep.
      latents: shown.map((frame) => (i + 1 < steps ? scheduler.predictOriginal(lastNoise.get(frame)!, timesteps[i + 1]!, latents[frame]!) : latents[frame]!.slice())),
      frames: shown,
    });
    for (let i = startAll; i < steps; i++) {
      const t = timesteps[i]!;
      if (crossFrame) {
        signal?.throwIfAborted();
        const anchor = await sd.unetAnchors(fill([0]), 2, h, w, t, contextFor(1));
        advance(anchor.noise, [0], i);
        const lastCall = others.length === 0;
        progress(lastCall ? showing(i) : undefined);
        for (const [index, chunk] of others.entries()) {
          signal?.throwIfAborted();
          const noise = await sd.unetWithAnchorKv(fill(chunk), 2 * chunk.length, h, w, t, contextFor(chunk.length), anchor.kv);
          advance(noise, chunk, i);
          progress(index === others.length - 1 ? showing(i) : undefined);
        }
      } else {
        for (let start = 0; start < numFrames; start += chunkSize) {
          signal?.throwIfAborted();
          const chunk = Array.from({ length: Math.min(chunkSize, numFrames - start) }, (_, j) => start + j);
          const noise = await sd.unet(fill(chunk), 2 * chunk.length, h, w, t, contextFor(chunk.length), null);
          advance(noise, chunk, i);
          progress(start + chunkSize >= numFrames ? showing(i) : undefined);
        }
      }
    }

    // 7. Decode, one frame per call to bound memory.
    signal?.throwIfAborted();
    context.onProgress?.({ step: totalCalls, total: totalCalls, stage: 'decoding' });
    const frames: Uint8Array[] = [];
    for (const latent of latents) {
      signal?.throwIfAborted();
      const scaled = latent.map((value) => value / sd.vaeScalingFactor);
      const image = await sd.decode(scaled, 1, h, w);
      frames.push(imagesToRgb(image, 1, height, width)[0]!);
    }
    return {
      frames,
      width,
      height,
      seed: input.seed,
      promptTruncated: text.truncated,
      droppedText: text.droppedText,
      unetCalls: calls,
    };
  }
}

/**
 * The first step an image-to-image run takes, as diffusers' StableDiffusionImg2ImgPipeline
 * `get_timesteps`: `init_timestep = min(int(steps · strength), steps)`, `t_start = max(steps − init_timestep, 0)`.
 */
export function imageStartStep(steps: number, strength: number): number {
  const initTimestep = Math.min(Math.floor(steps * strength + 1e-9), steps);
  return Math.max(steps - initTimestep, 0);
}

/**
 * A picture's starting latent, as diffusers' img2img `prepare_latents`: the VAE encoder's latent ×
 * the scaling factor, then `add_noise` to the first step's timestep with `noise`. (diffusers
 * samples the posterior; here it is the mean, so a seed always gives one result.)
 */
async function imageLatent(sd: StableDiffusionComponents, scheduler: DDIMScheduler, image: Uint8Array, height: number, width: number, timestep: number, noise: Float32Array): Promise<Float32Array> {
  const mean = await sd.encode(rgbToImages([image], height, width), 1, height, width);
  const scaled = mean.map((value) => value * sd.vaeScalingFactor);
  return scheduler.addNoise(scaled, noise, timestep, new Float32Array(scaled.length));
}

/** The frames other than frame 0 (the anchor), in chunks of at most `size − 1`: with frame 0 a chunk is `size` frames. */
export function otherFrameChunks(numFrames: number, size: number): number[][] {
  const chunks: number[][] = [];
  const per = Math.max(1, size - 1);
  for (let start = 1; start < numFrames; start += per) {
    chunks.push(Array.from({ length: Math.min(per, numFrames - start) }, (_, j) => start + j));
  }
  return chunks;
}

function checkInputs(args: { numFrames: number; steps: number; guidance: number; chunkSize: number; height: number; width: number; sizeMultiple: number; image: Uint8Array | undefined; strength: number }): void {
  const { numFrames, steps, guidance, chunkSize, height, width, sizeMultiple, image, strength } = args;
  if (!Number.isInteger(numFrames) || numFrames < 1) throw new RangeError(`\`numFrames\` must be a whole number of at least 1, got ${numFrames}`);
  if (!Number.isInteger(steps) || steps < 2) throw new RangeError(`\`numInferenceSteps\` must be a whole number of at least 2, got ${steps}`);
  if (!(guidance >= 0) || !Number.isFinite(guidance)) throw new RangeError(`\`guidanceScale\` must be a number of at least 0, got ${guidance}`);
  if (!Number.isInteger(chunkSize) || chunkSize < 2) throw new RangeError(`\`chunkSize\` must be a whole number of at least 2, got ${chunkSize}`);
  if (height % 8 !== 0 || width % 8 !== 0 || height <= 0 || width <= 0) {
    throw new RangeError(`\`height\` and \`width\` have to be positive multiples of 8 but are ${height} and ${width}`);
  }
  checkUnetSize(width, height, sizeMultiple);
  if (!(strength > 0 && strength <= 1)) throw new RangeError(`\`strength\` must be above 0 and at most 1, got ${strength}`);
  if (image !== undefined && (!(image instanceof Uint8Array) || image.length !== width * height * 3)) {
    throw new RangeError(`\`image\` must be RGB24 of ${width}×${height} (${width * height * 3} bytes), got ${image instanceof Uint8Array ? image.length : typeof image}`);
  }
}
