/**
 * Seeded random numbers for the diffusion pipelines: the same seed gives the same video on every
 * machine. xoshiro128** seeded through splitmix32, normals by Box–Muller in float64.
 * Separate streams (per frame) keep results independent of how frames are chunked.
 */

function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

export class Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  #spare: number | undefined;

  /** @param seed 0 … 2³²−1; @param stream picks an independent sequence for the same seed. */
  constructor(seed: number, stream = 0) {
    const mix = splitmix32((seed >>> 0) ^ Math.imul(stream + 1, 0x27d4eb2f));
    this.#a = mix();
    this.#b = mix();
    this.#c = mix();
    this.#d = mix();
    if ((this.#a | this.#b | this.#c | this.#d) === 0) this.#a = 1;
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.#b, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.#b << 9) >>> 0;
    this.#c ^= this.#a;
    this.#d ^= this.#b;
    this.#b ^= this.#c;
    this.#a ^= this.#d;
    this.#c ^= t;
    this.#d = rotl(this.#d, 11);
    return result;
  }

  /** Uniform in (0, 1). */
  nextFloat(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  /** Standard normal. */
  nextNormal(): number {
    if (this.#spare !== undefined) {
      const spare = this.#spare;
      this.#spare = undefined;
      return spare;
    }
    const radius = Math.sqrt(-2 * Math.log(this.nextFloat()));
    const angle = 2 * Math.PI * this.nextFloat();
    this.#spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** `length` normals with standard deviation `std` (default 1). */
  normals(length: number, std = 1): Float32Array {
    const out = new Float32Array(length);
    for (let i = 0; i < length; i++) out[i] = this.nextNormal() * std;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
