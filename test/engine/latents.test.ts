import { expect, test } from 'vitest';
import { applyGuidance, imagesToRgb, nearestReflected, rgbToImages, warpLatent } from '../../src/engine/pipelines/latents.js';
import { otherFrameChunks } from '../../src/engine/pipelines/text-to-video-zero.js';
import { defaultPhaseSteps } from '../../src/jobs/job-params.js';

test('the motion warp shifts a 64-wide latent by dx/8 cells, like grid_sample nearest with reflection', () => {
  const w = 64;
  const h = 2;
  const latent = new Float32Array(h * w);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) latent[y * w + x] = x;
  const out = new Float32Array(h * w);
  // dx = 8 pixels → u = i − 0.0625 + 1 → cell i + 1: content moves left by one cell.
  warpLatent(latent, 1, h, w, 8, 0, out);
  expect(Array.from(out.slice(0, 5))).toEqual([1, 2, 3, 4, 5]);
  // At the right border the coordinate is reflected about 63.5: u = 63.9375 → 63.0625 → 63.
  expect(out[63]).toBe(63);
  // dx = 12 (the reference default) → +1.5 − 0.0625 = 1.4375 → rounds to 1.
  warpLatent(latent, 1, h, w, 12, 0, out);
  expect(out[0]).toBe(1);
  // Zero motion is the identity (−0.0625 rounds back to the cell itself).
  warpLatent(latent, 1, h, w, 0, 0, out);
  expect(Array.from(out)).toEqual(Array.from(latent));
});

test('reflection about −0.5 and size − 0.5, then round half to even', () => {
  expect(nearestReflected(-1, 8)).toBe(0); // −1 → 0 (reflected about −0.5)
  expect(nearestReflected(-3.2, 8)).toBe(2); // → 2.2
  expect(nearestReflected(8.2, 8)).toBe(7); // → 6.8 → 7
  expect(nearestReflected(2.5, 8)).toBe(2);
  expect(nearestReflected(3.5, 8)).toBe(4);
  expect(nearestReflected(20, 8)).toBe(4); // 20.5 mod 16 = 4.5 → 4.5 − 0.5 = 4
});

test('guidance: uncond + scale · (text − uncond) over a [uncond…, text…] batch', () => {
  const noise = Float32Array.from([1, 2, 3, 4, 3, 2, 1, 0]); // 2 items of size 2: uncond [1,2],[3,4]; text [3,2],[1,0]
  const out = applyGuidance(noise, 2, 2, 7.5, new Float32Array(4));
  expect(Array.from(out)).toEqual([1 + 7.5 * 2, 2, 3 + 7.5 * -2, 4 + 7.5 * -4]);
  // Off at scale ≤ 1, as diffusers: the text prediction alone.
  expect(Array.from(applyGuidance(noise, 2, 2, 1, new Float32Array(4)))).toEqual([3, 2, 1, 0]);
  expect(Array.from(applyGuidance(noise, 2, 2, 0, new Float32Array(4)))).toEqual([3, 2, 1, 0]);
});

test('VAE images ↔ RGB frames', () => {
  const images = Float32Array.from([-1, 1, 0, 0.5, /* G */ -2, 2, 0, 0, /* B */ 0, 0, 0, 0]);
  const [frame] = imagesToRgb(images, 1, 2, 2);
  expect(Array.from(frame!.slice(0, 6))).toEqual([0, 0, 128, 255, 255, 128]);
  const back = rgbToImages([frame!], 2, 2);
  expect(back[0]).toBeCloseTo(-1, 5);
  expect(back[1]).toBeCloseTo(1, 5);
});

test('chunks hold the frames after frame 0, each once, size − 1 per chunk', () => {
  // Frame 0 runs alone once per step (the anchor); the chunks hold the other frames, size − 1 each.
  expect(otherFrameChunks(8, 8)).toEqual([[1, 2, 3, 4, 5, 6, 7]]);
  expect(otherFrameChunks(10, 4)).toEqual([[1, 2, 3], [4, 5, 6], [7, 8, 9]]);
  expect(otherFrameChunks(1, 8)).toEqual([]);
});

test('phase steps: the reference 44 / 47 at 50 steps, the same fractions otherwise', () => {
  expect(defaultPhaseSteps(50)).toEqual({ t0: 44, t1: 47 });
  expect(defaultPhaseSteps(10)).toEqual({ t0: 8, t1: 9 });
  expect(defaultPhaseSteps(2)).toEqual({ t0: 0, t1: 1 });
});
