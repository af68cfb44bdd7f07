/**
 * Small pure helpers on latent and image tensors (NCHW, float32), shared by the pipelines:
 * classifier-free guidance, the Text2Video-Zero motion warp, and the VAE-output → RGB conversion.
 */

/**
 * The UNet halves the latent at each of its levels and adds the skip connections back, so both
 * pixel sides must be multiples of 8 · 2^(levels − 1) (64 for SD 1.x); otherwise ORT fails deep in
 * the graph with a shape error.
 * @throws RangeError naming the side and the multiple
 */
export function checkUnetSize(width: number, height: number, sizeMultiple: number): void {
  for (const [name, value] of [['width', width], ['height', height]] as const) {
    if (value % sizeMultiple !== 0) {
      throw new RangeError(`The ${name} must be a multiple of ${sizeMultiple} pixels for this model's UNet, not ${value} (try ${Math.max(sizeMultiple, Math.round(value / sizeMultiple) * sizeMultiple)})`);
    }
  }
}

/**
 * Classifier-free guidance over a batch laid out [uncond × n, text × n]:
 * out = uncond + scale · (text − uncond), written to `out` (n items). As diffusers, guidance is on
 * only for `scale > 1`; otherwise `out` is the text prediction alone.
 */
export function applyGuidance(noise: Float32Array, itemSize: number, items: number, scale: number, out: Float32Array): Float32Array {
  const half = itemSize * items;
  if (!(scale > 1)) {
    out.set(noise.subarray(half, 2 * half));
    return out;
  }
  for (let i = 0; i < half; i++) {
    const uncond = noise[i]!;
    out[i] = uncond + scale * (noise[half + i]! - uncond);
  }
  return out;
}

/**
 * Text2Video-Zero's motion warp of one latent [C, h, w] by a global translation, as the reference
 * (`create_motion_field` + `warp_single_latent`): a flow of (dx, dy) pixels on a 512×512 grid,
 * normalised, resized to the latent size (bilinear, align_corners=False) and sampled with
 * `grid_sample(mode="nearest", padding_mode="reflection", align_corners=False)`.
 * Output cell i reads input coordinate u = i − w/1024 + dx·w/512 (derived from those three steps;
 * for a 64-wide latent, i − 0.0625 + dx/8), reflected about −0.5 and w−0.5 and rounded half to even
 * like PyTorch's nearest.
 */
export function warpLatent(latent: Float32Array, channels: number, height: number, width: number, dx: number, dy: number, out: Float32Array): Float32Array {
  const sourceX = new Int32Array(width);
  const sourceY = new Int32Array(height);
  for (let x = 0; x < width; x++) sourceX[x] = nearestReflected(x - width / 1024 + (dx * width) / 512, width);
  for (let y = 0; y < height; y++) sourceY[y] = nearestReflected(y - height / 1024 + (dy * height) / 512, height);
  const plane = height * width;
  for (let c = 0; c < channels; c++) {
    const base = c * plane;
    for (let y = 0; y < height; y++) {
      const row = base + sourceY[y]! * width;
      const outRow = base + y * width;
      for (let x = 0; x < width; x++) out[outRow + x] = latent[row + sourceX[x]!]!;
    }
  }
  return out;
}

/** Reflect u into [−0.5, size − 0.5] (align_corners=False borders), then round half to even. */
export function nearestReflected(u: number, size: number): number {
  const low = -0.5;
  const span = size; // distance between the borders
  let v = u - low;
  const period = 2 * span;
  v = ((v % period) + period) % period;
  if (v > span) v = period - v;
  const reflected = v + low;
  const rounded = roundHalfEven(reflected);
  return Math.min(size - 1, Math.max(0, rounded));
}

function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff < 0.5) return floor;
  if (diff > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * VAE decoder output [n, 3, H, W] in about [−1, 1] → n RGB24 frames: (x/2 + 0.5) clamped to [0, 1].
 */
export function imagesToRgb(images: Float32Array, count: number, height: number, width: number): Uint8Array[] {
  const plane = height * width;
  const frames: Uint8Array[] = [];
  for (let n = 0; n < count; n++) {
    const frame = new Uint8Array(plane * 3);
    const base = n * 3 * plane;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const value = images[base + c * plane + p]! / 2 + 0.5;
        frame[p * 3 + c] = Math.round(Math.min(1, Math.max(0, value)) * 255);
      }
    }
    frames.push(frame);
  }
  return frames;
}

/** RGB24 frames → the VAE encoder's input [n, 3, H, W] in [−1, 1] (x/127.5 − 1, as the reference). */
export function rgbToImages(frames: readonly Uint8Array[], height: number, width: number): Float32Array {
  const plane = height * width;
  const out = new Float32Array(frames.length * 3 * plane);
  frames.forEach((frame, n) => {
    const base = n * 3 * plane;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) out[base + c * plane + p] = frame[p * 3 + c]! / 127.5 - 1;
    }
  });
  return out;
}

/** The arrays one after another in one new array (UNet batches: [uncond…, text…]). */
export function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** The same array `count` times (for {@link concat}). */
export function repeat(part: Float32Array, count: number): Float32Array[] {
  return Array.from({ length: count }, () => part);
}
