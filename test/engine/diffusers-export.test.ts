/**
 * The cross-frame rewrite on a real diffusers export. test/fixtures/diffusers-unet was made on the
 * lent GPU machine by scripts/export-diffusers-unet-reference.py (torch 2.11, diffusers 0.40.0.dev0,
 * the TorchScript exporter that optimum-cli uses): a small UNet2DConditionModel with seeded random
 * weights in the SD 1.x block layout (4 heads), and its outputs computed in torch with plain
 * attention and with Text2Video-Zero's CrossFrameAttnProcessor (keys and values from frame 0 of each
 * guidance group). The one rewritten graph must give torch's plain output with per-frame indices,
 * its cross-frame output with shared anchors, and the same again when the anchor runs alone and
 * hands its keys/values to the other frames (the clip edit's anchor pass and chunk pass).
 */
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inspectSelfAttention } from '../../src/engine/onnx/cross-frame.js';
import { crossFrameFeeds, exportedKvNames, importExportedKv, perFrame } from '../../src/engine/onnx/cross-frame-feeds.js';
import { loadRewrittenUnet } from '../../src/engine/onnx/cross-frame-file.js';
import { readModelFile } from '../../src/engine/onnx/proto.js';
import { createSession, releaseSession, type Tensor } from '../../src/engine/onnx/session.js';
import { float32Tensor, int64Tensor } from '../../src/engine/onnx/tensor.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/diffusers-unet/', import.meta.url));

interface Stored {
  file: string;
  dims: number[];
}
interface Case {
  groups: number;
  frames: number;
  sample: Stored;
  encoder_hidden_states: Stored;
  plain: Stored;
  cross_frame: Stored;
}
interface Reference {
  torch: string;
  diffusers: string;
  heads: number;
  timestep: number;
  cases: Case[];
}

const SESSION = { device: 'cpu', intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: false } as const;

let reference: Reference;
let dir: string;

async function values(stored: Stored): Promise<Float32Array> {
  const bytes = await readFile(join(FIXTURE, stored.file));
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4).slice();
}

function maxAbsDifference(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

beforeAll(async () => {
  reference = JSON.parse(await readFile(join(FIXTURE, 'reference.json'), 'utf8')) as Reference;
  dir = await mkdtemp(join(tmpdir(), 'reelbot-diffusers-'));
  await copyFile(join(FIXTURE, 'unet', 'model.onnx'), join(dir, 'model.onnx'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('cross-frame rewrite on a diffusers UNet exported by torch', () => {
  it('finds every self-attention block, its 4 heads from the graph and the default scale', async () => {
    const { model } = await readModelFile(join(dir, 'model.onnx'));
    const blocks = inspectSelfAttention(model);
    expect(blocks.map((block) => block.name)).toEqual([
      '/down_blocks.0/attentions.0/transformer_blocks.0/attn1',
      '/mid_block/attentions.0/transformer_blocks.0/attn1',
      '/up_blocks.1/attentions.0/transformer_blocks.0/attn1',
      '/up_blocks.1/attentions.1/transformer_blocks.0/attn1',
    ]);
    for (const block of blocks) expect(block).toMatchObject({ heads: reference.heads, headsFrom: 'graph', scale: 'default' });
  });

  it.each([1, 2, 3])('with %i guidance group(s), one session matches torch’s plain and CrossFrameAttnProcessor outputs', async (groups) => {
    const c = reference.cases.find((entry) => entry.groups === groups)!;
    const frames = c.frames;
    const batch = groups * frames;
    const sample = await values(c.sample);
    const context = await values(c.encoder_hidden_states);
    const perItem = { sample: sample.length / batch, context: context.length / batch };
    /** Frames `from…from+count−1` of every guidance group, and their feeds. */
    const pick = (data: Float32Array, size: number, from: number, count: number): Float32Array => {
      const out = new Float32Array(groups * count * size);
      for (let g = 0; g < groups; g++) out.set(data.subarray((g * frames + from) * size, (g * frames + from + count) * size), g * count * size);
      return out;
    };
    const feedsFor = (from: number, count: number) => ({
      sample: float32Tensor(pick(sample, perItem.sample, from, count), [groups * count, ...c.sample.dims.slice(1)]),
      timestep: int64Tensor([reference.timestep], [1]),
      encoder_hidden_states: float32Tensor(pick(context, perItem.context, from, count), [groups * count, ...c.encoder_hidden_states.dims.slice(1)]),
    });
    const plainSession = (await createSession(join(dir, 'model.onnx'), SESSION)).session;
    const rewritten = await loadRewrittenUnet(join(dir, 'model.onnx'));
    expect(rewritten.blocks).toHaveLength(4);
    const blocks = rewritten.blocks.length;
    const session = (await createSession(rewritten.path, SESSION)).session;
    try {
      const feeds = feedsFor(0, frames);
      const call = { blocks, kvType: 'float32' as const };
      const plain = (await plainSession.run(feeds)).out_sample!.data as Float32Array;
      const perFrameOut = (await session.run({ ...feeds, ...crossFrameFeeds({ ...call, ...perFrame(batch) }) }, ['out_sample'])).out_sample!.data as Float32Array;
      const crossed = (await session.run({ ...feeds, ...crossFrameFeeds({ ...call, batch, framesPerGroup: frames, anchors: [0] }) }, ['out_sample'])).out_sample!.data as Float32Array;
      // The anchor (frame 0) alone, handing back its keys/values; then frames 1… importing them.
      const anchorRun = await session.run(
        { ...feedsFor(0, 1), ...crossFrameFeeds({ ...call, batch: groups, framesPerGroup: 1, anchors: [0], exportFrames: [0] }) },
        ['out_sample', ...exportedKvNames(blocks)],
      );
      const kv = importExportedKv(anchorRun as Record<string, Tensor>, blocks);
      const others = (await session.run(
        { ...feedsFor(1, frames - 1), ...crossFrameFeeds({ ...call, batch: groups * (frames - 1), framesPerGroup: frames - 1, anchors: [], imported: kv }) },
        ['out_sample'],
      )).out_sample!.data as Float32Array;
      const torchPlain = await values(c.plain);
      const torchCross = await values(c.cross_frame);
      const outSize = torchCross.length / batch;
      // The export itself runs as torch did …
      expect(maxAbsDifference(plain, torchPlain)).toBeLessThan(1e-4);
      // … the rewritten graph with per-frame indices is the same plain UNet …
      expect(maxAbsDifference(perFrameOut, torchPlain)).toBeLessThan(1e-4);
      // … and with shared anchors gives torch's cross-frame attention, which is far from the plain output …
      expect(maxAbsDifference(crossed, torchCross)).toBeLessThan(1e-4);
      expect(maxAbsDifference(torchCross, torchPlain)).toBeGreaterThan(0.1);
      // … as does the anchor pass plus a chunk pass that imports the anchor's keys/values.
      expect(maxAbsDifference(anchorRun.out_sample!.data as Float32Array, pick(torchCross, outSize, 0, 1))).toBeLessThan(1e-4);
      expect(maxAbsDifference(others, pick(torchCross, outSize, 1, frames - 1))).toBeLessThan(1e-4);
      console.info(
        `diffusers UNet, ${groups} group(s): per-frame vs torch plain ${maxAbsDifference(perFrameOut, torchPlain).toExponential(2)}, ` +
          `cross-frame vs torch ${maxAbsDifference(crossed, torchCross).toExponential(2)}, imported K/V vs torch ${maxAbsDifference(others, pick(torchCross, outSize, 1, frames - 1)).toExponential(2)}`,
      );
    } finally {
      await releaseSession(plainSession);
      await releaseSession(session);
    }
  });
});
