/**
 * `reelbot render` (text to video) and `reelbot edit` (edit a clip by an instruction): one job
 * through the whole bot on the embedded defaults — the SQLite file, the in-process queue, a CPU
 * worker process and the built-in small model sets (made on first use) — with a progress bar on a
 * terminal. The operator's jobs are recorded like anyone's, and never refused by quotas. Beside a
 * running `reelbot serve` on the same database the job goes through it (see openChannel).
 */
import { copyFile, mkdir, stat } from 'node:fs/promises';
import { hostname, userInfo } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, extname, resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import type { Config } from './config.js';
import { AppError } from './errors.js';
import { DrawsError, DrawsFile } from './engine/draws.js';
import { EDIT_LIMITS, parseEditParams, parseTextToVideoParams, TEXT_TO_VIDEO_LIMITS } from './jobs/job-params.js';
import type { JobEvent, JobKind, JobRecord, SubmitResult } from './jobs/types.js';
import { inspectModelFolder, ModelFolderError } from './engine/onnx/model-folder.js';
import { checkUnetSize } from './engine/pipelines/latents.js';
import { createLogger } from './log.js';
import { CoordinatorRunningError, startApp, type App } from './main.js';
import { describeHolder, liveCoordinator } from './store/instance-lease.js';
import { ControlClient } from './web/control-socket.js';

export interface RenderContext {
  /** Loads the settings, with these on top. */
  config(overrides?: Record<string, unknown>): Config;
  out(line?: string): void;
  stderr: { write(text: string): unknown; isTTY?: boolean };
  /** An expected failure: message printed as is, with this exit code. */
  fail(message: string, exitCode: number): never;
  now(): number;
}

interface RenderFlags {
  prompt: string;
  out: string;
  frames?: number;
  steps?: number;
  seed?: number;
  motion?: { dx: number; dy: number };
  negative?: string;
  model?: string;
  fps?: number;
  guidance?: number;
  width?: number;
  height?: number;
  crossFrame: boolean;
  t0?: number;
  t1?: number;
  draws?: string;
  dumpLatents?: string;
  smooth: boolean;
  duration?: number;
  aspect?: string;
  image?: string;
  strength?: number;
}

const integer = (label: string) => (value: string) => {
  if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError(`${label} must be a whole number, got "${value}".`);
  return Number(value);
};

function decimal(value: string): number {
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) throw new InvalidArgumentError(`Expected a number, got "${value}".`);
  return number;
}

function motion(value: string): { dx: number; dy: number } {
  const match = /^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$/.exec(value);
  if (!match) throw new InvalidArgumentError(`Motion is two numbers "dx,dy" (pixels per frame on a 512 grid), like 12,12; got "${value}".`);
  return { dx: Number(match[1]), dy: Number(match[2]) };
}

/**
 * The operator-only replay options (`--draws`, `--dump-latents`) as job params: absolute paths, the
 * draws file read once here so that a wrong file is refused before the job is queued.
 */
async function replayParams(flags: { draws?: string; dumpLatents?: string }, context: RenderContext): Promise<Record<string, unknown>> {
  const params: Record<string, unknown> = {};
  if (flags.draws !== undefined) {
    const path = resolve(flags.draws);
    if (!(await isFile(path))) context.fail(`--draws: no file at ${flags.draws}.`, 2);
    try {
      await DrawsFile.read(path);
    } catch (error) {
      if (error instanceof DrawsError) context.fail(`--draws: ${error.message}`, 2);
      throw error;
    }
    params.draws = path;
  }
  if (flags.dumpLatents !== undefined) {
    const dir = resolve(flags.dumpLatents);
    try {
      await mkdir(dir, { recursive: true });
    } catch (error) {
      context.fail(`--dump-latents: the folder ${flags.dumpLatents} cannot be made (${(error as NodeJS.ErrnoException).code ?? 'error'}).`, 2);
    }
    params.dumpLatents = dir;
  }
  return params;
}

export function registerRender(program: Command, context: RenderContext): void {
  const L = TEXT_TO_VIDEO_LIMITS;
  program
    .command('render')
    .description('make a video from a prompt (Text2Video-Zero) through the job queue, and save it')
    .requiredOption('--prompt <text>', 'what the video shows')
    .requiredOption('--out <file>', 'where to save it: .mp4, or .gif for a GIF')
    .option('--frames <n>', `frames (${L.frames.min}–${L.frames.max}, default ${L.frames.default})`, integer('--frames'))
    .option('--steps <n>', `denoising steps (${L.steps.min}–${L.steps.max}, default ${L.steps.default})`, integer('--steps'))
    .option('--seed <n>', 'seed for a repeatable result (default: random, printed)', integer('--seed'))
    .option('--motion <dx,dy>', `camera motion per frame, pixels on a 512 grid (default ${L.motion.default},${L.motion.default})`, motion)
    .option('--negative <text>', 'what the video should not show')
    .option('--model <dir>', 'Stable Diffusion 1.x model folder (default: the built-in small set)')
    .option('--fps <n>', `frames per second (default ${L.fps.default})`, integer('--fps'))
    .option('--guidance <x>', `text guidance scale (default ${L.guidance.default})`, decimal)
    .option('--width <px>', 'width in pixels (default: the model\'s size; a multiple of 8 · 2^(UNet levels − 1), 64 for SD 1.x)', integer('--width'))
    .option('--height <px>', 'height in pixels (default: the model\'s size)', integer('--height'))
    .option('--no-cross-frame', 'turn cross-frame attention off (to compare; the method needs it on)')
    .option('--t0 <n>', 'Text2Video-Zero\'s step index t0 (default 0.88 of the steps, 44 of 50; alone, t1 keeps its default or follows it)', integer('--t0'))
    .option('--t1 <n>', 'Text2Video-Zero\'s step index t1 (default 0.94 of the steps, 47 of 50; alone, t0 keeps its default or precedes it)', integer('--t1'))
    .option('--smooth', `interpolate the frames (motion-compensated) to --fps, default ${L.fps.smooth}, at the same duration (the default)`, true)
    .option('--no-smooth', `show the made frames as they are, at --fps (default ${L.fps.default})`)
    .option('--duration <seconds>', `how long the video lasts (${L.durationSeconds.min}–${L.durationSeconds.max}; default: the frames at ${L.fps.default} per second)`, decimal)
    .option('--aspect <w:h>', 'shape of the video, like 16:9, 9:16 or 1:1: a size the model takes is picked (not with --width/--height)')
    .option('--image <file>', 'animate this picture (PNG, JPEG or WebP): it starts frame 0, and keeps its shape')
    .option('--strength <x>', `how much of the picture is redrawn, above 0 to 1 (default ${L.strength.default}; with --image)`, decimal)
    .option('--draws <file>', 'replay these random draws instead of the seed\'s (docs/draws.md)')
    .option('--dump-latents <dir>', 'write every latent along the way and the frames to DIR/latents.safetensors (docs/draws.md)')
    .action(async (flags: RenderFlags) => {
      await render(flags, context);
    });
}

async function render(flags: RenderFlags, context: RenderContext): Promise<void> {
  const { out, stderr } = context;
  const format = extname(flags.out).toLowerCase();
  if (format !== '.mp4' && format !== '.gif') context.fail(`--out must end in .mp4 or .gif, got "${flags.out}".`, 2);
  if (flags.seed !== undefined && !(flags.seed >= 0 && flags.seed < 2 ** 32)) context.fail('--seed must be from 0 to 4294967295.', 2);
  const params: Record<string, unknown> = {
    prompt: flags.prompt,
    negativePrompt: flags.negative,
    numFrames: flags.frames,
    numInferenceSteps: flags.steps,
    motion: flags.motion,
    fps: flags.fps,
    guidanceScale: flags.guidance,
    width: flags.width,
    height: flags.height,
    crossFrameAttention: flags.crossFrame,
    format: format.slice(1),
    t0: flags.t0,
    t1: flags.t1,
    smooth: flags.smooth,
    durationSeconds: flags.duration,
    aspect: flags.aspect,
    strength: flags.strength,
    ...(await replayParams(flags, context)),
  };
  if (flags.image !== undefined) {
    const image = resolve(flags.image);
    if (!(await isFile(image))) context.fail(`--image: no file at ${flags.image}.`, 2);
    params.image = image;
  }
  try {
    parseTextToVideoParams(params);
  } catch (error) {
    if (error instanceof AppError) context.fail(error.userMessage, 2);
    throw error;
  }
  const config = await settingsFor(context, flags.model, 'modelDir');
  if ((flags.width !== undefined || flags.height !== undefined) && config.modelDir) {
    // The folder says which sizes its UNet takes: refuse here rather than after loading it.
    const info = await inspectModelFolder(config.modelDir);
    try {
      checkUnetSize(flags.width ?? info.resolution.pixels, flags.height ?? info.resolution.pixels, info.unet.sizeMultiple);
    } catch (error) {
      context.fail(`${(error as Error).message.replace(/^The (width|height)/, '--$1')}.`, 2);
    }
  }
  if (!config.modelDir) {
    out('Using the built-in small model set (made in ./models/small on first use). Its weights are untrained:');
    out('expect abstract moving patterns, not what the prompt says. For real videos, export Stable Diffusion 1.5');
    out('(see the README) and pass --model DIR or set REELBOT_MODEL_DIR.');
  }
  await runJob(context, config, { kind: 'text2video', params, seed: flags.seed, out: flags.out });
}

/** The settings for one command-line job: a checked --model folder, and quiet logs. */
async function settingsFor(context: RenderContext, model: string | undefined, key: 'modelDir' | 'editModelDir'): Promise<Config> {
  const overrides: Record<string, unknown> = {};
  if (model) {
    overrides[key] = resolve(model);
    try {
      await inspectModelFolder(overrides[key] as string);
    } catch (error) {
      if (error instanceof ModelFolderError) context.fail(`--model: ${error.message}`, 2);
      throw error;
    }
  }
  // An interactive command: keep the JSON logs to warnings unless a level was asked for.
  if (context.config().logLevel === 'info') overrides.logLevel = 'warn';
  return context.config(overrides);
}

/** Where a command-line job runs: on an app of this process, or through the running coordinator. */
interface JobChannel {
  /** Submits; `finished` resolves with the job's last event (succeeded, failed or cancelled). */
  submit(request: { kind: JobKind; params: Record<string, unknown>; seed?: number }, user: string, onEvent: (event: JobEvent) => void): Promise<{ result: SubmitResult; finished: Promise<JobEvent> }>;
  cancel(user: string, jobId: number): Promise<void>;
  close(): Promise<void>;
}

/** How often a command waiting for another command-line job on the same database looks again. */
const COORDINATOR_POLL_MS = 300;

/**
 * The channel for one command-line job. With a `reelbot serve` running on this database, the job
 * goes through its control socket (it keeps the queue, the workers and the ledger). With another
 * `reelbot render` or `edit` running its job on the database, this one waits for it, then runs its
 * own: two command-line jobs run one after the other and never recover or run each other's jobs.
 */
async function openChannel(context: RenderContext, config: Config, role: 'render' | 'edit'): Promise<JobChannel> {
  let told = false;
  for (;;) {
    const holder = liveCoordinator(config.dbPath, config.leaseTtlMs);
    if (holder?.role === 'serve' && holder.controlSocket !== null && holder.host === hostname()) {
      context.out(`Submitting through the running ${describeHolder(holder)}.`);
      return remoteChannel(new ControlClient(holder.controlSocket));
    }
    if (holder?.role === 'serve' && holder.host !== hostname()) {
      context.fail(`${describeHolder(holder)} is the coordinator of ${config.dbPath}; run this command on ${holder.host}, where it can reach it.`, 1);
    }
    if (holder === undefined) {
      try {
        return localChannel(startApp(config, { role, logger: createLogger(config.logLevel) }));
      } catch (error) {
        if (!(error instanceof CoordinatorRunningError)) throw error;
        continue; // another one took the lease in between
      }
    }
    if (!told) context.out(`Waiting for ${describeHolder(holder)}, which runs a job on this database, to finish…`);
    told = true;
    await sleep(COORDINATOR_POLL_MS);
  }
}

function localChannel(app: App): JobChannel {
  return {
    async submit(request, user, onEvent) {
      let jobId = -1;
      const early: JobEvent[] = [];
      let settle!: (event: JobEvent) => void;
      const finished = new Promise<JobEvent>((resolve) => (settle = resolve));
      const handle = (event: JobEvent) => {
        onEvent(event);
        if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled') settle(event);
      };
      app.jobs.onEvent((event) => {
        if (jobId === -1) early.push(event);
        else if (event.job.id === jobId) handle(event);
      });
      const result = await app.jobs.submit({ actor: { platform: 'cli', externalId: user }, ...request });
      jobId = result.job.id;
      for (const event of early) if (event.job.id === jobId) handle(event);
      return { result, finished };
    },
    async cancel(user, jobId) {
      await app.jobs.cancel({ platform: 'cli', externalId: user }, jobId);
    },
    close: () => app.stop(),
  };
}

function remoteChannel(client: ControlClient): JobChannel {
  return {
    submit: (request, user, onEvent) => client.submit({ ...request, user }, onEvent),
    cancel: async (user, jobId) => {
      await client.cancel(user, jobId);
    },
    close: async () => undefined,
  };
}

/** Submits one job (here or through the running coordinator), shows its progress, and copies the result to `out`. */
async function runJob(context: RenderContext, config: Config, job: { kind: JobKind; params: Record<string, unknown>; seed?: number; out: string }): Promise<void> {
  const { out, stderr } = context;
  const started = context.now();
  const channel = await openChannel(context, config, job.kind === 'edit' ? 'edit' : 'render');
  const bar = progressBar(stderr);
  let onSignal: (() => void) | undefined;
  try {
    const user = userInfo().username || 'operator';
    const { result: submitted, finished } = await channel.submit({ kind: job.kind, params: job.params, seed: job.seed }, user, (event) => {
      if (event.type === 'progress') bar.update(event.progress.step, event.progress.total, event.progress.stage ?? '');
      if (event.type === 'started') bar.update(0, 1, 'starting');
    });
    const jobId = submitted.job.id;
    out(`Job #${jobId}, seed ${submitted.job.seed}${submitted.position > 0 ? `, position ${submitted.position} in the queue` : ''}.`);
    if (typeof job.params.draws === 'string') out(`The random draws come from ${job.params.draws}; the seed decides nothing.`);
    onSignal = () => void channel.cancel(user, jobId).catch(() => undefined);
    process.once('SIGINT', onSignal);
    const result = await finished;
    bar.done();
    if (result.type === 'cancelled') context.fail(`Job #${jobId} was cancelled.`, 1);
    if (result.type === 'failed') context.fail(`${result.message}${result.refunded ? ' It was not charged.' : ''}`, 1);
    if (result.type !== 'succeeded') context.fail(`Job #${jobId} ended without a result.`, 1);
    const video = result.result as { file: string; frames: number; width: number; height: number; fps: number; smooth?: boolean; droppedText?: string; untrainedWeights?: boolean; crossFrameUnavailable?: boolean };
    await mkdir(dirname(resolve(job.out)), { recursive: true });
    await copyFile(video.file, job.out);
    if (video.droppedText) out(`Note: the text was too long; this part was left out: "${video.droppedText}"`);
    out(
      `Saved ${job.out}: ${video.frames} frames${video.smooth ? ' (smoothed)' : ''}, ${video.width}×${video.height}, ${video.fps} fps, seed ${(result.job as JobRecord).seed}, in ${((context.now() - started) / 1000).toFixed(1)} s.`,
    );
    if (video.untrainedWeights === true) out('Note: made with untrained demo weights (a built-in set): abstract patterns, not what you asked for. Pass --model DIR with real weights.');
    if (video.crossFrameUnavailable === true) out("Note: the model's attention could not be linked across frames, so each frame was made on its own and the video may flicker.");
  } finally {
    bar.done();
    if (onSignal) process.off('SIGINT', onSignal);
    await channel.close();
  }
}

interface EditFlags {
  input: string;
  instruction: string;
  out: string;
  anchors?: number;
  steps?: number;
  imageGuidance?: number;
  guidance?: number;
  seed?: number;
  negative?: string;
  model?: string;
  scheduler?: 'euler-ancestral' | 'ddim';
  crossFrame: boolean;
  resolution?: number;
  draws?: string;
  dumpLatents?: string;
  smooth: boolean;
}

export function registerEdit(program: Command, context: RenderContext): void {
  const L = EDIT_LIMITS;
  program
    .command('edit')
    .description('edit a video clip by an instruction (Video Instruct-Pix2Pix with anchor-frame attention), and save it')
    .requiredOption('--input <file>', 'the clip to edit (MP4, MOV, WebM, MKV, GIF or AVI)')
    .requiredOption('--instruction <text>', 'how it should change, e.g. "make it snowy"')
    .requiredOption('--out <file>', 'where to save it: .mp4, or .gif for a GIF')
    .option('--anchors <n>', `anchor frames every frame attends to (${L.anchors.min}–${L.anchors.max}, default ${L.anchors.default}; 1 = frame 0 only)`, integer('--anchors'))
    .option('--steps <n>', 'denoising steps (default: the server\'s setting, 10; the reference uses 50)', integer('--steps'))
    .option('--image-guidance <x>', `how closely to keep the original (default ${L.imageGuidance.default})`, decimal)
    .option('--guidance <x>', `how strongly to follow the instruction (default ${L.guidance.default})`, decimal)
    .option('--seed <n>', 'seed for a repeatable result (default: random, printed)', integer('--seed'))
    .option('--negative <text>', 'what the result should not show')
    .option('--scheduler <name>', 'euler-ancestral (the reference) or ddim')
    .option('--model <dir>', 'instruct-pix2pix model folder (default: the built-in small set)')
    .option('--no-cross-frame', 'edit every frame on its own (to compare; the method needs anchors)')
    .option('--resolution <px>', 'scale the clip so its long side is this, a multiple of 64 (default: the model\'s resolution)', integer('--resolution'))
    .option('--smooth', 'interpolate the edited frames (motion-compensated) to 24 fps at the clip\'s length (off by default: the clip\'s rate is kept)', false)
    .option('--no-smooth', 'keep the clip\'s frame rate (the default)')
    .option('--draws <file>', 'replay these random draws instead of the seed\'s (docs/draws.md)')
    .option('--dump-latents <dir>', 'write every latent along the way and the frames to DIR/latents.safetensors (docs/draws.md)')
    .action(async (flags: EditFlags) => {
      const format = extname(flags.out).toLowerCase();
      if (format !== '.mp4' && format !== '.gif') context.fail(`--out must end in .mp4 or .gif, got "${flags.out}".`, 2);
      if (flags.seed !== undefined && !(flags.seed >= 0 && flags.seed < 2 ** 32)) context.fail('--seed must be from 0 to 4294967295.', 2);
      const inputFile = resolve(flags.input);
      if (!(await isFile(inputFile))) context.fail(`--input: no file at ${flags.input}.`, 2);
      const params: Record<string, unknown> = {
        instruction: flags.instruction,
        inputFile,
        negativePrompt: flags.negative,
        numInferenceSteps: flags.steps,
        anchors: flags.anchors,
        imageGuidanceScale: flags.imageGuidance,
        guidanceScale: flags.guidance,
        scheduler: flags.scheduler,
        crossFrameAttention: flags.crossFrame,
        format: format.slice(1),
        resolution: flags.resolution,
        smooth: flags.smooth,
        ...(await replayParams(flags, context)),
      };
      try {
        parseEditParams(params);
      } catch (error) {
        if (error instanceof AppError) context.fail(error.userMessage, 2);
        throw error;
      }
      const config = await settingsFor(context, flags.model, 'editModelDir');
      if (!config.editModelDir) {
        context.out('Using the built-in small instruct-edit set (made in ./models/small-edit on first use). Its weights are');
        context.out('untrained: the edit is abstract, not what the instruction says. For real edits, export');
        context.out('timbrooks/instruct-pix2pix (see the README) and pass --model DIR or set REELBOT_EDIT_MODEL_DIR.');
      }
      await runJob(context, config, { kind: 'edit', params, seed: flags.seed, out: flags.out });
    });
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** A one-line progress bar on a terminal; nothing when stderr is not one. */
function progressBar(stream: { write(text: string): unknown; isTTY?: boolean }) {
  let shown = false;
  return {
    update(step: number, total: number, stage: string) {
      if (!stream.isTTY) return;
      const width = 30;
      const filled = Math.round((width * Math.min(step, total)) / Math.max(1, total));
      stream.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${total} ${stage}`.padEnd(60));
      shown = true;
    },
    done() {
      if (shown) stream.write('\n');
      shown = false;
    },
  };
}
