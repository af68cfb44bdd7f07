/**
 * Neural-network building blocks for the built-in model sets, emitted as ONNX nodes the way a
 * TorchScript export of diffusers/transformers spells them (Conv, MatMul+Add, InstanceNormalization
 * group norm, Sigmoid·Mul SiLU, erf GELU…).
 *
 * Tensors carry their channel count and their size at the model's reference resolution
 * (batch 1), so each helper can add its multiply-accumulates to `GraphBuilder.macs` and the
 * builders can report GFLOP per frame without running anything.
 */
import { float, paramPrefix, type GraphBuilder } from './graph-builder.js';

/** An image-like tensor [batch, c, h, w]; h and w are the reference (default-resolution) sizes. */
export interface Spatial {
  readonly name: string;
  readonly c: number;
  readonly h: number;
  readonly w: number;
}

/** A token sequence [batch, n, c] (or a vector [batch, c], counted as n = 1); n is the reference length. */
export interface Sequence {
  readonly name: string;
  readonly n: number;
  readonly c: number;
}

/** 1 / sqrt(E[silu(z)^2]) for z ~ N(0, 1): the gain that keeps unit variance through SiLU → linear/conv. */
export const SILU_GAIN = 1 / Math.sqrt(0.3558);
/** E[silu(z)] for z ~ N(0, 1); a conv after SiLU subtracts it through its bias to give zero-mean outputs. */
export const SILU_MEAN = 0.2066;

/** Standard deviation of the weight init: gain / sqrt(fan_in), so activations stay O(1). */
function initStd(fanIn: number, gain: number): number {
  return gain / Math.sqrt(fanIn);
}

/** Small random biases: zero biases would hide bugs in broadcasting, large ones would shift activations. */
const BIAS_STD = 0.02;

/** Options of {@link conv2d}. */
export interface ConvOptions {
  kernel?: number;
  stride?: number;
  /** Zero padding on every side; default (kernel − 1) / 2 ("same" at stride 1). */
  padding?: number;
  gain?: number;
  /** Expected mean of the input (e.g. {@link SILU_MEAN}); folded into the bias so the output is zero-mean. */
  inputMean?: number;
  /** Output tensor name (for graph outputs). */
  output?: string;
}

/** Conv2d with bias, same padding unless `padding` says otherwise; weight `<prefix>.weight` [out, in, k, k]. */
export function conv2d(b: GraphBuilder, x: Spatial, scope: string, outChannels: number, options: ConvOptions = {}): Spatial {
  const kernel = options.kernel ?? 3;
  const stride = options.stride ?? 1;
  const pad = options.padding ?? (kernel - 1) >> 1;
  const fanIn = x.c * kernel * kernel;
  const prefix = paramPrefix(scope);
  // Drawn only when the builder keeps weights (not when it only counts): weights first, then biases.
  let weights: Float32Array | undefined;
  const weight = b.param(`${prefix}.weight`, [outChannels, x.c, kernel, kernel], () => (weights = b.rng.normals(outChannels * fanIn, initStd(fanIn, options.gain ?? 1))));
  const bias = b.param(`${prefix}.bias`, [outChannels], () => {
    const biases = b.rng.normals(outChannels, BIAS_STD);
    if (options.inputMean !== undefined && weights) {
      for (let o = 0; o < outChannels; o++) {
        let sum = 0;
        for (let i = o * fanIn; i < (o + 1) * fanIn; i++) sum += weights[i] ?? 0;
        biases[o] = (biases[o] ?? 0) - options.inputMean * sum;
      }
    }
    return biases;
  });
  const h = Math.floor((x.h + 2 * pad - kernel) / stride) + 1;
  const w = Math.floor((x.w + 2 * pad - kernel) / stride) + 1;
  b.macs += fanIn * outChannels * h * w;
  const name = b.op('Conv', [x.name, weight, bias], scope, {
    attrs: { dilations: [1, 1], group: 1, kernel_shape: [kernel, kernel], pads: [pad, pad, pad, pad], strides: [stride, stride] },
    ...(options.output ? { outputs: [options.output] } : {}),
  });
  return { name, c: outChannels, h, w };
}

/** Options of {@link linear}. */
export interface LinearOptions {
  bias?: boolean;
  gain?: number;
}

/**
 * Linear layer over the last axis: `<scope>/MatMul` with an `onnx::MatMul_<n>` weight [in, out],
 * then `<scope>/Add` with `<prefix>.bias` unless `bias: false`.
 */
export function linear(b: GraphBuilder, x: Sequence, scope: string, outFeatures: number, options: LinearOptions = {}): Sequence {
  const weight = b.matmulWeight([x.c, outFeatures], () => b.rng.normals(x.c * outFeatures, initStd(x.c, options.gain ?? 1)));
  b.macs += x.n * x.c * outFeatures;
  let name = b.op('MatMul', [x.name, weight], scope);
  if (options.bias ?? true) {
    const bias = b.param(`${paramPrefix(scope)}.bias`, [outFeatures], () => b.rng.normals(outFeatures, BIAS_STD));
    name = b.op('Add', [bias, name], scope);
  }
  return { name, n: x.n, c: outFeatures };
}

/** SiLU as torch exports it: Sigmoid then Mul. */
export function silu<T extends { name: string }>(b: GraphBuilder, x: T, scope: string): T {
  const sigmoid = b.op('Sigmoid', [x.name], scope);
  return { ...x, name: b.op('Mul', [x.name, sigmoid], scope) };
}

/** Elementwise Add of two tensors of the same shape (residuals). */
export function add<T extends { name: string }>(b: GraphBuilder, x: T, y: { name: string }, scope: string): T {
  return { ...x, name: b.op('Add', [x.name, y.name], scope) };
}

/**
 * GroupNorm as a TorchScript export at opset < 18 writes it: Reshape [B, G, -1] →
 * InstanceNormalization (unit scale, zero bias) → Reshape back → Mul weight → Add bias.
 * (Opset 18's GroupNormalization takes per-group scales, a spec bug fixed in opset 21; onnxruntime
 * runs both only as function expansions, so the explicit form is no slower.)
 */
export function groupNorm(b: GraphBuilder, x: Spatial, scope: string, groups: number, epsilon = 1e-5): Spatial {
  if (x.c % groups !== 0) throw new Error(`${scope}: ${x.c} channels do not split into ${groups} groups.`);
  const prefix = paramPrefix(scope);
  const grouped = b.op('Reshape', [x.name, b.constInt64(scope, [0, groups, -1])], scope);
  const ones = b.constFloat(scope, [groups], new Float32Array(groups).fill(1));
  const zeros = b.constFloat(scope, [groups], new Float32Array(groups));
  const normed = b.op('InstanceNormalization', [grouped, ones, zeros], scope, { attrs: { epsilon: float(epsilon) } });
  const shape = b.op('Shape', [x.name], scope);
  const back = b.op('Reshape', [normed, shape], scope);
  const weight = b.param(`${prefix}.weight`, [x.c, 1, 1], new Float32Array(x.c).fill(1));
  const bias = b.param(`${prefix}.bias`, [x.c, 1, 1], new Float32Array(x.c));
  const scaled = b.op('Mul', [back, weight], scope);
  return { ...x, name: b.op('Add', [scaled, bias], scope) };
}

/** LayerNorm over the last axis (LayerNormalization, opset 17), weight 1 and bias 0 as torch initialises it. */
export function layerNorm(b: GraphBuilder, x: Sequence, scope: string, epsilon = 1e-5, output?: string): Sequence {
  const prefix = paramPrefix(scope);
  const weight = b.param(`${prefix}.weight`, [x.c], new Float32Array(x.c).fill(1));
  const bias = b.param(`${prefix}.bias`, [x.c], new Float32Array(x.c));
  const name = b.op('LayerNormalization', [x.name, weight, bias], scope, {
    attrs: { axis: -1, epsilon: float(epsilon) },
    ...(output ? { outputs: [output] } : {}),
  });
  return { ...x, name };
}

/** Options of {@link attention}. */
export interface AttentionOptions {
  heads: number;
  /** Biases on the q/k/v projections (CLIP has them, the SD UNet does not). */
  qkvBias?: boolean;
  /** Projection module names: diffusers `to_q…to_out/to_out.0`, CLIP `q_proj…out_proj`. */
  names?: { q: string; k: string; v: string; out: string };
  /** An additive mask [n, n] added to the scaled scores (CLIP's causal mask). */
  mask?: string;
  /** Std of the scaled scores for unit-variance inputs (q and k weights get gain √scoreStd). Default 1. */
  scoreStd?: number;
  /** Gain of the to_out weights. Default 1. */
  outGain?: number;
}

const DIFFUSERS_NAMES = { q: 'to_q', k: 'to_k', v: 'to_v', out: 'to_out/to_out.0' } as const;

/**
 * Multi-head attention exactly as a TorchScript export of diffusers' `Attention` spells it (the
 * cross-frame rewrite depends on this pattern):
 * ```
 * <p>/to_q/MatMul(x, onnx::MatMul_a)   <p>/to_k/MatMul(ctx, ..)   <p>/to_v/MatMul(ctx, ..)
 * <p>/Reshape(q, [0,-1,H,D]) → <p>/Transpose(perm 0,2,1,3)      (k: Reshape_1/Transpose_1, v: Reshape_2/Transpose_2)
 * <p>/Transpose_3(kh, perm 0,1,3,2) → <p>/MatMul(qh, khᵀ) → <p>/Mul(1/√D) → <p>/Softmax(axis -1)
 * → <p>/MatMul_1(·, vh) → <p>/Transpose_4(perm 0,2,1,3) → <p>/Reshape_3([0,-1,C])
 * → <p>/to_out/to_out.0/MatMul → <p>/to_out/to_out.0/Add (bias)
 * ```
 */
export function attention(b: GraphBuilder, x: Sequence, context: Sequence, scope: string, options: AttentionOptions): Sequence {
  const { heads } = options;
  const names = options.names ?? DIFFUSERS_NAMES;
  const c = x.c;
  if (c % heads !== 0) throw new Error(`${scope}: ${c} channels do not split into ${heads} heads.`);
  const d = c / heads;
  const bias = options.qkvBias ?? false;
  const qkGain = Math.sqrt(options.scoreStd ?? 1);
  const q = linear(b, x, `${scope}/${names.q}`, c, { bias, gain: qkGain });
  const k = linear(b, context, `${scope}/${names.k}`, c, { bias, gain: qkGain });
  const v = linear(b, context, `${scope}/${names.v}`, c, { bias });
  const splitHeads = (t: Sequence): string => {
    const reshaped = b.op('Reshape', [t.name, b.constInt64(scope, [0, -1, heads, d])], scope);
    return b.op('Transpose', [reshaped], scope, { attrs: { perm: [0, 2, 1, 3] } });
  };
  const qh = splitHeads(q);
  const kh = splitHeads(k);
  const vh = splitHeads(v);
  const kt = b.op('Transpose', [kh], scope, { attrs: { perm: [0, 1, 3, 2] } });
  b.macs += 2 * x.n * context.n * c; // scores and probabilities·V
  const scores = b.op('MatMul', [qh, kt], scope);
  let scaled = b.op('Mul', [scores, b.constFloat(scope, [], [1 / Math.sqrt(d)])], scope);
  if (options.mask) scaled = b.op('Add', [scaled, options.mask], scope);
  const probs = b.op('Softmax', [scaled], scope, { attrs: { axis: -1 } });
  const mixed = b.op('MatMul', [probs, vh], scope);
  const merged = b.op('Transpose', [mixed], scope, { attrs: { perm: [0, 2, 1, 3] } });
  const flat = b.op('Reshape', [merged, b.constInt64(scope, [0, -1, c])], scope);
  return linear(b, { name: flat, n: x.n, c }, `${scope}/${names.out}`, c, { gain: options.outGain ?? 1 });
}

/** GELU with erf, as torch exports `F.gelu`: x · 0.5 · (1 + erf(x / √2)). onnxruntime fuses it. */
export function gelu(b: GraphBuilder, x: Sequence, scope: string): Sequence {
  const divided = b.op('Div', [x.name, b.constFloat(scope, [], [Math.SQRT2])], scope);
  const erf = b.op('Erf', [divided], scope);
  const plusOne = b.op('Add', [erf, b.constFloat(scope, [], [1])], scope);
  const product = b.op('Mul', [x.name, plusOne], scope);
  return { ...x, name: b.op('Mul', [product, b.constFloat(scope, [], [0.5])], scope) };
}

/** CLIP's quick_gelu: x · sigmoid(1.702 x). */
export function quickGelu(b: GraphBuilder, x: Sequence, scope: string): Sequence {
  const scaled = b.op('Mul', [x.name, b.constFloat(scope, [], [1.702])], scope);
  const sigmoid = b.op('Sigmoid', [scaled], scope);
  return { ...x, name: b.op('Mul', [x.name, sigmoid], scope) };
}

/** Options of {@link resnetBlock}. */
export interface ResnetOptions {
  groups: number;
  /** The time embedding [batch, c] (already the block input of `time_emb_proj`); VAE blocks have none. */
  temb?: Sequence;
  epsilon?: number;
}

/**
 * diffusers ResnetBlock2D: norm1 → SiLU → conv1 (+ time_emb_proj(SiLU(temb))) → norm2 → SiLU →
 * conv2, plus the input (through a 1×1 conv_shortcut when the channel count changes).
 */
export function resnetBlock(b: GraphBuilder, x: Spatial, scope: string, outChannels: number, options: ResnetOptions): Spatial {
  const epsilon = options.epsilon ?? 1e-5;
  let h = groupNorm(b, x, `${scope}/norm1`, options.groups, epsilon);
  h = silu(b, h, `${scope}/nonlinearity`);
  h = conv2d(b, h, `${scope}/conv1`, outChannels, { gain: SILU_GAIN });
  if (options.temb) {
    const t = silu(b, options.temb, `${scope}/nonlinearity`);
    const projected = linear(b, t, `${scope}/time_emb_proj`, outChannels, { gain: SILU_GAIN });
    const unsqueezed = b.op('Unsqueeze', [projected.name, b.constInt64(scope, [2, 3])], scope);
    h = add(b, h, { name: unsqueezed }, scope);
  }
  h = groupNorm(b, h, `${scope}/norm2`, options.groups, epsilon);
  h = silu(b, h, `${scope}/nonlinearity`);
  h = conv2d(b, h, `${scope}/conv2`, outChannels, { gain: SILU_GAIN });
  const shortcut = x.c === outChannels ? x : conv2d(b, x, `${scope}/conv_shortcut`, outChannels, { kernel: 1 });
  return add(b, shortcut, h, scope);
}

/** Upsample2D: nearest ×2 (Resize, asymmetric/floor like torch `interpolate`) then a 3×3 conv. */
export function upsample(b: GraphBuilder, x: Spatial, scope: string): Spatial {
  const scales = b.constFloat(scope, [4], [1, 1, 2, 2]);
  const resized = b.op('Resize', [x.name, '', scales], scope, {
    attrs: { coordinate_transformation_mode: 'asymmetric', cubic_coeff_a: float(-0.75), mode: 'nearest', nearest_mode: 'floor' },
  });
  return conv2d(b, { name: resized, c: x.c, h: x.h * 2, w: x.w * 2 }, `${scope}/conv`, x.c);
}

/** Downsample2D: a 3×3 conv with stride 2. */
export function downsample(b: GraphBuilder, x: Spatial, scope: string): Spatial {
  return conv2d(b, x, `${scope}/conv`, x.c, { stride: 2 });
}

/** Concatenates along channels (the UNet skip connections). */
export function concatChannels(b: GraphBuilder, x: Spatial, skip: Spatial, scope: string): Spatial {
  return { name: b.op('Concat', [x.name, skip.name], scope, { attrs: { axis: 1 } }), c: x.c + skip.c, h: x.h, w: x.w };
}
