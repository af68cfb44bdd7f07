/**
 * The two built-in model-set sizes. `tiny` is for unit tests (a UNet call takes milliseconds);
 * `small` is for benchmarks: ≈ 1 GFLOP per frame per UNet call at 128×128, so timing is
 * dominated by ONNX compute and not by per-call overhead.
 */
import type { TextEncoderConfig } from './text-encoder.js';
import type { UnetConfig } from './unet.js';
import type { VaeConfig } from './vae.js';

/** Built-in model-set sizes. */
export type ModelSetSize = 'tiny' | 'small';

/** Everything that differs between sizes, except the vocabulary (it comes from the tokenizer). */
export interface SizeSpec {
  /** Default image size in pixels (square); the latent is resolution / 8. */
  readonly resolution: number;
  readonly unet: Omit<UnetConfig, 'inChannels' | 'crossAttentionDim' | 'sampleSize' | 'textLength'>;
  readonly text: Omit<TextEncoderConfig, 'vocabSize' | 'maxLength'>;
  readonly vae: Omit<VaeConfig, 'sampleSize'>;
}

/** CLIP's context length; the UNet's cross-attention sees this many tokens. */
export const TEXT_LENGTH = 77;

/** Size table. Heads stay constant across UNet levels, as in SD 1.x. */
export const SIZES: Readonly<Record<ModelSetSize, SizeSpec>> = Object.freeze({
  tiny: {
    resolution: 64,
    unet: { blockOutChannels: [32, 64], layersPerBlock: 1, heads: 2, normGroups: 8 },
    text: { hiddenSize: 32, layers: 1, heads: 2 },
    vae: { blockOutChannels: [16, 16, 32, 32], layersPerBlock: 1, normGroups: 8 },
  },
  small: {
    resolution: 128,
    unet: { blockOutChannels: [64, 128, 256], layersPerBlock: 1, heads: 4, normGroups: 32 },
    text: { hiddenSize: 64, layers: 2, heads: 4 },
    vae: { blockOutChannels: [16, 32, 64, 64], layersPerBlock: 1, normGroups: 8 },
  },
});
