/**
 * The grammar of `/video` and of edit instructions, shared by both adapters.
 *
 * Discord hands us typed options; Slack hands us one line of text:
 * `a corgi surfing --frames 8 --seed 3 --motion 12,12 --negative "blurry, text"`.
 * Both paths end in the same params object, checked by the engine's own parse functions
 * (src/jobs/job-params.ts), so the limits and their messages have one source of truth.
 *
 * Parsers do not throw: they return a {@link CommandResult}, whose error is a `UserError` with a
 * `userMessage` that says what is wrong and what is allowed.
 */
import { AppError, ErrorCode, UserError } from '../../errors.js';
import { EDIT_LIMITS, TEXT_TO_VIDEO_LIMITS, parseEditOptions, parseTextToVideoParams } from '../../jobs/job-params.js';

/** Seeds the job core accepts (src/jobs/job-service.ts): an unsigned 32-bit integer. */
export const SEED_LIMITS = Object.freeze({ min: 0, max: 2 ** 32 - 1 });

/** One option of a command, for parsing and for the help text. */
export interface FlagSpec {
  /** Without the dashes: `frames`. */
  name: string;
  /** Placeholder for its value in the help text: `N`, `dx,dy`, `"text"`. */
  value: string;
  /** One line for the help text, with the allowed range. */
  description: string;
}

const T = TEXT_TO_VIDEO_LIMITS;
const E = EDIT_LIMITS;

/** Options of `/video`, in the order the help text lists them. */
export const VIDEO_FLAGS: readonly FlagSpec[] = Object.freeze([
  { name: 'frames', value: 'N', description: `number of frames, ${T.frames.min} to ${T.frames.max} (default ${T.frames.default})` },
  { name: 'seed', value: 'N', description: `seed for a repeatable result, ${SEED_LIMITS.min} to ${SEED_LIMITS.max} (default: random)` },
  { name: 'motion', value: 'dx,dy', description: `camera motion per frame in latent pixels, each ${T.motion.min} to ${T.motion.max} (default ${T.motion.default},${T.motion.default})` },
  { name: 'negative', value: '"text"', description: 'what the video should not show' },
  { name: 'steps', value: 'N', description: `denoising steps, ${T.steps.min} to ${T.steps.max} (default ${T.steps.default})` },
  { name: 'fps', value: 'N', description: `frames per second of the video, ${T.fps.min} to ${T.fps.max} (default ${T.fps.smooth} when smoothing, else ${T.fps.default})` },
  { name: 'duration', value: 'S', description: `seconds the video lasts, ${T.durationSeconds.min} to ${T.durationSeconds.max} (default: ${T.fps.default} frames a second)` },
  { name: 'aspect', value: 'W:H', description: 'shape of the video, like 16:9, 9:16 or 1:1 (default: square)' },
  { name: 'smooth', value: '', description: `interpolate the motion to ${T.fps.smooth} fps at the same duration (the default)` },
  { name: 'no-smooth', value: '', description: 'show the made frames as they are' },
]);

/** Options of an edit instruction, in the order the help text lists them. */
export const EDIT_FLAGS: readonly FlagSpec[] = Object.freeze([
  { name: 'anchors', value: 'N', description: `anchor frames the edit follows, ${E.anchors.min} to ${E.anchors.max} (default ${E.anchors.default})` },
  { name: 'steps', value: 'N', description: `denoising steps, ${E.steps.min} to ${E.steps.max} (default: the server's)` },
  { name: 'image-guidance', value: 'X', description: `how closely to keep the original clip, ${E.imageGuidance.min} to ${E.imageGuidance.max} (default ${E.imageGuidance.default})` },
  { name: 'seed', value: 'N', description: `seed for a repeatable result, ${SEED_LIMITS.min} to ${SEED_LIMITS.max} (default: random)` },
  { name: 'smooth', value: '', description: `interpolate the edited clip to ${T.fps.smooth} fps at its length (default: the clip's own rate)` },
]);

/** Params of a `text2video` JobRequest, in the keys `parseTextToVideoParams` reads. */
export type VideoParams = {
  prompt: string;
  negativePrompt?: string;
  numFrames: number;
  numInferenceSteps?: number;
  motion: { dx: number; dy: number };
  fps?: number;
  durationSeconds?: number;
  /** As typed (`16:9`); the engine picks the size. */
  aspect?: string;
  /** Only when turned off (`false`): on is the default. */
  smooth?: boolean;
};

/** Params of an `edit` JobRequest without the clip: the adapter adds `inputFile` once downloaded. */
export type EditCommandParams = {
  instruction: string;
  anchors?: number;
  numInferenceSteps?: number;
  imageGuidanceScale?: number;
  smooth?: boolean;
};

export interface VideoCommand {
  kind: 'text2video';
  params: VideoParams;
  seed?: number;
}

export interface EditCommand {
  kind: 'edit';
  params: EditCommandParams;
  seed?: number;
}

/** What a parser returns: the command, a request for help (`--help`), or a refusal. */
export type CommandResult<C> = { type: 'command'; command: C } | { type: 'help' } | { type: 'error'; error: UserError };

/** Discord's typed `/video` options; absent options come as `undefined` or `null`. */
export interface VideoOptions {
  prompt?: string | null;
  frames?: number | null;
  seed?: number | null;
  /** `"dx,dy"`, e.g. `"12,-4"`. */
  motion?: string | null;
  negative?: string | null;
  steps?: number | null;
  fps?: number | null;
  /** Seconds. */
  duration?: number | null;
  /** `"16:9"`… */
  aspect?: string | null;
  smooth?: boolean | null;
}

/**
 * Parses a Slack-style `/video` line. Flags may come anywhere after the prompt words, as
 * `--flag value` or `--flag=value`; multi-word values go in double quotes.
 *
 * @example
 * parseVideoCommandText('a corgi surfing --frames 8 --negative "blurry, text"');
 * // { type: 'command', command: { kind: 'text2video', params: { prompt: 'a corgi surfing', negativePrompt: 'blurry, text', numFrames: 8, motion: { dx: 12, dy: 12 } } } }
 */
export function parseVideoCommandText(text: string): CommandResult<VideoCommand> {
  return attempt<VideoCommand>(() => {
    const line = splitLine(text, VIDEO_FLAGS, '/video');
    if (line === 'help') return { type: 'help' };
    const { words, flags } = line;
    return {
      type: 'command',
      command: buildVideoCommand({
        prompt: words.join(' '),
        frames: optionalInteger(flags, 'frames'),
        seed: optionalInteger(flags, 'seed'),
        motion: flags.has('motion') ? parseMotion(flags.get('motion') ?? '', '--motion') : undefined,
        negative: flags.get('negative'),
        steps: optionalInteger(flags, 'steps'),
        fps: optionalInteger(flags, 'fps'),
        duration: flags.has('duration') ? parseDecimal(flags.get('duration')!, '--duration', T.durationSeconds) : undefined,
        aspect: flags.get('aspect'),
        smooth: smoothSwitch(flags),
      }),
    };
  });
}

/**
 * Checks Discord's typed `/video` options and builds the same command as the text path.
 *
 * @example
 * videoCommandFromOptions({ prompt: 'a corgi surfing', frames: 8, motion: '12,12' });
 */
export function videoCommandFromOptions(options: VideoOptions): CommandResult<VideoCommand> {
  return attempt<VideoCommand>(() => ({
    type: 'command',
    command: buildVideoCommand({
      prompt: options.prompt ?? '',
      frames: options.frames ?? undefined,
      seed: options.seed ?? undefined,
      motion: options.motion === undefined || options.motion === null ? undefined : parseMotion(options.motion, 'The motion'),
      negative: options.negative ?? undefined,
      steps: options.steps ?? undefined,
      fps: options.fps ?? undefined,
      duration: options.duration ?? undefined,
      aspect: options.aspect ?? undefined,
      smooth: options.smooth ?? undefined,
    }),
  }));
}

/**
 * Parses an edit instruction (a Slack thread reply, a Discord modal field), with optional
 * `--anchors N --steps N --image-guidance X --seed N`.
 *
 * @example
 * parseEditCommandText('make it snowy --anchors 4');
 * // { type: 'command', command: { kind: 'edit', params: { instruction: 'make it snowy', anchors: 4 } } }
 */
export function parseEditCommandText(text: string): CommandResult<EditCommand> {
  return attempt<EditCommand>(() => {
    const line = splitLine(text, EDIT_FLAGS, 'the edit instruction');
    if (line === 'help') return { type: 'help' };
    const { words, flags } = line;
    const instruction = words.join(' ').trim();
    if (instruction === '') {
      throw new UserError(ErrorCode.PromptEmpty, 'The instruction is empty. Say how the clip should change, like "make it snowy".');
    }
    const params: EditCommandParams = { instruction };
    const anchors = optionalInteger(flags, 'anchors');
    const steps = optionalInteger(flags, 'steps');
    const imageGuidance = flags.get('image-guidance');
    if (anchors !== undefined) params.anchors = anchors;
    if (steps !== undefined) params.numInferenceSteps = steps;
    if (imageGuidance !== undefined) params.imageGuidanceScale = parseDecimal(imageGuidance, '--image-guidance', E.imageGuidance);
    if (flags.has('smooth')) params.smooth = true;
    const seed = optionalInteger(flags, 'seed');
    checkSeed(seed, '--seed');
    // The clip itself is checked by the engine once the adapter has downloaded it.
    engineCheck(() => parseEditOptions(params));
    return { type: 'command', command: seed === undefined ? { kind: 'edit', params } : { kind: 'edit', params, seed } };
  });
}

// ---------------------------------------------------------------------------------------------

interface RawVideo {
  prompt: string;
  frames: number | undefined;
  seed: number | undefined;
  motion: { dx: number; dy: number } | undefined;
  negative: string | undefined;
  steps: number | undefined;
  fps: number | undefined;
  duration: number | undefined;
  aspect: string | undefined;
  smooth: boolean | undefined;
}

function buildVideoCommand(raw: RawVideo): VideoCommand {
  const prompt = raw.prompt.trim();
  if (prompt === '') {
    throw new UserError(ErrorCode.PromptEmpty, 'The prompt is empty. Describe what you want to see, like: a corgi surfing at sunset --frames 8');
  }
  checkSeed(raw.seed, 'The seed');
  const input: Record<string, unknown> = { prompt };
  const negative = raw.negative?.trim();
  if (negative !== undefined && negative !== '') input.negativePrompt = negative;
  if (raw.frames !== undefined) input.numFrames = raw.frames;
  if (raw.steps !== undefined) input.numInferenceSteps = raw.steps;
  if (raw.motion !== undefined) input.motion = raw.motion;
  if (raw.fps !== undefined) input.fps = raw.fps;
  if (raw.duration !== undefined) input.durationSeconds = raw.duration;
  if (raw.aspect !== undefined) input.aspect = raw.aspect;
  if (raw.smooth === false) input.smooth = false;
  const checked = engineCheck(() => parseTextToVideoParams(input));
  const params: VideoParams = { prompt, numFrames: checked.numFrames, motion: checked.motion };
  if (input.negativePrompt !== undefined) params.negativePrompt = checked.negativePrompt;
  if (raw.steps !== undefined) params.numInferenceSteps = checked.numInferenceSteps;
  if (raw.fps !== undefined) params.fps = checked.fps;
  if (raw.duration !== undefined) params.durationSeconds = checked.durationSeconds;
  if (raw.aspect !== undefined) params.aspect = raw.aspect.trim();
  if (raw.smooth === false) params.smooth = false;
  return raw.seed === undefined ? { kind: 'text2video', params } : { kind: 'text2video', params, seed: raw.seed };
}

/** Runs an engine parse function; its AppError (bad value, with the allowed range) becomes a UserError. */
function engineCheck<R>(check: () => R): R {
  try {
    return check();
  } catch (error) {
    if (error instanceof AppError) throw new UserError(error.code, error.userMessage, { cause: error });
    throw error;
  }
}

function attempt<C>(parse: () => CommandResult<C>): CommandResult<C> {
  try {
    return parse();
  } catch (error) {
    if (error instanceof UserError) return { type: 'error', error };
    throw error;
  }
}

function refuse(message: string): UserError {
  return new UserError(ErrorCode.InvalidRequest, message);
}

function checkSeed(seed: number | undefined, label: string): void {
  if (seed !== undefined && !(Number.isSafeInteger(seed) && seed >= SEED_LIMITS.min && seed <= SEED_LIMITS.max)) {
    throw refuse(`${label} must be a whole number from ${SEED_LIMITS.min} to ${SEED_LIMITS.max}, not ${seed}.`);
  }
}

/** `--smooth` / `--no-smooth` (not both): true, false, or undefined when neither is given. */
function smoothSwitch(flags: ReadonlyMap<string, string>): boolean | undefined {
  if (flags.has('smooth') && flags.has('no-smooth')) throw refuse('Give --smooth or --no-smooth, not both.');
  if (flags.has('no-smooth')) return false;
  return flags.has('smooth') ? true : undefined;
}

/** Integer flags and the range shown when their value is not a number at all. */
const INTEGER_RANGES: Readonly<Record<string, { min: number; max: number }>> = {
  frames: T.frames,
  steps: T.steps,
  fps: T.fps,
  seed: SEED_LIMITS,
  anchors: E.anchors,
};

function optionalInteger(flags: ReadonlyMap<string, string>, name: string): number | undefined {
  const value = flags.get(name);
  if (value === undefined) return undefined;
  const text = value.trim();
  if (!/^[+-]?\d+$/.test(text)) {
    const range = INTEGER_RANGES[name];
    const allowed = range === undefined ? 'a whole number' : `a whole number from ${range.min} to ${range.max}`;
    throw refuse(`--${name} must be ${allowed}, not ${JSON.stringify(value)}.`);
  }
  return Number(text);
}

function parseDecimal(value: string, label: string, range: { min: number; max: number }): number {
  const text = value.trim();
  if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(text)) throw refuse(`${label} must be a number from ${range.min} to ${range.max}, not ${JSON.stringify(value)}.`);
  return Number(text);
}

function parseMotion(value: string, label: string): { dx: number; dy: number } {
  const match = /^\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*,\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*$/.exec(value);
  if (match === null || match[1] === undefined || match[2] === undefined) {
    throw refuse(
      `${label} must be two numbers dx,dy, each from ${T.motion.min} to ${T.motion.max}, like 12,12 or -8,0 (not ${JSON.stringify(value)}).`,
    );
  }
  return { dx: Number(match[1]), dy: Number(match[2]) };
}

// --- Tokens ------------------------------------------------------------------------------------

interface Token {
  text: string;
  /** True when the token can be a flag: it starts with dashes outside quotes. */
  flagLike: boolean;
}

const OPEN_QUOTES = new Set(['"', '“', '”', '„']);
const CLOSE_QUOTES = new Set(['"', '“', '”']);

/**
 * Splits a line on whitespace, keeping double-quoted runs (straight or typographic quotes, which
 * chat clients often substitute) together. Quotes may start mid-token: `--negative="a b"`.
 */
function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let current = '';
  let started = false;
  let flagLike = false;
  let quote = false;
  for (const char of text) {
    if (quote) {
      if (CLOSE_QUOTES.has(char)) quote = false;
      else current += char;
    } else if (OPEN_QUOTES.has(char)) {
      if (!started) flagLike = false;
      started = true;
      quote = true;
    } else if (/\s/.test(char)) {
      if (started) tokens.push({ text: current, flagLike });
      current = '';
      started = false;
      flagLike = false;
    } else {
      if (!started) flagLike = char === '-' || char === '—' || char === '–';
      started = true;
      current += char;
    }
  }
  if (quote) throw refuse('A quote is not closed. Put values with spaces in double quotes, like --negative "blurry, text".');
  if (started) tokens.push({ text: current, flagLike });
  return tokens;
}

/**
 * Splits a line into prompt words and flag values. Refuses unknown flags (naming the known
 * ones), repeated flags and flags without a value.
 */
function splitLine(text: string, specs: readonly FlagSpec[], what: string): { words: string[]; flags: Map<string, string> } | 'help' {
  const known = new Set(specs.map((spec) => spec.name));
  const knownList = [...specs.map((spec) => `--${spec.name}`), '--help'].join(', ');
  const tokens = tokenize(text);
  const words: string[] = [];
  const flags = new Map<string, string>();
  let help = false;
  for (let index = 0; index < tokens.length; index++) {
    const token = tokens[index]!;
    // Chat clients turn "--" into an em or en dash; read those as the two dashes that were typed.
    const raw = token.flagLike ? token.text.replace(/^(?:—|–)/, '--') : token.text;
    if (!token.flagLike || !raw.startsWith('--')) {
      words.push(token.text);
      continue;
    }
    if (raw === '--') {
      // Everything after a bare "--" is prompt text, even if it looks like a flag.
      words.push(...tokens.slice(index + 1).map((rest) => rest.text));
      break;
    }
    const equals = raw.indexOf('=');
    const name = (equals === -1 ? raw.slice(2) : raw.slice(2, equals)).toLowerCase();
    if (name === 'help') {
      help = true;
      continue;
    }
    if (!known.has(name)) throw refuse(`Unknown option --${name} for ${what}. Known options: ${knownList}.`);
    if (flags.has(name)) throw refuse(`--${name} is given twice; give it once.`);
    const spec = specs.find((candidate) => candidate.name === name)!;
    if (spec.value === '') {
      // A switch: it takes no value.
      if (equals !== -1) throw refuse(`--${name} is a switch and takes no value; write just --${name}.`);
      flags.set(name, 'on');
      continue;
    }
    let value: string;
    if (equals !== -1) {
      value = raw.slice(equals + 1);
    } else {
      const next = tokens[index + 1];
      if (next === undefined || (next.flagLike && /^(?:--|—|–)[a-z]/i.test(next.text))) {
        throw refuse(`--${name} needs a value, like --${name} ${spec.value === 'N' ? '8' : spec.value === 'X' ? '1.5' : spec.value === 'S' ? '3' : spec.value === 'W:H' ? '16:9' : spec.value === 'dx,dy' ? '12,12' : '"blurry, text"'}.`);
      }
      value = next.text;
      index++;
    }
    flags.set(name, value);
  }
  return help ? 'help' : { words, flags };
}
