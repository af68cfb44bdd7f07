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
import { applyGuidance, checkUnetSize, concat, imagesToRgb, repeat, warpLatent } from './latents.js';
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
});

export class TextToVideoZeroPipeline {
  readonly #components: StableDiffusionComponents;

  constructor(components: StableDiffusionComponents) {
    this.#components = components;
  }

  async run(input: TextToVideoZeroInput, context: RunContext = {}): Promise<TextToVideoZeroOutput> {
    const sd = this.#components;
    const { signal } = context;
    // 1. Check inputs.
    const numFrames = input.numFrames ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.numFrames;
    const steps = input.numInferenceSteps ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.numInferenceSteps;
    const guidance = input.guidanceScale ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.guidanceScale;
    const { dx, dy } = input.motion ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.motion;
    const chunkSize = input.chunkSize ?? TEXT_TO_VIDEO_ZERO_DEFAULTS.chunkSize;
    const height = input.height ?? sd.resolution;
    const width = input.width ?? sd.resolution;
    checkInputs({ numFrames, steps, guidance, chunkSize, height, width, sizeMultiple: sd.sizeMultiple });
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

    // 3. Timesteps; the two phase boundaries as timestep values.
    const scheduler = new DDIMScheduler(sd.schedulerConfig);
    scheduler.setTimesteps(steps);
    const timesteps = scheduler.timesteps;
    const startAll = steps - phases.t1 - 1; // index of the first step with every frame (timestep T1)
    const startWarp = steps - phases.t0 - 1; // index where frame 0 reaches T0
    const T1 = timesteps[startAll]!;
    const T0 = timesteps[startWarp]!;
    const totalCalls = startWarp + (steps - startAll) * Math.ceil((numFrames - 1) / Math.max(1, chunkSize - 1));
    let calls = 0;
    const progress = () => {
      calls++;
      context.onProgress?.({ step: calls, total: totalCalls, stage: 'denoising' });
    };

    // 4. Frame 0: x_T, DDIM with guidance to T1 (kept), then to T0.
    const frame0 = draws.initialNoise(0, latentSize);
    let frame0AtT1 = frame0;
    const pairContext = concat([uncond.embedding, text.embedding]);
    const pairSample = new Float32Array(2 * latentSize);
    const guided = new Float32Array(latentSize);
    for (let i = 0; i < startWarp; i++) {
      signal?.throwIfAborted();
      if (i === startAll) frame0AtT1 = frame0.slice();
      pairSample.set(frame0, 0);
      pairSample.set(frame0, latentSize);
      const noise = await sd.unet(pairSample, 2, h, w, timesteps[i]!, pairContext, crossFrame ? [0] : null);
      applyGuidance(noise, latentSize, 1, guidance, guided);
      scheduler.step(guided, timesteps[i]!, frame0, frame0); // in place
      trace?.({ stage: 'frame0', step: i, frame: 0, latent: frame0.slice() });
      progress();
    }
    if (startAll === startWarp) frame0AtT1 = frame0.slice();
    const frame0AtT0 = frame0;

    // 5. Frames 1…m−1: warp frame 0 at T0 by δ·k, then DDPM forward T0 → T1 with each frame's own noise.
    const factor = ddpmForwardFactor(scheduler.alphas, T0, T1);
    const keep = Math.sqrt(factor);
    const add = Math.sqrt(1 - factor);
    const initial: Float32Array[] = [frame0AtT1];
    for (let k = 1; k < numFrames; k++) {
      const warped = warpLatent(frame0AtT0, 4, h, w, dx * k, dy * k, new Float32Array(latentSize));
      const eps = draws.forwardNoise(k, latentSize);
      for (let j = 0; j < latentSize; j++) warped[j] = keep * warped[j]! + add * eps[j]!;
      initial.push(warped);
    }
    if (trace) initial.forEach((latent, frame) => trace({ stage: 'initial', step: -1, frame, latent: latent.slice() }));

    // 6. All frames from T1, in chunks that all hold frame 0 (the anchor); one UNet call per step per chunk.
    const finals: Float32Array[] = new Array<Float32Array>(numFrames);
    const chunks = chunkFrames(numFrames, chunkSize);
    for (const chunk of chunks) {
      const n = chunk.length;
      const latents = new Float32Array(n * latentSize);
      chunk.forEach((frame, index) => latents.set(initial[frame]!, index * latentSize));
      const batchContext = concat([...repeat(uncond.embedding, n), ...repeat(text.embedding, n)]);
      const batchSample = new Float32Array(2 * n * latentSize);
      const chunkGuided = new Float32Array(n * latentSize);
      for (let i = startAll; i < steps; i++) {
        signal?.throwIfAborted();
        batchSample.set(latents, 0);
        batchSample.set(latents, n * latentSize);
        const noise = await sd.unet(batchSample, 2 * n, h, w, timesteps[i]!, batchContext, crossFrame ? [0] : null);
        applyGuidance(noise, latentSize, n, guidance, chunkGuided);
        scheduler.step(chunkGuided, timesteps[i]!, latents, latents); // in place
        if (trace) chunk.forEach((frame, index) => trace({ stage: 'step', step: i, frame, latent: latents.slice(index * latentSize, (index + 1) * latentSize) }));
        progress();
      }
      chunk.forEach((frame, index) => {
        finals[frame] ??= latents.slice(index * latentSize, (index + 1) * latentSize);
      });
    }

    // 7. Decode, one frame per call to bound memory.
    signal?.throwIfAborted();
    context.onProgress?.({ step: totalCalls, total: totalCalls, stage: 'decoding' });
    const frames: Uint8Array[] = [];
    for (const latent of finals) {
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

/** Chunks of frame indices; each holds frame 0 first and at most `size` frames. */
export function chunkFrames(numFrames: number, size: number): number[][] {
  const chunks: number[][] = [];
  const per = Math.max(1, size - 1);
  if (numFrames === 1) return [[0]];
  for (let start = 1; start < numFrames; start += per) {
    const chunk = [0];
    for (let frame = start; frame < Math.min(numFrames, start + per); frame++) chunk.push(frame);
    chunks.push(chunk);
  }
  return chunks;
}

function checkInputs(args: { numFrames: number; steps: number; guidance: number; chunkSize: number; height: number; width: number; sizeMultiple: number }): void {
  const { numFrames, steps, guidance, chunkSize, height, width, sizeMultiple } = args;
  if (!Number.isInteger(numFrames) || numFrames < 1) throw new RangeError(`\`numFrames\` must be a whole number of at least 1, got ${numFrames}`);
  if (!Number.isInteger(steps) || steps < 2) throw new RangeError(`\`numInferenceSteps\` must be a whole number of at least 2, got ${steps}`);
  if (!(guidance >= 0) || !Number.isFinite(guidance)) throw new RangeError(`\`guidanceScale\` must be a number of at least 0, got ${guidance}`);
  if (!Number.isInteger(chunkSize) || chunkSize < 2) throw new RangeError(`\`chunkSize\` must be a whole number of at least 2, got ${chunkSize}`);
  if (height % 8 !== 0 || width % 8 !== 0 || height <= 0 || width <= 0) {
    throw new RangeError(`\`height\` and \`width\` have to be positive multiples of 8 but are ${height} and ${width}`);
  }
  checkUnetSize(width, height, sizeMultiple);
}
