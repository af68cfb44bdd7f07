/**
 * `reelbot render`: one text-to-video job through the whole bot on the embedded defaults — the
 * SQLite file, the in-process queue, a CPU worker process and the built-in small model set (made on
 * first use) — with a progress bar on a terminal. The operator's jobs are recorded like anyone's.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, extname, resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import type { Config } from './config.js';
import { AppError } from './errors.js';
import { parseTextToVideoParams, TEXT_TO_VIDEO_LIMITS } from './engine/params.js';
import type { JobEvent, JobRecord } from './jobs/types.js';
import { inspectModelFolder, ModelFolderError } from './engine/onnx/model-folder.js';
import { createLogger } from './log.js';
import { startApp } from './main.js';

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
  crossFrame: boolean;
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
    .option('--no-cross-frame', 'turn cross-frame attention off (to compare; the method needs it on)')
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
    crossFrameAttention: flags.crossFrame,
    format: format.slice(1),
  };
  try {
    parseTextToVideoParams(params);
  } catch (error) {
    if (error instanceof AppError) context.fail(error.userMessage, 2);
    throw error;
  }
  const overrides: Record<string, unknown> = {};
  if (flags.model) {
    overrides.modelDir = resolve(flags.model);
    try {
      await inspectModelFolder(overrides.modelDir as string);
    } catch (error) {
      if (error instanceof ModelFolderError) context.fail(`--model: ${error.message}`, 2);
      throw error;
    }
  }
  const base = context.config();
  // A render is interactive: keep the JSON logs to warnings unless a level was asked for.
  if (base.logLevel === 'info') overrides.logLevel = 'warn';
  const config = context.config(overrides);
  if (!config.modelDir) {
    out('Using the built-in small model set (made in ./models/small on first use). Its weights are untrained:');
    out('expect abstract moving patterns, not what the prompt says. For real videos, export Stable Diffusion 1.5');
    out('(see the README) and pass --model DIR or set REELBOT_MODEL_DIR.');
  }

  const started = context.now();
  const app = startApp(config, { logger: createLogger(config.logLevel) });
  const bar = progressBar(stderr);
  let onSignal: (() => void) | undefined;
  try {
    const actor = { platform: 'cli' as const, externalId: userInfo().username || 'operator' };
    let jobId = -1;
    const finished = new Promise<JobEvent & { type: 'succeeded' | 'failed' | 'cancelled' }>((resolveFinished) => {
      app.jobs.onEvent((event) => {
        if (event.job.id !== jobId) return;
        if (event.type === 'progress') bar.update(event.progress.step, event.progress.total, event.progress.stage ?? '');
        if (event.type === 'started') bar.update(0, 1, 'starting');
        if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled') resolveFinished(event);
      });
    });
    const submitted = await app.jobs.submit({ actor, kind: 'text2video', params, seed: flags.seed });
    jobId = submitted.job.id;
    out(`Job #${jobId}, seed ${submitted.job.seed}${submitted.position > 0 ? `, position ${submitted.position} in the queue` : ''}.`);
    onSignal = () => void app.jobs.cancel(actor, jobId).catch(() => undefined);
    process.once('SIGINT', onSignal);
    const result = await finished;
    bar.done();
    if (result.type === 'cancelled') context.fail(`Job #${jobId} was cancelled.`, 1);
    if (result.type === 'failed') context.fail(result.message, 1);
    const video = result.result as { file: string; frames: number; width: number; height: number; fps: number; droppedText?: string };
    await mkdir(dirname(resolve(flags.out)), { recursive: true });
    await copyFile(video.file, flags.out);
    if (video.droppedText) out(`Note: the prompt was too long; this part was left out: "${video.droppedText}"`);
    out(
      `Saved ${flags.out}: ${video.frames} frames, ${video.width}×${video.height}, ${video.fps} fps, seed ${(result.job as JobRecord).seed}, in ${((context.now() - started) / 1000).toFixed(1)} s.`,
    );
  } finally {
    bar.done();
    if (onSignal) process.off('SIGINT', onSignal);
    await app.stop();
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
