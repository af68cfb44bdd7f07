/**
 * @file Euler Ancestral noise scheduler (k-diffusion `sample_euler_ancestral`, Karras et al. 2022
 * notation), with the semantics of diffusers' `scheduling_euler_ancestral_discrete.py`
 * `EulerAncestralDiscreteScheduler`. It is the sampler of Instruct-Pix2Pix and of the official
 * Video Instruct-Pix2Pix code (Text2Video-Zero `model.py`: `EulerAncestralDiscreteScheduler.from_config`).
 *
 * Semantics (checked against huggingface/diffusers `scheduling_euler_ancestral_discrete.py`):
 * - sigma(t) = sqrt((1 − ᾱ_t) / ᾱ_t) on the train timesteps; inference sigmas are
 *   `np.interp(timesteps, 0…T−1, sigma)` with a final 0 appended.
 * - timesteps: "linspace" (EA's default, and the only mode of diffusers 0.14 that the official
 *   Video-IP2P code pins) = `linspace(0, T−1, n)` reversed, fractional, float32; "leading" =
 *   `arange(n)·(T // n)` reversed + `steps_offset`; "trailing" = `round(arange(T, 0, −T/n)) − 1`.
 * - `init_noise_sigma` = max sigma for "linspace"/"trailing", `sqrt(max² + 1)` for "leading".
 * - `scale_model_input(x, t)` = x / sqrt(sigma² + 1).
 * - step: x0 = x − sigma·eps (epsilon) or the v-prediction form; sigma_up =
 *   sqrt(σ_to² (σ_from² − σ_to²) / σ_from²), sigma_down = sqrt(σ_to² − sigma_up²);
 *   x_prev = x + (x − x0)/σ_from · (sigma_down − σ_from) + noise · sigma_up.
 *
 * Deviations, on purpose:
 * - Stateless: diffusers keeps a `step_index` counter that advances once per `step()`. Here the
 *   index is looked up from the timestep on every call, so a pipeline may step the same timestep
 *   several times (one call per frame or per chunk). With distinct timesteps, which every schedule
 *   here has, the two are identical.
 * - The noise comes from a seeded {@link Random} (or an explicit array) instead of torch's
 *   generator, so a pipeline can give each frame its own stream.
 * - Tables are float64 (diffusers: float32 sigmas); timesteps are rounded to float32 like diffusers'.
 *
 * Pure math on typed arrays: imports nothing from onnx/.
 */
import type { Random } from '../random.js';
import { makeBetas, trailingTimesteps, type SchedulerConfig, type TimestepSpacing } from './ddim.js';

/** The beta-schedule and spacing settings EA reads; a {@link SchedulerConfig} fits. */
export type EulerAncestralConfig = Pick<SchedulerConfig, 'numTrainTimesteps' | 'betaStart' | 'betaEnd' | 'betaSchedule' | 'stepsOffset' | 'predictionType' | 'timestepSpacing'>;

/** Options of {@link EulerAncestralScheduler.step}. */
export interface EulerAncestralStepOptions {
  /** Noise stream for this call (default: the constructor's `random`). */
  random?: Random;
  /** Explicit standard-normal noise, same length as `sample` (overrides `random`). */
  noise?: Float32Array;
}

/**
 * Euler Ancestral sampler with diffusers' `EulerAncestralDiscreteScheduler` semantics.
 *
 * @example
 * const scheduler = new EulerAncestralScheduler({ ...SD15_DDIM_CONFIG, timestepSpacing: 'linspace', stepsOffset: 0 }, { random: new Random(seed) });
 * scheduler.setTimesteps(10); // 999, 888, …, 0
 * const latents = new Random(seed, 1).normals(size, scheduler.initNoiseSigma);
 * for (const t of scheduler.timesteps) {
 *   const eps = runUnet(scheduler.scaleModelInput(latents, t), t);
 *   scheduler.step(eps, t, latents, latents); // in place
 * }
 */
export class EulerAncestralScheduler {
  readonly config: EulerAncestralConfig;
  /** beta per train timestep (float64). */
  readonly betas: Float64Array;
  /** Cumulative product of 1 − beta (float64). */
  readonly alphasCumprod: Float64Array;
  /** sigma per train timestep, sqrt((1 − ᾱ)/ᾱ) (float64, ascending in t). */
  readonly trainSigmas: Float64Array;
  readonly #random: Random | undefined;
  #timesteps: number[] = [];
  /** Inference sigmas: one per timestep plus a final 0. */
  #sigmas: Float64Array;

  constructor(config: EulerAncestralConfig, options: { random?: Random } = {}) {
    if (config.predictionType === 'sample') {
      // diffusers raises NotImplementedError for it too.
      throw new Error('EulerAncestralScheduler: prediction type "sample" is not supported (use "epsilon" or "v_prediction")');
    }
    this.config = Object.freeze({ ...config });
    this.#random = options.random;
    this.betas = makeBetas(this.config);
    const n = this.config.numTrainTimesteps;
    this.alphasCumprod = new Float64Array(n);
    this.trainSigmas = new Float64Array(n);
    let product = 1;
    for (let i = 0; i < n; i++) {
      product *= 1 - this.betas[i]!;
      this.alphasCumprod[i] = product;
      this.trainSigmas[i] = Math.sqrt((1 - product) / product);
    }
    // Before setTimesteps: every train sigma, descending, then 0 (as diffusers' __init__).
    this.#sigmas = new Float64Array(n + 1);
    for (let i = 0; i < n; i++) this.#sigmas[i] = this.trainSigmas[n - 1 - i]!;
  }

  /** Inference timesteps, descending (empty before {@link setTimesteps}). */
  get timesteps(): number[] {
    return this.#timesteps;
  }

  /** Inference sigmas, one per timestep plus the final 0. */
  get sigmas(): Float64Array {
    return this.#sigmas;
  }

  /** Standard deviation of the initial noise: max sigma ("linspace"/"trailing") or sqrt(max² + 1) ("leading"). */
  get initNoiseSigma(): number {
    let max = 0;
    for (const sigma of this.#sigmas) max = Math.max(max, sigma);
    return this.config.timestepSpacing === 'leading' ? Math.sqrt(max * max + 1) : max;
  }

  /**
   * Chooses `n` inference timesteps and their sigmas (diffusers `set_timesteps`).
   * @throws RangeError unless `n` is an integer from 1 to `numTrainTimesteps`
   */
  setTimesteps(n: number): void {
    const train = this.config.numTrainTimesteps;
    if (!Number.isInteger(n) || n < 1 || n > train) {
      throw new RangeError(`EulerAncestralScheduler.setTimesteps: expected an integer number of steps from 1 to ${train}, got ${n}`);
    }
    this.#timesteps = makeTimesteps(this.config.timestepSpacing, train, n, this.config.stepsOffset);
    const sigmas = new Float64Array(this.#timesteps.length + 1);
    this.#timesteps.forEach((t, i) => {
      sigmas[i] = interp(t, this.trainSigmas);
    });
    this.#sigmas = sigmas;
  }

  /** sigma of an inference timestep. @throws Error for a timestep not in {@link timesteps} */
  sigmaAt(timestep: number): number {
    return this.#sigmas[this.#index(timestep, 'sigmaAt')]!;
  }

  /** sigma_up (added noise) and sigma_down (Euler target) of the step from `timestep`. */
  ancestralSigmas(timestep: number): { sigmaFrom: number; sigmaTo: number; sigmaUp: number; sigmaDown: number } {
    const index = this.#index(timestep, 'ancestralSigmas');
    const sigmaFrom = this.#sigmas[index]!;
    const sigmaTo = this.#sigmas[index + 1]!;
    const sigmaUp = Math.sqrt((sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo)) / (sigmaFrom * sigmaFrom));
    const sigmaDown = Math.sqrt(Math.max(0, sigmaTo * sigmaTo - sigmaUp * sigmaUp));
    return { sigmaFrom, sigmaTo, sigmaUp, sigmaDown };
  }

  /**
   * The UNet input at `timestep`: `sample / sqrt(sigma² + 1)` (diffusers `scale_model_input`).
   * @param out where to write (may be `sample`); allocated when omitted
   */
  scaleModelInput(sample: Float32Array, timestep: number, out?: Float32Array): Float32Array {
    const sigma = this.sigmaAt(timestep);
    const scale = 1 / Math.sqrt(sigma * sigma + 1);
    const target = out ?? new Float32Array(sample.length);
    if (target.length !== sample.length) throw new RangeError(`EulerAncestralScheduler.scaleModelInput: out has ${target.length} elements but sample has ${sample.length}`);
    for (let i = 0; i < sample.length; i++) target[i] = sample[i]! * scale;
    return target;
  }

  /**
   * One ancestral Euler step from `sample` at `timestep` to the next sigma.
   *
   * @param modelOutput the UNet output (after guidance), same length as `sample`
   * @param out where to write x_prev (may be `sample` or `modelOutput`); allocated when omitted
   * @param options the noise: an explicit array or a {@link Random} (default the constructor's)
   * @throws Error before {@link setTimesteps}, for an unknown timestep, lengths that differ, or no noise source
   */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, out?: Float32Array, options: EulerAncestralStepOptions = {}): Float32Array {
    const { sigmaFrom, sigmaUp, sigmaDown } = this.ancestralSigmas(timestep);
    if (modelOutput.length !== sample.length) {
      throw new RangeError(`EulerAncestralScheduler.step: modelOutput has ${modelOutput.length} elements but sample has ${sample.length}`);
    }
    const target = out ?? new Float32Array(sample.length);
    if (target.length !== sample.length) throw new RangeError(`EulerAncestralScheduler.step: out has ${target.length} elements but sample has ${sample.length}`);
    let noise = options.noise;
    if (noise === undefined) {
      const random = options.random ?? this.#random;
      if (!random) throw new Error('EulerAncestralScheduler.step: no noise source; pass `random` to the constructor or `{ random }` / `{ noise }` to step()');
      noise = random.normals(sample.length);
    } else if (noise.length !== sample.length) {
      throw new RangeError(`EulerAncestralScheduler.step: noise has ${noise.length} elements but sample has ${sample.length}`);
    }
    const dt = sigmaDown - sigmaFrom;
    const vScale = -sigmaFrom / Math.sqrt(sigmaFrom * sigmaFrom + 1);
    const vSkip = 1 / (sigmaFrom * sigmaFrom + 1);
    const epsilon = this.config.predictionType === 'epsilon';
    for (let i = 0; i < sample.length; i++) {
      const x = sample[i]!;
      const m = modelOutput[i]!;
      const x0 = epsilon ? x - sigmaFrom * m : m * vScale + x * vSkip;
      const derivative = (x - x0) / sigmaFrom;
      target[i] = x + derivative * dt + noise[i]! * sigmaUp;
    }
    return target;
  }

  #index(timestep: number, method: string): number {
    if (this.#timesteps.length === 0) throw new Error(`EulerAncestralScheduler.${method}: call setTimesteps(n) first`);
    const index = this.#timesteps.indexOf(timestep);
    if (index < 0) throw new RangeError(`EulerAncestralScheduler.${method}: ${timestep} is not one of the inference timesteps`);
    return index;
  }
}

function makeTimesteps(spacing: TimestepSpacing, train: number, n: number, offset: number): number[] {
  const timesteps: number[] = [];
  switch (spacing) {
    case 'linspace': {
      // np.linspace(..., dtype=np.float32): float32 values, fractional for most n.
      const step = (train - 1) / (n - 1 || 1);
      for (let i = n - 1; i >= 0; i--) timesteps.push(Math.fround(i === n - 1 ? train - 1 : i * step));
      if (n === 1) timesteps[0] = 0;
      break;
    }
    case 'leading': {
      const ratio = Math.floor(train / n);
      for (let i = n - 1; i >= 0; i--) timesteps.push(i * ratio + offset);
      break;
    }
    case 'trailing':
      timesteps.push(...trailingTimesteps(train, n));
      break;
  }
  return timesteps;
}

/** `np.interp(x, arange(len), table)`: linear between integer neighbours, clamped at the ends. */
function interp(x: number, table: Float64Array): number {
  if (x <= 0) return table[0]!;
  const last = table.length - 1;
  if (x >= last) return table[last]!;
  const low = Math.floor(x);
  const frac = x - low;
  return table[low]! + frac * (table[low + 1]! - table[low]!);
}
