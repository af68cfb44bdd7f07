/**
 * @file The load-time UNet rewrite for cross-frame attention (Text2Video-Zero's
 * `CrossFrameAttnProcessor`, Fairy-style anchors). One rewritten graph serves every way the
 * pipelines call the UNet, so a worker holds each UNet's weights once: each self-attention block
 * (`…/attn1`) takes its keys and values from frames the caller names at run time, and its unfused
 * attention core is replaced by one `com.microsoft.MultiHeadAttention` node.
 *
 * The batch [B, N, C] splits into attention groups of F consecutive items (F a run-time input):
 * every frame of a group attends to the same keys/values, so the group's queries attend once,
 * as one sequence, and nothing is copied per frame. Per block, from the to_k / to_v outputs t:
 * ```
 * t4  = Reshape(t, [G, F, N, C])                     # G = B / F attention groups
 * own = Reshape(Gather(t4, cross_frame_anchors, axis=1), [G, A·N, C])
 * imp = Expand(anchor_k.<i>, [G, 1, C])              # imported K/V [G|1, M, C|1] → [G, M, C]
 * kv  = Concat(imp, own, axis=1)                     # [G, M + A·N, C]
 * out = Reshape(MultiHeadAttention(Reshape(q, [G, F·N, C]), k, v, num_heads=H), [B, N, C]) → to_out
 * exported_k.<i> = Reshape(Gather(t4, cross_frame_export, axis=1), [G, E·N, C])   # extra output
 * ```
 * Run-time inputs (all required; zero-length dims switch a part off, ORT 1.30 accepts them):
 * - `cross_frame_group_frames` int64 [1]: F. Per-frame attention is F = 1 with anchors [0] (each
 *   frame its own group); Text2Video-Zero is F = the frames of a guidance group, anchors [0].
 * - `cross_frame_anchors` int64 [A]: frames of each group (negative from its last) whose own K/V
 *   the group attends to; A = 0 uses only the imported K/V.
 * - `cross_frame_export` int64 [E]: frames whose K/V come back in `exported_k.<i>` / `exported_v.<i>`
 *   ([G, E·N, C]); E = 0 (the usual call) exports nothing and costs nothing.
 * - `anchor_k.<i>` / `anchor_v.<i>`: imported K/V put before the group's own, e.g. the anchors'
 *   K/V exported by an earlier call of the same step, handed back unchanged. Empty: [1, 0, 1].
 * The clip edit runs the anchors alone (anchors and export 0…A−1), then each chunk with A = 0
 * and the anchors' K/V imported. Measured background and the reasons for MultiHeadAttention (about
 * 4× less memory than the Softmax core): /work/shared/onnx-runtime.md §3. The feeds of one call
 * are built by ./cross-frame-feeds.ts; ./cross-frame-file.ts rewrites a UNet file once and caches it.
 *
 * fp16 UNets: the CPU provider has no float16 MultiHeadAttention kernel (onnx-runtime.md §5), so
 * with `float32Attention` the rewrite casts q, k and v to float32 around it and the result back;
 * GPU providers run the graph in float16 as it is.
 */
import {
  DataType,
  GraphIndex,
  type AttributeValue,
  int64Initializer,
  makeNode,
  makeValueInfo,
  onnx,
  tensorDims,
} from './proto.js';

/** Graph input: int64 [1], the frames per attention group (consecutive batch items that attend together). */
export const CROSS_FRAME_GROUP_INPUT = 'cross_frame_group_frames';
/** Graph input: int64 [A], the frames of each attention group whose own keys/values the group attends to. */
export const CROSS_FRAME_ANCHORS_INPUT = 'cross_frame_anchors';
/** Graph input: int64 [E], the frames whose keys/values the call hands back. */
export const CROSS_FRAME_EXPORT_INPUT = 'cross_frame_export';

/** Bumped whenever the rewrite's output changes, so cached rewritten files are rebuilt. */
export const CROSS_FRAME_REWRITE_VERSION = 3;

/**
 * Head counts for blocks whose graph does not show theirs: one for every block, or one per block
 * path (`…/attn1`), as the folder check reads them from `unet/config.json`.
 */
export type HeadsOption = number | Readonly<Record<string, number>>;

export interface CrossFrameOptions {
  /**
   * Heads to use where the graph does not say (the head-split Reshape has no constant head count):
   * one number, or one per block path. No default: a block whose head count is neither in the
   * graph nor here is refused rather than guessed.
   */
  heads?: HeadsOption;
  /**
   * Cast q, k and v to float32 around each MultiHeadAttention and its output back (for float16
   * graphs on the CPU provider, which has only a float32 kernel). No effect on float32 graphs.
   */
  float32Attention?: boolean;
}

/** Name of the imported anchor keys (`key`) / values (`value`) input of attn1 block `index`. */
export function anchorKvName(role: 'key' | 'value', index: number): string {
  return `anchor_${role === 'key' ? 'k' : 'v'}.${index}`;
}

/** Name of the exported keys / values output of attn1 block `index` (feed it back as {@link anchorKvName}). */
export function exportedKvName(role: 'key' | 'value', index: number): string {
  return `exported_${role === 'key' ? 'k' : 'v'}.${index}`;
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
  /** Rewritten block names, in graph order (block i owns `anchor_k.<i>`, `exported_k.<i>`…). */
  blocks: string[];
  details: CrossFrameBlock[];
  /** The K/V element type: 'float16' for a float16 UNet, else 'float32'. */
  kvType: 'float32' | 'float16';
}

const Q_SUFFIX = '/attn1/to_q/MatMul';
/**
 * The output projection's node, as torch's exporter names it: older versions scope a ModuleList
 * element under its list (`to_out/to_out.0`), torch 2.x names it `to_out.0` (seen on a diffusers
 * export made with torch 2.11).
 */
const TO_OUT_SUFFIXES = ['/to_out/to_out.0/MatMul', '/to_out.0/MatMul'] as const;

/**
 * Rewrites every self-attention block of a UNet for cross-frame attention (see the file comment).
 * The input model is not modified; initializers (including external-data ones) are shared with
 * the result. Throws when a block cannot be rewritten; returns the model as is when there is none.
 *
 * @example
 * const { model: rewritten, blocks } = rewriteCrossFrameAttention(unet);
 * // feed crossFrameFeeds({ batch: 16, groups: 2, blocks: blocks.length, index: sharedAnchors([0], 8) })
 */
export function rewriteCrossFrameAttention(model: onnx.ModelProto, options: CrossFrameOptions = {}): CrossFrameResult {
  checkHeadsOption(options.heads);
  const graph = model.graph;
  if (!graph) throw new Error('The model has no graph');
  if ((graph.input ?? []).some((i) => i.name === CROSS_FRAME_ANCHORS_INPUT || i.name === anchorKvName('key', 0))) {
    throw new Error(`The model already has a \`${CROSS_FRAME_ANCHORS_INPUT}\` input: it was rewritten for cross-frame attention before`);
  }
  const index = new GraphIndex(graph);
  const nodes = graph.node ?? [];
  const position = new Map<onnx.INodeProto, number>(nodes.map((n, i) => [n, i]));

  const shared = sharedInitializers();
  const inserts = new Map<onnx.INodeProto, onnx.INodeProto[]>();
  const replacedToOut = new Map<onnx.INodeProto, onnx.NodeProto>();
  const details: CrossFrameBlock[] = [];
  const kvInputs: onnx.ValueInfoProto[] = [];
  const kvOutputs: onnx.ValueInfoProto[] = [];
  let kvElem: number = DataType.FLOAT;

  for (const [blockIndex, prefix] of selfAttentionPrefixes(index).entries()) {
    const block = analyzeBlock(index, prefix, headsFor(options.heads, prefix));
    const { toQ, toK, toV, toOut, q, k, v, heads: numHeads, scale } = block;
    const elem = kvElemType(index, toK, graph);
    if (blockIndex === 0) kvElem = elem;
    const castAttention = options.float32Attention === true && elem === DataType.FLOAT16;

    const p = `${prefix}/cross_frame`;
    const t = (name: string): string => `${p}/${name}_output_0`;
    const n = (opType: string, inputs: string[], name: string, attrs: Parameters<typeof makeNode>[3] = {}): onnx.NodeProto =>
      makeNode(opType, inputs, [t(name)], attrs, { name: `${p}/${name}` });
    // Shapes. A 0 in a Reshape shape means "copy the input's dim" (allowzero is opset 14+): the only
    // zero dims here (A·N with A = 0, E·N with E = 0) sit where the input's dim is that same 0.
    const added: onnx.INodeProto[] = [
      n('Shape', [k], 'Shape'),
      n('Slice', [t('Shape'), shared.i0, shared.i1], 'Batch'),
      n('Slice', [t('Shape'), shared.i1, shared.i2], 'Tokens'),
      n('Slice', [t('Shape'), shared.i2, shared.i3], 'Width'),
      n('Div', [t('Batch'), CROSS_FRAME_GROUP_INPUT], 'Groups'),
      n('Shape', [CROSS_FRAME_ANCHORS_INPUT], 'AnchorCount'),
      n('Shape', [CROSS_FRAME_EXPORT_INPUT], 'ExportCount'),
      n('Mul', [t('AnchorCount'), t('Tokens')], 'AnchorTokens'),
      n('Mul', [t('ExportCount'), t('Tokens')], 'ExportTokens'),
      n('Mul', [CROSS_FRAME_GROUP_INPUT, t('Tokens')], 'GroupTokens'),
      n('Concat', [t('Groups'), CROSS_FRAME_GROUP_INPUT, t('Tokens'), t('Width')], 'GroupShape', { axis: 0 }),
      n('Concat', [t('Groups'), t('AnchorTokens'), t('Width')], 'OwnShape', { axis: 0 }),
      n('Concat', [t('Groups'), shared.i1, t('Width')], 'ImportShape', { axis: 0 }),
      n('Concat', [t('Groups'), t('ExportTokens'), t('Width')], 'ExportShape', { axis: 0 }),
      n('Concat', [t('Groups'), t('GroupTokens'), t('Width')], 'QueryShape', { axis: 0 }),
      n('Concat', [t('Batch'), t('Tokens'), t('Width')], 'OutShape', { axis: 0 }),
      n('Reshape', [q, t('QueryShape')], 'Query'),
    ];
    const kv: Record<'key' | 'value', string> = { key: '', value: '' };
    for (const [role, source] of [['key', k], ['value', v]] as const) {
      const r = `${role}_`;
      const imported = anchorKvName(role, blockIndex);
      const exported = exportedKvName(role, blockIndex);
      kvInputs.push(makeValueInfo(imported, elem, [`anchor_groups.${blockIndex}`, `anchor_tokens.${blockIndex}`, `anchor_width.${blockIndex}`]));
      kvOutputs.push(makeValueInfo(exported, elem, ['groups', `exported_tokens.${blockIndex}`, `width.${blockIndex}`]));
      added.push(
        n('Reshape', [source, t('GroupShape')], `${r}Grouped`),
        n('Gather', [t(`${r}Grouped`), CROSS_FRAME_ANCHORS_INPUT], `${r}Own`, { axis: 1 }),
        n('Reshape', [t(`${r}Own`), t('OwnShape')], `${r}OwnJoined`),
        n('Expand', [imported, t('ImportShape')], `${r}Imported`),
        n('Concat', [t(`${r}Imported`), t(`${r}OwnJoined`)], `${r}CrossFrame`, { axis: 1 }),
        n('Gather', [t(`${r}Grouped`), CROSS_FRAME_EXPORT_INPUT], `${r}Export`, { axis: 1 }),
        makeNode('Reshape', [t(`${r}Export`), t('ExportShape')], [exported], {}, { name: `${p}/${r}Exported` }),
      );
      kv[role] = t(`${r}CrossFrame`);
    }
    const attention = `${prefix}/MultiHeadAttention`;
    const attrs: Record<string, AttributeValue> = scale === 'default' ? { num_heads: numHeads } : { num_heads: numHeads, scale: { float: scale } };
    let attentionInputs = [t('Query'), kv.key, kv.value];
    if (castAttention) {
      attentionInputs = attentionInputs.map((input, i) => {
        const name = ['q', 'k', 'v'][i] as string;
        added.push(n('Cast', [input], `${name}_Float32`, { to: DataType.FLOAT }));
        return t(`${name}_Float32`);
      });
    }
    // [groups, frames·N, C] → [B, N, C] for to_out.
    const grouped = `${attention}_grouped_output_0`;
    const attentionOut = `${attention}_output_0`;
    added.push(
      makeNode('MultiHeadAttention', attentionInputs, [castAttention ? `${attention}_float32_output_0` : grouped], attrs, {
        name: attention,
        domain: 'com.microsoft',
      }),
    );
    if (castAttention) added.push(makeNode('Cast', [`${attention}_float32_output_0`], [grouped], { to: DataType.FLOAT16 }, { name: `${attention}/Cast` }));
    added.push(makeNode('Reshape', [grouped, t('OutShape')], [attentionOut], {}, { name: `${attention}/Frames` }));

    // Insert after the last of the three projections, so every input of the new nodes exists.
    const after = [toQ, toK, toV].reduce((a, b) => ((position.get(a) ?? 0) >= (position.get(b) ?? 0) ? a : b));
    inserts.set(after, [...(inserts.get(after) ?? []), ...added]);
    const input = [...(toOut.input ?? [])];
    input[0] = attentionOut;
    replacedToOut.set(toOut, onnx.NodeProto.create({ ...toOut, input }));
    details.push({ name: prefix, heads: numHeads, headsFrom: block.headsFrom, scale });
  }

  const kvType = kvElem === DataType.FLOAT16 ? 'float16' : 'float32';
  if (details.length === 0) {
    return { model, blocks: [], details, kvType };
  }

  const rewrittenNodes: onnx.INodeProto[] = [];
  for (const node of nodes) {
    rewrittenNodes.push(replacedToOut.get(node) ?? node);
    rewrittenNodes.push(...(inserts.get(node) ?? []));
  }
  const controlInputs = [
    makeValueInfo(CROSS_FRAME_GROUP_INPUT, DataType.INT64, [1]),
    makeValueInfo(CROSS_FRAME_ANCHORS_INPUT, DataType.INT64, ['anchors']),
    makeValueInfo(CROSS_FRAME_EXPORT_INPUT, DataType.INT64, ['exported_frames']),
  ];
  const pruned = pruneGraph(
    onnx.GraphProto.create({
      ...graph,
      node: rewrittenNodes,
      initializer: [...(graph.initializer ?? []), ...shared.initializers],
      input: [...(graph.input ?? []), ...controlInputs, ...kvInputs],
      output: [...(graph.output ?? []), ...kvOutputs],
    }),
  );
  const opsetImport = [...(model.opsetImport ?? [])];
  if (!opsetImport.some((o) => o.domain === 'com.microsoft')) opsetImport.push({ domain: 'com.microsoft', version: 1 });
  return {
    model: onnx.ModelProto.create({ ...model, graph: pruned, opsetImport }),
    blocks: details.map((d) => d.name),
    details,
    kvType,
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

function sharedInitializers() {
  const name = (n: string): string => `cross_frame/${n}`;
  const initializers = [
    int64Initializer(name('i0'), [1], [0]),
    int64Initializer(name('i1'), [1], [1]),
    int64Initializer(name('i2'), [1], [2]),
    int64Initializer(name('i3'), [1], [3]),
    int64Initializer(name('minus_one'), [1], [-1]),
  ];
  return { initializers, i0: name('i0'), i1: name('i1'), i2: name('i2'), i3: name('i3'), minusOne: name('minus_one') };
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
