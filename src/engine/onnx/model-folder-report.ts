/**
 * @file The text `reelbot models check DIR` prints for a {@link ModelFolderInfo}: what will
 * happen (provider, UNet kind, cross-frame or per-frame attention, size, fp16, VAE encoder form,
 * scaling factor), then each graph's inputs and outputs and the attention blocks.
 */
import type { CrossFrameBlock } from './cross-frame.js';
import type { ModelFolderInfo, OnnxModelInfo } from './model-folder.js';
import type { ValueInfo } from './proto.js';
import type { VaeEncoderOutput } from './vae-encoder.js';


function formatDims(dims: ValueInfo['dims']): string {
  if (dims === null) return '(unknown shape)';
  return `[${dims.map((d) => (d === null ? '?' : String(d))).join(', ')}]`;
}

function formatModel(info: OnnxModelInfo, lines: string[]): void {
  const opset = info.opsets.find((o) => o.domain === '' || o.domain === 'ai.onnx')?.version;
  const extras = [`opset ${opset ?? '?'}`, `${info.nodeCount} nodes`];
  if (info.externalData.length > 0) extras.push(`weights in ${info.externalData.join(', ')}`);
  lines.push(`${info.file} (${extras.join(', ')})`);
  const width = Math.max(...[...info.inputs, ...info.outputs].map((i) => i.name.length), 4);
  for (const input of info.inputs) lines.push(`  in   ${input.name.padEnd(width)}  ${input.elemType.padEnd(8)} ${formatDims(input.dims)}`);
  for (const output of info.outputs) lines.push(`  out  ${output.name.padEnd(width)}  ${output.elemType.padEnd(8)} ${formatDims(output.dims)}`);
}

const VAE_ENCODER_OUTPUTS: Record<VaeEncoderOutput, string> = {
  mean: 'latent_sample, the posterior mean: used as it is',
  sampled: 'latent_sample drawn at random inside the graph (older optimum export): rewritten at load to output the mean, so a seed gives one edit',
  parameters: 'latent_parameters, mean and log-variance (optimum since 2024): the mean (first 4 channels) is used',
};

/** Where the engine's sessions start for a device (see session.ts `probeProvider`). */
export interface ProviderSummary {
  device: string;
  provider?: string;
  attempts: readonly { provider: string; error?: string }[];
}

/** The "what will happen" lines of `reelbot models check`: provider, UNet kind, attention, size, fp16, VAE encoder, scaling factor. */
export function formatModelFolderPlan(info: ModelFolderInfo, provider?: ProviderSummary): string[] {
  const { unet } = info;
  const lines: string[] = ['What will happen:'];
  if (provider) {
    const failed = provider.attempts.filter((a) => a.error !== undefined).map((a) => `${a.provider} failed to start: ${a.error}`);
    lines.push(
      provider.provider
        ? `  provider: ${provider.provider} for device ${provider.device}${failed.length > 0 ? ` (${failed.join('; ')})` : ''}`
        : `  provider: none for device ${provider.device}: ${failed.join('; ')}`,
    );
  }
  lines.push(`  UNet: ${unet.kind === 'instruct-edit' ? 'instruct-edit (8 input channels): clip editing' : 'text-to-image (4 input channels): text to video'}`);
  const good = unet.selfAttention.filter((b): b is CrossFrameBlock => !('error' in b));
  lines.push(
    unet.attention.mode === 'cross-frame'
      ? `  attention: cross-frame (${good.length} self-attention blocks rewritten, ${[...new Set(good.map((b) => b.heads))].join('/')} heads ${good.every((b) => b.headsFrom === 'graph') ? 'from the graph' : 'from unet/config.json where the graph does not show them'})`
      : `  attention: per-frame: ${unet.attention.reason}. Each frame attends only to itself, so videos will flicker`,
  );
  lines.push(
    `  resolution: ${info.resolution.pixels}×${info.resolution.pixels} by default (${info.resolution.from === 'default' ? 'SD 1.x default, no config says' : `from ${info.resolution.from}`}); ` +
      `sides in multiples of ${unet.sizeMultiple} pixels (${unet.levels} UNet levels)`,
  );
  lines.push(`  fp16: ${unet.fp16 ? 'yes (float16 UNet sample)' : 'no (float32 UNet)'}`);
  lines.push(`  VAE encoder: ${info.vaeEncoder ? VAE_ENCODER_OUTPUTS[info.vaeEncoder.output] : 'none (text-to-video only; editing needs it)'}`);
  lines.push(`  VAE scaling factor: ${info.vaeScalingFactor.value} (${info.vaeScalingFactor.from === 'default' ? 'SD 1.x default, no config says' : `from ${info.vaeScalingFactor.from}`})`);
  if (info.reelbot?.untrainedWeights === true) lines.push('  weights: untrained (a built-in demo set): videos are abstract patterns, not what the prompt says');
  return lines;
}

/**
 * The text `reelbot models check DIR` prints: what will happen (provider, UNet kind, cross-frame
 * or per-frame attention, resolution, fp16, VAE encoder output, scaling factor), then the
 * providers, each model's inputs and outputs with dtypes, and the self-attention blocks.
 */
export function formatModelFolderInfo(info: ModelFolderInfo, providers: readonly { name: string; bundled: boolean }[], provider?: ProviderSummary): string {
  const lines: string[] = [];
  const { unet } = info;
  lines.push(`Model folder ${info.dir}`);
  lines.push(...formatModelFolderPlan(info, provider));
  lines.push('');
  lines.push(
    `  UNet: ${unet.kind} (${unet.inChannels} input channels), ${info.latentChannels} latent channels, text width ${unet.contextWidth ?? '?'}, ${unet.sampleType} sample`,
  );
  if (info.reelbot) {
    const r = info.reelbot;
    lines.push(`  built-in set: ${String(r.size ?? '?')} ${String(r.kind ?? '')}${r.untrainedWeights ? ' (untrained weights: the output is noise-like)' : ''}`.trimEnd());
  }
  lines.push(`  scheduler: ${info.scheduler.className ?? '(no _class_name)'}, prediction_type ${info.scheduler.predictionType ?? 'epsilon (default)'}`);
  lines.push(`  tokenizer: ${info.tokenizer.vocabSize} tokens, ${info.tokenizer.mergeCount} merges`);
  lines.push(`  text encoder: ${info.textEncoder.idsType} ids, ${info.textEncoder.sequenceLength ?? '?'} tokens, width ${info.textEncoder.hiddenWidth ?? '?'}`);
  lines.push(
    `  timestep: ${unet.timestep.elemType}, ${unet.timestep.rank === null ? 'unknown rank' : unet.timestep.rank === 0 ? 'scalar' : `rank ${unet.timestep.rank} ${formatDims(unet.timestep.dims)}`}`,
  );
  lines.push(`  VAE encoder: ${info.vaeEncoder ? `present, output ${info.vaeEncoder.outputName}` : 'absent (text-to-video only; editing needs it)'}`);
  lines.push('');
  lines.push(
    `ONNX Runtime providers: ${providers.map((p) => (p.bundled ? p.name : `${p.name} (needs its libraries installed)`)).join(', ') || 'none'}`,
  );
  lines.push('');
  formatModel(info.textEncoder, lines);
  formatModel(unet, lines);
  const good = unet.selfAttention.filter((b): b is CrossFrameBlock => !('error' in b));
  const headCounts = [...new Set(good.map((b) => b.heads))];
  const sources = [...new Set(good.map((b) => (b.headsFrom === 'graph' ? 'read from the graph' : 'from unet/config.json, not in the graph')))];
  lines.push(
    `  self-attention blocks (attn1): ${unet.selfAttention.length}` +
      (good.length > 0 ? `, ${headCounts.join('/')} heads (${sources.join(', ')})` : ''),
  );
  for (const block of unet.selfAttention) lines.push(`    ${block.name}${'error' in block ? `  (cannot rewrite: ${block.error})` : ''}`);
  lines.push(`  cross-attention blocks (attn2): ${unet.crossAttention.length}`);
  if (info.vaeEncoder) formatModel(info.vaeEncoder, lines);
  formatModel(info.vaeDecoder, lines);
  if (info.warnings.length > 0) {
    lines.push('');
    lines.push('Warnings:');
    for (const warning of info.warnings) lines.push(`  - ${warning}`);
  }
  return lines.join('\n');
}
