/**
 * The built-in VAE halves: a scaled-down diffusers AutoencoderKL (SD 1.x layout, 8× down/up) split
 * the way optimum exports it.
 *
 * - `vae_encoder`: `sample` float32 [batch_size, 3, height, width] in [-1, 1] → `latent_sample`
 *   [batch_size, 4, height/8, width/8], the posterior MEAN (diffusers' `latent_dist.mode()`), not
 *   scaled by 0.18215. Like SD's VAE its std is ≈ 1/0.18215, so the pipeline's scaling gives ≈ unit latents.
 * - `vae_decoder`: `latent_sample` [batch_size, 4, h, w] (already divided by 0.18215) → `sample`
 *   [batch_size, 3, 8h, 8w], ending in Tanh so the output lies in (-1, 1).
 *
 * With `fullSd` the graphs are SD's AutoencoderKL exactly: each mid block is resnet, single-head
 * self-attention (`attentions.0`, GroupNorm then to_q/to_k/to_v/to_out.0 with biases, plus the
 * input), resnet, and the encoder's downsamplers pad (0, 1, 0, 1) before a stride-2 unpadded conv
 * as diffusers' Downsample2D(padding=0) does. The small sets leave the attention out (it only adds
 * cost to an untrained model) and pad the downsampling conv on every side.
 */
import { GraphBuilder, type BuiltModel, type WeightStorage } from './graph-builder.js';
import { add, attention, conv2d, downsample, groupNorm, resnetBlock, SILU_GAIN, SILU_MEAN, silu, upsample, type Spatial } from './layers.js';

/** Shape of the built-in VAE. */
export interface VaeConfig {
  /** Four levels; the first three change resolution (8× in total). */
  readonly blockOutChannels: readonly [number, number, number, number];
  readonly layersPerBlock: number;
  readonly normGroups: number;
  /** SD's AutoencoderKL exactly (mid-block attention, diffusers' downsample padding) rather than the cheaper small-set layout. */
  readonly fullSd: boolean;
  /** Image size the MAC count refers to. */
  readonly sampleSize: number;
}

/** SD 1.x `vae/config.json` scaling_factor; applied by the pipeline, never inside these graphs. */
export const VAE_SCALING_FACTOR = 0.18215;
const LATENT_CHANNELS = 4;
const EPSILON = 1e-6;

/** Builds `vae_encoder/model.onnx`, weights kept as `storage` says (default inline). */
export function buildVaeEncoder(config: VaeConfig, seed: number, storage: WeightStorage = 'inline'): BuiltModel {
  const b = new GraphBuilder(seed, storage);
  const groups = config.normGroups;
  const [c0] = config.blockOutChannels;
  const image: Spatial = {
    name: b.input('sample', 'float32', ['batch_size', 3, 'height', 'width']),
    c: 3,
    h: config.sampleSize,
    w: config.sampleSize,
  };
  let h = conv2d(b, image, '/encoder/conv_in', c0);
  config.blockOutChannels.forEach((out, i) => {
    for (let j = 0; j < config.layersPerBlock; j++) {
      h = resnetBlock(b, h, `/encoder/down_blocks.${i}/resnets.${j}`, out, { groups, epsilon: EPSILON });
    }
    const scope = `/encoder/down_blocks.${i}/downsamplers.0`;
    if (i < 3) h = config.fullSd ? paddedDownsample(b, h, scope) : downsample(b, h, scope);
  });
  h = midBlock(b, h, '/encoder/mid_block', config);
  h = groupNorm(b, h, '/encoder/conv_norm_out', groups, EPSILON);
  h = silu(b, h, '/encoder/conv_act');
  // 8 moment channels (mean ‖ logvar), then quant_conv; its gain gives the mean SD's latent scale.
  h = conv2d(b, h, '/encoder/conv_out', 2 * LATENT_CHANNELS, { gain: SILU_GAIN, inputMean: SILU_MEAN });
  const moments = conv2d(b, h, '/quant_conv', 2 * LATENT_CHANNELS, { kernel: 1, gain: 1 / VAE_SCALING_FACTOR });
  const scope = '/latent_dist';
  b.op('Slice', [moments.name, b.constInt64(scope, [0]), b.constInt64(scope, [LATENT_CHANNELS]), b.constInt64(scope, [1])], scope, {
    outputs: ['latent_sample'],
  });
  b.output('latent_sample', 'float32', ['batch_size', LATENT_CHANNELS, 'latent_height', 'latent_width']);
  return b.finish('vae_encoder', 'reelbot built-in AutoencoderKL encoder, returns the posterior mean (untrained, seeded random weights)');
}

/** Builds `vae_decoder/model.onnx`, weights kept as `storage` says (default inline). */
export function buildVaeDecoder(config: VaeConfig, seed: number, storage: WeightStorage = 'inline'): BuiltModel {
  const b = new GraphBuilder(seed, storage);
  const groups = config.normGroups;
  const latentSize = config.sampleSize / 8;
  const latent: Spatial = {
    name: b.input('latent_sample', 'float32', ['batch_size', LATENT_CHANNELS, 'latent_height', 'latent_width']),
    c: LATENT_CHANNELS,
    h: latentSize,
    w: latentSize,
  };
  // post_quant_conv's gain undoes the 1/0.18215 latent scale so the decoder works on unit activations.
  let h = conv2d(b, latent, '/post_quant_conv', LATENT_CHANNELS, { kernel: 1, gain: VAE_SCALING_FACTOR });
  const reversed = [...config.blockOutChannels].reverse();
  h = conv2d(b, h, '/decoder/conv_in', reversed[0] ?? h.c);
  h = midBlock(b, h, '/decoder/mid_block', config);
  reversed.forEach((out, i) => {
    for (let j = 0; j <= config.layersPerBlock; j++) {
      h = resnetBlock(b, h, `/decoder/up_blocks.${i}/resnets.${j}`, out, { groups, epsilon: EPSILON });
    }
    if (i < 3) h = upsample(b, h, `/decoder/up_blocks.${i}/upsamplers.0`);
  });
  h = groupNorm(b, h, '/decoder/conv_norm_out', groups, EPSILON);
  h = silu(b, h, '/decoder/conv_act');
  h = conv2d(b, h, '/decoder/conv_out', 3, { gain: SILU_GAIN, inputMean: SILU_MEAN });
  b.op('Tanh', [h.name], '/decoder', { outputs: ['sample'] });
  b.output('sample', 'float32', ['batch_size', 3, 'height', 'width']);
  return b.finish('vae_decoder', 'reelbot built-in AutoencoderKL decoder, output in (-1, 1) via Tanh (untrained, seeded random weights)');
}

/** UNetMidBlock2D: resnet, (with `fullSd`) self-attention, resnet, at the deepest width. */
function midBlock(b: GraphBuilder, x: Spatial, scope: string, config: VaeConfig): Spatial {
  const groups = config.normGroups;
  let h = resnetBlock(b, x, `${scope}/resnets.0`, x.c, { groups, epsilon: EPSILON });
  if (config.fullSd) h = spatialSelfAttention(b, h, `${scope}/attentions.0`, groups);
  return resnetBlock(b, h, `${scope}/resnets.1`, h.c, { groups, epsilon: EPSILON });
}

/**
 * The VAE's Attention block (one head of width C, biases on q/k/v/out, residual): GroupNorm over
 * [B, C, H, W], flatten to [B, H·W, C], attention, back to [B, C, H, W], plus the input.
 */
function spatialSelfAttention(b: GraphBuilder, x: Spatial, scope: string, groups: number): Spatial {
  const normed = groupNorm(b, x, `${scope}/group_norm`, groups, EPSILON);
  const flat = b.op('Reshape', [normed.name, b.constInt64(scope, [0, x.c, -1])], scope);
  const tokens = { name: b.op('Transpose', [flat], scope, { attrs: { perm: [0, 2, 1] } }), n: x.h * x.w, c: x.c };
  const attended = attention(b, tokens, tokens, scope, { heads: 1, qkvBias: true });
  const channelsFirst = b.op('Transpose', [attended.name], scope, { attrs: { perm: [0, 2, 1] } });
  const shaped = b.op('Reshape', [channelsFirst, b.op('Shape', [x.name], scope)], scope);
  return add(b, { ...x, name: shaped }, x, scope);
}

/** diffusers' Downsample2D(padding=0) in the VAE encoder: pad right and bottom by one, then a 3×3 stride-2 conv with no padding. */
function paddedDownsample(b: GraphBuilder, x: Spatial, scope: string): Spatial {
  const padded = b.op('Pad', [x.name, b.constInt64(scope, [0, 0, 0, 0, 0, 0, 1, 1]), b.constFloat(scope, [], [0])], scope, { attrs: { mode: 'constant' } });
  return conv2d(b, { name: padded, c: x.c, h: x.h + 1, w: x.w + 1 }, `${scope}/conv`, x.c, { stride: 2, padding: 0 });
}
