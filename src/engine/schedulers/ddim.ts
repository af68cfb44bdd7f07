/**
 * @file DDIM noise scheduler (Song et al. 2020), deterministic (eta = 0), with the semantics of
 * diffusers' `scheduling_ddim.py` `DDIMScheduler`: the same beta schedules, timestep spacings,
 * `final_alpha_cumprod`, prediction types and `add_noise`.
 *
 * Pure math on typed arrays: this file imports nothing (no onnxruntime), so it is unit-tested
 * against the reference numbers in shared/pipelines.md §4. The per-train-step tables are kept in
 * float64 (diffusers keeps them in float32 torch tensors; the two agree to ~1e-7 relative) and
 * every element of a step is computed in float64, then stored as float32.
 */

/** The beta schedules this scheduler can build (diffusers names). */
export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
/** What the UNet predicts (diffusers names). */
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
/** How inference timesteps are spread over the train timesteps (diffusers names). */
export type TimestepSpacing = 'leading' | 'linspace' | 'trailing';

/**
 * DDIM settings, the camelCase form of a diffusers `scheduler_config.json`.
 * {@link SD15_DDIM_CONFIG} holds the values of Stable Diffusion 1.5.
 */
export interface SchedulerConfig {
  /** Number of diffusion steps the model was trained with (`num_train_timesteps`). */
  readonly numTrainTimesteps: number;
  /** First beta (`beta_start`). */
  readonly betaStart: number;
  /** Last beta (`beta_end`). */
  readonly betaEnd: number;
  /** How betas go from `betaStart` to `betaEnd` (`beta_schedule`). */
  readonly betaSchedule: BetaSchedule;
  /** Added to every "leading" timestep (`steps_offset`); SD 1.x uses 1. */
  readonly stepsOffset: number;
  /** alpha-cumprod used after the last step: 1 when true, else `alphasCumprod[0]` (`set_alpha_to_one`). */
  readonly setAlphaToOne: boolean;
  /** What the model output means (`prediction_type`). */
  readonly predictionType: PredictionType;
  /** How inference timesteps are chosen (`timestep_spacing`). */
  readonly timestepSpacing: TimestepSpacing;
  /** Clamp the predicted x0 to ±`clipSampleRange` (`clip_sample`); false for latent diffusion. */
  readonly clipSample: boolean;
  /** Bound used when `clipSample` is true (`clip_sample_range`). */
  readonly clipSampleRange: number;
}

/** The DDIM configuration of Stable Diffusion 1.5 (runwayml/stable-diffusion-v1-5, diffusers). */
export const SD15_DDIM_CONFIG: SchedulerConfig = Object.freeze({
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  betaSchedule: 'scaled_linear',
  stepsOffset: 1,
  setAlphaToOne: false,
  predictionType: 'epsilon',
  timestepSpacing: 'leading',
  clipSample: false,
  clipSampleRange: 1,
});

// diffusers DDIMScheduler.__init__ defaults (except clip_sample): what a key missing from scheduler_config.json means.
const DIFFUSERS_DEFAULTS: SchedulerConfig = Object.freeze({
  numTrainTimesteps: 1000,
  betaStart: 0.0001,
  betaEnd: 0.02,
  betaSchedule: 'linear',
  stepsOffset: 0,
  setAlphaToOne: true,
  predictionType: 'epsilon',
  timestepSpacing: 'leading',
  // diffusers' DDIMScheduler defaults to true, which clamps latents to ±1: a trap for a config that
  // lacks the key (Euler-type configs such as instruct-pix2pix's). Latent diffusion never clips, so
  // a missing key means false here; a config that sets it is followed.
  clipSample: false,
  clipSampleRange: 1,
});

const BETA_SCHEDULES: readonly BetaSchedule[] = ['linear', 'scaled_linear', 'squaredcos_cap_v2'];
const PREDICTION_TYPES: readonly PredictionType[] = ['epsilon', 'v_prediction', 'sample'];
const TIMESTEP_SPACINGS: readonly TimestepSpacing[] = ['leading', 'linspace', 'trailing'];

function describe(value: unknown): string {
  return `${JSON.stringify(value) ?? String(value)} (${value === null ? 'null' : typeof value})`;
}

/**
 * Parses a diffusers `scheduler/scheduler_config.json` object (snake_case keys) into a
 * {@link SchedulerConfig}. Missing keys take diffusers' `DDIMScheduler` defaults, except `clip_sample`,
 * which is false unless the config sets it (latent diffusion never clips); keys DDIM does not
 * use (`_class_name`, `skip_prk_steps`…) are ignored, as `DDIMScheduler.from_config` does, so the
 * PNDM config shipped with SD 1.5 is accepted.
 *
 * @throws Error naming the key for a wrong type or value, and naming the value for a beta schedule,
 *   prediction type or timestep spacing this scheduler does not implement, or for features it does
 *   not implement (`trained_betas`, `thresholding`, `rescale_betas_zero_snr`).
 * @example
 * const config = readSchedulerConfig(JSON.parse(readFileSync('model/scheduler/scheduler_config.json', 'utf8')));
 */
export function readSchedulerConfig(json: unknown): SchedulerConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new Error(`scheduler config: expected a JSON object, got ${describe(json)}`);
  }
  const raw = json as Record<string, unknown>;
  const where = (key: string): string => `scheduler config: \`${key}\``;

  function integer(key: string, fallback: number, min: number): number {
    const value = raw[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
      throw new Error(`${where(key)} must be an integer from ${min} up, got ${describe(value)}`);
    }
    return value;
  }
  function probability(key: string, fallback: number): number {
    const value = raw[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value >= 1) {
      throw new Error(`${where(key)} must be a number between 0 and 1 (exclusive), got ${describe(value)}`);
    }
    return value;
  }
  function positive(key: string, fallback: number): number {
    const value = raw[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new Error(`${where(key)} must be a positive number, got ${describe(value)}`);
    }
    return value;
  }
  function flag(key: string, fallback: boolean): boolean {
    const value = raw[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'boolean') throw new Error(`${where(key)} must be true or false, got ${describe(value)}`);
    return value;
  }
  function choice<T extends string>(key: string, fallback: T, allowed: readonly T[], what: string): T {
    const value = raw[key];
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'string') throw new Error(`${where(key)} must be a string, got ${describe(value)}`);
    if (!(allowed as readonly string[]).includes(value)) {
      throw new Error(`${where(key)}: ${what} "${value}" is not supported by the DDIM scheduler; use one of ${allowed.map((a) => `"${a}"`).join(', ')}`);
    }
    return value as T;
  }
  function unsupported(key: string, isUsed: (value: unknown) => boolean, why: string): void {
    const value = raw[key];
    if (value !== undefined && value !== null && isUsed(value)) {
      throw new Error(`${where(key)} = ${describe(value)} is not supported: ${why}`);
    }
  }

  unsupported('trained_betas', () => true, 'the DDIM scheduler only builds betas from beta_schedule; remove the key or set it to null');
  unsupported('thresholding', (v) => v !== false, 'dynamic thresholding is not implemented (latent diffusion models do not use it); set it to false');
  unsupported('rescale_betas_zero_snr', (v) => v !== false, 'zero-terminal-SNR rescaling is not implemented; set it to false');

  const config: SchedulerConfig = {
    numTrainTimesteps: integer('num_train_timesteps', DIFFUSERS_DEFAULTS.numTrainTimesteps, 1),
    betaStart: probability('beta_start', DIFFUSERS_DEFAULTS.betaStart),
    betaEnd: probability('beta_end', DIFFUSERS_DEFAULTS.betaEnd),
    betaSchedule: choice('beta_schedule', DIFFUSERS_DEFAULTS.betaSchedule, BETA_SCHEDULES, 'beta schedule'),
    stepsOffset: integer('steps_offset', DIFFUSERS_DEFAULTS.stepsOffset, 0),
    setAlphaToOne: flag('set_alpha_to_one', DIFFUSERS_DEFAULTS.setAlphaToOne),
    predictionType: choice('prediction_type', DIFFUSERS_DEFAULTS.predictionType, PREDICTION_TYPES, 'prediction type'),
    timestepSpacing: choice('timestep_spacing', DIFFUSERS_DEFAULTS.timestepSpacing, TIMESTEP_SPACINGS, 'timestep spacing'),
    clipSample: flag('clip_sample', DIFFUSERS_DEFAULTS.clipSample),
    clipSampleRange: positive('clip_sample_range', DIFFUSERS_DEFAULTS.clipSampleRange),
  };
  return Object.freeze(config);
}

/** numpy's `round`: halves go to the even neighbour (matters for "linspace"/"trailing" spacing). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * "trailing" timesteps as diffusers computes them, `np.round(np.arange(train, 0, -train / n)) - 1`:
 * numpy's arange has `ceil(train / (train / n))` elements, `train − i·(train / n)`. That is n for
 * every n but a few (61 gives 62 in numpy too); 3 steps give 999, 666, 332.
 */
export function trailingTimesteps(train: number, n: number): number[] {
  const ratio = train / n;
  const count = Math.ceil(train / ratio);
  const timesteps: number[] = [];
  for (let i = 0; i < count; i++) timesteps.push(roundHalfEven(train - i * ratio) - 1);
  return timesteps;
}

/** `np.linspace(start, end, n)` in float64 (last point exact, as numpy). */
function linspace(start: number, end: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  const step = (end - start) / (n - 1);
  for (let i = 0; i < n; i++) out[i] = start + i * step;
  out[n - 1] = end;
  return out;
}

export function makeBetas(config: Pick<SchedulerConfig, 'numTrainTimesteps' | 'betaStart' | 'betaEnd' | 'betaSchedule'>): Float64Array {
  const n = config.numTrainTimesteps;
  switch (config.betaSchedule) {
    case 'linear':
      return linspace(config.betaStart, config.betaEnd, n);
    case 'scaled_linear': {
      const betas = linspace(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), n);
      for (let i = 0; i < n; i++) betas[i] = betas[i]! * betas[i]!;
      return betas;
    }
    case 'squaredcos_cap_v2': {
      // diffusers betas_for_alpha_bar(n, max_beta=0.999, "cosine"): the Improved-DDPM cosine schedule.
      const alphaBar = (t: number): number => Math.cos(((t + 0.008) / 1.008) * Math.PI * 0.5) ** 2;
      const betas = new Float64Array(n);
      for (let i = 0; i < n; i++) betas[i] = Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999);
      return betas;
    }
  }
}

/**
 * Text2Video-Zero's "DDPM forward from t0 to t1" factor: `prod(alphas[t0 .. t1-1])`, i.e. the
 * Python slice `alphas[t0:t1]` of the per-train-step alphas (1 − beta, not the cumulative product).
 * The re-noised latent is `sqrt(f)·x_t0 + sqrt(1 − f)·eps`. This replicates the official and the
 * diffusers code, which multiply alphas[881..940] for 881 → 941 (0.5310643892 for SD 1.5), not the
 * exact q(x_941 | x_881) product over alphas[882..941] (0.5305336266).
 *
 * @param alphas per-train-step alphas, e.g. {@link DDIMScheduler.alphas}
 * @throws RangeError unless `0 <= t0 <= t1 <= alphas.length` are integers
 * @example
 * const f = ddpmForwardFactor(scheduler.alphas, 881, 941); // 0.53106…
 */
export function ddpmForwardFactor(alphas: ArrayLike<number>, t0: number, t1: number): number {
  if (!Number.isInteger(t0) || !Number.isInteger(t1) || t0 < 0 || t1 < t0 || t1 > alphas.length) {
    throw new RangeError(`ddpmForwardFactor: expected integers 0 <= t0 <= t1 <= ${alphas.length}, got t0=${t0}, t1=${t1}`);
  }
  let product = 1;
  for (let t = t0; t < t1; t++) product *= alphas[t]!;
  return product;
}

/**
 * Deterministic DDIM sampler (eta = 0) with diffusers' `DDIMScheduler` semantics.
 *
 * @example
 * const scheduler = new DDIMScheduler(SD15_DDIM_CONFIG);
 * scheduler.setTimesteps(50); // 981, 961, …, 1
 * for (const t of scheduler.timesteps) {
 *   const eps = runUnet(latents, t);
 *   scheduler.step(eps, t, latents, latents); // in place
 * }
 */
export class DDIMScheduler {
  /** The configuration this scheduler was built from. */
  readonly config: SchedulerConfig;
  /** beta per train timestep (float64). */
  readonly betas: Float64Array;
  /** 1 − beta per train timestep (float64). */
  readonly alphas: Float64Array;
  /** Cumulative product of {@link alphas} (float64). */
  readonly alphasCumprod: Float64Array;
  /** alpha-cumprod of the step after the last one: 1 or `alphasCumprod[0]` (`set_alpha_to_one`). */
  readonly finalAlphaCumprod: number;
  /** Standard deviation of the initial noise; 1 for DDIM. */
  readonly initNoiseSigma = 1;
  #timesteps: number[] = [];
  #numInferenceSteps: number | undefined;

  /** @param config e.g. {@link SD15_DDIM_CONFIG} or the result of {@link readSchedulerConfig} */
  constructor(config: SchedulerConfig) {
    this.config = Object.freeze({ ...config });
    this.betas = makeBetas(this.config);
    const n = this.config.numTrainTimesteps;
    this.alphas = new Float64Array(n);
    this.alphasCumprod = new Float64Array(n);
    let product = 1;
    for (let i = 0; i < n; i++) {
      const alpha = 1 - this.betas[i]!;
      this.alphas[i] = alpha;
      product *= alpha;
      this.alphasCumprod[i] = product;
    }
    this.finalAlphaCumprod = this.config.setAlphaToOne ? 1 : this.alphasCumprod[0]!;
  }

  /** Inference timesteps, descending (set by {@link setTimesteps}; empty before). */
  get timesteps(): number[] {
    return this.#timesteps;
  }

  /** The step count given to {@link setTimesteps}, or undefined before it is called. */
  get numInferenceSteps(): number | undefined {
    return this.#numInferenceSteps;
  }

  /**
   * Chooses `n` inference timesteps (diffusers `set_timesteps`). With "leading" spacing and
   * `stepsOffset` 1 (SD 1.5), 50 steps give 981, 961, …, 21, 1.
   * @throws RangeError unless `n` is an integer from 1 to `numTrainTimesteps`
   */
  setTimesteps(n: number): void {
    const train = this.config.numTrainTimesteps;
    if (!Number.isInteger(n) || n < 1 || n > train) {
      throw new RangeError(`DDIMScheduler.setTimesteps: expected an integer number of steps from 1 to ${train}, got ${n}`);
    }
    const timesteps: number[] = [];
    switch (this.config.timestepSpacing) {
      case 'leading': {
        const ratio = Math.floor(train / n);
        for (let i = n - 1; i >= 0; i--) timesteps.push(i * ratio + this.config.stepsOffset);
        break;
      }
      case 'linspace': {
        const points = linspace(0, train - 1, n);
        for (let i = n - 1; i >= 0; i--) timesteps.push(roundHalfEven(points[i]!));
        break;
      }
      case 'trailing':
        timesteps.push(...trailingTimesteps(train, n));
        break;
    }
    this.#timesteps = timesteps;
    this.#numInferenceSteps = n;
  }

  /**
   * The timestep DDIM steps to from `t`: `t − numTrainTimesteps // n` (negative after the last
   * step, where {@link finalAlphaCumprod} is used).
   * @throws Error before {@link setTimesteps}
   */
  previousTimestep(t: number): number {
    return t - Math.floor(this.config.numTrainTimesteps / this.#requireSteps());
  }

  /** Identity: DDIM does not scale the UNet input (diffusers `scale_model_input`). */
  scaleModelInput(sample: Float32Array, _timestep?: number): Float32Array {
    return sample;
  }

  /**
   * One deterministic DDIM step (eta = 0) from `sample` = x_t to x_{prev}:
   * `x0 = (x_t − sqrt(1−a_t)·eps) / sqrt(a_t)`, `x_prev = sqrt(a_prev)·x0 + sqrt(1−a_prev)·eps`
   * with a_t = alphasCumprod[t] and a_prev = alphasCumprod[previousTimestep(t)] (or
   * {@link finalAlphaCumprod}). For "sample"/"v_prediction" models x0 and eps are derived as in diffusers.
   *
   * @param modelOutput the UNet output (after guidance), same length as `sample`
   * @param out where to write x_prev (may be `sample` or `modelOutput` itself); allocated when omitted
   * @returns `out`, or a new array
   * @throws Error before {@link setTimesteps}, for a timestep outside the train range, or for lengths that differ
   */
  step(modelOutput: Float32Array, timestep: number, sample: Float32Array, out?: Float32Array): Float32Array {
    const prev = this.previousTimestep(timestep);
    const alphaT = this.#alphaCumprodAt(timestep, 'step');
    const alphaPrev = prev >= 0 ? this.#alphaCumprodAt(prev, 'step') : this.finalAlphaCumprod;
    const target = this.#checkShapes('step', modelOutput, sample, out, 'modelOutput');

    const sqrtAlphaT = Math.sqrt(alphaT);
    const sqrtBetaT = Math.sqrt(1 - alphaT);
    const sqrtAlphaPrev = Math.sqrt(alphaPrev);
    // eta = 0: no variance term, the "direction pointing to x_t" uses all of 1 − a_prev.
    const sqrtBetaPrev = Math.sqrt(1 - alphaPrev);
    const { predictionType, clipSample, clipSampleRange } = this.config;

    for (let i = 0; i < sample.length; i++) {
      const m = modelOutput[i]!;
      const x = sample[i]!;
      let x0: number;
      let eps: number;
      if (predictionType === 'epsilon') {
        x0 = (x - sqrtBetaT * m) / sqrtAlphaT;
        eps = m;
      } else if (predictionType === 'sample') {
        x0 = m;
        eps = (x - sqrtAlphaT * x0) / sqrtBetaT;
      } else {
        x0 = sqrtAlphaT * x - sqrtBetaT * m;
        eps = sqrtAlphaT * m + sqrtBetaT * x;
      }
      // diffusers clips x0 only; eps stays as predicted (use_clipped_model_output = False).
      if (clipSample) x0 = Math.min(clipSampleRange, Math.max(-clipSampleRange, x0));
      target[i] = sqrtAlphaPrev * x0 + sqrtBetaPrev * eps;
    }
    return target;
  }

  /**
   * The clean sample x̂0 that {@link step} would go through at `timestep` (diffusers'
   * `pred_original_sample`, clipped the same way), for previews; `out` may be `sample`.
   */
  predictOriginal(modelOutput: Float32Array, timestep: number, sample: Float32Array, out?: Float32Array): Float32Array {
    const alphaT = this.#alphaCumprodAt(timestep, 'predictOriginal');
    const target = this.#checkShapes('predictOriginal', modelOutput, sample, out, 'modelOutput');
    const sqrtAlphaT = Math.sqrt(alphaT);
    const sqrtBetaT = Math.sqrt(1 - alphaT);
    const { predictionType, clipSample, clipSampleRange } = this.config;
    for (let i = 0; i < sample.length; i++) {
      const m = modelOutput[i]!;
      const x = sample[i]!;
      let x0 = predictionType === 'epsilon' ? (x - sqrtBetaT * m) / sqrtAlphaT : predictionType === 'sample' ? m : sqrtAlphaT * x - sqrtBetaT * m;
      if (clipSample) x0 = Math.min(clipSampleRange, Math.max(-clipSampleRange, x0));
      target[i] = x0;
    }
    return target;
  }

  /**
   * Forward diffusion q(x_t | x_0): `sqrt(a_t)·original + sqrt(1 − a_t)·noise` (diffusers `add_noise`).
   * @param out where to write (may be `original` or `noise`); allocated when omitted
   * @throws Error for a timestep outside the train range or for lengths that differ
   */
  addNoise(original: Float32Array, noise: Float32Array, timestep: number, out?: Float32Array): Float32Array {
    const alpha = this.#alphaCumprodAt(timestep, 'addNoise');
    const target = this.#checkShapes('addNoise', noise, original, out, 'noise', 'original');
    const a = Math.sqrt(alpha);
    const b = Math.sqrt(1 - alpha);
    for (let i = 0; i < original.length; i++) target[i] = a * original[i]! + b * noise[i]!;
    return target;
  }

  #requireSteps(): number {
    if (this.#numInferenceSteps === undefined) {
      throw new Error('DDIMScheduler: call setTimesteps(n) before stepping');
    }
    return this.#numInferenceSteps;
  }

  #alphaCumprodAt(t: number, method: string): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new RangeError(`DDIMScheduler.${method}: timestep must be an integer from 0 to ${this.alphasCumprod.length - 1}, got ${t}`);
    }
    return this.alphasCumprod[t]!;
  }

  #checkShapes(method: string, other: Float32Array, sample: Float32Array, out: Float32Array | undefined, otherName: string, sampleName = 'sample'): Float32Array {
    if (other.length !== sample.length) {
      throw new RangeError(`DDIMScheduler.${method}: ${otherName} has ${other.length} elements but ${sampleName} has ${sample.length}`);
    }
    if (out === undefined) return new Float32Array(sample.length);
    if (out.length !== sample.length) {
      throw new RangeError(`DDIMScheduler.${method}: out has ${out.length} elements but ${sampleName} has ${sample.length}`);
    }
    return out;
  }
}
