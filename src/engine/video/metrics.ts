/**
 * Numbers about frame sequences, for measuring how stable a generated clip is over time.
 */

/**
 * Mean absolute difference between consecutive frames, in pixel levels (0–255): |a − b| averaged
 * over every byte (pixel and channel) of every consecutive pair. 0 means a still clip; flicker
 * and motion raise it. Frames are compared byte by byte, so they must all have the same length.
 *
 * @example
 * meanAbsFrameDiff([new Uint8Array([0, 10]), new Uint8Array([4, 10]), new Uint8Array([4, 4])]); // (4 + 0 + 0 + 6) / 4 = 2.5
 */
export function meanAbsFrameDiff(frames: readonly Uint8Array[]): number {
  const [first] = frames;
  if (first === undefined || frames.length < 2) {
    throw new RangeError(`Expected at least 2 frames to compare, got ${frames.length}`);
  }
  const length = first.length;
  if (length === 0) throw new RangeError('Expected non-empty frames, got frames of 0 bytes');
  let sum = 0;
  for (let index = 1; index < frames.length; index++) {
    const previous = frames[index - 1] as Uint8Array;
    const frame = frames[index] as Uint8Array;
    if (frame.length !== length) {
      throw new RangeError(`Frame ${index} has ${frame.length} bytes but frame 0 has ${length}; all frames must have the same size`);
    }
    for (let byte = 0; byte < length; byte++) {
      sum += Math.abs((frame[byte] as number) - (previous[byte] as number));
    }
  }
  return sum / (length * (frames.length - 1));
}
