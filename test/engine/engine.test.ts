import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { main } from '../../src/cli.js';
import { makeModelSet } from '../../src/engine/models/make.js';
import { probeVideo } from '../../src/media/probe.js';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { alice, isType, removeDir, startService, tempDir, type Harness } from '../helpers/harness.js';
import { gradientPng } from '../helpers/pictures.js';

let dir: string;
let modelDir: string;
const { ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });

beforeAll(async () => {
  dir = tempDir();
  modelDir = join(dir, 'tiny');
  await makeModelSet({ size: 'tiny', kind: 'text2video', out: modelDir });
});
afterAll(() => removeDir(dir));

test('a text2video job runs in a worker process on the built-in engine and yields an MP4, smoothed to 24 fps, with live previews', async () => {
  const h: Harness = startService(join(dir, 'service'), { engineModule: '', modelDir, previews: { intervalSeconds: 0.01 } });
  try {
    const { job } = await h.service.submit({
      actor: alice,
      kind: 'text2video',
      params: { prompt: 'a corgi surfing at sunset', numFrames: 5, numInferenceSteps: 12, durationSeconds: 1.5 },
      seed: 11,
    });
    const done = await h.waitFor(isType('succeeded', job.id));
    const result = (done.type === 'succeeded' ? done.result : {}) as { file: string; frames: number; width: number; height: number; thumbnail: string };
    // A built-in set (reelbot.json says untrained): the result says so, for the bots to tell the user.
    expect(result).toMatchObject({ frames: 5, width: 64, height: 64, fps: 24, durationSeconds: 1.5, smooth: true, untrainedWeights: true });
    // 5 made frames over the asked 1.5 s, interpolated to 24 fps: 36 frames.
    const info = await probeVideo(result.file, ffprobe);
    expect(info).toMatchObject({ codec: 'h264', pixelFormat: 'yuv420p', frames: 36, width: 64, height: 64, fps: 24 });
    expect(info.durationSeconds).toBeCloseTo(1.5, 1);
    expect(readFileSync(result.thumbnail).subarray(1, 4).toString()).toBe('PNG');
    // Denoising progress reached the bot adapters, step by step, some of it with a preview PNG of
    // frames projected from the latents; none once denoising is over.
    const progress = h.events.filter(isType('progress', job.id)).map((e) => e.progress);
    expect(progress.some((p) => p.stage === 'denoising')).toBe(true);
    const previews = progress.filter((p) => p.preview !== undefined);
    expect(previews.length).toBeGreaterThan(0);
    expect(previews.every((p) => p.stage === 'denoising')).toBe(true);
    const png = Buffer.from(previews.at(-1)!.preview!.png, 'base64');
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    // A preview due right after a step's anchor call shows frame 0 alone; the others show the strip.
    expect(previews.map((p) => p.preview)).toContainEqual(expect.objectContaining({ frames: [0, 1, 3, 4], width: 4 * 128, height: 128 }));
    // Too many frames for the user's tier: refused at submit with what to lower, before any job exists.
    const jobsBefore = h.db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number };
    await expect(h.service.submit({ actor: alice, kind: 'text2video', params: { prompt: 'x', numFrames: 500 } })).rejects.toMatchObject({
      userMessage: expect.stringMatching(/this one asks for 500\. Lower the frames to 16 or fewer/),
    });
    expect(h.db.prepare('SELECT count(*) AS n FROM jobs').get()).toEqual(jobsBefore);
    // A size the UNet cannot take (the tiny UNet wants multiples of 16): a clear message, not an ORT shape error.
    const odd = await h.service.submit({ actor: alice, kind: 'text2video', params: { prompt: 'x', numFrames: 2, numInferenceSteps: 2, width: 72 } });
    const oddFailed = await h.waitFor(isType('failed', odd.job.id));
    expect(oddFailed).toMatchObject({ code: 'invalid_request', refunded: true });
    expect(oddFailed.type === 'failed' && oddFailed.message).toMatch(/^The width must be a multiple of 16 pixels for this model's UNet, not 72 \(try 80\)\./);
  } finally {
    await h.close();
  }
});

test('reelbot render: the whole path from the command line to a decodable MP4', async () => {
  const out = join(dir, 'render', 'clip.mp4');
  const lines: string[] = [];
  const sink = { write: (text: string) => lines.push(text) };
  const env = { REELBOT_DB_PATH: join(dir, 'render.db'), REELBOT_OUTPUT_DIR: join(dir, 'render-outputs') };
  const code = await main(['node', 'reelbot', 'render', '--prompt', 'a corgi', '--model', modelDir, '--frames', '3', '--steps', '3', '--seed', '42', '--fps', '3', '--no-smooth', '--out', out], { stdout: sink, stderr: sink, env });
  expect(code, lines.join('')).toBe(0);
  expect(lines.join('')).toMatch(/seed 42/);
  expect(lines.join('')).toContain('Note: made with untrained demo weights (a built-in set)');
  expect(await probeVideo(out, ffprobe)).toMatchObject({ frames: 3, width: 64, height: 64, fps: 3 });

  const bad = async (...args: string[]) => {
    const output: string[] = [];
    const status = await main(['node', 'reelbot', 'render', ...args], { stdout: { write: (t: string) => output.push(t) }, stderr: { write: (t: string) => output.push(t) }, env });
    return { status, text: output.join('') };
  };
  expect(await bad('--prompt', 'x', '--out', 'x.avi')).toMatchObject({ status: 2, text: expect.stringMatching(/--out must end in .mp4 or .gif/) });
  expect(await bad('--prompt', 'x', '--steps', 'many', '--out', 'x.mp4')).toMatchObject({ status: 2 });
  expect(await bad('--prompt', 'x', '--motion', '1', '--out', 'x.mp4')).toMatchObject({ status: 2, text: expect.stringMatching(/dx,dy/) });
  expect(await bad('--prompt', 'x', '--model', dir, '--out', 'x.mp4')).toMatchObject({ status: 2, text: expect.stringMatching(/not a complete Stable Diffusion export/) });
  expect(await bad('--out', 'x.mp4')).toMatchObject({ status: 2, text: expect.stringMatching(/--prompt/) });
  expect(await bad('--prompt', 'x', '--model', modelDir, '--width', '72', '--out', 'x.mp4')).toMatchObject({
    status: 2,
    text: expect.stringContaining("--width must be a multiple of 16 pixels for this model's UNet, not 72 (try 80)."),
  });
  expect(existsSync('x.mp4')).toBe(false);
});

test('reelbot render --aspect and --image: a size the model takes, a picture animated in its own shape, a hostile one refused', async () => {
  const lines: string[] = [];
  const sink = { write: (text: string) => lines.push(text) };
  const env = { REELBOT_DB_PATH: join(dir, 'render-picture.db'), REELBOT_OUTPUT_DIR: join(dir, 'render-picture-outputs') };
  const bad = async (...args: string[]) => {
    const output: string[] = [];
    const status = await main(['node', 'reelbot', 'render', ...args], { stdout: { write: (t: string) => output.push(t) }, stderr: { write: (t: string) => output.push(t) }, env });
    return { status, text: output.join('') };
  };
  // --aspect picks a size the model takes: 16:9 on the 64-pixel tiny set (sides in 16s) is 80×48.
  const wide = join(dir, 'render', 'wide.mp4');
  expect(await main(['node', 'reelbot', 'render', '--prompt', 'a corgi', '--model', modelDir, '--frames', '2', '--steps', '3', '--aspect', '16:9', '--out', wide], { stdout: sink, stderr: sink, env }), lines.join('')).toBe(0);
  expect(await probeVideo(wide, ffprobe)).toMatchObject({ width: 80, height: 48, fps: 24, frames: 12 });

  // --image animates a picture: a 2:1 one stays 2:1 (64×32 on the tiny set), at the asked duration.
  const picture = join(dir, 'render', 'picture.png');
  writeFileSync(picture, gradientPng(200, 100));
  const animated = join(dir, 'render', 'animated.mp4');
  expect(await main(['node', 'reelbot', 'render', '--prompt', 'a corgi', '--model', modelDir, '--image', picture, '--strength', '0.6', '--frames', '3', '--steps', '10', '--duration', '1', '--out', animated], { stdout: sink, stderr: sink, env }), lines.join('')).toBe(0);
  const animatedInfo = await probeVideo(animated, ffprobe);
  expect(animatedInfo).toMatchObject({ width: 64, height: 32, fps: 24, frames: 24 });
  expect(animatedInfo.width / animatedInfo.height).toBe(200 / 100);

  // A hostile "picture" is refused with the reason, and nothing is written.
  const svg = join(dir, 'render', 'cat.png');
  writeFileSync(svg, '<svg xmlns="http://www.w3.org/2000/svg"><image href="http://127.0.0.1:9/x.png"/></svg>');
  expect(await bad('--prompt', 'x', '--model', modelDir, '--image', svg, '--out', join(dir, 'render', 'svg.mp4'))).toMatchObject({ status: 1, text: expect.stringContaining('it looks like an SVG drawing') });
  expect(existsSync(join(dir, 'render', 'svg.mp4'))).toBe(false);
  expect(await bad('--prompt', 'x', '--image', picture, '--aspect', '16:9', '--out', 'x.mp4')).toMatchObject({ status: 2, text: expect.stringContaining('A picture keeps its own shape') });
  expect(await bad('--prompt', 'x', '--aspect', '16-9', '--out', 'x.mp4')).toMatchObject({ status: 2, text: expect.stringContaining('two whole numbers like 16:9') });
  expect(await bad('--prompt', 'x', '--no-smooth', '--fps', '8', '--duration', '2', '--out', 'x.mp4')).toMatchObject({ status: 2, text: expect.stringContaining('not both') });
}, 120_000);

test('a broken model folder fails the job with a message that does not leak server paths', async () => {
  const h: Harness = startService(join(dir, 'broken'), { engineModule: '', modelDir: join(dir, 'no-such-model') });
  try {
    const { job } = await h.service.submit({ actor: alice, kind: 'text2video', params: { prompt: 'x', numFrames: 2, numInferenceSteps: 2 } });
    const failed = await h.waitFor(isType('failed', job.id));
    expect(failed).toMatchObject({ code: 'engine_unavailable', refunded: true });
    expect(failed.type === 'failed' && failed.message).toBe(
      "The text-to-video model on this server could not be loaded. The operator can see why in the bot's log.",
    );
  } finally {
    await h.close();
  }
});
