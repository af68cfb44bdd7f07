/**
 * The engine's ONNX layer: sessions on a device with CPU fallback (the only onnxruntime-node
 * importer is ./session.ts), tensor helpers, model-folder inspection, the cross-frame
 * attention rewrite and the VAE encoder's mean.
 */
export {
  DEVICE_TO_EXECUTION_PROVIDER,
  SessionCreateError,
  Tensor,
  createSession,
  isTensor,
  listProviders,
  parseDevice,
  probeProvider,
  providerPlan,
  releaseSession,
  type CreateSessionOptions,
  type CreatedSession,
  type Device,
  type InferenceSession,
  type ProviderAttempt,
  type ProviderName,
  type ProviderProbe,
  type SessionFeeds,
  type SessionLogger,
  type SessionResults,
  type TensorType,
  type ValueMetadata,
} from './session.js';
export * from './tensor.js';
export {
  CROSS_FRAME_ANCHORS_INPUT,
  CROSS_FRAME_EXPORT_INPUT,
  CROSS_FRAME_GROUP_INPUT,
  CROSS_FRAME_REWRITE_VERSION,
  anchorKvName,
  exportedKvName,
  inspectSelfAttention,
  rewriteCrossFrameAttention,
  UnknownHeadsError,
  type CrossFrameBlock,
  type CrossFrameOptions,
  type CrossFrameResult,
  type HeadsOption,
  type SelfAttentionProblem,
} from './cross-frame.js';
export { crossFrameFeeds, exportedKvNames, importExportedKv, perFrame, type CrossFrameCall } from './cross-frame-feeds.js';
export { CrossFrameUnavailableError, loadRewrittenUnet, type LoadRewrittenUnetOptions, type RewrittenUnet } from './cross-frame-file.js';
export * from './model-folder.js';
export * from './model-folder-report.js';
export * from './vae-encoder.js';
export { onnx } from './proto.js';
