/**
 * The golden fixtures (test/fixtures/golden, diffusers' latents and frames written by
 * scripts/golden-diffusers-reference.py) and how a reelbot run is compared with them.
 */
import { cp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../../src/cli.js';
import { parseSafetensors, type NamedTensor } from '../../src/engine/safetensors.js';

export const GOLDEN = fileURLToPath(new URL('../fixtures/golden/', import.meta.url));
export const PIPELINE_FIXTURE = fileURLToPath(new URL('../fixtures/diffusers-pipeline/', import.meta.url));

/**
 * Latents: max |reelbot − diffusers| ≤ `latent` · max |diffusers| at every point of the trajectory;
 * text embeddings likewise with `text`; frames: max pixel difference ≤ `pixels`. Why these: see
 * test/engine/golden.test.ts.
 */
export const TOLERANCE = { latent: 2e-5, text: 1e-5, pixels: 1 };

export interface GoldenCase {
  name: string;
  pipeline: 'text-to-video-zero' | 'video-edit';
  draws: string;
  reference: string;
  clip?: string;
  input: Record<string, unknown>;
  anchorFrames?: number[];
  timesteps: number[];
  promptTokens: number[];
}

/**
 * Copies the tiny export into `dir` as two model folders (copies: the cross-frame rewrite writes its
 * graph beside the UNet): `sd` (text to video) and `ip2p` (sd's models with the 8-channel UNet).
 */
export async function copyPipelineFixture(dir: string): Promise<{ sd: string; ip2p: string }> {
  const sd = join(dir, 'sd');
  const ip2p = join(dir, 'ip2p');
  await cp(join(PIPELINE_FIXTURE, 'sd'), sd, { recursive: true });
  await cp(join(PIPELINE_FIXTURE, 'sd'), ip2p, { recursive: true });
  await rm(join(ip2p, 'unet'), { recursive: true });
  await cp(join(PIPELINE_FIXTURE, 'ip2p', 'unet'), join(ip2p, 'unet'), { recursive: true });
  return { sd, ip2p };
}

/** Runs `reelbot …args` in this process with its database and outputs under `dir`; the exit code and everything printed. */
export async function reelbot(dir: string, ...args: string[]): Promise<{ code: number; text: string }> {
  const lines: string[] = [];
  const sink = { write: (text: string) => lines.push(text) };
  const env = { REELBOT_DB_PATH: join(dir, 'reelbot.db'), REELBOT_OUTPUT_DIR: join(dir, 'outputs') };
  const code = await main(['node', 'reelbot', ...args], { stdout: sink, stderr: sink, env });
  return { code, text: lines.join('') };
}

export async function goldenCases(): Promise<GoldenCase[]> {
  return (JSON.parse(await readFile(join(GOLDEN, 'cases.json'), 'utf8')) as { cases: GoldenCase[] }).cases;
}

export async function readTensors(path: string): Promise<Map<string, NamedTensor>> {
  return parseSafetensors(await readFile(path)).tensors;
}

/** The golden clip as RGB24 frames. */
export async function goldenClip(file: string): Promise<{ frames: Uint8Array[]; width: number; height: number }> {
  const clip = (await readTensors(join(GOLDEN, file))).get('frames')!;
  const [count, height, width] = clip.shape as [number, number, number];
  const size = height * width * 3;
  return { frames: Array.from({ length: count }, (_, i) => (clip.data as Uint8Array).slice(i * size, (i + 1) * size)), width, height };
}

export function maxAbs(data: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < data.length; i++) max = Math.max(max, Math.abs(data[i]!));
  return max;
}

/** max |a − b|; Infinity when either holds a NaN. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}

export interface Comparison {
  /** Worst relative latent error over every point, and where. */
  worst: number;
  at: string;
  /** Points compared. */
  points: number;
  /** Reference points that reelbot never reached, or reached with another shape. */
  missing: string[];
  maxPixelDifference: number;
}

/** Compares reelbot's latents and frames (`frames` tensor) with a reference file's. */
export function compareWithReference(reference: Map<string, NamedTensor>, ours: Map<string, NamedTensor>): Comparison {
  let worst = 0;
  let at = '';
  let points = 0;
  const missing: string[] = [];
  for (const [name, tensor] of reference) {
    if (name === 'frames' || name.startsWith('text.')) continue;
    const mine = ours.get(name);
    if (!mine || mine.shape.join() !== tensor.shape.join()) {
      missing.push(mine ? `${name} [${mine.shape.join(', ')}] ≠ [${tensor.shape.join(', ')}]` : name);
      continue;
    }
    const error = maxAbsDiff(mine.data, tensor.data) / Math.max(1e-6, maxAbs(tensor.data));
    points++;
    if (!(error <= worst)) {
      worst = error;
      at = name;
    }
  }
  const refFrames = reference.get('frames')!;
  const frames = ours.get('frames');
  const maxPixelDifference = frames && frames.shape.join() === refFrames.shape.join() ? maxAbsDiff(frames.data, refFrames.data) : Infinity;
  return { worst, at, points, missing, maxPixelDifference };
}
