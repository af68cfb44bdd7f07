/**
 * `reelbot render|edit --draws FILE --dump-latents DIR`: the operator's random draws reach the
 * engine in the worker process through the job core, and the dumped latents match diffusers' (the
 * golden fixtures) as closely as the in-process golden test does. Draws that do not fit are refused
 * with a clear message, and no platform but the CLI may set these options.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { ErrorCode } from '../../src/errors.js';
import { compareWithReference, copyPipelineFixture, GOLDEN, goldenCases, goldenClip, readTensors, reelbot, TOLERANCE, type GoldenCase } from '../helpers/golden.js';
import { alice, startService, video } from '../helpers/harness.js';

const { ffmpeg } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
const cases = await goldenCases();
const byName = (name: string): GoldenCase => cases.find((golden) => golden.name === name)!;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'reelbot-replay-'));
  await copyPipelineFixture(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const cli = (...args: string[]) => reelbot(dir, ...args);

async function expectMatches(dump: string, golden: GoldenCase): Promise<void> {
  const result = compareWithReference(await readTensors(join(GOLDEN, golden.reference)), await readTensors(join(dump, 'latents.safetensors')));
  expect(result.missing).toEqual([]);
  expect(result.points).toBeGreaterThanOrEqual(golden.timesteps.length);
  expect(result.worst, `worst latent error at ${result.at}`).toBeLessThanOrEqual(TOLERANCE.latent);
  expect(result.maxPixelDifference).toBeLessThanOrEqual(TOLERANCE.pixels);
}

test('reelbot render --draws replays diffusers\' Text2Video-Zero draws; --dump-latents writes every step', async () => {
  const golden = byName('t2v-10-steps');
  const input = golden.input as { prompt: string; motion: { dx: number; dy: number }; t0: number; t1: number };
  const dump = join(dir, 'render-dump');
  const { code, text } = await cli(
    'render', '--model', join(dir, 'sd'), '--prompt', input.prompt, '--frames', '8', '--steps', '10', '--guidance', '7.5',
    '--motion', `${input.motion.dx},${input.motion.dy}`, '--width', '64', '--height', '64', '--t0', String(input.t0), '--t1', String(input.t1),
    '--draws', join(GOLDEN, golden.draws), '--dump-latents', dump, '--out', join(dir, 'render.mp4'),
  );
  expect(code, text).toBe(0);
  await expectMatches(dump, golden);
}, 120_000);

test('reelbot edit --draws replays diffusers\' Instruct-Pix2Pix draws (3 anchors, Euler Ancestral) on a lossless clip', async () => {
  const golden = byName('edit-3-anchors-euler-ancestral');
  const input = golden.input as { instruction: string; guidanceScale: number; imageGuidanceScale: number };
  const clip = await goldenClip(golden.clip!);
  const raw = join(dir, 'clip.rgb');
  await writeFile(raw, Buffer.concat(clip.frames));
  const mp4 = join(dir, 'clip.mp4');
  // H.264 in RGB at qp 0: lossless, so the engine decodes the very frames diffusers edited.
  execFileSync(ffmpeg, ['-loglevel', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${clip.width}x${clip.height}`, '-r', '8', '-i', raw, '-c:v', 'libx264rgb', '-qp', '0', mp4]);
  const dump = join(dir, 'edit-dump');
  const { code, text } = await cli(
    'edit', '--model', join(dir, 'ip2p'), '--input', mp4, '--instruction', input.instruction, '--steps', '10', '--anchors', '3',
    '--scheduler', 'euler-ancestral', '--guidance', String(input.guidanceScale), '--image-guidance', String(input.imageGuidanceScale),
    '--resolution', '64', '--draws', join(GOLDEN, golden.draws), '--dump-latents', dump, '--out', join(dir, 'edit.mp4'),
  );
  expect(code, text).toBe(0);
  await expectMatches(dump, golden);

  // Draws for another job shape are refused by the engine with what it needed, and nothing is dumped.
  const wrong = await cli(
    'edit', '--model', join(dir, 'ip2p'), '--input', mp4, '--instruction', input.instruction, '--steps', '10', '--resolution', '64',
    '--draws', join(GOLDEN, 'draws-t2v.safetensors'), '--dump-latents', join(dir, 'no-dump'), '--out', join(dir, 'wrong.mp4'),
  );
  expect(wrong.code).toBe(1);
  expect(wrong.text).toContain('has `x_T` of shape [1, 4, 8, 8]; this 8-frame edit at 64×64 with 10 euler-ancestral steps needs [≥8, 4, 8, 8]');
  await expect(readFile(join(dir, 'no-dump', 'latents.safetensors'))).rejects.toThrow();
}, 120_000);

test('a draws file that is not one is refused before the job is queued; a dump folder that cannot be made is refused too', async () => {
  const bad = join(dir, 'bad.safetensors');
  await writeFile(bad, 'not a safetensors file at all');
  const { code, text } = await cli('render', '--model', join(dir, 'sd'), '--prompt', 'a corgi', '--draws', bad, '--out', join(dir, 'bad.mp4'));
  expect(code).toBe(2);
  expect(text).toContain(`--draws: The draws file ${bad} is not usable`);
  const missing = await cli('render', '--model', join(dir, 'sd'), '--prompt', 'a corgi', '--draws', join(dir, 'nope.safetensors'), '--out', join(dir, 'bad.mp4'));
  expect(missing.code).toBe(2);
  expect(missing.text).toContain('--draws: no file at');
  const blocked = join(dir, 'a-file');
  await writeFile(blocked, '');
  const unwritable = await cli('render', '--model', join(dir, 'sd'), '--prompt', 'a corgi', '--dump-latents', join(blocked, 'dump'), '--out', join(dir, 'bad.mp4'));
  expect(unwritable.code).toBe(2);
  expect(unwritable.text).toContain(`--dump-latents: the folder ${join(blocked, 'dump')} cannot be made (ENOTDIR).`);
  const late = await cli('render', '--model', join(dir, 'sd'), '--prompt', 'a corgi', '--t0', '49', '--out', join(dir, 'bad.mp4'));
  expect(late.code).toBe(2);
  expect(late.text).toContain('t0 must be a step index from 0 to 48 for 50 steps');
});

test('only the operator on the command line may set draws or dumpLatents', async () => {
  const harness = startService(join(dir, 'service'));
  try {
    await expect(harness.service.submit(video(alice, { draws: join(GOLDEN, 'draws-t2v.safetensors') }))).rejects.toMatchObject({
      code: ErrorCode.InvalidRequest,
      userMessage: 'The option draws can only be set by the operator on the command line.',
    });
    await expect(harness.service.submit(video(alice, { dumpLatents: '/tmp/x', draws: '/tmp/y' }))).rejects.toMatchObject({
      userMessage: 'The options draws, dumpLatents can only be set by the operator on the command line.',
    });
    const operator = await harness.service.submit(video({ platform: 'cli', externalId: 'operator' }, { dumpLatents: join(dir, 'service-dump') }));
    expect(operator.job.params.dumpLatents).toBe(join(dir, 'service-dump'));
  } finally {
    await harness.close();
  }
});
