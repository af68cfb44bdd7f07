/**
 * DDIM against the reference numbers of shared/pipelines.md §4 (SD 1.5 config, numpy float64).
 * Step results were computed by hand from the published formula with numpy float64, then rounded
 * to float32; the tolerances say how close we expect to be.
 */
import { describe, expect, test } from 'vitest';
import { DDIMScheduler, ddpmForwardFactor, readSchedulerConfig, SD15_DDIM_CONFIG } from '../../src/engine/schedulers/ddim.js';

// runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json (a PNDM config; DDIM reads the shared keys).
const SD15_JSON = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

/** Relative closeness, for numbers whose size varies a lot. */
function expectRel(actual: number | undefined, expected: number, rel: number): void {
  expect(actual).toBeDefined();
  expect(Math.abs(actual! - expected)).toBeLessThanOrEqual(Math.abs(expected) * rel);
}

describe('SD 1.5 tables', () => {
  const s = new DDIMScheduler(SD15_DDIM_CONFIG);

  test('betas follow scaled_linear', () => {
    expect(s.betas).toBeInstanceOf(Float64Array);
    expect(s.betas.length).toBe(1000);
    expectRel(s.betas[0], 0.00085, 1e-12);
    expectRel(s.betas[1], 0.00085469866, 1e-8);
    expectRel(s.betas[999], 0.012, 1e-12);
    expectRel(s.alphas[1], 1 - 0.0008546986554056862, 1e-12);
  });

  test('alphas_cumprod match the reference values', () => {
    expect(s.alphasCumprod).toBeInstanceOf(Float64Array);
    const reference: Array<[number, number]> = [
      [0, 0.99915],
      [1, 0.9982960278],
      [2, 0.997438082],
      [999, 0.0046600985],
      [981, 0.0057755001],
      [961, 0.0072817271],
      [941, 0.0091173098],
      [921, 0.0113379116],
      [901, 0.0140048979],
      [881, 0.0171851686],
    ];
    for (const [t, value] of reference) expectRel(s.alphasCumprod[t], value, 1e-8);
    expect(s.finalAlphaCumprod).toBe(s.alphasCumprod[0]);
    expect(s.initNoiseSigma).toBe(1);
  });

  test('50 steps give 981, 961, …, 21, 1 ("leading" + steps_offset 1)', () => {
    s.setTimesteps(50);
    expect(s.timesteps).toHaveLength(50);
    expect(s.timesteps.slice(0, 5)).toEqual([981, 961, 941, 921, 901]);
    expect(s.timesteps.slice(-3)).toEqual([41, 21, 1]);
    expect(s.timesteps).toEqual(Array.from({ length: 50 }, (_, i) => 981 - 20 * i));
    // Text2Video-Zero's t0 / t1 (diffusers timesteps[-t0-1], timesteps[-t1-1]).
    expect(s.timesteps.at(-45)).toBe(881);
    expect(s.timesteps.at(-48)).toBe(941);
    expect(s.previousTimestep(981)).toBe(961);
    expect(s.previousTimestep(1)).toBe(-19);
    expect(s.numInferenceSteps).toBe(50);
  });

  test('the T2V-Zero DDPM forward factor is prod(alphas[881:941]) = 0.53106', () => {
    const f = ddpmForwardFactor(s.alphas, 881, 941);
    expect(f).toBeCloseTo(0.5310643892, 9);
    expect(f).toBeCloseTo(0.53106, 5);
    expect(Math.sqrt(f)).toBeCloseTo(0.7287416478, 9);
    expect(Math.sqrt(1 - f)).toBeCloseTo(0.6847887344, 9);
    // It equals ac[940]/ac[880], not the "exact" ac[941]/ac[881] = 0.5305336266.
    expect(f).toBeCloseTo(s.alphasCumprod[940]! / s.alphasCumprod[880]!, 12);
    expect(f).not.toBeCloseTo(0.5305336266, 5);
    expect(ddpmForwardFactor(s.alphas, 10, 10)).toBe(1);
    expect(() => ddpmForwardFactor(s.alphas, 941, 881)).toThrow(RangeError);
    expect(() => ddpmForwardFactor(s.alphas, 0, 1001)).toThrow(/t1=1001/);
  });
});

describe('step (eta = 0)', () => {
  const sample = new Float32Array([1, -0.5, 0, 2]);
  const eps = new Float32Array([0.1, 0.2, -0.3, 1]);

  function fresh(steps = 50): DDIMScheduler {
    const s = new DDIMScheduler(SD15_DDIM_CONFIG);
    s.setTimesteps(steps);
    return s;
  }

  test('981 → 961 matches the formula computed by hand', () => {
    const out = fresh().step(eps, 981, sample);
    expect(out).toBeInstanceOf(Float32Array);
    const expected = [1.110526442527771, -0.5860762596130371, 0.03697560355067253, 2.1224513053894043];
    expected.forEach((v, i) => expect(out[i]).toBeCloseTo(v, 6));
  });

  test('941 → 921 matches, and the formula written out gives the same', () => {
    const s = fresh();
    const out = s.step(eps, 941, sample);
    const expected = [1.1035757064819336, -0.5807227492332458, 0.03472188115119934, 2.1145598888397217];
    expected.forEach((v, i) => expect(out[i]).toBeCloseTo(v, 6));
    const a = 0.0091173098;
    const ap = 0.0113379116;
    const x0 = (1 - Math.sqrt(1 - a) * 0.1) / Math.sqrt(a);
    expect(out[0]).toBeCloseTo(Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * 0.1, 5);
  });

  test('the last step (t = 1) uses final_alpha_cumprod = alphas_cumprod[0]', () => {
    const out = fresh().step(eps, 1, sample);
    const expected = [0.9992133975028992, -0.5026422142982483, 0.003642627038061619, 1.9887131452560425];
    expected.forEach((v, i) => expect(out[i]).toBeCloseTo(v, 6));
  });

  test('writes into out without allocating, also in place', () => {
    const s = fresh();
    const out = new Float32Array(4);
    expect(s.step(eps, 981, sample, out)).toBe(out);
    const inPlace = Float32Array.from(sample);
    expect(s.step(eps, 981, inPlace, inPlace)).toBe(inPlace);
    expect(Array.from(inPlace)).toEqual(Array.from(out));
    expect(Array.from(sample)).toEqual([1, -0.5, 0, 2]);
  });

  test('v_prediction follows diffusers', () => {
    const s = new DDIMScheduler({ ...SD15_DDIM_CONFIG, predictionType: 'v_prediction' });
    s.setTimesteps(50);
    const out = s.step(eps, 501, sample);
    const expected = [0.9965339303016663, -0.5057976841926575, 0.009036835283041, 1.9689695835113525];
    expected.forEach((v, i) => expect(out[i]).toBeCloseTo(v, 6));
  });

  test('"sample" prediction with x0 = model output lands on the noised x0', () => {
    const s = new DDIMScheduler({ ...SD15_DDIM_CONFIG, predictionType: 'sample' });
    s.setTimesteps(50);
    const x0 = new Float32Array([0.5, -0.25, 0, 0.75]);
    const noise = new Float32Array([0.3, -1, 2, 0.1]);
    const xt = s.addNoise(x0, noise, 501);
    const prev = s.step(x0, 501, xt);
    // x_prev = sqrt(a_prev)·x0 + sqrt(1 − a_prev)·eps with eps recovered from x_t.
    const expected = s.addNoise(x0, noise, 481);
    for (let i = 0; i < 4; i++) expect(prev[i]).toBeCloseTo(expected[i]!, 5);
  });

  test('clip_sample clamps the predicted x0', () => {
    const s = new DDIMScheduler({ ...SD15_DDIM_CONFIG, clipSample: true, clipSampleRange: 1 });
    s.setTimesteps(50);
    const out = s.step(new Float32Array([0]), 981, new Float32Array([10]));
    // x0 = 10/sqrt(a) is clamped to 1, eps = 0.
    expect(out[0]).toBeCloseTo(Math.sqrt(s.alphasCumprod[961]!), 6);
  });

  test('refuses misuse with clear errors', () => {
    const s = new DDIMScheduler(SD15_DDIM_CONFIG);
    expect(() => s.step(eps, 981, sample)).toThrow(/setTimesteps/);
    s.setTimesteps(50);
    expect(() => s.step(eps, 1000, sample)).toThrow(/timestep must be an integer from 0 to 999, got 1000/);
    expect(() => s.step(eps, 12.5, sample)).toThrow(RangeError);
    expect(() => s.step(new Float32Array(3), 981, sample)).toThrow(/modelOutput has 3 elements but sample has 4/);
    expect(() => s.step(eps, 981, sample, new Float32Array(5))).toThrow(/out has 5 elements/);
    expect(() => s.setTimesteps(0)).toThrow(/from 1 to 1000, got 0/);
    expect(() => s.setTimesteps(1001)).toThrow(RangeError);
    expect(() => s.setTimesteps(2.5)).toThrow(RangeError);
  });
});

test('addNoise is sqrt(a_t)·x0 + sqrt(1 − a_t)·noise', () => {
  const s = new DDIMScheduler(SD15_DDIM_CONFIG);
  const x = new Float32Array([1, -0.5, 0, 2]);
  const noise = new Float32Array([0.1, 0.2, -0.3, 1]);
  const out = s.addNoise(x, noise, 941);
  const expected = [0.195027694106102, 0.15134388208389282, -0.2986292839050293, 1.1864001750946045];
  expected.forEach((v, i) => expect(out[i]).toBeCloseTo(v, 6));
  const target = new Float32Array(4);
  expect(s.addNoise(x, noise, 941, target)).toBe(target);
  expect(() => s.addNoise(x, new Float32Array(2), 941)).toThrow(/noise has 2 elements but original has 4/);
  expect(() => s.addNoise(x, noise, -1)).toThrow(RangeError);
});

describe('timestep spacing (numpy reference)', () => {
  test('linspace rounds halves to even like np.round', () => {
    const s = new DDIMScheduler({ ...SD15_DDIM_CONFIG, timestepSpacing: 'linspace' });
    s.setTimesteps(7);
    expect(s.timesteps).toEqual([999, 832, 666, 500, 333, 166, 0]);
    s.setTimesteps(50);
    expect(s.timesteps.slice(0, 4)).toEqual([999, 979, 958, 938]);
    expect(s.timesteps.slice(-3)).toEqual([41, 20, 0]);
  });

  test('trailing', () => {
    const s = new DDIMScheduler({ ...SD15_DDIM_CONFIG, timestepSpacing: 'trailing' });
    s.setTimesteps(7);
    expect(s.timesteps).toEqual([999, 856, 713, 570, 428, 285, 142]);
    s.setTimesteps(3);
    expect(s.timesteps).toEqual([999, 666, 332]);
    s.setTimesteps(50);
    expect(s.timesteps).toHaveLength(50);
    expect(s.timesteps.slice(-3)).toEqual([59, 39, 19]);
  });
});

test('other beta schedules (diffusers defaults and the cosine schedule)', () => {
  const linear = new DDIMScheduler(readSchedulerConfig({}));
  expectRel(linear.betas[1], 0.00011991991991991993, 1e-12);
  expectRel(linear.alphasCumprod[999], 4.035829765375676e-5, 1e-9);
  expect(linear.finalAlphaCumprod).toBe(1);
  const cosine = new DDIMScheduler(readSchedulerConfig({ beta_schedule: 'squaredcos_cap_v2' }));
  expectRel(cosine.betas[0], 4.128422482196914e-5, 1e-9);
  expectRel(cosine.betas[500], 0.003155691441585007, 1e-9);
  expect(cosine.betas[999]).toBe(0.999);
});

describe('readSchedulerConfig', () => {
  test('reads the SD 1.5 file (PNDM class, extra keys ignored) as the SD 1.5 DDIM config', () => {
    expect(readSchedulerConfig(SD15_JSON)).toEqual(SD15_DDIM_CONFIG);
  });

  test('missing keys take diffusers DDIMScheduler defaults', () => {
    expect(readSchedulerConfig({})).toEqual({
      numTrainTimesteps: 1000,
      betaStart: 0.0001,
      betaEnd: 0.02,
      betaSchedule: 'linear',
      stepsOffset: 0,
      setAlphaToOne: true,
      predictionType: 'epsilon',
      timestepSpacing: 'leading',
      // diffusers defaults to true; a config without the key (instruct-pix2pix's Euler config) must not clamp latents.
      clipSample: false,
      clipSampleRange: 1,
    });
    expect(readSchedulerConfig({ _class_name: 'EulerAncestralDiscreteScheduler', beta_schedule: 'scaled_linear' }).clipSample).toBe(false);
    expect(readSchedulerConfig({ clip_sample: true }).clipSample).toBe(true);
    const c = readSchedulerConfig({ prediction_type: 'v_prediction', timestep_spacing: 'trailing', clip_sample_range: 2 });
    expect(c.predictionType).toBe('v_prediction');
    expect(c.timestepSpacing).toBe('trailing');
    expect(c.clipSampleRange).toBe(2);
  });

  test('bad values name the key', () => {
    expect(() => readSchedulerConfig(null)).toThrow(/expected a JSON object/);
    expect(() => readSchedulerConfig([1])).toThrow(/expected a JSON object/);
    expect(() => readSchedulerConfig({ num_train_timesteps: '1000' })).toThrow(/`num_train_timesteps` must be an integer/);
    expect(() => readSchedulerConfig({ num_train_timesteps: 0 })).toThrow(/`num_train_timesteps`/);
    expect(() => readSchedulerConfig({ steps_offset: -1 })).toThrow(/`steps_offset` must be an integer from 0 up, got -1/);
    expect(() => readSchedulerConfig({ beta_start: 1.5 })).toThrow(/`beta_start` must be a number between 0 and 1/);
    expect(() => readSchedulerConfig({ beta_end: 'big' })).toThrow(/`beta_end`/);
    expect(() => readSchedulerConfig({ set_alpha_to_one: 'false' })).toThrow(/`set_alpha_to_one` must be true or false/);
    expect(() => readSchedulerConfig({ clip_sample: 0 })).toThrow(/`clip_sample`/);
    expect(() => readSchedulerConfig({ clip_sample_range: -1 })).toThrow(/`clip_sample_range`/);
    expect(() => readSchedulerConfig({ prediction_type: 3 })).toThrow(/`prediction_type` must be a string/);
  });

  test('unsupported algorithms are refused by name', () => {
    expect(() => readSchedulerConfig({ prediction_type: 'flow_prediction' })).toThrow(/prediction type "flow_prediction" is not supported.*"epsilon"/);
    expect(() => readSchedulerConfig({ beta_schedule: 'sigmoid' })).toThrow(/`beta_schedule`: beta schedule "sigmoid" is not supported/);
    expect(() => readSchedulerConfig({ timestep_spacing: 'karras' })).toThrow(/timestep spacing "karras"/);
    expect(() => readSchedulerConfig({ trained_betas: [0.1, 0.2] })).toThrow(/`trained_betas`.*not supported/);
    expect(() => readSchedulerConfig({ thresholding: true })).toThrow(/`thresholding`/);
    expect(() => readSchedulerConfig({ rescale_betas_zero_snr: true })).toThrow(/`rescale_betas_zero_snr`/);
    expect(readSchedulerConfig({ thresholding: false, rescale_betas_zero_snr: false, trained_betas: null }).betaSchedule).toBe('linear');
  });
});
