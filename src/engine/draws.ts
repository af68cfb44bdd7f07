/**
 * Where a pipeline's random numbers come from. Every random draw of Text2Video-Zero and of the
 * clip edit goes through a {@link DrawSource}: the initial noise x_T of a frame, Text2Video-Zero's
 * forward-jump noise of a frame, and Euler Ancestral's noise of a frame at a step.
 *
 * - {@link seededDraws}: the default, one seeded {@link Random} stream per frame (so results do not
 *   depend on chunking); each frame's stream gives its x_T first, then its step noise in step order.
 * - {@link DrawsFile}: the draws read from a file, so that reelbot and diffusers can be fed the very
 *   same numbers and compared step by step (`reelbot render|edit --draws FILE`). The file format is
 *   described in docs/draws.md: a safetensors file with float32 tensors
 *   `x_T` [F, 4, h, w], `forward_noise` [F − 1, 4, h, w] (rows for frames 1…F−1) and
 *   `step_noise` [S, F, 4, h, w], all standard normal (not yet scaled by any sigma).
 */
import { readFile } from 'node:fs/promises';
import { Random } from './random.js';
import { parseSafetensors, SafetensorsError, type NamedTensor } from './safetensors.js';

/** What one run will draw; a source checks it can give all of it before any work starts. */
export interface DrawNeeds {
  /** One frame's latent shape [channels, h, w]. */
  latentShape: readonly [number, number, number];
  /** Frames that need x_T (0…n−1). */
  initialFrames: number;
  /** Frames 1…n−1 that need forward-jump noise (n = this + 1); 0 for none. */
  forwardFrames: number;
  /** Scheduler steps that need per-frame noise (0 for a noise-free scheduler such as DDIM). */
  noisySteps: number;
  /** Frames that need step noise. */
  stepFrames: number;
  /** For messages: "this 8-frame render at 64×64". */
  what: string;
}

/** A draws file that cannot serve a run; the message says why, for the operator. */
export class DrawsError extends Error {
  override name = 'DrawsError';
}

export interface DrawSource {
  /** "seed 7" or "draws file /path/draws.safetensors", for logs. */
  readonly description: string;
  /** @throws DrawsError when the source cannot give every draw of {@link DrawNeeds}. */
  check(needs: DrawNeeds): void;
  /** x_T of `frame`: `length` standard normals × `std`. */
  initialNoise(frame: number, length: number, std?: number): Float32Array;
  /** Text2Video-Zero's forward-jump noise ε of `frame` (≥ 1). */
  forwardNoise(frame: number, length: number): Float32Array;
  /** Euler Ancestral's noise of `frame` at step index `step`. */
  stepNoise(frame: number, step: number, length: number): Float32Array;
}

/**
 * The seeded draws: frame k draws from `new Random(seed, k)`, x_T first, then (edit) its step noise
 * in step order, or (text-to-video, frames ≥ 1) its forward-jump noise.
 */
export function seededDraws(seed: number): DrawSource {
  const streams = new Map<number, Random>();
  const stream = (frame: number): Random => {
    let random = streams.get(frame);
    if (!random) streams.set(frame, (random = new Random(seed, frame)));
    return random;
  };
  return {
    description: `seed ${seed}`,
    check() {},
    initialNoise: (frame, length, std = 1) => stream(frame).normals(length, std),
    forwardNoise: (frame, length) => stream(frame).normals(length),
    stepNoise: (frame, _step, length) => stream(frame).normals(length),
  };
}

/** Draws read from a safetensors file (see the module comment and docs/draws.md). */
export class DrawsFile implements DrawSource {
  readonly description: string;
  readonly #tensors: Map<string, NamedTensor>;

  constructor(tensors: Map<string, NamedTensor>, source: string) {
    this.#tensors = tensors;
    this.description = `draws file ${source}`;
  }

  /** Reads and checks a draws file. @throws DrawsError naming the file */
  static async read(path: string): Promise<DrawsFile> {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (error) {
      throw new DrawsError(`The draws file ${path} could not be read (${(error as NodeJS.ErrnoException).code ?? 'error'}).`);
    }
    return DrawsFile.fromBytes(bytes, path);
  }

  /** @throws DrawsError naming `source` */
  static fromBytes(bytes: Uint8Array, source: string): DrawsFile {
    let tensors: Map<string, NamedTensor>;
    try {
      tensors = parseSafetensors(bytes).tensors;
    } catch (error) {
      if (error instanceof SafetensorsError) throw new DrawsError(`The draws file ${source} is not usable: ${error.message}.`);
      throw error;
    }
    for (const [name, tensor] of tensors) {
      if (!(name in RANKS)) continue;
      if (tensor.dtype !== 'F32') throw new DrawsError(`The draws file ${source}: \`${name}\` must be float32 (F32), not ${tensor.dtype}.`);
      if (tensor.shape.length !== RANKS[name as keyof typeof RANKS]) {
        throw new DrawsError(`The draws file ${source}: \`${name}\` must have ${RANKS[name as keyof typeof RANKS]} dimensions (${LAYOUTS[name as keyof typeof LAYOUTS]}), not [${tensor.shape.join(', ')}].`);
      }
      const data = tensor.data as Float32Array;
      for (let i = 0; i < data.length; i++) {
        if (!Number.isFinite(data[i]!)) throw new DrawsError(`The draws file ${source}: \`${name}\` holds a value that is not a finite number (element ${i}).`);
      }
    }
    return new DrawsFile(tensors, source);
  }

  check(needs: DrawNeeds): void {
    const frameShape = needs.latentShape.join(', ');
    const need = (name: keyof typeof RANKS, leading: number[]) => {
      const tensor = this.#tensors.get(name);
      const wanted = `[${[...leading.map((n) => `≥${n}`), frameShape].join(', ')}]`;
      if (!tensor) throw new DrawsError(`The ${this.description} has no \`${name}\` (${LAYOUTS[name]}); ${needs.what} needs one of shape ${wanted}.`);
      const fits = tensor.shape.slice(leading.length).join(', ') === frameShape && leading.every((n, i) => tensor.shape[i]! >= n);
      if (!fits) throw new DrawsError(`The ${this.description} has \`${name}\` of shape [${tensor.shape.join(', ')}]; ${needs.what} needs ${wanted} (${LAYOUTS[name]}).`);
    };
    if (needs.initialFrames > 0) need('x_T', [needs.initialFrames]);
    if (needs.forwardFrames > 0) need('forward_noise', [needs.forwardFrames]);
    if (needs.noisySteps > 0 && needs.stepFrames > 0) need('step_noise', [needs.noisySteps, needs.stepFrames]);
  }

  initialNoise(frame: number, length: number, std = 1): Float32Array {
    const row = this.#row('x_T', [frame], length);
    if (std === 1) return row;
    const out = new Float32Array(length);
    const scale = Math.fround(std);
    for (let i = 0; i < length; i++) out[i] = row[i]! * scale;
    return out;
  }

  forwardNoise(frame: number, length: number): Float32Array {
    if (frame < 1) throw new DrawsError(`Forward-jump noise exists for frames 1 and up, not frame ${frame}.`);
    return this.#row('forward_noise', [frame - 1], length);
  }

  stepNoise(frame: number, step: number, length: number): Float32Array {
    return this.#row('step_noise', [step, frame], length);
  }

  /** A copy of the row at `index` of a tensor whose trailing dimensions hold `length` values. */
  #row(name: keyof typeof RANKS, index: number[], length: number): Float32Array {
    const tensor = this.#tensors.get(name);
    if (!tensor) throw new DrawsError(`The ${this.description} has no \`${name}\` (${LAYOUTS[name]}).`);
    const rowLength = tensor.shape.slice(index.length).reduce((a, b) => a * b, 1);
    const inRange = index.every((i, d) => Number.isInteger(i) && i >= 0 && i < tensor.shape[d]!);
    if (rowLength !== length || !inRange) {
      throw new DrawsError(`The ${this.description} has \`${name}\` of shape [${tensor.shape.join(', ')}]; row [${index.join(', ')}] of ${length} values was asked for.`);
    }
    let offset = 0;
    index.forEach((i, d) => {
      offset = offset * tensor.shape[d]! + i;
    });
    return (tensor.data as Float32Array).slice(offset * rowLength, (offset + 1) * rowLength);
  }
}

const RANKS = { x_T: 4, forward_noise: 4, step_noise: 5 } as const;
const LAYOUTS = {
  x_T: 'frames × channels × height/8 × width/8, standard normal',
  forward_noise: 'frames 1…F−1 × channels × height/8 × width/8, standard normal',
  step_noise: 'steps × frames × channels × height/8 × width/8, standard normal',
} as const;
