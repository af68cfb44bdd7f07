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
  fps: number;
  height?: number;
  width?: number;
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
  frames: { min: 1, max: 64, default: 8 },
  steps: { min: 2, max: 150, default: 50 },
  fps: { min: 1, max: 30, default: 4 },
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
    numFrames: number(params, 'numFrames', 'The number of frames', L.frames, true, L.frames.default)!,
    numInferenceSteps,
    guidanceScale: number(params, 'guidanceScale', 'The guidance scale', L.guidance, false, L.guidance.default)!,
    motion: {
      dx: number((motion ?? {}) as Record<string, unknown>, 'dx', 'The horizontal motion', L.motion, false, L.motion.default)!,
      dy: number((motion ?? {}) as Record<string, unknown>, 'dy', 'The vertical motion', L.motion, false, L.motion.default)!,
    },
    fps: number(params, 'fps', 'The frame rate', L.fps, true, L.fps.default)!,
    height: size('height'),
    width: size('width'),
    ...(t0 === undefined ? {} : { t0 }),
    ...(t1 === undefined ? {} : { t1 }),
    crossFrameAttention: params.crossFrameAttention !== false,
    format: params.format === 'gif' ? 'gif' : 'mp4',
    draws: operatorPath(params, 'draws', 'The draws file'),
    dumpLatents: operatorPath(params, 'dumpLatents', 'The latent dump folder'),
  };
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
    draws: operatorPath(params, 'draws', 'The draws file'),
    dumpLatents: operatorPath(params, 'dumpLatents', 'The latent dump folder'),
  };
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
