/** Splits ffmpeg's `-f rawvideo -pix_fmt rgb24` output stream into whole frames as bytes arrive. */
export class RawFrameSplitter {
  readonly frames: Uint8Array[] = [];
  readonly #frameBytes: number;
  #current: Uint8Array;
  #filled = 0;

  constructor(width: number, height: number) {
    this.#frameBytes = width * height * 3;
    this.#current = new Uint8Array(this.#frameBytes);
  }

  /**
   * Takes a chunk of the stream. `onFrame` runs after each completed frame; returning false stops
   * the reading of this chunk (the caller then stops the process).
   */
  push(chunk: Uint8Array, onFrame: (count: number) => boolean = () => true): void {
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(this.#frameBytes - this.#filled, chunk.length - offset);
      this.#current.set(chunk.subarray(offset, offset + take), this.#filled);
      this.#filled += take;
      offset += take;
      if (this.#filled === this.#frameBytes) {
        this.frames.push(this.#current);
        this.#current = new Uint8Array(this.#frameBytes);
        this.#filled = 0;
        if (!onFrame(this.frames.length)) return;
      }
    }
  }

  /** Bytes of an unfinished last frame (0 when the stream ended on a frame boundary). */
  get partialBytes(): number {
    return this.#filled;
  }
}
