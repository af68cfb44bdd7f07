/**
 * The embedded default: when no model folder is configured, the engine uses a built-in set,
 * made once (a minute or less) into ./models/<size> and reused after that.
 */
import { access, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { makeModelSet } from './make.js';

/** Where the built-in set lives, made there first if needed; returns the absolute folder. */
export async function ensureModelSet(options: { size: 'tiny' | 'small'; kind: 'text2video' | 'instruct-edit'; dir: string }): Promise<string> {
  const dir = resolve(options.dir);
  if (await isComplete(dir)) return dir;
  try {
    await makeModelSet({ size: options.size, kind: options.kind, out: dir });
  } catch (error) {
    // Another worker may have made it at the same time: the set is written atomically, so use theirs.
    if (!(await isComplete(dir))) throw error;
  }
  return dir;
}

async function isComplete(dir: string): Promise<boolean> {
  try {
    await access(join(dir, 'unet', 'model.onnx'));
    const info = JSON.parse(await readFile(join(dir, 'reelbot.json'), 'utf8')) as { builtIn?: unknown };
    return info.builtIn === true;
  } catch {
    return false;
  }
}

/** Whether a model folder setting means untrained weights: empty (the built-in set) or a folder whose reelbot.json says so. */
export async function hasUntrainedWeights(modelDir: string): Promise<boolean> {
  if (!modelDir) return true;
  try {
    const info = JSON.parse(await readFile(join(resolve(modelDir), 'reelbot.json'), 'utf8')) as { untrainedWeights?: unknown };
    return info.untrainedWeights === true;
  } catch {
    // No reelbot.json: an operator's export.
    return false;
  }
}

/**
 * The operator's notice when the built-in engine would make videos from untrained weights, naming
 * which model and the setting that fixes it; undefined when both folders hold real weights or an
 * engine module replaces the built-in engine.
 */
export async function untrainedWeightsNotice(settings: { engineModule: string; modelDir: string; editModelDir: string }): Promise<string | undefined> {
  if (settings.engineModule) return undefined;
  const which = [
    (await hasUntrainedWeights(settings.modelDir)) ? `text to video (${settings.modelDir ? settings.modelDir : 'the built-in set'}; set REELBOT_MODEL_DIR)` : undefined,
    (await hasUntrainedWeights(settings.editModelDir)) ? `clip editing (${settings.editModelDir ? settings.editModelDir : 'the built-in set'}; set REELBOT_EDIT_MODEL_DIR)` : undefined,
  ].filter((part): part is string => part !== undefined);
  if (which.length === 0) return undefined;
  return (
    `Untrained demo weights for ${which.join(' and ')}: those videos are abstract patterns, not what the prompt says, and every result message says so. ` +
    'Export Stable Diffusion 1.5 / timbrooks/instruct-pix2pix (see the README) and set the model folder.'
  );
}
