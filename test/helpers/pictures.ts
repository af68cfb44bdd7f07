/** Pictures for tests, made in memory. */
import { encodePng } from '../../src/media/png.js';

/** A w×h PNG gradient: red grows left to right, green top to bottom. */
export function gradientPng(width: number, height: number): Buffer {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      rgb.set([Math.round((255 * x) / Math.max(1, width - 1)), Math.round((255 * y) / Math.max(1, height - 1)), 64], (y * width + x) * 3);
    }
  }
  return encodePng(rgb, width, height);
}
