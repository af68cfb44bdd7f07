/**
 * The cross-frame rewrite on a real diffusers export. test/fixtures/diffusers-unet was made on the
 * lent GPU machine by scripts/export-diffusers-unet-reference.py (torch 2.11, diffusers 0.40.0.dev0,
 * the TorchScript exporter that optimum-cli uses): a small UNet2DConditionModel with seeded random
 * weights in the SD 1.x block layout (4 heads), and its outputs computed in torch with plain
 * attention and with Text2Video-Zero's CrossFrameAttnProcessor (keys and values from frame 0 of each
 * guidance group). The rewritten graph must give torch's cross-frame output.
 */
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crossFrameAnchors, inspectSelfAttention, loadRewrittenUnet } from '../../src/engine/onnx/cross-frame.js';
import { readModelFile } from '../../src/engine/onnx/proto.js';
import { createSession, releaseSession } from '../../src/engine/onnx/session.js';
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

  it.each([1, 2, 3])('with %i guidance group(s), matches torch’s CrossFrameAttnProcessor output', async (groups) => {
    const c = reference.cases.find((entry) => entry.groups === groups)!;
    const batch = groups * c.frames;
    const feeds = {
      sample: float32Tensor(await values(c.sample), c.sample.dims),
      timestep: int64Tensor([reference.timestep], [1]),
      encoder_hidden_states: float32Tensor(await values(c.encoder_hidden_states), c.encoder_hidden_states.dims),
    };
    const plainSession = (await createSession(join(dir, 'model.onnx'), SESSION)).session;
    const rewritten = await loadRewrittenUnet(join(dir, 'model.onnx'), { groups });
    expect(rewritten.blocks).toHaveLength(4);
    const crossSession = (await createSession(rewritten.path, SESSION)).session;
    try {
      const plain = (await plainSession.run(feeds)).out_sample!.data as Float32Array;
      const crossed = (await crossSession.run({ ...feeds, cross_frame_anchors: crossFrameAnchors([0], { batch, groups }) })).out_sample!.data as Float32Array;
      const torchPlain = await values(c.plain);
      const torchCross = await values(c.cross_frame);
      // The export itself runs as torch did …
      expect(maxAbsDifference(plain, torchPlain)).toBeLessThan(1e-4);
      // … and the rewrite gives torch's cross-frame attention, which is far from the plain output.
      expect(maxAbsDifference(crossed, torchCross)).toBeLessThan(1e-4);
      expect(maxAbsDifference(torchCross, torchPlain)).toBeGreaterThan(0.1);
    } finally {
      await releaseSession(plainSession);
      await releaseSession(crossSession);
    }
  });
});
