/**
 * The built-in model-set sizes. `tiny` is for unit tests (a UNet call takes milliseconds);
 * `small` is for benchmarks: ≈ 1 GFLOP per frame per UNet call at 128×128, so timing is
 * dominated by ONNX compute and not by per-call overhead. `sd15` has Stable Diffusion 1.5's
 * exact architecture (CLIP ViT-L/14 text model, SD 1.5's UNet, SD's AutoencoderKL; ≈ 1.07 G
 * parameters, 4.3 GB of fp32 weights) with random weights, to measure speed and memory at real
 * scale; its weights are external data (`model.onnx` + `model.onnx_data`).
 */
import type { TextEncoderConfig } from './text-encoder.js';
import type { UnetConfig } from './unet.js';
import type { VaeConfig } from './vae.js';

/** Built-in model-set sizes. */
export type ModelSetSize = 'tiny' | 'small' | 'sd15';

/** Everything that differs between sizes, except the vocabulary (it comes from the tokenizer). */
export interface SizeSpec {
  /** Default image size in pixels (square); the latent is resolution / 8. */
  readonly resolution: number;
  readonly unet: Omit<UnetConfig, 'inChannels' | 'crossAttentionDim' | 'sampleSize' | 'textLength'>;
  readonly text: Omit<TextEncoderConfig, 'vocabSize' | 'maxLength'>;
  readonly vae: Omit<VaeConfig, 'sampleSize'>;
  /**
   * Rows of the text encoder's token embedding table when it must be larger than the tokenizer
   * (CLIP's 49408); the extra rows are never looked up. Default: one row per tokenizer entry.
   */
  readonly textVocabSize?: number;
  /** Weights in `model.onnx_data` beside each `model.onnx`, written as they are made (needed past protobuf's 2 GB). */
  readonly externalData: boolean;
}

/** CLIP's context length; the UNet's cross-attention sees this many tokens. */
export const TEXT_LENGTH = 77;

/** Size table. Heads stay constant across UNet levels, as in SD 1.x. */
export const SIZES: Readonly<Record<ModelSetSize, SizeSpec>> = Object.freeze({
  tiny: {
    resolution: 64,
    unet: { blockOutChannels: [32, 64], layersPerBlock: 1, heads: 2, normGroups: 8 },
    text: { hiddenSize: 32, layers: 1, heads: 2 },
    vae: { blockOutChannels: [16, 16, 32, 32], layersPerBlock: 1, normGroups: 8, fullSd: false },
    externalData: false,
  },
  small: {
    resolution: 128,
    unet: { blockOutChannels: [64, 128, 256], layersPerBlock: 1, heads: 4, normGroups: 32 },
    text: { hiddenSize: 64, layers: 2, heads: 4 },
    vae: { blockOutChannels: [16, 32, 64, 64], layersPerBlock: 1, normGroups: 8, fullSd: false },
    externalData: false,
  },
  // runwayml/stable-diffusion-v1-5 (and timbrooks/instruct-pix2pix, the same with 8 UNet input channels).
  sd15: {
    resolution: 512,
    unet: { blockOutChannels: [320, 640, 1280, 1280], layersPerBlock: 2, heads: 8, normGroups: 32 },
    text: { hiddenSize: 768, layers: 12, heads: 12 },
    vae: { blockOutChannels: [128, 256, 512, 512], layersPerBlock: 2, normGroups: 32, fullSd: true },
    textVocabSize: 49408,
    externalData: true,
  },
});
