/**
 * Collects a pipeline's {@link LatentRecord}s into named tensors, the layout of
 * `reelbot render|edit --dump-latents DIR` (DIR/latents.safetensors) and of the golden fixtures
 * that diffusers' pipelines wrote (test/fixtures/golden):
 *
 * - `frame0.<i>` [4, h, w]: Text2Video-Zero's frame 0 after step i of its first phase;
 * - `image` [F, 4, h, w]: the clip edit's image latents;
 * - `initial` [F, 4, h, w]: where the all-frames loop starts;
 * - `step.<i>` [F, 4, h, w]: every frame after step i (i indexes the scheduler's timesteps);
 * - `frames` [F, H, W, 3] uint8: the decoded video.
 *
 * A frame seen twice at the same point (Text2Video-Zero's frame 0 is in every chunk) keeps its first record.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serializeSafetensors, type NamedTensor } from '../safetensors.js';
import type { LatentRecord } from './types.js';

/** The tensor name of a record's point (see the module comment). */
export function latentName(record: Pick<LatentRecord, 'stage' | 'step'>): string {
  if (record.stage === 'frame0' || record.stage === 'step') return `${record.stage}.${record.step}`;
  return record.stage;
}

export class LatentRecorder {
  readonly #points = new Map<string, Map<number, Float32Array>>();

  /** Pass as `RunContext.onLatent`. */
  readonly record = (record: LatentRecord): void => {
    const name = latentName(record);
    let frames = this.#points.get(name);
    if (!frames) this.#points.set(name, (frames = new Map()));
    if (!frames.has(record.frame)) frames.set(record.frame, record.latent);
  };

  /** The names seen, in the order first seen. */
  names(): string[] {
    return [...this.#points.keys()];
  }

  /** One point's latents by frame (frames in order); undefined when never reached. */
  get(name: string): Map<number, Float32Array> | undefined {
    const frames = this.#points.get(name);
    return frames && new Map([...frames].sort((a, b) => a[0] - b[0]));
  }

  /** Every point as a tensor: `frame0.<i>` [4, h, w], the others [F, 4, h, w] (frames 0…F−1, in order). */
  tensors(latentShape: readonly [number, number, number]): Map<string, NamedTensor> {
    const size = latentShape[0] * latentShape[1] * latentShape[2];
    const out = new Map<string, NamedTensor>();
    for (const name of this.names()) {
      const frames = this.get(name)!;
      if (name.startsWith('frame0.')) {
        out.set(name, { dtype: 'F32', shape: [...latentShape], data: frames.get(0)! });
        continue;
      }
      const count = Math.max(...frames.keys()) + 1;
      const data = new Float32Array(count * size);
      for (const [frame, latent] of frames) data.set(latent, frame * size);
      out.set(name, { dtype: 'F32', shape: [count, ...latentShape], data });
    }
    return out;
  }
}

/** RGB24 frames as one `frames` tensor [F, H, W, 3]. */
export function framesTensor(frames: readonly Uint8Array[], width: number, height: number): NamedTensor {
  const data = new Uint8Array(frames.length * width * height * 3);
  frames.forEach((frame, i) => data.set(frame, i * width * height * 3));
  return { dtype: 'U8', shape: [frames.length, height, width, 3], data };
}

/**
 * Writes DIR/latents.safetensors (the recorder's tensors, then `frames`), whole or not at all.
 * @returns the file's path
 */
export async function writeLatentDump(dir: string, recorder: LatentRecorder, latentShape: readonly [number, number, number], video: { frames: readonly Uint8Array[]; width: number; height: number }, metadata: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  const tensors = recorder.tensors(latentShape);
  tensors.set('frames', framesTensor(video.frames, video.width, video.height));
  const file = join(dir, 'latents.safetensors');
  const partial = `${file}.${process.pid}.partial`;
  await writeFile(partial, serializeSafetensors(tensors, metadata));
  await rename(partial, file);
  return file;
}
