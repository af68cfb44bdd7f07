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
