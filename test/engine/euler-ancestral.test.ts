import { describe, expect, test } from 'vitest';
import { Random } from '../../src/engine/random.js';
import { SD15_DDIM_CONFIG } from '../../src/engine/schedulers/ddim.js';
import { EulerAncestralScheduler } from '../../src/engine/schedulers/euler-ancestral.js';

// Reference numbers: alphas_cumprod of SD 1.5 from shared/pipelines.md §4, sigma = sqrt((1 − ᾱ)/ᾱ),
// and the ancestral step worked by hand:
//   σ(981) = 13.12041079, σ(961) = 11.67604630
//   σ_up = sqrt(σt²(σf² − σt²)/σf²) = 5.32576002, σ_down = sqrt(σt² − σ_up²) = 10.39068513
//   x = 1, eps = 0.5, noise = 2: x + eps·(σ_down − σf) + 2·σ_up = 10.28665721
const LINSPACE = { ...SD15_DDIM_CONFIG, timestepSpacing: 'linspace' as const, stepsOffset: 0 };
const LEADING = SD15_DDIM_CONFIG; // "leading", steps_offset 1

describe('EulerAncestralScheduler', () => {
  test('linspace timesteps (the reference): 999 … 0, init noise sigma = sigma_max', () => {
    const s = new EulerAncestralScheduler(LINSPACE);
    s.setTimesteps(10);
    expect(s.timesteps).toEqual([999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    expect(s.sigmas).toHaveLength(11);
    expect(s.sigmas[10]).toBe(0);
    expect(s.sigmas[0]).toBeCloseTo(14.6146412, 5);
    expect(s.initNoiseSigma).toBeCloseTo(14.6146412, 5); // not sqrt(σ²+1) under linspace
    // 50 steps: fractional float32 timesteps, sigma interpolated between train steps.
    s.setTimesteps(50);
    expect(s.timesteps[1]).toBeCloseTo((48 * 999) / 49, 3);
    expect(Number.isInteger(s.timesteps[1]!)).toBe(false);
    const t = s.timesteps[1]!;
    const low = s.trainSigmas[Math.floor(t)]!;
    const high = s.trainSigmas[Math.floor(t) + 1]!;
    expect(s.sigmaAt(t)).toBeCloseTo(low + (t - Math.floor(t)) * (high - low), 10);
  });

  test('leading timesteps with steps_offset 1: 981, 961, … and init sigma sqrt(σ² + 1)', () => {
    const s = new EulerAncestralScheduler(LEADING);
    s.setTimesteps(50);
    expect(s.timesteps.slice(0, 3)).toEqual([981, 961, 941]);
    expect(s.timesteps.at(-1)).toBe(1);
    expect(s.sigmaAt(981)).toBeCloseTo(13.12041079, 5);
    expect(s.sigmaAt(961)).toBeCloseTo(11.6760463, 5);
    expect(s.initNoiseSigma).toBeCloseTo(13.15846417, 5);
    s.setTimesteps(10);
    expect(s.timesteps[0]).toBe(901);
    expect(s.initNoiseSigma).toBeCloseTo(8.45006455, 5);
  });

  test('trailing timesteps', () => {
    const s = new EulerAncestralScheduler({ ...LEADING, timestepSpacing: 'trailing' });
    s.setTimesteps(4);
    expect(s.timesteps).toEqual([999, 749, 499, 249]);
    // diffusers: np.arange(1000, 0, -1000/3).round() - 1 = [999, 666, 332]; a float-accumulating loop gave a 4th step.
    s.setTimesteps(3);
    expect(s.timesteps).toEqual([999, 666, 332]);
    expect(s.sigmas).toHaveLength(4);
    s.setTimesteps(7);
    expect(s.timesteps).toEqual([999, 856, 713, 570, 428, 285, 142]);
    // numpy's own arange length quirk, kept as diffusers has it: 61 steps give 62 timesteps.
    s.setTimesteps(61);
    expect(s.timesteps).toHaveLength(62);
  });

  test('scaleModelInput divides by sqrt(σ² + 1)', () => {
    const s = new EulerAncestralScheduler(LEADING);
    s.setTimesteps(50);
    const out = s.scaleModelInput(new Float32Array([1, -2]), 981);
    expect(out[0]).toBeCloseTo(0.07599671, 6);
    expect(out[1]).toBeCloseTo(-0.15199342, 6);
  });

  test('one ancestral step, worked by hand', () => {
    const s = new EulerAncestralScheduler(LEADING);
    s.setTimesteps(50);
    const a = s.ancestralSigmas(981);
    expect(a.sigmaUp).toBeCloseTo(5.32576002, 5);
    expect(a.sigmaDown).toBeCloseTo(10.39068513, 5);
    const out = s.step(new Float32Array([0.5]), 981, new Float32Array([1]), undefined, { noise: new Float32Array([2]) });
    expect(out[0]).toBeCloseTo(10.28665721, 4);
  });

  test('the last step lands on x0 with no noise (σ_to = 0)', () => {
    const s = new EulerAncestralScheduler(LINSPACE);
    s.setTimesteps(10);
    const sigma0 = Math.sqrt(0.00085 / 0.99915); // σ(0) from ᾱ0 = 1 − β0
    const out = s.step(new Float32Array([0.5]), 0, new Float32Array([1]), undefined, { noise: new Float32Array([100]) });
    expect(out[0]).toBeCloseTo(1 - sigma0 * 0.5, 6);
  });

  test('v-prediction x0 and seeded noise; stepping is stateless and deterministic', () => {
    const s = new EulerAncestralScheduler({ ...LEADING, predictionType: 'v_prediction' });
    s.setTimesteps(50);
    const sf = s.sigmaAt(981);
    const { sigmaDown, sigmaUp } = s.ancestralSigmas(981);
    // x0 = v·(−σ/sqrt(σ²+1)) + x/(σ²+1); x_prev = x + (x − x0)/σ·(σ_down − σ) + noise·σ_up
    const x0 = 0.5 * (-sf / Math.sqrt(sf * sf + 1)) + 1 / (sf * sf + 1);
    const expected = 1 + ((1 - x0) / sf) * (sigmaDown - sf) + 2 * sigmaUp;
    expect(s.step(new Float32Array([0.5]), 981, new Float32Array([1]), undefined, { noise: new Float32Array([2]) })[0]).toBeCloseTo(expected, 4);
    const a = s.step(new Float32Array([0.1, 0.2]), 981, new Float32Array([1, 2]), undefined, { random: new Random(5, 3) });
    const b = s.step(new Float32Array([0.1, 0.2]), 981, new Float32Array([1, 2]), undefined, { random: new Random(5, 3) });
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  test('errors name the problem', () => {
    const s = new EulerAncestralScheduler(LEADING);
    expect(() => s.step(new Float32Array(1), 981, new Float32Array(1))).toThrow(/setTimesteps/);
    s.setTimesteps(50);
    expect(() => s.step(new Float32Array(1), 981, new Float32Array(1))).toThrow(/noise source/);
    expect(() => s.step(new Float32Array(1), 980, new Float32Array(1), undefined, { noise: new Float32Array(1) })).toThrow(/not one of the inference timesteps/);
    expect(() => s.setTimesteps(0)).toThrow(RangeError);
    expect(() => new EulerAncestralScheduler({ ...LEADING, predictionType: 'sample' })).toThrow(/sample/);
  });
});
