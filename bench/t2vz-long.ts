/**
 * Long Text2Video-Zero videos (part of `npm run bench:engine`): 8 and 240 frames on the built-in
 * `small` set, each in a fresh child process (this file forked with `--case <frames> <modelDir>
 * <steps>` under tsx) so that its peak RSS (`process.resourceUsage().maxRSS`) is its own. Each
 * child loads the set, warms up on 2 frames, then times one `pipeline.run` (model loading
 * excluded). Frame 0 runs once per step as the anchor and the other frames in chunks of 7 that
 * import its keys/values, so time should grow with the frames (240 / 8 = 30×; target ≤ 33×) and
 * memory should stay flat (target ≤ 1.3×): only the latents and the decoded frames grow.
 */
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StableDiffusionComponents } from '../src/engine/pipelines/sd-components.js';
import { TextToVideoZeroPipeline } from '../src/engine/pipelines/text-to-video-zero.js';

export const LONG_TIME_TARGET = 33;
export const LONG_RSS_TARGET = 1.3;

interface LongCase {
  frames: number;
  seconds: number;
  maxRssMb: number;
  unetCalls: number;
}

async function runCase(modelDir: string, frames: number, steps: number): Promise<void> {
  const components = await StableDiffusionComponents.load(modelDir, { device: 'cpu', onnx: { intraOpThreads: 0, interOpThreads: 1, fallbackToCpu: true }, groups: 2 });
  const pipeline = new TextToVideoZeroPipeline(components);
  await pipeline.run({ prompt: 'warm-up', seed: 1, numFrames: 2, numInferenceSteps: 3 });
  const started = performance.now();
  const result = await pipeline.run({ prompt: 'a panda surfing a wave at sunset, high quality', seed: 42, numFrames: frames, numInferenceSteps: steps });
  const seconds = (performance.now() - started) / 1000;
  const message: LongCase = { frames, seconds, maxRssMb: process.resourceUsage().maxRSS / 1024, unetCalls: result.unetCalls };
  await components.release();
  process.send?.(message);
}

function forkCase(modelDir: string, frames: number, steps: number): Promise<LongCase> {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--case', String(frames), modelDir, String(steps)], { execArgv: ['--import', tsx], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    let result: LongCase | undefined;
    child.on('message', (message) => {
      result = message as LongCase;
    });
    child.on('error', reject);
    child.on('exit', (code) => (result && code === 0 ? resolve(result) : reject(new Error(`t2vz_long case with ${frames} frames exited with code ${code}`))));
  });
}

const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

/** The `t2vz_long` line: 8 frames, then 240, at `steps` steps on the set in `modelDir`. */
export async function longBench(modelDir: string, steps: number): Promise<Record<string, unknown>> {
  const eight = await forkCase(modelDir, 8, steps);
  const long = await forkCase(modelDir, 240, steps);
  const timeRatio = long.seconds / eight.seconds;
  const rssRatio = long.maxRssMb / eight.maxRssMb;
  return {
    bench: 't2vz_long',
    model: 'small',
    steps,
    frames_8_s: round(eight.seconds),
    frames_240_s: round(long.seconds),
    time_ratio: round(timeRatio),
    rss_8_mb: round(eight.maxRssMb, 1),
    rss_240_mb: round(long.maxRssMb, 1),
    rss_ratio: round(rssRatio),
    unet_calls_8: eight.unetCalls,
    unet_calls_240: long.unetCalls,
    time_target: LONG_TIME_TARGET,
    rss_target: LONG_RSS_TARGET,
    targets_met: timeRatio <= LONG_TIME_TARGET && rssRatio <= LONG_RSS_TARGET,
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const caseIndex = process.argv.indexOf('--case');
  if (caseIndex >= 0) await runCase(process.argv[caseIndex + 2]!, Number(process.argv[caseIndex + 1]), Number(process.argv[caseIndex + 3]));
}
