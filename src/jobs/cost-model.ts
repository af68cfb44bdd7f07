/**
 * What a job will cost, from its parameters: work units × seconds per unit.
 *
 * A unit is one frame through one denoising step (text-to-video: frames × steps, scaled by the
 * pixel count when the job asks for a size; an edit: steps × (clip frames + anchor frames), since
 * the anchors run on their own at every step as well). The seconds per unit are learned per
 * (kind, device, model) from the last `etaWindow` succeeded jobs (their `gpu_seconds`, which
 * exclude model loading); a device with no history of its own uses the kind's history on the
 * other devices, and with no history at all the rate is the configured default cost of a
 * default-parameter job divided by its units, so a default job costs what it did before.
 *
 * The device is chosen when the job starts, so an estimate is the mean over the configured
 * devices. Pure functions plus one small in-memory window per key; the history comes from
 * {@link JobRepo.recentCosts}.
 */
import type { JobKind } from './types.js';

/** Defaults of the engine's parameters (src/jobs/job-params.ts) that the units depend on. */
const TEXT_TO_VIDEO_DEFAULTS = { frames: 8, steps: 50, size: 512 };
const EDIT_DEFAULTS = { anchors: 3 };
/**
 * Frames assumed for an edit whose clip length is not known (`clipFrames`, which the job service
 * reads from the clip's header at submit, is missing: the header did not say): two seconds at the
 * engine's frame-rate cap.
 */
export const ASSUMED_EDIT_CLIP_FRAMES = 24;

/** The amount of work a job's parameters ask for. */
export interface Work {
  kind: JobKind;
  /** Text-to-video: frames made; edit: frames of the clip edited. */
  frames: number;
  steps: number;
  /** Edit: anchor frames (0 for text-to-video). */
  anchors: number;
  /** Text-to-video: pixels relative to 512²; 1 for edits. */
  pixelScale: number;
  units: number;
}

/** A job's estimated cost, with what it was computed from. */
export interface Estimate {
  work: Work;
  gpuSeconds: number;
}

/** The work units of a job's parameters (missing values take the engine's defaults). */
export function workOf(kind: JobKind, params: Record<string, unknown>, editSteps: number): Work {
  const int = (value: unknown, fallback: number) => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback);
  if (kind === 'edit') {
    const frames = int(params.clipFrames, ASSUMED_EDIT_CLIP_FRAMES);
    const steps = int(params.numInferenceSteps, editSteps);
    const anchors = int(params.anchors, EDIT_DEFAULTS.anchors);
    return { kind, frames, steps, anchors, pixelScale: 1, units: steps * (frames + anchors) };
  }
  const frames = int(params.numFrames, TEXT_TO_VIDEO_DEFAULTS.frames);
  const steps = int(params.numInferenceSteps, TEXT_TO_VIDEO_DEFAULTS.steps);
  const size = TEXT_TO_VIDEO_DEFAULTS.size;
  const pixelScale = (int(params.width, size) * int(params.height, size)) / (size * size);
  return { kind, frames, steps, anchors: 0, pixelScale, units: frames * steps * pixelScale };
}

/** One finished job of the history: where it ran, its parameters and its measured seconds. */
export interface CostSample {
  device: string;
  params: Record<string, unknown>;
  gpuSeconds: number;
}

/** The settings a cost estimate reads (the config's, checked at start). */
export interface CostSettings {
  /** One entry per device the jobs run on. */
  devices: readonly string[];
  /** The edit pipeline's default number of steps. */
  editSteps: number;
  /** Model folders (empty = the built-in sets); the measured rate is kept per model. */
  modelDir: string;
  editModelDir: string;
  jobs: {
    /** GPU-seconds of a job of each kind with default parameters, until recent jobs give a measured rate. */
    defaultGpuSeconds: Record<JobKind, number>;
    /** How many recent jobs of a kind, device and model the rate comes from. */
    etaWindow: number;
  };
}

export interface CostModelOptions {
  config: CostSettings;
  /** The last `window` succeeded jobs of a kind and model on a device, newest first. */
  history: (kind: JobKind, device: string, model: string, window: number) => CostSample[];
}

type Sample = { units: number; seconds: number };

export class CostModel {
  readonly #config: CostModelOptions['config'];
  readonly #devices: string[];
  /** `<kind>|<device>` → recent samples of the configured model, oldest first. */
  readonly #samples = new Map<string, Sample[]>();

  constructor(options: CostModelOptions) {
    this.#config = options.config;
    this.#devices = [...new Set(options.config.devices)];
    const window = options.config.jobs.etaWindow;
    for (const kind of ['text2video', 'edit'] as const) {
      for (const device of this.#devices) {
        const rows = options.history(kind, device, this.modelOf(kind), window);
        this.#samples.set(
          `${kind}|${device}`,
          rows.reverse().map((row) => ({ units: this.work(kind, row.params).units, seconds: row.gpuSeconds })),
        );
      }
    }
  }

  /** The model a job of this kind runs with: its configured folder, '' for the built-in set. */
  modelOf(kind: JobKind): string {
    return kind === 'edit' ? this.#config.editModelDir : this.#config.modelDir;
  }

  work(kind: JobKind, params: Record<string, unknown>): Work {
    return workOf(kind, params, this.#config.editSteps);
  }

  /** A default-parameter job's units: the yardstick for "more than the defaults". */
  defaultWork(kind: JobKind): Work {
    return this.work(kind, {});
  }

  /** Seconds per unit on a device: its own history, else the kind's on any device, else the configured default. */
  rate(kind: JobKind, device: string): number {
    const own = rateOf(this.#samples.get(`${kind}|${device}`) ?? []);
    if (own !== undefined) return own;
    const pooled = rateOf(this.#devices.flatMap((other) => this.#samples.get(`${kind}|${other}`) ?? []));
    return pooled ?? this.#config.jobs.defaultGpuSeconds[kind] / this.defaultWork(kind).units;
  }

  /** Seconds per unit of a job not yet on a device: the mean rate over the configured devices. */
  meanRate(kind: JobKind): number {
    return this.#devices.reduce((sum, device) => sum + this.rate(kind, device), 0) / this.#devices.length;
  }

  /** The expected GPU-seconds of a job: its units × {@link meanRate}. */
  estimate(kind: JobKind, params: Record<string, unknown>): Estimate {
    const work = this.work(kind, params);
    return { work, gpuSeconds: work.units * this.meanRate(kind) };
  }

  /** Learns from a job that succeeded on `device` in `gpuSeconds`. */
  record(kind: JobKind, device: string, params: Record<string, unknown>, gpuSeconds: number): void {
    const key = `${kind}|${device}`;
    const samples = this.#samples.get(key) ?? [];
    samples.push({ units: this.work(kind, params).units, seconds: gpuSeconds });
    if (samples.length > this.#config.jobs.etaWindow) samples.shift();
    this.#samples.set(key, samples);
  }
}

function rateOf(samples: readonly Sample[]): number | undefined {
  let units = 0;
  let seconds = 0;
  for (const sample of samples) {
    units += sample.units;
    seconds += sample.seconds;
  }
  return units > 0 && seconds > 0 ? seconds / units : undefined;
}

/**
 * What to lower so that a job fits in `fitSeconds`, for a refusal: "Lower the frames from 64 to
 * about 21, or the steps from 150 to about 50." Empty when nothing the user controls would do.
 */
export function lowerHint(estimate: Estimate, fitSeconds: number): string {
  const { work, gpuSeconds } = estimate;
  if (!(fitSeconds > 0) || gpuSeconds <= 0) return '';
  const factor = fitSeconds / gpuSeconds;
  if (factor >= 1) return '';
  const steps = Math.floor(work.steps * factor);
  const stepsPart = steps >= 2 ? `the steps from ${work.steps} to about ${steps}` : undefined;
  if (work.kind === 'edit') {
    // Steps scale the whole cost; the clip's frames are the user's other lever.
    return stepsPart ? `Lower ${stepsPart}, or edit a shorter clip.` : 'Edit a shorter clip.';
  }
  const frames = Math.floor(work.frames * factor);
  const framesPart = frames >= 1 ? `the frames from ${work.frames} to about ${frames}` : undefined;
  const parts = [framesPart, stepsPart].filter((part): part is string => part !== undefined);
  if (parts.length === 0) return 'Lower both the frames and the steps.';
  return `Lower ${parts.join(', or ')}.`;
}
