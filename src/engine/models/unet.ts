/**
 * The built-in UNet: a scaled-down diffusers UNet2DConditionModel (SD 1.x layout) emitted with
 * TorchScript-export node names. CrossAttnDownBlock2D × (levels − 1) + DownBlock2D, a
 * UNetMidBlock2DCrossAttn, then UpBlock2D + CrossAttnUpBlock2D × (levels − 1).
 *
 * I/O (optimum names): `sample` float32 [batch_size, in, height, width], `timestep` float32
 * [batch_size], `encoder_hidden_states` float32 [batch_size, sequence_length, crossAttentionDim]
 * → `out_sample` float32 [batch_size, 4, height, width]. height and width must be divisible by
 * 2^(levels − 1).
 */
import { GraphBuilder, type BuiltModel, type Dim, type WeightStorage } from './graph-builder.js';
import {
  add,
  attention,
  concatChannels,
  conv2d,
  downsample,
  gelu,
  groupNorm,
  layerNorm,
  linear,
  resnetBlock,
  SILU_GAIN,
  SILU_MEAN,
  silu,
  upsample,
  type Sequence,
  type Spatial,
} from './layers.js';

/** Shape of a built-in UNet. */
export interface UnetConfig {
  /** 4, or 8 for Instruct-Pix2Pix (noisy latents ‖ image latents). */
  readonly inChannels: number;
  /** Channels per level, e.g. [64, 128, 256]; levels = length. */
  readonly blockOutChannels: readonly number[];
  readonly layersPerBlock: number;
  /** Attention heads, the same at every level (SD 1.x: 8). */
  readonly heads: number;
  readonly normGroups: number;
  /** Width of `encoder_hidden_states` (the text encoder's hidden size). */
  readonly crossAttentionDim: number;
  /** Latent size the MAC count refers to (default resolution / 8). */
  readonly sampleSize: number;
  /** Text sequence length the MAC count refers to. */
  readonly textLength: number;
}

export type { BuiltModel } from './graph-builder.js';

/** Number of latent output channels (SD's VAE latent). */
const OUT_CHANNELS = 4;

/**
 * Attention init. With plain 1/√fan_in weights the softmax is almost flat, its output is an
 * average over all tokens, and the branch adds next to nothing to the residual stream, so
 * attention (and the cross-frame rewrite) would barely change the result. Sharper scores (std 2)
 * and a louder to_out (gain 4) give the branch real weight, as in trained SD, while GroupNorm keeps
 * the UNet output at std ≈ 1. Measured on 4 correlated frames: anchoring attn1 K/V on frame 0
 * shrinks frame-to-frame output differences by ~15-20 % (by ~1 % with the plain init).
 */
const ATTENTION_INIT = { scoreStd: 2, outGain: 4 } as const;

/** Builds the UNet graph with weights from `seed`, kept as `storage` says (default inline). */
export function buildUnet(config: UnetConfig, seed: number, storage: WeightStorage = 'inline'): BuiltModel {
  const b = new GraphBuilder(seed, storage);
  const channels = config.blockOutChannels;
  const levels = channels.length;
  const c0 = channels[0];
  if (c0 === undefined) throw new Error('UNet needs at least one level.');
  const batch: Dim = 'batch_size';

  const sample: Spatial = {
    name: b.input('sample', 'float32', [batch, config.inChannels, 'height', 'width']),
    c: config.inChannels,
    h: config.sampleSize,
    w: config.sampleSize,
  };
  b.input('timestep', 'float32', [batch]);
  const context: Sequence = {
    name: b.input('encoder_hidden_states', 'float32', [batch, 'sequence_length', config.crossAttentionDim]),
    n: config.textLength,
    c: config.crossAttentionDim,
  };

  // 1. Time embedding: Timesteps(c0, flip_sin_to_cos=True, downscale_freq_shift=0) → TimestepEmbedding.
  const temb = timeEmbedding(b, 'timestep', c0);
  const groups = config.normGroups;
  const block = (x: Spatial, scope: string, out: number): Spatial => resnetBlock(b, x, scope, out, { groups, temb });
  const attn = (x: Spatial, scope: string): Spatial => transformer2d(b, x, context, scope, config.heads, groups);

  // 2. Down: every level but the last has cross-attention; every level but the last downsamples.
  let h = conv2d(b, sample, '/conv_in', c0);
  const skips: Spatial[] = [h];
  channels.forEach((out, i) => {
    const hasAttention = i < levels - 1;
    for (let j = 0; j < config.layersPerBlock; j++) {
      h = block(h, `/down_blocks.${i}/resnets.${j}`, out);
      if (hasAttention) h = attn(h, `/down_blocks.${i}/attentions.${j}`);
      skips.push(h);
    }
    if (i < levels - 1) {
      h = downsample(b, h, `/down_blocks.${i}/downsamplers.0`);
      skips.push(h);
    }
  });

  // 3. Mid: resnet, transformer, resnet at the deepest width.
  const deepest = h.c;
  h = block(h, '/mid_block/resnets.0', deepest);
  h = attn(h, '/mid_block/attentions.0');
  h = block(h, '/mid_block/resnets.1', deepest);

  // 4. Up: mirrors the down path; each resnet eats one skip (layersPerBlock + 1 per level).
  const reversed = [...channels].reverse();
  reversed.forEach((out, i) => {
    const hasAttention = i > 0;
    for (let j = 0; j <= config.layersPerBlock; j++) {
      const skip = skips.pop();
      if (skip === undefined) throw new Error('UNet skip stack ran dry.');
      h = block(concatChannels(b, h, skip, `/up_blocks.${i}`), `/up_blocks.${i}/resnets.${j}`, out);
      if (hasAttention) h = attn(h, `/up_blocks.${i}/attentions.${j}`);
    }
    if (i < levels - 1) h = upsample(b, h, `/up_blocks.${i}/upsamplers.0`);
  });

  // 5. Out: norm, SiLU, conv to 4 channels; the gain undoes SiLU's variance loss so the output std is ≈ 1.
  h = groupNorm(b, h, '/conv_norm_out', groups);
  h = silu(b, h, '/conv_act');
  conv2d(b, h, '/conv_out', OUT_CHANNELS, { gain: SILU_GAIN, inputMean: SILU_MEAN, output: 'out_sample' });
  b.output('out_sample', 'float32', [batch, OUT_CHANNELS, 'height', 'width']);

  return b.finish('unet', 'reelbot built-in UNet2DConditionModel (untrained, seeded random weights)');
}

/** Sinusoidal timestep embedding computed in the graph, then linear_1 → SiLU → linear_2 (width 4·c0). */
function timeEmbedding(b: GraphBuilder, timestep: string, c0: number): Sequence {
  const half = c0 / 2;
  const frequencies = Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const scope = '/time_proj';
  const column = b.op('Unsqueeze', [timestep, b.constInt64(scope, [1])], scope);
  const angles = b.op('Mul', [column, b.constFloat(scope, [1, half], frequencies)], scope);
  const sin = b.op('Sin', [angles], scope);
  const cos = b.op('Cos', [angles], scope);
  // flip_sin_to_cos=True puts cos first.
  const embedding = b.op('Concat', [cos, sin], scope, { attrs: { axis: 1 } });
  let t: Sequence = { name: embedding, n: 1, c: c0 };
  t = linear(b, t, '/time_embedding/linear_1', 4 * c0, { gain: Math.SQRT2 });
  t = silu(b, t, '/time_embedding/act');
  return linear(b, t, '/time_embedding/linear_2', 4 * c0, { gain: SILU_GAIN });
}

/**
 * Transformer2DModel (SD 1.x: 1×1 conv projections): norm → proj_in → [B,C,h,w]→[B,h·w,C] →
 * BasicTransformerBlock (self-attention, cross-attention, GEGLU feed-forward, each pre-LN with a
 * residual) → back to [B,C,h,w] → proj_out → + input.
 */
function transformer2d(b: GraphBuilder, x: Spatial, context: Sequence, scope: string, heads: number, groups: number): Spatial {
  const c = x.c;
  let h = groupNorm(b, x, `${scope}/norm`, groups, 1e-6);
  h = conv2d(b, h, `${scope}/proj_in`, c, { kernel: 1 });
  const channelsLast = b.op('Transpose', [h.name], scope, { attrs: { perm: [0, 2, 3, 1] } });
  const shape = b.op('Shape', [channelsLast], scope);
  let seq: Sequence = { name: b.op('Reshape', [channelsLast, b.constInt64(scope, [0, -1, c])], scope), n: x.h * x.w, c };

  const blockScope = `${scope}/transformer_blocks.0`;
  const n1 = layerNorm(b, seq, `${blockScope}/norm1`);
  seq = add(b, attention(b, n1, n1, `${blockScope}/attn1`, { heads, ...ATTENTION_INIT }), seq, blockScope);
  const n2 = layerNorm(b, seq, `${blockScope}/norm2`);
  seq = add(b, attention(b, n2, context, `${blockScope}/attn2`, { heads, ...ATTENTION_INIT }), seq, blockScope);
  const n3 = layerNorm(b, seq, `${blockScope}/norm3`);
  seq = add(b, geglu(b, n3, `${blockScope}/ff`), seq, blockScope);

  const unflat = b.op('Reshape', [seq.name, shape], scope);
  const channelsFirst = b.op('Transpose', [unflat], scope, { attrs: { perm: [0, 3, 1, 2] } });
  h = conv2d(b, { name: channelsFirst, c, h: x.h, w: x.w }, `${scope}/proj_out`, c, { kernel: 1 });
  return add(b, h, x, scope);
}

/** FeedForward with GEGLU: net.0.proj (c → 8c), split, value · gelu(gate), net.2 (4c → c). */
function geglu(b: GraphBuilder, x: Sequence, scope: string): Sequence {
  const inner = 4 * x.c;
  const projected = linear(b, x, `${scope}/net.0/proj`, 2 * inner);
  const splitScope = `${scope}/net.0`;
  const [value, gate] = b.ops('Split', [projected.name, b.constInt64(splitScope, [inner, inner])], splitScope, {
    attrs: { axis: -1 },
    outputCount: 2,
  });
  if (value === undefined || gate === undefined) throw new Error('Split gave fewer than 2 outputs.');
  const activated = gelu(b, { name: gate, n: x.n, c: inner }, splitScope);
  const gated = b.op('Mul', [value, activated.name], splitScope);
  return linear(b, { name: gated, n: x.n, c: inner }, `${scope}/net.2`, x.c);
}
