/**
 * @file The load-time UNet rewrite for cross-frame attention (Text2Video-Zero's
 * `CrossFrameAttnProcessor`, Fairy-style anchors). Every self-attention block (`…/attn1`) gets
 * its keys and values from the anchor frames of its own CFG group instead of its own frame, and
 * its unfused attention core is replaced by one `com.microsoft.MultiHeadAttention` node.
 *
 * Per block, from the to_k / to_v outputs t of shape [B = G·F, N, C]:
 * ```
 * x4 = Reshape(t, [G, -1, N, C])            # [G, F, N, C]; F comes from the run-time batch
 * xa = Gather(x4, cross_frame_anchors, 1)   # [G, A, N, C]
 * xr = Reshape(xa, [G, 1, -1, C])           # [G, 1, A·N, C]
 * xe = Expand(xr, [1, B/G, 1, 1])           # [G, F, A·N, C]
 * kv = Reshape(xe, [B, -1, C])              # [G·F, A·N, C]
 * out = MultiHeadAttention(q, k', v', num_heads=H)   # [B, N, C] → to_out MatMul
 * ```
 * `cross_frame_anchors` (int64 [A]) is a new graph input, so one session serves any frame count
 * and any anchor set; negative anchors count from the last frame. The batch must be a multiple
 * of G (2 for text-to-video CFG, 3 for instruct-pix2pix). Measured background and the
 * reasons for MultiHeadAttention (about 4× less memory than the Softmax core):
 * /work/shared/onnx-runtime.md §3.
 *
 * Anchor K/V cache (`anchorKv` option), for clips run in chunks that share the same anchors: the
 * `export` variant is the above plus graph outputs `anchor_k.<i>` / `anchor_v.<i>` (`xr` of attn1
 * block i, graph order); run on a batch of only the anchors, it gives their prediction and their
 * K/V. The `import` variant takes those as graph inputs in place of `xr` (Expand → Reshape →
 * MultiHeadAttention as above; no Gather, no `cross_frame_anchors`, no attn1 to_k/to_v), so a
 * chunk's batch holds only its own frames and the anchors are not recomputed per chunk.
 */
import { createHash, randomBytes } from 'node:crypto';
import { rename, stat, unlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import {
  DataType,
  GraphIndex,
  encodeModel,
  externalDataLocations,
  int64Initializer,
  makeNode,
  makeValueInfo,
  onnx,
  readModelFile,
  tensorDims,
} from './proto.js';
import { int64Tensor } from './tensor.js';
import type { Tensor } from './session.js';

/** Name of the graph input that carries the anchor frame indices (int64 [A]). */
export const CROSS_FRAME_ANCHORS_INPUT = 'cross_frame_anchors';

/** Bumped whenever the rewrite's output changes, so cached rewritten files are rebuilt. */
export const CROSS_FRAME_REWRITE_VERSION = 1;

/**
 * Head counts for blocks whose graph does not show theirs: one for every block, or one per block
 * path (`…/attn1`), as the folder check reads them from `unet/config.json`.
 */
export type HeadsOption = number | Readonly<Record<string, number>>;

export interface CrossFrameOptions {
  /** CFG groups in the batch: 2 for text-to-video, 3 for instruct-pix2pix, 1 without guidance. */
  groups: number;
  /**
   * Heads to use where the graph does not say (the head-split Reshape has no constant head count):
   * one number, or one per block path. No default: a block whose head count is neither in the
   * graph nor here is refused rather than guessed.
   */
  heads?: HeadsOption;
  /**
   * Anchor K/V cache variants (both made from the same original graph, block `i` the same block):
   * - `export`: the usual rewrite, plus graph outputs `anchor_k.<i>` / `anchor_v.<i>` = each attn1
   *   block's per-group anchor keys/values [G, 1, A·N, C] (before the Expand). Run it on a batch of
   *   only the anchor frames (`cross_frame_anchors` = 0…A−1) for their own prediction and their K/V.
   * - `import`: no `cross_frame_anchors` input and no to_k/to_v projections in attn1; the keys and
   *   values come from graph inputs `anchor_k.<i>` / `anchor_v.<i>` [G, 1, A·N, C] (from an export
   *   run), expanded to the batch's frames. The batch holds only the frames to predict.
   * Unset: the single-batch rewrite (anchors gathered from the batch).
   */
  anchorKv?: 'export' | 'import';
}

/** Name of the anchor-K/V graph output (export variant) / input (import variant) of attn1 block `index`. */
export function anchorKvName(role: 'key' | 'value', index: number): string {
  return `anchor_${role === 'key' ? 'k' : 'v'}.${index}`;
}

/** What the rewrite did to one block. */
export interface CrossFrameBlock {
  /** The attention module's path, e.g. `/down_blocks.0/attentions.0/transformer_blocks.0/attn1`. */
  name: string;
  heads: number;
  /** `graph`: read from the head-split Reshape's shape; `option`: from `options.heads`. */
  headsFrom: 'graph' | 'option';
  /** Softmax scale: the constant found in the core, or MultiHeadAttention's default 1/√D. */
  scale: number | 'default';
}

export interface CrossFrameResult {
  model: onnx.ModelProto;
  /** Rewritten block names, in graph order. */
  blocks: string[];
  details: CrossFrameBlock[];
}

const Q_SUFFIX = '/attn1/to_q/MatMul';
/**
 * The output projection's node, as torch's exporter names it: older versions scope a ModuleList
 * element under its list (`to_out/to_out.0`), torch 2.x names it `to_out.0` (seen on a diffusers
 * export made with torch 2.11).
 */
const TO_OUT_SUFFIXES = ['/to_out/to_out.0/MatMul', '/to_out.0/MatMul'] as const;

/**
 * Rewrites every self-attention block of a UNet for cross-frame attention. The input model is not
 * modified; initializers (including external-data ones) are shared with the result.
 *
 * @example
 * const { model: rewritten, blocks } = rewriteCrossFrameAttention(unet, { groups: 2 });
 * // feed cross_frame_anchors = int64 [0] (first frame) or [0, -1] (first and last) at run time
 */
export function rewriteCrossFrameAttention(model: onnx.ModelProto, options: CrossFrameOptions): CrossFrameResult {
  const { groups, anchorKv } = options;
  if (anchorKv !== undefined && anchorKv !== 'export' && anchorKv !== 'import') {
    throw new TypeError(`Expected \`anchorKv\` to be 'export', 'import' or undefined, got \`${String(anchorKv)}\``);
  }
  if (!(Number.isInteger(groups) && groups >= 1)) {
    throw new TypeError(`Expected \`groups\` to be an integer from 1 and up, got \`${String(groups)}\` (${typeof groups})`);
  }
  checkHeadsOption(options.heads);
  const graph = model.graph;
  if (!graph) throw new Error('The model has no graph');
  if ((graph.input ?? []).some((i) => i.name === CROSS_FRAME_ANCHORS_INPUT || i.name === anchorKvName('key', 0))) {
    throw new Error(`The model already has a \`${CROSS_FRAME_ANCHORS_INPUT}\` input: it was rewritten for cross-frame attention before`);
  }
  const index = new GraphIndex(graph);
  const nodes = graph.node ?? [];
  const position = new Map<onnx.INodeProto, number>(nodes.map((n, i) => [n, i]));

  const shared = sharedInitializers(groups);
  const inserts = new Map<onnx.INodeProto, onnx.INodeProto[]>();
  const replacedToOut = new Map<onnx.INodeProto, onnx.NodeProto>();
  const details: CrossFrameBlock[] = [];
  const kvInputs: onnx.ValueInfoProto[] = [];
  const kvOutputs: onnx.ValueInfoProto[] = [];

  for (const [blockIndex, prefix] of selfAttentionPrefixes(index).entries()) {
    const block = analyzeBlock(index, prefix, headsFor(options.heads, prefix));
    const { toQ, toK, toV, toOut, q, k, v, heads: numHeads, scale } = block;

    const p = `${prefix}/cross_frame`;
    const t = (name: string): string => `${p}/${name}_output_0`;
    const anchors = CROSS_FRAME_ANCHORS_INPUT;
    // The import variant never computes this block's own K/V, so its batch and width come from q (same [B, N, C]).
    const added: onnx.INodeProto[] = [
      makeNode('Shape', [anchorKv === 'import' ? q : k], [t('Shape')], {}, { name: `${p}/Shape` }),
      makeNode('Slice', [t('Shape'), shared.i0, shared.i1], [t('Batch')], {}, { name: `${p}/Batch` }),
      makeNode('Slice', [t('Shape'), shared.i1, shared.i3], [t('TokensWidth')], {}, { name: `${p}/TokensWidth` }),
      makeNode('Slice', [t('Shape'), shared.i2, shared.i3], [t('Width')], {}, { name: `${p}/Width` }),
      makeNode('Concat', [shared.groups, shared.minusOne, t('TokensWidth')], [t('GroupShape')], { axis: 0 }, { name: `${p}/GroupShape` }),
      makeNode('Concat', [shared.groups, shared.i1, shared.minusOne, t('Width')], [t('AnchorShape')], { axis: 0 }, { name: `${p}/AnchorShape` }),
      makeNode('Div', [t('Batch'), shared.groups], [t('Frames')], {}, { name: `${p}/Frames` }),
      makeNode('Concat', [shared.i1, t('Frames'), shared.i1, shared.i1], [t('ExpandShape')], { axis: 0 }, { name: `${p}/ExpandShape` }),
      makeNode('Concat', [t('Batch'), shared.minusOne, t('Width')], [t('OutShape')], { axis: 0 }, { name: `${p}/OutShape` }),
    ];
    const kv: Record<'key' | 'value', string> = { key: '', value: '' };
    for (const [role, source] of [['key', k], ['value', v]] as const) {
      const r = `${role}_`;
      let joined = t(`${r}Joined`);
      if (anchorKv === 'import') {
        joined = anchorKvName(role, blockIndex);
        kvInputs.push(makeValueInfo(joined, kvElemType(index, block.toK, graph), [groups, 1, `anchor_tokens.${blockIndex}`, `anchor_width.${blockIndex}`]));
      } else {
        if (anchorKv === 'export') {
          joined = anchorKvName(role, blockIndex);
          kvOutputs.push(makeValueInfo(joined, kvElemType(index, block.toK, graph), [groups, 1, `anchor_tokens.${blockIndex}`, `anchor_width.${blockIndex}`]));
        }
        added.push(
          makeNode('Reshape', [source, t('GroupShape')], [t(`${r}Grouped`)], {}, { name: `${p}/${r}Grouped` }),
          makeNode('Gather', [t(`${r}Grouped`), anchors], [t(`${r}Anchors`)], { axis: 1 }, { name: `${p}/${r}Anchors` }),
          makeNode('Reshape', [t(`${r}Anchors`), t('AnchorShape')], [joined], {}, { name: `${p}/${r}Joined` }),
        );
      }
      added.push(
        makeNode('Expand', [joined, t('ExpandShape')], [t(`${r}Expanded`)], {}, { name: `${p}/${r}Expanded` }),
        makeNode('Reshape', [t(`${r}Expanded`), t('OutShape')], [t(`${r}CrossFrame`)], {}, { name: `${p}/${r}CrossFrame` }),
      );
      kv[role] = t(`${r}CrossFrame`);
    }
    const attention = `${prefix}/MultiHeadAttention`;
    added.push(
      makeNode('MultiHeadAttention', [q, kv.key, kv.value], [`${attention}_output_0`], scale === 'default' ? { num_heads: numHeads } : { num_heads: numHeads, scale: { float: scale } }, {
        name: attention,
        domain: 'com.microsoft',
      }),
    );

    // Insert after the last of the three projections, so every input of the new nodes exists.
    const after = [toQ, toK, toV].reduce((a, b) => ((position.get(a) ?? 0) >= (position.get(b) ?? 0) ? a : b));
    inserts.set(after, [...(inserts.get(after) ?? []), ...added]);
    const input = [...(toOut.input ?? [])];
    input[0] = `${attention}_output_0`;
    replacedToOut.set(toOut, onnx.NodeProto.create({ ...toOut, input }));
    details.push({ name: prefix, heads: numHeads, headsFrom: block.headsFrom, scale });
  }

  if (details.length === 0) {
    return { model, blocks: [], details };
  }

  const rewrittenNodes: onnx.INodeProto[] = [];
  for (const node of nodes) {
    rewrittenNodes.push(replacedToOut.get(node) ?? node);
    rewrittenNodes.push(...(inserts.get(node) ?? []));
  }
  const anchorsInput = makeValueInfo(CROSS_FRAME_ANCHORS_INPUT, DataType.INT64, ['anchors']);
  const pruned = pruneGraph(
    onnx.GraphProto.create({
      ...graph,
      node: rewrittenNodes,
      initializer: [...(graph.initializer ?? []), ...shared.initializers],
      input: [...(graph.input ?? []), ...(anchorKv === 'import' ? kvInputs : [anchorsInput])],
      output: [...(graph.output ?? []), ...kvOutputs],
    }),
  );
  const opsetImport = [...(model.opsetImport ?? [])];
  if (!opsetImport.some((o) => o.domain === 'com.microsoft')) opsetImport.push({ domain: 'com.microsoft', version: 1 });
  return {
    model: onnx.ModelProto.create({ ...model, graph: pruned, opsetImport }),
    blocks: details.map((d) => d.name),
    details,
  };
}

/**
 * The self-attention blocks of a UNet and what the rewrite would make of them (heads, where the
 * head count came from, scale), without changing anything. A block the rewrite could not handle
 * is listed with its `error`.
 */
export function inspectSelfAttention(model: onnx.IModelProto, options: { heads?: HeadsOption } = {}): (CrossFrameBlock | SelfAttentionProblem)[] {
  if (!model.graph) return [];
  checkHeadsOption(options.heads);
  const index = new GraphIndex(model.graph);
  const blocks: (CrossFrameBlock | SelfAttentionProblem)[] = [];
  let prefixes: string[];
  try {
    prefixes = selfAttentionPrefixes(index);
  } catch (error) {
    return [{ name: '(graph)', error: (error as Error).message }];
  }
  for (const prefix of prefixes) {
    try {
      const block = analyzeBlock(index, prefix, headsFor(options.heads, prefix));
      blocks.push({ name: prefix, heads: block.heads, headsFrom: block.headsFrom, scale: block.scale });
    } catch (error) {
      blocks.push({ name: prefix, error: (error as Error).message, ...(error instanceof UnknownHeadsError ? { headsUnknown: true } : {}) });
    }
  }
  return blocks;
}

/** A self-attention block the rewrite cannot handle, and why. */
export interface SelfAttentionProblem {
  name: string;
  error: string;
  /** The block is otherwise rewritable, but neither its graph nor the `heads` option gives its head count. */
  headsUnknown?: true;
}

/** Thrown for a block whose head count is neither in the graph nor in the `heads` option. */
export class UnknownHeadsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

function checkHeadsOption(heads: HeadsOption | undefined): void {
  const values = heads === undefined ? [] : typeof heads === 'number' ? [heads] : Object.values(heads);
  for (const value of values) {
    if (!(Number.isInteger(value) && value >= 1)) throw new TypeError(`Expected \`heads\` to be integers from 1 and up, got \`${String(value)}\``);
  }
}

function headsFor(heads: HeadsOption | undefined, prefix: string): number | undefined {
  return heads === undefined || typeof heads === 'number' ? heads : heads[prefix];
}

/** Block paths (`…/attn1`) in graph order, from their to_q MatMuls; a to_k without a to_q is an error. */
function selfAttentionPrefixes(index: GraphIndex): string[] {
  const prefixes = index.nodesEndingWith(Q_SUFFIX).map((n) => (n.name ?? '').slice(0, -'/to_q/MatMul'.length));
  const orphans = index
    .nodesEndingWith('/attn1/to_k/MatMul')
    .map((n) => (n.name ?? '').slice(0, -'/to_k/MatMul'.length))
    .filter((p) => !prefixes.includes(p));
  if (orphans.length > 0) throw new Error(`Self-attention block ${orphans[0]} has a to_k MatMul but no ${orphans[0]}/to_q/MatMul`);
  return prefixes;
}

interface BlockAnalysis {
  toQ: onnx.INodeProto;
  toK: onnx.INodeProto;
  toV: onnx.INodeProto;
  toOut: onnx.INodeProto;
  q: string;
  k: string;
  v: string;
  heads: number;
  headsFrom: 'graph' | 'option';
  scale: number | 'default';
}

/** Finds a block's projections, checks its core is a Softmax attention over q/k/v, reads heads and scale. */
function analyzeBlock(index: GraphIndex, prefix: string, fallbackHeads: number | undefined): BlockAnalysis {
  const need = (...suffixes: string[]): onnx.INodeProto => {
    for (const suffix of suffixes) {
      const node = index.nodesByName.get(prefix + suffix);
      if (node) return node;
    }
    throw new Error(`Self-attention block ${prefix} has no ${suffixes.map((suffix) => prefix + suffix).join(' or ')} node; cannot rewrite it for cross-frame attention`);
  };
  const toQ = need('/to_q/MatMul');
  const toK = need('/to_k/MatMul');
  const toV = need('/to_v/MatMul');
  const toOut = need(...TO_OUT_SUFFIXES);
  const q = toQ.output?.[0];
  const k = toK.output?.[0];
  const v = toV.output?.[0];
  const coreOut = toOut.input?.[0];
  if (!q || !k || !v || !coreOut) throw new Error(`Self-attention block ${prefix} has a projection without input or output names`);
  const qkv = new Set([q, k, v]);
  const core = traceCore(index, prefix, coreOut, qkv);
  const width = projectionWidth(index, toQ);
  const found = findHeads(index, q, width);
  const heads = found ?? fallbackHeads;
  if (heads === undefined) {
    throw new UnknownHeadsError(
      `Self-attention block ${prefix}: the graph does not show its head count (its head-split Reshape is computed at run time), and none was given; ` +
        'reelbot reads it from unet/config.json (num_attention_heads, or attention_head_dim as SD 1.x names it)',
    );
  }
  if (width !== undefined && width % heads !== 0) {
    throw new Error(`Self-attention block ${prefix}: width ${width} is not divisible by ${heads} heads${found === undefined ? ' (from the `heads` option)' : ''}`);
  }
  return { toQ, toK, toV, toOut, q, k, v, heads, headsFrom: found === undefined ? 'option' : 'graph', scale: findScale(index, core, qkv) };
}

/** Element type of a block's K/V: its to_k weight's, else the graph's first float input's, else float32. */
function kvElemType(index: GraphIndex, toK: onnx.INodeProto, graph: onnx.IGraphProto): number {
  const weight = toK.input?.[1];
  const init = weight ? index.initializers.get(weight) : undefined;
  if (init?.dataType) return init.dataType;
  const floats = new Set<number>([DataType.FLOAT, DataType.FLOAT16, DataType.BFLOAT16, DataType.DOUBLE]);
  for (const input of graph.input ?? []) {
    const elem = input.type?.tensorType?.elemType;
    if (elem && floats.has(elem)) return elem;
  }
  return DataType.FLOAT;
}

function sharedInitializers(groups: number) {
  const name = (n: string): string => `cross_frame/${n}`;
  const initializers = [
    int64Initializer(name('i0'), [1], [0]),
    int64Initializer(name('i1'), [1], [1]),
    int64Initializer(name('i2'), [1], [2]),
    int64Initializer(name('i3'), [1], [3]),
    int64Initializer(name('minus_one'), [1], [-1]),
    int64Initializer(name('groups'), [1], [groups]),
  ];
  return {
    initializers,
    i0: name('i0'),
    i1: name('i1'),
    i2: name('i2'),
    i3: name('i3'),
    minusOne: name('minus_one'),
    groups: name('groups'),
  };
}

/**
 * The nodes of the unfused core: every node named under `prefix/` that the core output depends on,
 * walking back until q, k and v. Checks that it is a Softmax attention over all three.
 */
function traceCore(index: GraphIndex, prefix: string, coreOut: string, qkv: Set<string>): onnx.INodeProto[] {
  const found = new Set<onnx.INodeProto>();
  const reached = new Set<string>();
  const stack = [coreOut];
  const seen = new Set<string>();
  while (stack.length > 0) {
    const tensor = stack.pop() as string;
    if (seen.has(tensor)) continue;
    seen.add(tensor);
    if (qkv.has(tensor)) {
      reached.add(tensor);
      continue;
    }
    const node = index.producers.get(tensor);
    if (!node || !node.name?.startsWith(`${prefix}/`)) continue;
    found.add(node);
    // A Shape only reads dims, so what feeds it is not part of the attention's data.
    if (node.opType === 'Shape') continue;
    for (const input of node.input ?? []) if (input) stack.push(input);
  }
  const coreNodes = [...found];
  if (!coreNodes.some((n) => n.opType === 'Softmax')) {
    throw new Error(`Self-attention block ${prefix}: no Softmax between its to_q/to_k/to_v MatMuls and its to_out MatMul; it is not the unfused attention this rewrite replaces`);
  }
  const missing = [...qkv].filter((t) => !reached.has(t));
  if (missing.length > 0) {
    throw new Error(`Self-attention block ${prefix}: the attention output does not depend on ${missing.join(', ')}`);
  }
  return coreNodes;
}

/** Output width C of a projection MatMul from its weight [Cin, C] (undefined when the weight is not an initializer). */
function projectionWidth(index: GraphIndex, matmul: onnx.INodeProto): number | undefined {
  const weight = matmul.input?.[1];
  const init = weight ? index.initializers.get(weight) : undefined;
  const dims = init ? tensorDims(init) : [];
  return dims.length === 2 ? dims[1] : undefined;
}

/**
 * The head count from the head-split Reshape on the q path: its shape is `[0, -1, H, D]` (an
 * initializer or Constant) or a Concat whose third element is a constant H (torch exports compute
 * the batch at run time). Falls back to C / D when only D is constant. Undefined when neither is.
 */
function findHeads(index: GraphIndex, q: string, width: number | undefined): number | undefined {
  for (const consumer of index.consumers.get(q) ?? []) {
    if (consumer.opType !== 'Reshape' || consumer.input?.[0] !== q) continue;
    const shapeName = consumer.input?.[1];
    if (!shapeName) continue;
    const full = index.constantValue(shapeName);
    let parts: (number | undefined)[] | undefined;
    if (full) parts = full;
    else {
      const concat = index.concatParts(shapeName);
      // A run-time part is one element (an Unsqueezed scalar) in every export seen.
      if (concat) parts = concat.flatMap((part) => (part === undefined ? [undefined] : part));
    }
    if (!parts || parts.length !== 4) continue;
    const heads = parts[2];
    if (heads !== undefined && heads > 0) return heads;
    const headDim = parts[3];
    if (headDim !== undefined && headDim > 0 && width !== undefined && width % headDim === 0) return width / headDim;
  }
  return undefined;
}

/**
 * The softmax scale of the original core: the product of the constant factors applied on the
 * data path (Mul by a constant, Div by a constant, FusedMatMul's alpha). 'default' when the graph
 * computes it at run time or shows none, in which case MultiHeadAttention's 1/√D is used, which
 * is what diffusers' SD 1.x attention does.
 */
function findScale(index: GraphIndex, core: onnx.INodeProto[], qkv: Set<string>): number | 'default' {
  const onPath = new Set(qkv);
  const order = new Map((index.graph.node ?? []).map((n, i) => [n, i]));
  const sorted = [...core].sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
  let factor = 1;
  let found = false;
  for (const node of sorted) {
    const inputs = node.input ?? [];
    const dataInputs = inputs.filter((i) => onPath.has(i));
    if (dataInputs.length === 0 || node.opType === 'Shape') continue;
    for (const out of node.output ?? []) if (out) onPath.add(out);
    if ((node.opType === 'Mul' || node.opType === 'Div') && dataInputs.length === 1) {
      const dataIndex = inputs.indexOf(dataInputs[0] as string);
      const other = inputs[1 - dataIndex];
      const value = other ? index.constantValue(other) : undefined;
      const scalar = value && value.length > 0 && value.every((x) => x === value[0]) ? value[0] : undefined;
      if (scalar === undefined || (node.opType === 'Div' && dataIndex !== 0)) return 'default';
      factor = node.opType === 'Mul' ? factor * scalar : factor / scalar;
      found = true;
    } else if (node.opType === 'FusedMatMul') {
      const alpha = node.attribute?.find((a) => a.name === 'alpha')?.f;
      if (alpha !== undefined && alpha !== null && alpha !== 1) {
        factor *= alpha;
        found = true;
      }
    }
  }
  return found ? factor : 'default';
}

/**
 * Drops nodes whose outputs nothing consumes any more (repeatedly, so whole dead chains go), then
 * initializers, inputs listed for them and value infos that no node uses.
 */
function pruneGraph(graph: onnx.GraphProto): onnx.GraphProto {
  const nodes = graph.node ?? [];
  const uses = new Map<string, number>();
  const use = (name: string | null | undefined, delta: number): void => {
    if (name) uses.set(name, (uses.get(name) ?? 0) + delta);
  };
  for (const out of graph.output ?? []) use(out.name, 1);
  for (const node of nodes) {
    for (const input of node.input ?? []) use(input, 1);
    for (const name of subgraphReferences(node)) use(name, 1);
  }
  const producer = new Map<string, onnx.INodeProto>();
  for (const node of nodes) for (const out of node.output ?? []) if (out) producer.set(out, node);
  const dead = new Set<onnx.INodeProto>();
  const isDead = (node: onnx.INodeProto): boolean => (node.output ?? []).length > 0 && (node.output ?? []).every((o) => !o || (uses.get(o) ?? 0) === 0);
  const queue = nodes.filter(isDead);
  while (queue.length > 0) {
    const node = queue.pop() as onnx.INodeProto;
    if (dead.has(node)) continue;
    dead.add(node);
    const inputs = [...(node.input ?? []), ...subgraphReferences(node)];
    for (const input of inputs) {
      use(input, -1);
      const up = input ? producer.get(input) : undefined;
      if (up && !dead.has(up) && isDead(up)) queue.push(up);
    }
  }
  const kept = nodes.filter((n) => !dead.has(n));
  const used = new Set<string>();
  for (const node of kept) {
    for (const input of node.input ?? []) if (input) used.add(input);
    for (const name of subgraphReferences(node)) used.add(name);
  }
  for (const out of graph.output ?? []) if (out.name) used.add(out.name);
  const droppedInitializers = new Set((graph.initializer ?? []).filter((i) => !used.has(i.name ?? '')).map((i) => i.name ?? ''));
  const produced = new Set(kept.flatMap((n) => n.output ?? []));
  return onnx.GraphProto.create({
    ...graph,
    node: kept,
    initializer: (graph.initializer ?? []).filter((i) => !droppedInitializers.has(i.name ?? '')),
    // Old-style models list initializers among the inputs as well; an unused one would become a required feed.
    input: (graph.input ?? []).filter((i) => !droppedInitializers.has(i.name ?? '')),
    valueInfo: (graph.valueInfo ?? []).filter((vi) => produced.has(vi.name ?? '')),
  });
}

/** Outer-scope names that If/Loop/Scan bodies read (they do not list them as node inputs). */
function subgraphReferences(node: onnx.INodeProto): string[] {
  const names: string[] = [];
  const visit = (graph: onnx.IGraphProto): void => {
    for (const inner of graph.node ?? []) {
      for (const input of inner.input ?? []) if (input) names.push(input);
      for (const attr of inner.attribute ?? []) {
        if (attr.g) visit(attr.g);
        for (const g of attr.graphs ?? []) visit(g);
      }
    }
  };
  for (const attr of node.attribute ?? []) {
    if (attr.g) visit(attr.g);
    for (const g of attr.graphs ?? []) visit(g);
  }
  return names;
}

/**
 * The `cross_frame_anchors` feed for one run, checked against the batch: the batch must split
 * into `groups` equal CFG groups, and every anchor must name one of their frames (negative
 * counts from the last frame).
 *
 * @example crossFrameAnchors([0, -1], { batch: 16, groups: 2 }) // first and last of 8 frames
 */
export function crossFrameAnchors(anchors: readonly number[], options: { batch: number; groups: number }): Tensor {
  const { batch, groups } = options;
  if (!(Number.isInteger(groups) && groups >= 1)) throw new TypeError(`Expected \`groups\` to be an integer from 1 and up, got \`${String(groups)}\``);
  if (!(Number.isInteger(batch) && batch >= 1) || batch % groups !== 0) {
    throw new RangeError(`The UNet batch (${batch}) must be a multiple of the ${groups} guidance groups the cross-frame rewrite was built for`);
  }
  const frames = batch / groups;
  if (anchors.length === 0) throw new RangeError('Cross-frame attention needs at least one anchor frame');
  for (const a of anchors) {
    if (!Number.isInteger(a) || a < -frames || a >= frames) {
      throw new RangeError(`Anchor frame ${a} is outside the ${frames} frames of each guidance group (use 0…${frames - 1}, or −1 for the last)`);
    }
  }
  return int64Tensor(anchors, [anchors.length]);
}

export interface LoadRewrittenUnetOptions extends CrossFrameOptions {
  /** Where to write the rewritten model when the UNet's folder is read-only (only for models without external data). Default: the OS temp folder. */
  cacheDir?: string;
}

/** Where {@link loadRewrittenUnet} put the rewritten UNet, and what it rewrote. */
export interface RewrittenUnet {
  /** The rewritten model file; load it by path so its external data resolves. */
  path: string;
  blocks: string[];
  details: CrossFrameBlock[];
  /** True when the file was already there from an earlier call. */
  cached: boolean;
}

/**
 * Rewrites a UNet file for cross-frame attention and writes the result next to the original, so
 * that its external data (`model.onnx_data`) resolves; load the returned path. Only the graph file
 * is read: the weights stay in the external data file, untouched. The file name carries a hash
 * of the original file, the options and the rewrite version, so a later call (or another worker)
 * reuses it. The graph is rewritten again in memory every time (milliseconds) to report the blocks.
 */
export async function loadRewrittenUnet(unetPath: string, options: LoadRewrittenUnetOptions): Promise<RewrittenUnet> {
  const { model, bytes } = await readModelFile(unetPath);
  const hash = createHash('sha256')
    .update(bytes)
    .update(JSON.stringify({ version: CROSS_FRAME_REWRITE_VERSION, groups: options.groups, heads: options.heads ?? null, ...(options.anchorKv ? { anchorKv: options.anchorKv } : {}) }))
    .digest('hex')
    .slice(0, 16);
  const external = externalDataLocations(model);
  const { model: rewritten, blocks, details } = rewriteCrossFrameAttention(model, options);
  if (blocks.length === 0) {
    throw new Error(`${unetPath} has no self-attention blocks (no node named …${Q_SUFFIX}); cannot set up cross-frame attention`);
  }
  const fileName = `${basename(unetPath, '.onnx')}.crossframe${options.anchorKv ? `-kv${options.anchorKv}` : ''}-${hash}.onnx`;
  const beside = join(dirname(unetPath), fileName);
  if (await isFile(beside)) return { path: beside, blocks, details, cached: true };
  const encoded = encodeModel(rewritten);
  try {
    await writeAtomically(beside, encoded);
    return { path: beside, blocks, details, cached: false };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw error;
    if (external.length > 0) {
      throw new Error(
        `Cannot write the cross-frame UNet next to ${unetPath} (${code}); it must sit beside its external data ${external.join(', ')}. Make ${dirname(unetPath)} writable.`,
        { cause: error },
      );
    }
    const dir = options.cacheDir ?? join(tmpdir(), 'reelbot-crossframe');
    await mkdir(dir, { recursive: true });
    const elsewhere = join(dir, fileName);
    if (await isFile(elsewhere)) return { path: elsewhere, blocks, details, cached: true };
    await writeAtomically(elsewhere, encoded);
    return { path: elsewhere, blocks, details, cached: false };
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    return info.isFile() && info.size > 0;
  } catch {
    return false;
  }
}

/** Write to a temp name and rename, so a concurrent reader never sees half a file. */
async function writeAtomically(path: string, data: Uint8Array): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, data);
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}
