/**
 * Clip-editing scaling benchmark: `npm run -s bench:edit`.
 *
 * Prints one JSON line:
 *   {"bench":"edit_scaling","model":"small","frames_8_s":…,"frames_32_s":…,"time_ratio":…,"rss_8_mb":…,"rss_32_mb":…,"rss_ratio":…, …}
 * VideoEditPipeline on the built-in `small` instruct-edit set (untrained weights) at its resolution,
 * synthetic moving-gradient frames, default steps (10), 3 anchors, chunkSize 8, Euler Ancestral.
 * Targets: time_ratio ≤ 4.4 (linear in frames), rss_ratio ≤ 1.3 (memory bounded by the chunk).
 * `unet_work_ratio` is the UNet batch items per step at 32 vs 8 frames: the anchors run once per
 * step in their own batch and hand their keys/values to every chunk, so it is K + the other frames
 * (32 vs 8 items per group, 4×; it was 47 vs 8 when the anchors rode along in every chunk).
 *
 * Each case runs in a fresh child process (this file forked with `--case <frames>` under tsx), so
 * its peak RSS (`process.resourceUsage().maxRSS`) belongs to that case alone; time is the wall time
 * of `pipeline.run` in the child (model loading excluded). The child runs the case twice and keeps
 * the faster run; cases are forked twice each, interleaved (8, 32, 8, 32), keeping the fastest time
 * and the largest peak RSS, because single runs on a shared CPU vary by 2× or more. The model set is built once into a temp
 * dir and removed at the end. Exits non-zero only when a case crashes; a missed target is reported
 * in the line (`targets_met`).
 */
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeModelSet } from '../src/engine/models/make.js';
import { StableDiffusionComponents } from '../src/engine/pipelines/sd-components.js';
import { anchorFrames, editChunks, VideoEditPipeline } from '../src/engine/pipelines/video-edit.js';
import { movingGradient } from './moving-gradient.js';

const TIME_TARGET = 4.4;
const RSS_TARGET = 1.3;
const ANCHORS = 3;
const CHUNK_SIZE = 8;
const RUNS_PER_CHILD = 2;
/** Children per case, interleaved 8, 32, 8, 32: the fastest time and the largest RSS of each case are kept. */
const CHILDREN_PER_CASE = 2;

interface CaseResult {
  frames: number;
  seconds: number;
  ortSeconds: number;
  unetCalls: number;
  maxRssMb: number;
}

/** UNet batch items per step per guidance group: one anchor batch (K) plus every chunk's own frames (see video-edit.ts). */
function framesPerStep(frames: number): number {
  const anchors = anchorFrames(frames, ANCHORS);
  return editChunks(frames, anchors, CHUNK_SIZE).reduce((sum, chunk) => sum + chunk.length, anchors.length);
}

const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

/** Child: load the set, edit `frames` frames once, report wall time and peak RSS to the parent. */
async function runCase(modelDir: string, frames: number): Promise<void> {
  const components = await StableDiffusionComponents.load(modelDir, {
    device: 'cpu',
    onnx: { intraOpThreads: 0, interOpThreads: 1, fallbackToCpu: true },
    groups: 3,
    vaeEncoder: true,
  });
  const size = components.resolution;
  const input = movingGradient(frames, size);
  const pipeline = new VideoEditPipeline(components);
  // Twice in the same child, fastest kept: the first run also pays ONNX Runtime's cold arena growth.
  let seconds = Infinity;
  let ortSeconds = 0;
  let unetCalls = 0;
  for (let repeat = 0; repeat < RUNS_PER_CHILD; repeat++) {
    const ortBefore = components.ortSeconds;
    const started = performance.now();
    const result = await pipeline.run({ frames: input, width: size, height: size, instruction: 'make it look like a watercolor painting', seed: 1, anchors: ANCHORS, chunkSize: CHUNK_SIZE });
    const elapsed = (performance.now() - started) / 1000;
    if (elapsed < seconds) {
      seconds = elapsed;
      ortSeconds = components.ortSeconds - ortBefore;
    }
    unetCalls = result.unetCalls;
  }
  const message: CaseResult = {
    frames,
    seconds,
    ortSeconds,
    unetCalls,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
  };
  await components.release();
  process.send?.(message);
}

function forkCase(modelDir: string, frames: number): Promise<CaseResult> {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--case', String(frames), modelDir], { execArgv: ['--import', tsx], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    let result: CaseResult | undefined;
    child.on('message', (message) => {
      result = message as CaseResult;
    });
    child.on('error', reject);
    child.on('exit', (code) => (result && code === 0 ? resolve(result) : reject(new Error(`bench case with ${frames} frames exited with code ${code}`))));
  });
}

async function main(): Promise<void> {
  const caseIndex = process.argv.indexOf('--case');
  if (caseIndex >= 0) {
    await runCase(process.argv[caseIndex + 2]!, Number(process.argv[caseIndex + 1]));
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'reelbot-bench-edit-'));
  try {
    const modelDir = join(dir, 'small-edit');
    await makeModelSet({ size: 'small', kind: 'instruct-edit', out: modelDir });
    const resolution = (JSON.parse(readFileSync(join(modelDir, 'reelbot.json'), 'utf8')) as { resolution: number }).resolution;
    const runs: CaseResult[] = [];
    for (let i = 0; i < CHILDREN_PER_CASE; i++) runs.push(await forkCase(modelDir, 8), await forkCase(modelDir, 32));
    const best = (frames: number): CaseResult => {
      const mine = runs.filter((run) => run.frames === frames);
      const fastest = mine.reduce((a, b) => (b.seconds < a.seconds ? b : a));
      return { ...fastest, maxRssMb: Math.max(...mine.map((run) => run.maxRssMb)) };
    };
    const eight = best(8);
    const thirtyTwo = best(32);
    const timeRatio = thirtyTwo.seconds / eight.seconds;
    const rssRatio = thirtyTwo.maxRssMb / eight.maxRssMb;
    process.stdout.write(
      `${JSON.stringify({
        bench: 'edit_scaling',
        model: 'small',
        frames_8_s: round(eight.seconds),
        frames_32_s: round(thirtyTwo.seconds),
        time_ratio: round(timeRatio),
        rss_8_mb: round(eight.maxRssMb, 1),
        rss_32_mb: round(thirtyTwo.maxRssMb, 1),
        rss_ratio: round(rssRatio),
        resolution,
        steps: 10,
        anchors: ANCHORS,
        chunk_size: CHUNK_SIZE,
        unet_calls_8: eight.unetCalls,
        unet_calls_32: thirtyTwo.unetCalls,
        unet_frames_per_step_8: framesPerStep(8),
        unet_frames_per_step_32: framesPerStep(32),
        unet_work_ratio: round(framesPerStep(32) / framesPerStep(8)),
        ort_8_s: round(eight.ortSeconds),
        ort_32_s: round(thirtyTwo.ortSeconds),
        time_target: TIME_TARGET,
        rss_target: RSS_TARGET,
        targets_met: timeRatio <= TIME_TARGET && rssRatio <= RSS_TARGET,
      })}\n`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
