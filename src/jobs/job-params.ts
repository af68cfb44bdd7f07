/**
 * Engine parameters of a text-to-video job, checked at the engine's door: the CLI and the bots
 * build them, and jobs stored before an upgrade come back through here too.
 */
import { isAbsolute } from 'node:path';
import { AppError, ErrorCode } from '../errors.js';

export interface TextToVideoParams {
  prompt: string;
  negativePrompt?: string;
  numFrames: number;
  numInferenceSteps: number;
  guidanceScale: number;
  motion: { dx: number; dy: number };
  /** The frame rate the viewer gets, as asked (resolved with the duration and smoothing by {@link videoTiming}). */
  fps?: number;
  /** How long the video lasts, as asked (default: the frames at 4 per second). */
  durationSeconds?: number;
  /** Motion-compensated interpolation to `fps` (default 24) at the same duration; on unless turned off. */
  smooth: boolean;
  height?: number;
  width?: number;
  /** A width:height ratio; the engine picks a size the model takes ({@link sizeForAspect}). Not with width/height. */
  aspect?: { width: number; height: number };
  /**
   * A picture to animate: a local file the bot downloaded or the operator named (never a URL),
   * checked like clips (type sniffed, size and dimensions limited) before it is decoded.
   */
  image?: string;
  /** How much of the picture is redrawn, 0 < strength ≤ 1 (image-to-image's strength; default 0.8). */
  strength?: number;
  /** Text2Video-Zero's phase steps (DDIM step indices); either alone is paired as {@link phaseSteps} says. */
  t0?: number;
  t1?: number;
  /** Off only to compare: the method needs cross-frame attention. */
  crossFrameAttention: boolean;
  format: 'mp4' | 'gif';
  /** Operator only: a draws file to replay (absolute path on the worker's machine; docs/draws.md). */
  draws?: string;
  /** Operator only: a folder for latents.safetensors, every latent along the way (absolute path). */
  dumpLatents?: string;
}

/** Limits that keep one job within reason on a shared server. */
export const TEXT_TO_VIDEO_LIMITS = Object.freeze({
  /** Tiers cap the frames lower (quota tiers' maxFrames); 240 for those that allow it. */
  frames: { min: 1, max: 240, default: 8 },
  steps: { min: 2, max: 150, default: 50 },
  /** The viewer's frame rate: default 24 when smoothing, else the frames' own rate, 4. */
  fps: { min: 1, max: 30, default: 4, smooth: 24 },
  durationSeconds: { min: 0.5, max: 60 },
  strength: { min: 0.05, max: 1, default: 0.8 },
  motion: { min: -64, max: 64, default: 12 },
  guidance: { min: 0, max: 30, default: 7.5 },
  size: { min: 64, max: 1024 },
});

function invalid(message: string): AppError {
  return new AppError(ErrorCode.InvalidRequest, message);
}

/** An operator-only path parameter: absent, or an absolute path on the worker's machine. */
function operatorPath(params: Record<string, unknown>, key: 'draws' | 'dumpLatents', label: string): string | undefined {
  const value = params[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '' || !isAbsolute(value) || value.includes('\0')) {
    throw invalid(`${label} must be an absolute path to a file on the worker's machine.`);
  }
  return value;
}

function number(params: Record<string, unknown>, key: string, label: string, limits: { min: number; max: number }, integer: boolean, fallback?: number): number | undefined {
  const value = params[key];
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw invalid(`${label} must be ${integer ? 'a whole number' : 'a number'} from ${limits.min} to ${limits.max}.`);
  }
  if (value < limits.min || value > limits.max) throw invalid(`${label} must be from ${limits.min} to ${limits.max}, not ${value}.`);
  return value;
}

/** Reads and checks the params; throws an AppError with a message for the user. */
export function parseTextToVideoParams(params: Record<string, unknown>): TextToVideoParams {
  const L = TEXT_TO_VIDEO_LIMITS;
  if (typeof params.prompt !== 'string' || params.prompt.trim() === '') throw invalid('The prompt is empty. Describe what you want to see.');
  if (params.negativePrompt !== undefined && typeof params.negativePrompt !== 'string') throw invalid('The negative prompt must be text.');
  if (params.format !== undefined && params.format !== 'mp4' && params.format !== 'gif') throw invalid('The format must be mp4 or gif.');
  const motion = params.motion as { dx?: unknown; dy?: unknown } | undefined;
  if (motion !== undefined && (motion === null || typeof motion !== 'object')) throw invalid('Motion must be two numbers, like 12,12.');
  const size = (key: string) => {
    const value = number(params, key, key === 'height' ? 'The height' : 'The width', L.size, true);
    if (value !== undefined && value % 8 !== 0) throw invalid(`The ${key} must be a multiple of 8, not ${value}.`);
    return value;
  };
  const numInferenceSteps = number(params, 'numInferenceSteps', 'The number of steps', L.steps, true, L.steps.default)!;
  const numFrames = number(params, 'numFrames', 'The number of frames', L.frames, true, L.frames.default)!;
  const height = size('height');
  const width = size('width');
  const aspect = parseAspect(params.aspect);
  if (aspect !== undefined && (height !== undefined || width !== undefined)) throw invalid('Give an aspect ratio or a width and height, not both.');
  if (params.image !== undefined && params.image !== null && (aspect !== undefined || height !== undefined || width !== undefined)) {
    throw invalid('A picture keeps its own shape: leave out the aspect ratio and the size when animating one.');
  }
  const phaseStep = (key: 't0' | 't1') => number(params, key, key, { min: 0, max: numInferenceSteps - 1 }, true);
  const t0 = phaseStep('t0');
  const t1 = phaseStep('t1');
  try {
    phaseSteps(numInferenceSteps, t0, t1);
  } catch (error) {
    throw invalid(`${(error as Error).message.replaceAll('`', '')}.`);
  }
  return {
    prompt: params.prompt,
    negativePrompt: params.negativePrompt as string | undefined,
    numFrames,
    numInferenceSteps,
    guidanceScale: number(params, 'guidanceScale', 'The guidance scale', L.guidance, false, L.guidance.default)!,
    motion: {
      dx: number((motion ?? {}) as Record<string, unknown>, 'dx', 'The horizontal motion', L.motion, false, L.motion.default)!,
      dy: number((motion ?? {}) as Record<string, unknown>, 'dy', 'The vertical motion', L.motion, false, L.motion.default)!,
    },
    ...timingParams(params, numFrames),
    height,
    width,
    ...(aspect === undefined ? {} : { aspect }),
    ...imageParams(params),
    ...(t0 === undefined ? {} : { t0 }),
    ...(t1 === undefined ? {} : { t1 }),
    crossFrameAttention: params.crossFrameAttention !== false,
    format: params.format === 'gif' ? 'gif' : 'mp4',
    draws: operatorPath(params, 'draws', 'The draws file'),
    dumpLatents: operatorPath(params, 'dumpLatents', 'The latent dump folder'),
  };
}

/** The smoothing and timing options of a video (text-to-video and edits share them). */
function timingParams(params: Record<string, unknown>, numFrames: number): { fps?: number; durationSeconds?: number; smooth: boolean } {
  const L = TEXT_TO_VIDEO_LIMITS;
  if (params.smooth !== undefined && typeof params.smooth !== 'boolean') throw invalid('Smooth must be on or off.');
  const smooth = params.smooth !== false;
  const fps = number(params, 'fps', 'The frame rate', L.fps, true);
  const durationSeconds = number(params, 'durationSeconds', 'The duration in seconds', L.durationSeconds, false);
  const timing = { smooth, ...(fps === undefined ? {} : { fps }), ...(durationSeconds === undefined ? {} : { durationSeconds }) };
  videoTiming(numFrames, timing); // refuses what does not fit together
  return timing;
}

/** What the encoder is told: the frames' own rate, the viewer's rate and the duration. */
export interface VideoTiming {
  /** The rate the made frames are spread at (frames / duration). */
  sourceFps: number;
  /** The output's rate: above `sourceFps` only when smoothing interpolates. */
  fps: number;
  durationSeconds: number;
  /** Interpolate from `sourceFps` to `fps`. */
  interpolate: boolean;
}

/**
 * Resolves the timing of `numFrames` made frames. Smoothing on: they last `durationSeconds`
 * (default: 4 frames a second) and are interpolated to `fps` (default 24). Off: they are shown
 * at `fps` (default 4), or spread over `durationSeconds`; not both.
 * @throws AppError (invalid request) when the two do not fit together or the rate is out of range
 */
export function videoTiming(numFrames: number, options: { smooth: boolean; fps?: number; durationSeconds?: number }): VideoTiming {
  const L = TEXT_TO_VIDEO_LIMITS;
  const { smooth, fps, durationSeconds } = options;
  if (smooth && numFrames > 1) {
    const duration = durationSeconds ?? numFrames / L.fps.default;
    const sourceFps = numFrames / duration;
    const target = fps ?? L.fps.smooth;
    if (sourceFps > L.fps.max) throw invalid(`${numFrames} frames in ${duration} s is ${round2(sourceFps)} frames a second, more than ${L.fps.max}. Make it longer or use fewer frames.`);
    return { sourceFps, fps: Math.max(target, sourceFps), durationSeconds: duration, interpolate: target > sourceFps };
  }
  if (fps !== undefined && durationSeconds !== undefined) {
    throw invalid('Give the frame rate or the duration, not both, when smoothing is off (the frames are shown as they are).');
  }
  const sourceFps = fps ?? (durationSeconds === undefined ? L.fps.default : numFrames / durationSeconds);
  if (sourceFps < 0.25 || sourceFps > L.fps.max) {
    throw invalid(`${numFrames} frames over ${durationSeconds} s is ${round2(sourceFps)} frames a second; it must be from 0.25 to ${L.fps.max}. Change the duration or the frames, or turn smoothing on.`);
  }
  return { sourceFps, fps: sourceFps, durationSeconds: numFrames / sourceFps, interpolate: false };
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

/** `16:9`, `9:16`, `1:1`, `4:3`… (each side a whole number from 1 to 32, the ratio within 1:4 and 4:1), or an object as stored. */
export function parseAspect(value: unknown): { width: number; height: number } | undefined {
  if (value === undefined || value === null) return undefined;
  let width: number;
  let height: number;
  if (typeof value === 'string') {
    const match = /^\s*(\d{1,2})\s*[:x×/]\s*(\d{1,2})\s*$/.exec(value);
    if (!match) throw invalid(`The aspect ratio is two whole numbers like 16:9, 9:16 or 1:1, not "${value.slice(0, 20)}".`);
    width = Number(match[1]);
    height = Number(match[2]);
  } else if (typeof value === 'object' && Number.isInteger((value as { width?: unknown }).width) && Number.isInteger((value as { height?: unknown }).height)) {
    width = (value as { width: number }).width;
    height = (value as { height: number }).height;
  } else {
    throw invalid('The aspect ratio is two whole numbers like 16:9, 9:16 or 1:1.');
  }
  if (width < 1 || height < 1 || width > 32 || height > 32 || width / height > 4 || height / width > 4) {
    throw invalid(`The aspect ratio ${width}:${height} is out of range: each side from 1 to 32, and no wider than 4:1 or taller than 1:4.`);
  }
  return { width, height };
}

/**
 * The size for an aspect ratio that the model takes: both sides multiples of `sizeMultiple`, about
 * as many pixels as the model's square `resolution²` (from 0.6 to 1.15 times), the ratio as near
 * as those allow (then the area nearest). 16:9 at 512 (SD 1.x) → 704×384; 9:16 → 384×704.
 */
export function sizeForAspect(aspect: { width: number; height: number }, resolution: number, sizeMultiple: number): { width: number; height: number } {
  const ratio = aspect.width / aspect.height;
  const area = resolution * resolution;
  let best: { width: number; height: number; score: number; areaOff: number } | undefined;
  for (let height = sizeMultiple; height <= 4 * resolution; height += sizeMultiple) {
    for (const width of [Math.floor((height * ratio) / sizeMultiple) * sizeMultiple, Math.ceil((height * ratio) / sizeMultiple) * sizeMultiple]) {
      if (width < sizeMultiple) continue;
      const pixels = width * height;
      if (pixels < 0.6 * area || pixels > 1.15 * area) continue;
      const score = Math.abs(Math.log(width / height / ratio));
      const areaOff = Math.abs(Math.log(pixels / area));
      if (!best || score < best.score - 1e-9 || (Math.abs(score - best.score) <= 1e-9 && areaOff < best.areaOff)) best = { width, height, score, areaOff };
    }
  }
  return best ? { width: best.width, height: best.height } : { width: resolution, height: resolution };
}

function imageParams(params: Record<string, unknown>): { image?: string; strength?: number } {
  if (params.image === undefined || params.image === null) {
    if (params.strength !== undefined && params.strength !== null) throw invalid('The strength is for animating a picture; give a picture too.');
    return {};
  }
  if (typeof params.image !== 'string' || params.image === '' || params.image.includes('\0') || /^[a-z][a-z0-9+.-]*:/i.test(params.image)) {
    throw invalid('The picture to animate is missing.');
  }
  const strength = number(params, 'strength', 'The strength', TEXT_TO_VIDEO_LIMITS.strength, false);
  return { image: params.image, ...(strength === undefined ? {} : { strength }) };
}

export interface EditParams {
  instruction: string;
  negativePrompt?: string;
  /** The clip to edit: a local file the bot downloaded (never a URL). */
  inputFile: string;
  /** Undefined: the server's default (`editSteps`). */
  numInferenceSteps?: number;
  guidanceScale: number;
  imageGuidanceScale: number;
  anchors: number;
  scheduler: 'euler-ancestral' | 'ddim';
  crossFrameAttention: boolean;
  format: 'mp4' | 'gif';
  /** The long side the clip is scaled to, a multiple of 64 (default: the model's resolution). */
  resolution?: number;
  /** Interpolate the edited frames to 24 fps at the clip's length (off by default: edits keep the source rate). */
  smooth: boolean;
  /** Operator only: a draws file to replay (absolute path on the worker's machine; docs/draws.md). */
  draws?: string;
  /** Operator only: a folder for latents.safetensors, every latent along the way (absolute path). */
  dumpLatents?: string;
}

export const EDIT_LIMITS = Object.freeze({
  steps: { min: 2, max: 150 },
  resolution: { min: 64, max: 1024 },
  guidance: { min: 0, max: 30, default: 7.5 },
  imageGuidance: { min: 0, max: 5, default: 1 },
  anchors: { min: 1, max: 8, default: 3 },
});

/** Checks an edit job's options, everything but the clip (the bots check these before downloading it). */
export function parseEditOptions(params: Record<string, unknown>): Omit<EditParams, 'inputFile'> {
  const L = EDIT_LIMITS;
  if (typeof params.instruction !== 'string' || params.instruction.trim() === '') {
    throw invalid('The instruction is empty. Say how the clip should change, like "make it snowy".');
  }
  if (params.negativePrompt !== undefined && typeof params.negativePrompt !== 'string') throw invalid('The negative prompt must be text.');
  if (params.scheduler !== undefined && params.scheduler !== 'euler-ancestral' && params.scheduler !== 'ddim') {
    throw invalid('The scheduler must be euler-ancestral or ddim.');
  }
  if (params.format !== undefined && params.format !== 'mp4' && params.format !== 'gif') throw invalid('The format must be mp4 or gif.');
  return {
    instruction: params.instruction,
    negativePrompt: params.negativePrompt as string | undefined,
    numInferenceSteps: number(params, 'numInferenceSteps', 'The number of steps', L.steps, true),
    guidanceScale: number(params, 'guidanceScale', 'The text guidance scale', L.guidance, false, L.guidance.default)!,
    imageGuidanceScale: number(params, 'imageGuidanceScale', 'The image guidance scale', L.imageGuidance, false, L.imageGuidance.default)!,
    anchors: number(params, 'anchors', 'The number of anchor frames', L.anchors, true, L.anchors.default)!,
    scheduler: (params.scheduler as EditParams['scheduler'] | undefined) ?? 'euler-ancestral',
    crossFrameAttention: params.crossFrameAttention !== false,
    format: params.format === 'gif' ? 'gif' : 'mp4',
    resolution: editResolution(params),
    smooth: editSmooth(params),
    draws: operatorPath(params, 'draws', 'The draws file'),
    dumpLatents: operatorPath(params, 'dumpLatents', 'The latent dump folder'),
  };
}

/** Edits keep the clip's rate and length; smoothing (off unless asked) interpolates to 24 fps. */
function editSmooth(params: Record<string, unknown>): boolean {
  if (params.smooth !== undefined && typeof params.smooth !== 'boolean') throw invalid('Smooth must be on or off.');
  if (params.durationSeconds !== undefined && params.durationSeconds !== null) throw invalid('An edit keeps its clip\'s length: leave out the duration.');
  return params.smooth === true;
}

function editResolution(params: Record<string, unknown>): number | undefined {
  const value = number(params, 'resolution', 'The resolution', EDIT_LIMITS.resolution, true);
  if (value !== undefined && value % 64 !== 0) throw invalid(`The resolution must be a multiple of 64, not ${value}.`);
  return value;
}

/** Reads and checks the params of an edit job; throws an AppError with a message for the user. */
export function parseEditParams(params: Record<string, unknown>): EditParams {
  const options = parseEditOptions(params);
  if (typeof params.inputFile !== 'string' || params.inputFile === '' || /^[a-z][a-z0-9+.-]*:/i.test(params.inputFile)) {
    throw invalid('The clip to edit is missing.');
  }
  return { ...options, inputFile: params.inputFile };
}

/** Reference t0 / t1 (44 / 47 at 50 steps), the same fractions for other step counts. */
export function defaultPhaseSteps(steps: number): { t0: number; t1: number } {
  let t1 = Math.min(steps - 1, Math.round(0.94 * steps));
  let t0 = Math.min(t1 - 1, Math.round(0.88 * steps));
  if (t0 < 0) {
    t0 = 0;
    t1 = Math.min(1, steps - 1);
  }
  return { t0, t1 };
}

/**
 * The two phase steps for `steps` DDIM steps, either or both given. diffusers' pipeline takes
 * t0 = 44 and t1 = 47 unless told otherwise, whatever the step count, so a lone t0 or t1 is paired
 * with a default that only fits 50 steps (and t1 < 44 alone silently breaks its t0 < t1). Here the
 * missing one is this step count's default ({@link defaultPhaseSteps}) when that keeps
 * t0 < t1, else the nearest step that does (t1 = t0 + 1, or t0 = t1 − 1). At 50 steps a lone
 * t0 ≤ 46 or t1 ≥ 45 gives diffusers' pair.
 * @throws RangeError saying which value is out of range, and the range
 */
export function phaseSteps(steps: number, t0?: number, t1?: number): { t0: number; t1: number } {
  const defaults = defaultPhaseSteps(steps);
  const index = (name: string, value: number | undefined, low: number, high: number): void => {
    if (value !== undefined && !(Number.isInteger(value) && value >= low && value <= high)) {
      throw new RangeError(`\`${name}\` must be a step index from ${low} to ${high} for ${steps} steps${name === 't0' ? ' (below t1)' : ' (above t0)'}, got ${value}`);
    }
  };
  if (t0 !== undefined && t1 !== undefined) {
    if (!(Number.isInteger(t0) && Number.isInteger(t1) && t0 >= 0 && t0 < t1 && t1 <= steps - 1)) {
      throw new RangeError(`\`t0\` and \`t1\` must be step indices with 0 ≤ t0 < t1 < ${steps}, got ${t0} and ${t1}`);
    }
    return { t0, t1 };
  }
  if (t0 !== undefined) {
    index('t0', t0, 0, steps - 2);
    return { t0, t1: defaults.t1 > t0 ? defaults.t1 : t0 + 1 };
  }
  if (t1 !== undefined) {
    index('t1', t1, 1, steps - 1);
    return { t0: defaults.t0 < t1 ? defaults.t0 : t1 - 1, t1 };
  }
  return defaults;
}
