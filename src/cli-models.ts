/**
 * `reelbot models make --size tiny|small|sd15 OUT` builds a built-in model set (seeded random weights
 * in the optimum SD 1.x layout; sd15 has SD 1.5's full architecture, for measuring); `reelbot models check DIR` says what a model folder holds and whether
 * reelbot can run it.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { makeModelSet, ModelSetExistsError, type ModelSetSize } from './engine/models/make.js';
import { inspectModelFolder, ModelFolderError } from './engine/onnx/model-folder.js';
import { formatModelFolderInfo } from './engine/onnx/model-folder-report.js';
import { listProviders, probeProvider } from './engine/onnx/session.js';

export interface ModelsContext {
  out(line?: string): void;
  fail(message: string, exitCode: number): never;
  /** The settings: which device a worker would use, and whether it falls back to the CPU. */
  config?(): { devices: readonly string[]; onnx: { fallbackToCpu: boolean } };
}

function choice<T extends string>(name: string, values: readonly T[]) {
  return (value: string): T => {
    if (!(values as readonly string[]).includes(value)) throw new InvalidArgumentError(`${name} must be one of ${values.join(', ')}; got "${value}".`);
    return value as T;
  };
}

function seed(value: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value.trim()) || number >= 2 ** 32) throw new InvalidArgumentError(`--seed must be a whole number from 0 to 4294967295, got "${value}".`);
  return number;
}

export function registerModels(program: Command, context: ModelsContext): void {
  const models = program.command('models').description('built-in model sets and model folder checks');
  models
    .command('make')
    .description('build a model set with seeded random (untrained) weights, in the layout of an SD 1.x ONNX export')
    .argument('<out>', 'folder to create')
    .option('--size <size>', 'tiny (for tests), small (the embedded default) or sd15 (SD 1.5\'s full architecture, 4.3 GB, for measuring speed and memory)', choice('--size', ['tiny', 'small', 'sd15'] as const), 'small')
    .option('--kind <kind>', 'text2video (4-channel UNet) or instruct-edit (8-channel UNet)', choice('--kind', ['text2video', 'instruct-edit'] as const), 'text2video')
    .option('--seed <n>', 'weight seed (same seed, same files)', seed, 0)
    .option('--force', 'replace the folder if it exists')
    .action(async (out: string, flags: { size: ModelSetSize; kind: 'text2video' | 'instruct-edit'; seed: number; force?: boolean }) => {
      try {
        const info = await makeModelSet({ size: flags.size, kind: flags.kind, seed: flags.seed, out, force: flags.force ?? false });
        context.out(`Made the ${info.size} ${info.kind} set in ${out}: ${info.resolution}×${info.resolution} pixels by default, ` +
          `UNet ${info.unetGflopsPerFrame.toFixed(2)} GFLOP per frame per step.`);
        context.out('Its weights are untrained (seeded random): it makes abstract patterns, not pictures of the prompt.');
      } catch (error) {
        if (error instanceof ModelSetExistsError) context.fail(`${error.message.replace('pass force: true', 'pass --force')}`, 1);
        throw error;
      }
    });
  models
    .command('check')
    .description('what will happen with a model folder (provider, UNet kind, cross-frame or per-frame attention, resolution, fp16, VAE encoder, scaling factor), and what it holds')
    .argument('<dir>', 'model folder (optimum SD 1.x ONNX export layout)')
    .option('--device <device>', 'the device to try the provider on: cpu, cuda, cuda:N or webgpu (default: the first configured device)')
    .action(async (dir: string, flags: { device?: string }) => {
      try {
        const info = await inspectModelFolder(dir);
        let settings: { devices: readonly string[]; onnx: { fallbackToCpu: boolean } } = { devices: ['cpu'], onnx: { fallbackToCpu: true } };
        try {
          settings = context.config?.() ?? settings;
        } catch {
          // A broken config file is `reelbot config`'s to report; the folder check still runs on the defaults.
        }
        const device = flags.device ?? settings.devices[0] ?? 'cpu';
        context.out(formatModelFolderInfo(info, listProviders(), await probeProvider(device, settings.onnx.fallbackToCpu)));
      } catch (error) {
        if (error instanceof ModelFolderError) context.fail(error.message, 1);
        throw error;
      }
    });
}
