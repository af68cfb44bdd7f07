/**
 * reelbot's model loading and both pipelines on graphs that torch's exporter wrote from the real
 * diffusers / transformers modules (test/fixtures/diffusers-pipeline, seeded random weights, the
 * optimum folder layout): the folder check reads it, `reelbot render` makes a 512×512 video
 * with cross-frame attention, and `reelbot edit` edits that video with the 8-channel UNet.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { main } from '../../src/cli.js';
import { inspectModelFolder } from '../../src/engine/onnx/model-folder.js';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { probeVideo } from '../../src/media/probe.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/diffusers-pipeline/', import.meta.url));
const { ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });

let dir: string;
let sd: string;
let ip2p: string;

beforeAll(async () => {
  // Copies: the cross-frame rewrite writes its graph beside the UNet.
  dir = await mkdtemp(join(tmpdir(), 'reelbot-diffusers-pipeline-'));
  sd = join(dir, 'sd');
  ip2p = join(dir, 'ip2p');
  await cp(join(FIXTURE, 'sd'), sd, { recursive: true });
  await cp(join(FIXTURE, 'sd'), ip2p, { recursive: true });
  await rm(join(ip2p, 'unet'), { recursive: true });
  await cp(join(FIXTURE, 'ip2p', 'unet'), join(ip2p, 'unet'), { recursive: true });
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function cli(...args: string[]): Promise<{ code: number; text: string }> {
  const lines: string[] = [];
  const sink = { write: (text: string) => lines.push(text) };
  const env = { REELBOT_DB_PATH: join(dir, 'reelbot.db'), REELBOT_OUTPUT_DIR: join(dir, 'outputs') };
  const code = await main(['node', 'reelbot', ...args], { stdout: sink, stderr: sink, env });
  return { code, text: lines.join('') };
}

test('the folder check reads the torch exports: int32 ids, int64 timestep, 7 self-attention blocks with 4 heads from the graph', async () => {
  const info = await inspectModelFolder(sd);
  expect(info.textEncoder).toMatchObject({ idsType: 'int32', hiddenWidth: 32 });
  expect(info.unet).toMatchObject({ kind: 'text-to-image', inChannels: 4, contextWidth: 32, timestep: { elemType: 'int64', rank: 1 } });
  expect(info.unet.selfAttention).toHaveLength(7);
  for (const block of info.unet.selfAttention) expect(block).toMatchObject({ heads: 4, headsFrom: 'graph' });
  expect((await inspectModelFolder(ip2p)).unet).toMatchObject({ kind: 'instruct-edit', inChannels: 8 });
});

test('reelbot render and reelbot edit run on the exports, end to end', async () => {
  const made = join(dir, 'made.mp4');
  const render = await cli('render', '--model', sd, '--prompt', 'a corgi surfing', '--frames', '3', '--steps', '3', '--fps', '3', '--no-smooth', '--seed', '1', '--out', made);
  expect(render.code, render.text).toBe(0);
  // A real export (no reelbot.json): no untrained-weights note.
  expect(render.text).not.toContain('untrained');
  expect(await probeVideo(made, ffprobe)).toMatchObject({ codec: 'h264', frames: 3, width: 512, height: 512, fps: 3 });

  const edited = join(dir, 'edited.mp4');
  const edit = await cli('edit', '--model', ip2p, '--input', made, '--instruction', 'make it snowy', '--steps', '3', '--anchors', '2', '--seed', '1', '--out', edited);
  expect(edit.code, edit.text).toBe(0);
  expect(await probeVideo(edited, ffprobe)).toMatchObject({ codec: 'h264', frames: 3, width: 512, height: 512 });
}, 120_000);
