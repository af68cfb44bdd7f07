/**
 * The engine's ONNX layer: sessions on a device with CPU fallback (the only onnxruntime-node
 * importer is ./session.ts), tensor helpers, model-folder inspection and the cross-frame
 * attention rewrite.
 */
export {
  DEVICE_TO_EXECUTION_PROVIDER,
  SessionCreateError,
  Tensor,
  createSession,
  isTensor,
  listProviders,
  parseDevice,
  providerPlan,
  releaseSession,
  type CreateSessionOptions,
  type CreatedSession,
  type Device,
  type InferenceSession,
  type ProviderAttempt,
  type ProviderName,
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
  type CrossFrameBlock,
  type CrossFrameOptions,
  type CrossFrameResult,
} from './cross-frame.js';
export { crossFrameFeeds, exportedKvNames, importExportedKv, perFrame, type CrossFrameCall } from './cross-frame-feeds.js';
export { CrossFrameUnavailableError, loadRewrittenUnet, type LoadRewrittenUnetOptions, type RewrittenUnet } from './cross-frame-file.js';
export * from './model-folder.js';
export { onnx } from './proto.js';
