/**
 * RGB24 pixels → a PNG file in memory (8-bit truecolour, no interlace, filter 0 on every row).
 * Node's zlib does the compression and the CRC; this file only lays out the chunks (PNG spec §5).
 * For small images made in the engine (live previews, thumbnails); never used to read a PNG.
 */
import { crc32, deflateSync } from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(head.subarray(4, 8))) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * Encodes `width × height` RGB24 pixels (rows top to bottom) as a PNG.
 * @throws RangeError when the sizes and the pixel count do not match
 */
export function encodePng(rgb: Uint8Array, width: number, height: number): Buffer {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new RangeError(`A PNG needs a positive whole width and height, got ${width}×${height}`);
  }
  if (rgb.length !== width * height * 3) throw new RangeError(`${width}×${height} RGB24 pixels are ${width * height * 3} bytes, got ${rgb.length}`);
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // colour type: truecolour
  const stride = width * 3;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  return Buffer.concat([SIGNATURE, chunk('IHDR', header), chunk('IDAT', deflateSync(raw, { level: 6 })), chunk('IEND', Buffer.alloc(0))]);
}

/** Frames of one size side by side, left to right, as one RGB24 image (a preview strip). */
export function sideBySide(frames: readonly Uint8Array[], width: number, height: number): { rgb: Uint8Array; width: number; height: number } {
  const total = width * frames.length;
  const out = new Uint8Array(total * height * 3);
  frames.forEach((frame, index) => {
    for (let y = 0; y < height; y++) out.set(frame.subarray(y * width * 3, (y + 1) * width * 3), (y * total + index * width) * 3);
  });
  return { rgb: out, width: total, height };
}

/** Nearest-neighbour scaling of RGB24 pixels to `toWidth × toHeight` (previews of a latent-sized image). */
export function scaleNearest(rgb: Uint8Array, width: number, height: number, toWidth: number, toHeight: number): Uint8Array {
  const out = new Uint8Array(toWidth * toHeight * 3);
  for (let y = 0; y < toHeight; y++) {
    const sy = Math.min(height - 1, Math.floor((y * height) / toHeight));
    for (let x = 0; x < toWidth; x++) {
      const sx = Math.min(width - 1, Math.floor((x * width) / toWidth));
      const from = (sy * width + sx) * 3;
      const to = (y * toWidth + x) * 3;
      out[to] = rgb[from]!;
      out[to + 1] = rgb[from + 1]!;
      out[to + 2] = rgb[from + 2]!;
    }
  }
  return out;
}
