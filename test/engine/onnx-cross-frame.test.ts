import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { anchorKvName, CROSS_FRAME_ANCHORS_INPUT, CROSS_FRAME_EXPORT_INPUT, CROSS_FRAME_GROUP_INPUT, exportedKvName, inspectSelfAttention, rewriteCrossFrameAttention, UnknownHeadsError } from '../../src/engine/onnx/cross-frame.js';
import { crossFrameFeeds, exportedKvNames, importExportedKv, perFrame } from '../../src/engine/onnx/cross-frame-feeds.js';
import { CrossFrameUnavailableError, loadRewrittenUnet } from '../../src/engine/onnx/cross-frame-file.js';
import { DataType, encodeModel, float32Initializer, int64Initializer, makeNode, makeValueInfo, onnx } from '../../src/engine/onnx/proto.js';
import { createSession, releaseSession, type InferenceSession, type Tensor } from '../../src/engine/onnx/session.js';
import { float32Tensor, int64Tensor } from '../../src/engine/onnx/tensor.js';

// ---------------------------------------------------------------------------------------------
// A small UNet-like graph: two self-attention blocks and one text cross-attention block, built
// the way torch.onnx exports diffusers' Attention (node names, head split, Softmax core).

const N = 16; // tokens per frame
const C = 32; // width
const H = 4; // heads
const D = C / H;
const L = 8; // context tokens
const CC = 24; // context width

type HeadSplit = 'initializer' | 'constant' | 'concat' | 'runtime';
type ScaleStyle = 'single' | 'sqrt' | { custom: number };

interface BlockSpec {
  prefix: string;
  self: boolean;
  headSplit: HeadSplit;
  scale: ScaleStyle;
}

interface BlockWeights {
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  bo: Float32Array;
  scale: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomArray(random: () => number, n: number, amplitude: number): Float32Array {
  return Float32Array.from({ length: n }, () => (random() * 2 - 1) * amplitude);
}

class GraphBuilder {
  nodes: onnx.NodeProto[] = [];
  initializers: onnx.TensorProto[] = [];
  #weights = 0;
  #counters = new Map<string, number>();

  /** torch-style node name: `<scope>/<Op>`, `<scope>/<Op>_1`… and output `<name>_output_0`. */
  op(scope: string, opType: string, inputs: string[], attrs: Parameters<typeof makeNode>[3] = {}, domain?: string): string {
    const key = `${scope}/${opType}`;
    const count = this.#counters.get(key) ?? 0;
    this.#counters.set(key, count + 1);
    const name = count === 0 ? key : `${key}_${count}`;
    const out = `${name}_output_0`;
    this.nodes.push(makeNode(opType, inputs, [out], attrs, { name, ...(domain ? { domain } : {}) }));
    return out;
  }

  named(name: string, opType: string, inputs: string[]): string {
    const out = `${name}_output_0`;
    this.nodes.push(makeNode(opType, inputs, [out], {}, { name }));
    return out;
  }

  weight(dims: number[], values: Float32Array): string {
    const name = `onnx::MatMul_${1000 + this.#weights++}`;
    this.initializers.push(float32Initializer(name, dims, values));
    return name;
  }

  ints(name: string, values: number[], dims: number[] = [values.length]): string {
    if (!this.initializers.some((i) => i.name === name)) this.initializers.push(int64Initializer(name, dims, values));
    return name;
  }

  floats(name: string, value: number): string {
    if (!this.initializers.some((i) => i.name === name)) this.initializers.push(float32Initializer(name, [], [value]));
    return name;
  }

  constant(scope: string, values: number[]): string {
    const t = int64Initializer('value', [values.length], values);
    return this.op(scope, 'Constant', [], { value: t });
  }

  headSplit(scope: string, t: string, style: HeadSplit): string {
    let shape: string;
    switch (style) {
      case 'initializer':
        shape = this.ints(`${scope}/split_shape`, [0, -1, H, D]);
        break;
      case 'constant':
        shape = this.constant(scope, [0, -1, H, D]);
        break;
      case 'concat': {
        // torch: view(batch_size, -1, heads, head_dim) with batch_size read at run time.
        const batch = this.op(scope, 'Gather', [this.op(scope, 'Shape', [t]), this.ints('scalar_0', [0], [])], { axis: 0 });
        const b = this.op(scope, 'Unsqueeze', [batch, this.ints('axes_0', [0])]);
        shape = this.op(scope, 'Concat', [b, this.constant(scope, [-1]), this.constant(scope, [H]), this.constant(scope, [D])], { axis: 0 });
        break;
      }
      case 'runtime': {
        // Heads and head size both computed from the width at run time: nothing constant to read.
        const shp = this.op(scope, 'Shape', [t]);
        const batch = this.op(scope, 'Unsqueeze', [this.op(scope, 'Gather', [shp, this.ints('scalar_0', [0], [])], { axis: 0 }), this.ints('axes_0', [0])]);
        const width = this.op(scope, 'Gather', [shp, this.ints('scalar_2', [2], [])], { axis: 0 });
        const heads = this.op(scope, 'Unsqueeze', [this.op(scope, 'Div', [width, this.ints('scalar_d', [D], [])]), this.ints('axes_0', [0])]);
        const headDim = this.op(scope, 'Unsqueeze', [this.op(scope, 'Div', [width, this.ints('scalar_h', [H], [])]), this.ints('axes_0', [0])]);
        shape = this.op(scope, 'Concat', [batch, this.ints('minus_one', [-1]), heads, headDim], { axis: 0 });
        break;
      }
    }
    const reshaped = this.op(scope, 'Reshape', [t, shape]);
    return this.op(scope, 'Transpose', [reshaped], { perm: [0, 2, 1, 3] });
  }

  attention(spec: BlockSpec, x: string, ctx: string, random: () => number): { out: string; weights: BlockWeights } {
    const p = spec.prefix;
    const cin = spec.self ? C : CC;
    const weights: BlockWeights = {
      wq: randomArray(random, C * C, 1.5 / Math.sqrt(C)),
      wk: randomArray(random, cin * C, 1.5 / Math.sqrt(cin)),
      wv: randomArray(random, cin * C, 1 / Math.sqrt(cin)),
      wo: randomArray(random, C * C, 1 / Math.sqrt(C)),
      bo: randomArray(random, C, 0.1),
      scale: typeof spec.scale === 'object' ? spec.scale.custom : 1 / Math.sqrt(D),
    };
    const q = this.named(`${p}/to_q/MatMul`, 'MatMul', [x, this.weight([C, C], weights.wq)]);
    const k = this.named(`${p}/to_k/MatMul`, 'MatMul', [ctx, this.weight([cin, C], weights.wk)]);
    const v = this.named(`${p}/to_v/MatMul`, 'MatMul', [ctx, this.weight([cin, C], weights.wv)]);
    let qh = this.headSplit(p, q, spec.headSplit);
    const kh = this.headSplit(p, k, spec.headSplit);
    const vh = this.headSplit(p, v, spec.headSplit);
    let kt = this.op(p, 'Transpose', [kh], { perm: [0, 1, 3, 2] });
    let scores: string;
    if (spec.scale === 'sqrt') {
      // F.scaled_dot_product_attention's export: √scale on q and on kᵀ.
      const root = this.floats(`${p}/sqrt_scale`, Math.sqrt(weights.scale));
      qh = this.op(p, 'Mul', [qh, root]);
      kt = this.op(p, 'Mul', [kt, root]);
      scores = this.op(p, 'MatMul', [qh, kt]);
    } else {
      scores = this.op(p, 'Mul', [this.op(p, 'MatMul', [qh, kt]), this.floats(`${p}/scale`, weights.scale)]);
    }
    const probs = this.named(`${p}/Softmax`, 'Softmax', [scores]);
    this.nodes[this.nodes.length - 1]?.attribute.push(onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }));
    const mixed = this.op(p, 'MatMul', [probs, vh]);
    const merged = this.op(p, 'Reshape', [this.op(p, 'Transpose', [mixed], { perm: [0, 2, 1, 3] }), this.ints(`${p}/merge_shape`, [0, -1, C])]);
    const projected = this.named(`${p}/to_out/to_out.0/MatMul`, 'MatMul', [merged, this.weight([C, C], weights.wo)]);
    const out = this.named(`${p}/to_out/to_out.0/Add`, 'Add', [this.weight([C], weights.bo), projected]);
    return { out, weights };
  }
}

interface TestNet {
  model: onnx.ModelProto;
  bias0: Float32Array;
  blocks: { spec: BlockSpec; weights: BlockWeights }[];
}

const SELF_A = '/down_blocks.0/attentions.0/transformer_blocks.0/attn1';
const CROSS_A = '/down_blocks.0/attentions.0/transformer_blocks.0/attn2';
const SELF_B = '/mid_block/attentions.0/transformer_blocks.0/attn1';

function buildNet(specs: BlockSpec[], seed = 1): TestNet {
  const random = rng(seed);
  const g = new GraphBuilder();
  const bias0 = randomArray(random, C, 0.5);
  let h = g.named('/pre/Add', 'Add', ['hidden_states', g.weight([C], bias0)]);
  const blocks: TestNet['blocks'] = [];
  for (const spec of specs) {
    const { out, weights } = g.attention(spec, h, spec.self ? h : 'encoder_hidden_states', random);
    h = g.named(`${spec.prefix.slice(0, spec.prefix.lastIndexOf('/'))}/Add_${blocks.length}`, 'Add', [h, out]);
    blocks.push({ spec, weights });
  }
  g.nodes.push(makeNode('Identity', [h], ['out_sample'], {}, { name: '/out/Identity' }));
  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'reelbot-test',
    opsetImport: [{ domain: '', version: 17 }],
    graph: onnx.GraphProto.create({
      name: 'net',
      node: g.nodes,
      initializer: g.initializers,
      input: [makeValueInfo('hidden_states', DataType.FLOAT, ['batch', N, C]), makeValueInfo('encoder_hidden_states', DataType.FLOAT, ['batch', L, CC])],
      output: [makeValueInfo('out_sample', DataType.FLOAT, ['batch', N, C])],
    }),
  });
  return { model, bias0, blocks };
}

const DEFAULT_SPECS: BlockSpec[] = [
  { prefix: SELF_A, self: true, headSplit: 'initializer', scale: 'single' },
  { prefix: CROSS_A, self: false, headSplit: 'constant', scale: 'single' },
  { prefix: SELF_B, self: true, headSplit: 'concat', scale: 'sqrt' },
];

// ---------------------------------------------------------------------------------------------
// float64 reference.

/** x [rows, cin] · W [cin, cout] */
function linear(x: Float64Array, rows: number, cin: number, w: Float32Array, cout: number): Float64Array {
  const out = new Float64Array(rows * cout);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < cin; i++) {
      const a = x[r * cin + i] ?? 0;
      if (a === 0) continue;
      for (let o = 0; o < cout; o++) out[r * cout + o] = (out[r * cout + o] ?? 0) + a * (w[i * cout + o] ?? 0);
    }
  }
  return out;
}

/** Multi-head attention of one batch item: q [nq, C], k/v [nk, C] → [nq, C]. */
function attend(q: Float64Array, k: Float64Array, v: Float64Array, nq: number, nk: number, scale: number): Float64Array {
  const out = new Float64Array(nq * C);
  const scores = new Float64Array(nk);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < nq; i++) {
      let max = -Infinity;
      for (let j = 0; j < nk; j++) {
        let s = 0;
        for (let d = 0; d < D; d++) s += (q[i * C + h * D + d] ?? 0) * (k[j * C + h * D + d] ?? 0);
        scores[j] = s * scale;
        max = Math.max(max, s * scale);
      }
      let sum = 0;
      for (let j = 0; j < nk; j++) {
        scores[j] = Math.exp((scores[j] ?? 0) - max);
        sum += scores[j] ?? 0;
      }
      for (let j = 0; j < nk; j++) {
        const p = (scores[j] ?? 0) / sum;
        for (let d = 0; d < D; d++) out[i * C + h * D + d] = (out[i * C + h * D + d] ?? 0) + p * (v[j * C + h * D + d] ?? 0);
      }
    }
  }
  return out;
}

/** `self`: every frame attends to itself. `cross`: frame f of each group attends to the frames `rows[f]` of its group. */
type Mode = { kind: 'self' } | { kind: 'cross'; groups: number; rows: readonly (readonly number[])[] };

function shared(anchors: number[], groups: number, batch: number): Mode {
  return { kind: 'cross', groups, rows: Array.from({ length: batch / groups }, () => anchors) };
}

function reference(net: TestNet, x: Float32Array, ctx: Float32Array, batch: number, mode: Mode): Float64Array {
  const h = Float64Array.from(x, (value, i) => value + (net.bias0[i % C] ?? 0));
  for (const { spec, weights } of net.blocks) {
    const tokens = (b: number): Float64Array => h.subarray(b * N * C, (b + 1) * N * C);
    const q = Array.from({ length: batch }, (_, b) => linear(tokens(b), N, C, weights.wq, C));
    let kv: { k: Float64Array; v: Float64Array }[];
    if (spec.self) {
      kv = Array.from({ length: batch }, (_, b) => ({ k: linear(tokens(b), N, C, weights.wk, C), v: linear(tokens(b), N, C, weights.wv, C) }));
    } else {
      kv = Array.from({ length: batch }, (_, b) => {
        const c = Float64Array.from(ctx.subarray(b * L * CC, (b + 1) * L * CC));
        return { k: linear(c, L, CC, weights.wk, C), v: linear(c, L, CC, weights.wv, C) };
      });
    }
    const out = new Float64Array(batch * N * C);
    for (let b = 0; b < batch; b++) {
      let k = kv[b]?.k as Float64Array;
      let v = kv[b]?.v as Float64Array;
      if (spec.self && mode.kind === 'cross') {
        const frames = batch / mode.groups;
        const group = Math.floor(b / frames);
        const sources = (mode.rows[b % frames] ?? []).map((a) => group * frames + (a < 0 ? a + frames : a));
        k = concat(sources.map((s) => kv[s]?.k as Float64Array));
        v = concat(sources.map((s) => kv[s]?.v as Float64Array));
      }
      const nk = k.length / C;
      const a = attend(q[b] as Float64Array, k, v, N, nk, weights.scale);
      const projected = linear(a, N, C, weights.wo, C);
      for (let i = 0; i < N * C; i++) out[b * N * C + i] = (projected[i] ?? 0) + (weights.bo[i % C] ?? 0);
    }
    for (let i = 0; i < h.length; i++) h[i] = (h[i] ?? 0) + (out[i] ?? 0);
  }
  return h;
}

function concat(parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return max;
}

function inputs(batch: number, seed: number): { x: Float32Array; ctx: Float32Array } {
  const random = rng(seed);
  return { x: randomArray(random, batch * N * C, 1), ctx: randomArray(random, batch * L * CC, 1) };
}

async function open(model: onnx.IModelProto): Promise<InferenceSession> {
  const { session } = await createSession(encodeModel(model), { device: 'cpu', intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: false });
  return session;
}

/** The attn1 blocks of DEFAULT_SPECS nets (SELF_A, SELF_B). */
const BLOCKS = 2;

function dataFeeds(x: Float32Array, ctx: Float32Array, batch: number): Record<string, Tensor> {
  return { hidden_states: float32Tensor(x, [batch, N, C]), encoder_hidden_states: float32Tensor(ctx, [batch, L, CC]) };
}

/** Runs a graph; with `call`, the cross-frame feeds of a rewritten one: each guidance group's frames attend to `anchors`, or each frame to itself (`perFrame`). */
async function run(
  session: InferenceSession,
  x: Float32Array,
  ctx: Float32Array,
  batch: number,
  call?: { groups: number; anchors?: number[]; perFrame?: boolean; blocks?: number },
): Promise<Float32Array> {
  const feeds = dataFeeds(x, ctx, batch);
  if (call) {
    const frames = batch / call.groups;
    const shape = call.perFrame ? perFrame(batch) : { batch, framesPerGroup: frames, anchors: call.anchors ?? [0] };
    Object.assign(feeds, crossFrameFeeds({ ...shape, blocks: call.blocks ?? BLOCKS, kvType: 'float32' }));
  }
  const result = await session.run(feeds, ['out_sample']);
  return result.out_sample?.data as Float32Array;
}

/** Every node input is a graph input, an initializer or an earlier node's output. */
function isTopologicallySorted(graph: onnx.IGraphProto): boolean {
  const known = new Set<string>([...(graph.input ?? []).map((i) => i.name ?? ''), ...(graph.initializer ?? []).map((i) => i.name ?? ''), '']);
  for (const node of graph.node ?? []) {
    if ((node.input ?? []).some((i) => !known.has(i))) return false;
    for (const out of node.output ?? []) known.add(out);
  }
  return true;
}

function concatF32(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

// Measured max abs differences, printed once at the end (the numbers the report quotes).
const measured: string[] = [];
afterAll(() => {
  console.info(`cross-frame max abs diffs:\n  ${measured.join('\n  ')}`);
});

describe('rewriteCrossFrameAttention', () => {
  const net = buildNet(DEFAULT_SPECS);
  let original: InferenceSession;
  let session: InferenceSession;
  let result: ReturnType<typeof rewriteCrossFrameAttention>;

  beforeAll(async () => {
    original = await open(net.model);
    result = rewriteCrossFrameAttention(net.model);
    session = await open(result.model);
  });

  afterAll(async () => {
    await releaseSession(original);
    await releaseSession(session);
  });

  it('sanity: the unrewritten graph is plain self-attention', async () => {
    const batch = 6;
    const { x, ctx } = inputs(batch, 11);
    const diff = maxAbsDiff(await run(original, x, ctx, batch), reference(net, x, ctx, batch, { kind: 'self' }));
    measured.push(`original vs self-attention reference: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(1e-5);
  });

  for (const groups of [1, 2, 3]) {
    for (const frames of [1, 4, 7]) {
      for (const anchors of [[0], [0, 3], [0, -1]]) {
        if (anchors.some((a) => a >= frames)) continue;
        it(`G=${groups} F=${frames} anchors [${anchors.join(',')}] matches the cross-frame reference (one session)`, async () => {
          const batch = groups * frames;
          const { x, ctx } = inputs(batch, 100 + groups * 10 + frames);
          const out = await run(session, x, ctx, batch, { groups, anchors });
          const diff = maxAbsDiff(out, reference(net, x, ctx, batch, shared(anchors, groups, batch)));
          measured.push(`G=${groups} F=${frames} anchors [${anchors.join(',')}]: ${diff.toExponential(2)}`);
          expect(diff).toBeLessThanOrEqual(1e-5);
        });
      }
    }
  }

  it('per-frame attention groups (F = 1, anchor 0) are the original graph (the plain UNet from the same session)', async () => {
    for (const [groups, frames] of [[2, 4], [3, 3], [1, 5]] as const) {
      const batch = groups * frames;
      const { x, ctx } = inputs(batch, 40 + groups);
      const diff = maxAbsDiff(await run(session, x, ctx, batch, { groups, perFrame: true }), await run(original, x, ctx, batch));
      measured.push(`G=${groups} F=${frames} per-frame vs original: ${diff.toExponential(2)}`);
      expect(diff).toBeLessThanOrEqual(1e-5);
    }
  });

  it('the anchor at frame 0 leaves frame 0 of every group as plain self-attention', async () => {
    const groups = 2;
    const frames = 4;
    const batch = groups * frames;
    const { x, ctx } = inputs(batch, 21);
    const cross = await run(session, x, ctx, batch, { groups, anchors: [0] });
    const plain = await run(original, x, ctx, batch);
    for (const b of [0, frames]) {
      expect(maxAbsDiff(cross.subarray(b * N * C, (b + 1) * N * C), plain.subarray(b * N * C, (b + 1) * N * C))).toBeLessThanOrEqual(1e-5);
    }
    // …while other frames changed.
    expect(maxAbsDiff(cross.subarray(N * C, 2 * N * C), plain.subarray(N * C, 2 * N * C))).toBeGreaterThan(1e-3);
  });

  it('bad calls are clear errors, before and inside ORT', async () => {
    const call = { blocks: BLOCKS, kvType: 'float32' as const };
    expect(() => crossFrameFeeds({ ...call, batch: 5, framesPerGroup: 2, anchors: [0] })).toThrow(/batch \(5\) must split into attention groups of 2 frames/);
    expect(() => crossFrameFeeds({ ...call, batch: 8, framesPerGroup: 0, anchors: [0] })).toThrow(/`framesPerGroup`/);
    expect(() => crossFrameFeeds({ ...call, batch: 8, framesPerGroup: 4, anchors: [0, 4] })).toThrow(/Anchor frame 4 is outside the 4 frames/);
    expect(() => crossFrameFeeds({ ...call, batch: 8, framesPerGroup: 4, anchors: [] })).toThrow(/at least one anchor frame or imported/);
    expect(() => crossFrameFeeds({ ...call, batch: 8, framesPerGroup: 4, anchors: [0], exportFrames: [-5] })).toThrow(/Exported frame -5 is outside/);
    expect(() => crossFrameFeeds({ ...call, batch: 4, framesPerGroup: 2, anchors: [], imported: new Map() })).toThrow(/No imported anchor keys `anchor_k.0`/);
    const feeds = crossFrameFeeds({ ...call, batch: 8, framesPerGroup: 4, anchors: [0, -1] });
    expect(feeds[CROSS_FRAME_GROUP_INPUT]?.data).toEqual(BigInt64Array.from([4n]));
    expect(feeds[CROSS_FRAME_ANCHORS_INPUT]?.dims).toEqual([2]);
    expect(feeds[CROSS_FRAME_EXPORT_INPUT]?.dims).toEqual([0]);
    expect(feeds[anchorKvName('value', 1)]?.dims).toEqual([1, 0, 1]);
    // Straight to ORT, a batch that does not split into the groups fails in a Reshape.
    const { x, ctx } = inputs(5, 3);
    await expect(session.run({ ...dataFeeds(x, ctx, 5), ...feeds, [CROSS_FRAME_GROUP_INPUT]: int64Tensor([2], [1]) })).rejects.toThrow(/Reshape|reshape/);
  });

  it('reports the rewritten blocks, their heads read from the graph and the scale', () => {
    expect(result.blocks).toEqual([SELF_A, SELF_B]);
    expect(result.kvType).toBe('float32');
    expect(result.details).toEqual([
      { name: SELF_A, heads: H, headsFrom: 'graph', scale: expect.closeTo(1 / Math.sqrt(D), 6) },
      { name: SELF_B, heads: H, headsFrom: 'graph', scale: expect.closeTo(1 / Math.sqrt(D), 6) },
    ]);
  });

  it('replaces each attn1 core by one MultiHeadAttention, keeps attn2 and the node order valid', () => {
    const graph = result.model.graph!;
    const nodes = graph.node ?? [];
    const mha = nodes.filter((n) => n.opType === 'MultiHeadAttention');
    expect(mha.map((n) => n.name)).toEqual([`${SELF_A}/MultiHeadAttention`, `${SELF_B}/MultiHeadAttention`]);
    expect(mha.every((n) => n.domain === 'com.microsoft')).toBe(true);
    expect(mha[0]?.attribute?.find((a) => a.name === 'num_heads')?.i).toBe(H);
    // No Softmax, head-split or merge left in the self-attention blocks.
    for (const prefix of [SELF_A, SELF_B]) {
      const left = nodes.filter((n) => n.name?.startsWith(`${prefix}/`) && !n.name.startsWith(`${prefix}/cross_frame/`)).map((n) => n.name);
      expect(left.sort()).toEqual(
        [`${prefix}/to_q/MatMul`, `${prefix}/to_k/MatMul`, `${prefix}/to_v/MatMul`, `${prefix}/MultiHeadAttention`, `${prefix}/MultiHeadAttention/Frames`, `${prefix}/to_out/to_out.0/MatMul`, `${prefix}/to_out/to_out.0/Add`].sort(),
      );
    }
    // attn2 is untouched, node for node.
    const before = (net.model.graph?.node ?? []).filter((n) => n.name?.startsWith(`${CROSS_A}/`));
    const after = nodes.filter((n) => n.name?.startsWith(`${CROSS_A}/`));
    expect(after.map((n) => onnx.NodeProto.encode(n).finish())).toEqual(before.map((n) => onnx.NodeProto.encode(n).finish()));
    expect(isTopologicallySorted(graph)).toBe(true);
    expect(result.model.opsetImport.some((o) => o.domain === 'com.microsoft' && o.version === 1)).toBe(true);
    const kvNames = (name: (role: 'key' | 'value', i: number) => string): string[] => [0, 1].flatMap((i) => [name('key', i), name('value', i)]);
    expect(graph.input?.map((i) => i.name)).toEqual(['hidden_states', 'encoder_hidden_states', CROSS_FRAME_GROUP_INPUT, CROSS_FRAME_ANCHORS_INPUT, CROSS_FRAME_EXPORT_INPUT, ...kvNames(anchorKvName)]);
    expect(graph.output?.map((o) => o.name)).toEqual(['out_sample', ...kvNames(exportedKvName)]);
    expect(exportedKvNames(2)).toEqual(kvNames(exportedKvName));
    // Unused initializers (the old split/merge shapes and scales of attn1) are gone.
    const initializers = new Set(graph.initializer?.map((i) => i.name));
    expect(initializers.has(`${SELF_A}/split_shape`)).toBe(false);
    expect(initializers.has(`${SELF_A}/scale`)).toBe(false);
    expect(initializers.has(`${CROSS_A}/scale`)).toBe(true);
  });

  it('leaves the input model unchanged and refuses to rewrite twice', () => {
    const bytes = encodeModel(net.model);
    const { model } = rewriteCrossFrameAttention(net.model);
    expect(encodeModel(net.model)).toEqual(bytes);
    expect(() => rewriteCrossFrameAttention(model)).toThrow(/already has a `cross_frame_anchors` input/);
    expect(() => rewriteCrossFrameAttention(net.model, { heads: 0 })).toThrow(/`heads`/);
  });
});

describe('rewriteCrossFrameAttention: heads and scale', () => {
  it('takes the heads from the option when the graph computes them at run time, and says so', async () => {
    const net = buildNet([{ prefix: SELF_A, self: true, headSplit: 'runtime', scale: 'single' }], 5);
    const result = rewriteCrossFrameAttention(net.model, { heads: H });
    expect(result.details).toEqual([{ name: SELF_A, heads: H, headsFrom: 'option', scale: expect.closeTo(1 / Math.sqrt(D), 6) }]);
    expect(inspectSelfAttention(net.model, { heads: 8 })).toEqual([{ name: SELF_A, heads: 8, headsFrom: 'option', scale: expect.closeTo(1 / Math.sqrt(D), 6) }]);
    expect(inspectSelfAttention(net.model, { heads: { [SELF_A]: 2 } })).toMatchObject([{ name: SELF_A, heads: 2, headsFrom: 'option' }]);
    // Neither the graph nor the option says: refused, never a guessed 8.
    expect(inspectSelfAttention(net.model)).toEqual([{ name: SELF_A, error: expect.stringMatching(/does not show its head count.*unet\/config\.json/), headsUnknown: true }]);
    expect(() => rewriteCrossFrameAttention(net.model)).toThrow(UnknownHeadsError);
    const session = await open(result.model);
    const batch = 6;
    const { x, ctx } = inputs(batch, 9);
    const diff = maxAbsDiff(await run(session, x, ctx, batch, { groups: 2, anchors: [0, -1], blocks: 1 }), reference(net, x, ctx, batch, shared([0, -1], 2, batch)));
    measured.push(`heads from option, G=2 F=3 [0,-1]: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(1e-5);
    await releaseSession(session);
    expect(() => rewriteCrossFrameAttention(net.model, { heads: 3 })).toThrow(/width 32 is not divisible by 3 heads \(from the `heads` option\)/);
  });

  it('keeps a non-default softmax scale', async () => {
    const net = buildNet([{ prefix: SELF_A, self: true, headSplit: 'initializer', scale: { custom: 0.05 } }], 6);
    const result = rewriteCrossFrameAttention(net.model);
    expect(result.details[0]?.scale).toBeCloseTo(0.05, 7);
    const session = await open(result.model);
    const batch = 8;
    const { x, ctx } = inputs(batch, 10);
    const diff = maxAbsDiff(await run(session, x, ctx, batch, { groups: 2, anchors: [0, 2], blocks: 1 }), reference(net, x, ctx, batch, shared([0, 2], 2, batch)));
    measured.push(`scale 0.05, G=2 F=4 [0,2]: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(1e-5);
    await releaseSession(session);
  });

  it('names the block when its attention core is not a Softmax attention', () => {
    const net = buildNet([{ prefix: SELF_A, self: true, headSplit: 'initializer', scale: 'single' }], 2);
    const graph = net.model.graph!;
    const broken = onnx.ModelProto.create({
      ...net.model,
      graph: onnx.GraphProto.create({ ...graph, node: (graph.node ?? []).map((n) => (n.opType === 'Softmax' ? onnx.NodeProto.create({ ...n, opType: 'Sigmoid', attribute: [] }) : n)) }),
    });
    expect(() => rewriteCrossFrameAttention(broken)).toThrow(`Self-attention block ${SELF_A}: no Softmax`);
    expect(inspectSelfAttention(broken)).toEqual([{ name: SELF_A, error: expect.stringContaining('no Softmax') }]);
  });

  it('returns the model as is when there is no self-attention block', () => {
    const net = buildNet([{ prefix: CROSS_A, self: false, headSplit: 'initializer', scale: 'single' }], 2);
    const result = rewriteCrossFrameAttention(net.model);
    expect(result.blocks).toEqual([]);
    expect(result.model).toBe(net.model);
  });
});

describe('rewriteCrossFrameAttention: anchor keys/values exported by one call, imported by the next', () => {
  const net = buildNet(DEFAULT_SPECS, 5);
  let session: InferenceSession;

  beforeAll(async () => {
    session = await open(rewriteCrossFrameAttention(net.model).model);
  });
  afterAll(async () => {
    await releaseSession(session);
  });

  /** Frames `from…from+count−1` of every group of a [group][frame] batch. */
  const picker =
    (groups: number, frames: number) =>
    (data: Float32Array, size: number, from: number, count: number): Float32Array =>
      concatF32(Array.from({ length: groups }, (_, g) => data.subarray((g * frames + from) * size, (g * frames + from + count) * size)));

  for (const groups of [2, 3]) {
    for (const [k, others] of [[1, 3], [3, 2], [2, 1]] as const) {
      it(`G=${groups} K=${k}: the anchors alone (exporting), then ${others} other frames importing, equal one batch of both`, async () => {
        const frames = k + others;
        const pick = picker(groups, frames);
        const { x, ctx } = inputs(groups * frames, 300 + groups * 10 + k);
        const anchors = Array.from({ length: k }, (_, i) => i);
        const whole = await run(session, x, ctx, groups * frames, { groups, anchors });
        const call = { blocks: BLOCKS, kvType: 'float32' as const };

        const exported = await session.run(
          { ...dataFeeds(pick(x, N * C, 0, k), pick(ctx, L * CC, 0, k), groups * k), ...crossFrameFeeds({ ...call, batch: groups * k, framesPerGroup: k, anchors, exportFrames: anchors }) },
          ['out_sample', ...exportedKvNames(BLOCKS)],
        );
        const kv = importExportedKv(exported as Record<string, Tensor>, BLOCKS);
        for (const [name, tensor] of kv) {
          expect(tensor.dims, name).toEqual([groups, k * N, C]);
          // Handed on as ORT returned it: the same object, not a copy.
          expect(tensor).toBe(exported[name.replace('anchor_', 'exported_')]);
        }
        const imported = await session.run(
          { ...dataFeeds(pick(x, N * C, k, others), pick(ctx, L * CC, k, others), groups * others), ...crossFrameFeeds({ ...call, batch: groups * others, framesPerGroup: others, anchors: [], imported: kv }) },
          ['out_sample'],
        );
        expect(Object.keys(imported)).toEqual(['out_sample']);
        const diffAnchors = maxAbsDiff(exported.out_sample!.data as Float32Array, pick(whole, N * C, 0, k));
        const diffOthers = maxAbsDiff(imported.out_sample!.data as Float32Array, pick(whole, N * C, k, others));
        measured.push(`anchor K/V G=${groups} K=${k} others=${others}: anchors ${diffAnchors.toExponential(2)}, others ${diffOthers.toExponential(2)}`);
        expect(diffAnchors).toBeLessThanOrEqual(1e-5);
        expect(diffOthers).toBeLessThanOrEqual(1e-5);
      });
    }
  }

  it('imported keys/values and the group’s own combine: frame 0 alone, then frames 1… attending to frame 0 (imported) and frame 1', async () => {
    const groups = 2;
    const frames = 4;
    const pick = picker(groups, frames);
    const { x, ctx } = inputs(groups * frames, 77);
    // Frame 0 attends to itself, every other frame to frames 0 and 1.
    const rows = [[0], ...Array.from({ length: frames - 1 }, () => [0, 1])];
    const whole = reference(net, x, ctx, groups * frames, { kind: 'cross', groups, rows });
    const call = { blocks: BLOCKS, kvType: 'float32' as const };
    const anchor = await session.run(
      { ...dataFeeds(pick(x, N * C, 0, 1), pick(ctx, L * CC, 0, 1), groups), ...crossFrameFeeds({ ...call, batch: groups, framesPerGroup: 1, anchors: [0], exportFrames: [0] }) },
      ['out_sample', ...exportedKvNames(BLOCKS)],
    );
    const combined = await session.run(
      {
        ...dataFeeds(pick(x, N * C, 1, frames - 1), pick(ctx, L * CC, 1, frames - 1), groups * (frames - 1)),
        ...crossFrameFeeds({ ...call, batch: groups * (frames - 1), framesPerGroup: frames - 1, anchors: [0], imported: importExportedKv(anchor as Record<string, Tensor>, BLOCKS) }),
      },
      ['out_sample'],
    );
    const wholeF32 = Float32Array.from(whole);
    const diff = maxAbsDiff(combined.out_sample!.data as Float32Array, pick(wholeF32, N * C, 1, frames - 1));
    measured.push(`imported frame 0 + own frame 1 vs reference: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(1e-5);
    expect(maxAbsDiff(anchor.out_sample!.data as Float32Array, pick(wholeF32, N * C, 0, 1))).toBeLessThanOrEqual(1e-5);
  });

  it('a call that exports nothing returns empty keys/values when asked for them', async () => {
    const { x, ctx } = inputs(4, 8);
    const out = await session.run({ ...dataFeeds(x, ctx, 4), ...crossFrameFeeds({ batch: 4, framesPerGroup: 2, anchors: [0], blocks: BLOCKS, kvType: 'float32' }) }, [exportedKvName('key', 0)]);
    expect(out[exportedKvName('key', 0)]?.dims).toEqual([2, 0, C]);
  });
});

describe('loadRewrittenUnet', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'reelbot-onnx-cf-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the rewritten graph beside external data, loads by path, and reuses the file', async () => {
    const net = buildNet(DEFAULT_SPECS, 4);
    // Move every float weight into model.onnx_data, as optimum does for a >2 GB UNet.
    const chunks: Uint8Array[] = [];
    let offset = 0;
    const initializer = (net.model.graph?.initializer ?? []).map((init) => {
      const raw = init.rawData;
      if (init.dataType !== DataType.FLOAT || (init.dims ?? []).length === 0 || !raw) return init;
      const padded = Math.ceil(raw.length / 64) * 64;
      const chunk = new Uint8Array(padded);
      chunk.set(raw);
      chunks.push(chunk);
      const external = onnx.TensorProto.create({
        name: init.name,
        dims: init.dims,
        dataType: init.dataType,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: 'model.onnx_data' },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(raw.length) },
        ],
      });
      offset += padded;
      return external;
    });
    const model = onnx.ModelProto.create({ ...net.model, graph: onnx.GraphProto.create({ ...net.model.graph, initializer }) });
    const unetDir = join(dir, 'unet');
    await rm(unetDir, { recursive: true, force: true });
    await import('node:fs/promises').then((fs) => fs.mkdir(unetDir));
    await writeFile(join(unetDir, 'model.onnx'), encodeModel(model));
    await writeFile(join(unetDir, 'model.onnx_data'), Buffer.concat(chunks));

    const first = await loadRewrittenUnet(join(unetDir, 'model.onnx'));
    expect(first.cached).toBe(false);
    expect(first.blocks).toEqual([SELF_A, SELF_B]);
    expect(first.path.startsWith(join(unetDir, 'model.crossframe-'))).toBe(true);
    const second = await loadRewrittenUnet(join(unetDir, 'model.onnx'));
    expect(second).toEqual({ ...first, cached: true });
    // The cached load reads the blocks from the summary beside the graph, not from the graph.
    const summary = first.path.replace(/\.onnx$/, '.json');
    expect(JSON.parse(await readFile(summary, 'utf8'))).toMatchObject({ blocks: first.blocks, details: first.details, kvType: 'float32' });
    await writeFile(summary, '{broken');
    expect(await loadRewrittenUnet(join(unetDir, 'model.onnx'))).toEqual(first);
    const other = await loadRewrittenUnet(join(unetDir, 'model.onnx'), { heads: 2 });
    expect(other.path).not.toBe(first.path);
    expect((await readdir(unetDir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    const { session } = await createSession(first.path, { device: 'cpu', intraOpThreads: 1, interOpThreads: 1, fallbackToCpu: false });
    const batch = 8;
    const { x, ctx } = inputs(batch, 12);
    const diff = maxAbsDiff(await run(session, x, ctx, batch, { groups: 2, anchors: [0, -1] }), reference(net, x, ctx, batch, shared([0, -1], 2, batch)));
    measured.push(`external data, loaded by path, G=2 F=4 [0,-1]: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThanOrEqual(1e-5);
    await releaseSession(session);
  });

  it('says cross-frame attention is unavailable, naming the file, when there is no self-attention block', async () => {
    const net = buildNet([{ prefix: CROSS_A, self: false, headSplit: 'initializer', scale: 'single' }], 2);
    const path = join(dir, 'plain.onnx');
    await writeFile(path, encodeModel(net.model));
    const error = await loadRewrittenUnet(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CrossFrameUnavailableError);
    expect((error as Error).message).toContain(`${path} has no self-attention block the rewrite recognises`);
  });

  it('says so too when a block is not the attention it replaces', async () => {
    const net = buildNet([{ prefix: SELF_A, self: true, headSplit: 'initializer', scale: 'single' }], 2);
    const graph = net.model.graph!;
    const fused = onnx.ModelProto.create({
      ...net.model,
      graph: onnx.GraphProto.create({ ...graph, node: (graph.node ?? []).map((n) => (n.opType === 'Softmax' ? onnx.NodeProto.create({ ...n, opType: 'Sigmoid', attribute: [] }) : n)) }),
    });
    const path = join(dir, 'fused.onnx');
    await writeFile(path, encodeModel(fused));
    await expect(loadRewrittenUnet(path)).rejects.toThrow(CrossFrameUnavailableError);
  });
});
