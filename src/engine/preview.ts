/**
 * Live previews of a job while it denoises: a fixed linear projection of SD 1.x latents to RGB
 * (no VAE call), a few frames side by side as a small PNG, at most every `intervalMs` and only
 * while the time spent on previews stays within `budgetFraction` of the job's time so far.
 *
 * The projection is the 4×3 matrix that ComfyUI ships for SD 1.x latents (comfy/latent_formats.py,
 * `SD15.latent_rgb_factors`), applied to the predicted clean latent x̂0 of each shown frame, then
 * (x + 1) / 2 clamped to [0, 1]. `npm run bench:engine` measures it against a VAE decode of the
 * same frames (`preview_overhead`): the projection costs microseconds per frame, a decode a UNet
 * call's worth, so the projection is the one used.
 */
import type { JobPreview } from '../jobs/types.js';
import { encodePng, scaleNearest, sideBySide } from '../media/png.js';

/** ComfyUI's SD 1.x latent → RGB factors: rows are latent channels, columns R, G, B. */
export const SD15_LATENT_RGB_FACTORS: readonly (readonly [number, number, number])[] = Object.freeze([
  [0.3512, 0.2297, 0.3227],
  [0.325, 0.4974, 0.235],
  [-0.2829, 0.1762, 0.2721],
  [-0.212, -0.2616, -0.7177],
]);

/** One latent [4, h, w] → h × w RGB24 pixels by the fixed projection. */
export function projectLatentToRgb(latent: Float32Array, height: number, width: number): Uint8Array {
  const plane = height * width;
  if (latent.length !== 4 * plane) throw new RangeError(`A [4, ${height}, ${width}] latent has ${4 * plane} values, got ${latent.length}`);
  const out = new Uint8Array(plane * 3);
  const f = SD15_LATENT_RGB_FACTORS;
  for (let p = 0; p < plane; p++) {
    const l0 = latent[p]!;
    const l1 = latent[plane + p]!;
    const l2 = latent[2 * plane + p]!;
    const l3 = latent[3 * plane + p]!;
    for (let c = 0; c < 3; c++) {
      const value = (l0 * f[0]![c]! + l1 * f[1]![c]! + l2 * f[2]![c]! + l3 * f[3]![c]! + 1) / 2;
      out[p * 3 + c] = Math.round(Math.min(1, Math.max(0, value)) * 255);
    }
  }
  return out;
}

export interface LivePreviewOptions {
  /** Shortest time between two previews (default 3 s). */
  intervalMs?: number;
  /** Most of the job's time so far that previews may take (default 0.05). */
  budgetFraction?: number;
  /** Frames shown side by side (default 4, spread over the video). */
  frames?: number;
  /** Each frame is scaled up (nearest) so its long side is at least this (default 128 px). */
  minSide?: number;
  now?: () => number;
}

/**
 * Decides when a preview is due and makes it. `due()` is cheap (call it after every UNet call);
 * `make()` projects the given latents and counts its own time against the budget.
 */
export class LivePreview {
  readonly #intervalMs: number;
  readonly #budget: number;
  readonly #minSide: number;
  readonly #now: () => number;
  readonly #started: number;
  /** The first preview waits one interval: the first steps show only noise. */
  #last: number;
  #spentMs = 0;
  readonly frameCount: number;
  /** Previews made so far. */
  made = 0;

  constructor(options: LivePreviewOptions = {}) {
    this.#intervalMs = options.intervalMs ?? 3000;
    this.#budget = options.budgetFraction ?? 0.05;
    this.frameCount = Math.max(1, options.frames ?? 4);
    this.#minSide = options.minSide ?? 128;
    this.#now = options.now ?? (() => performance.now());
    this.#started = this.#now();
    this.#last = this.#started;
  }

  /** Milliseconds spent making previews. */
  get spentMs(): number {
    return this.#spentMs;
  }

  /** Whether a preview should be made now: the interval has passed and the budget has room. */
  due(): boolean {
    const now = this.#now();
    return now - this.#last >= this.#intervalMs && this.#spentMs <= this.#budget * (now - this.#started);
  }

  /** Which of `numFrames` frames a preview shows: up to `frames`, spread evenly, frame 0 first. */
  pick(numFrames: number): number[] {
    const count = Math.min(this.frameCount, numFrames);
    if (count === 1) return [0];
    return [...new Set(Array.from({ length: count }, (_, i) => Math.round((i * (numFrames - 1)) / (count - 1))))];
  }

  /** Projects the latents [4, h, w] of `frames` to one PNG strip. */
  make(latents: readonly Float32Array[], frames: number[], height: number, width: number, step: number): JobPreview {
    const started = this.#now();
    const scale = Math.max(1, Math.ceil(this.#minSide / Math.max(height, width)));
    const shownWidth = width * scale;
    const shownHeight = height * scale;
    const images = latents.map((latent) => {
      const rgb = projectLatentToRgb(latent, height, width);
      return scale === 1 ? rgb : scaleNearest(rgb, width, height, shownWidth, shownHeight);
    });
    const strip = sideBySide(images, shownWidth, shownHeight);
    const png = encodePng(strip.rgb, strip.width, strip.height).toString('base64');
    const finished = this.#now();
    this.#spentMs += finished - started;
    this.#last = finished;
    this.made++;
    return { png, width: strip.width, height: strip.height, frames, step };
  }
}
