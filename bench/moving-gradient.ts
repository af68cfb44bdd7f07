/** The benchmarks' input clip: `count` RGB24 frames of a gradient that moves 2 px per frame. */
export function movingGradient(count: number, size: number): Uint8Array[] {
  return Array.from({ length: count }, (_, f) => {
    const frame = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const p = (y * size + x) * 3;
        frame[p] = ((x + 2 * f) * 2) % 256;
        frame[p + 1] = (y * 2) % 256;
        frame[p + 2] = (x + y + f) % 256;
      }
    }
    return frame;
  });
}
