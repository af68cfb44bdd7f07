/**
 * @file Where a graph rewritten at load time is written: beside the original, so its external
 * data (`model.onnx_data`, resolved relative to the model file) is found, under a name that
 * carries a hash of the original and the rewrite, so later loads and other workers reuse it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Writes `encode()` to `fileName` beside `originalPath` unless it is already there (`cached`), and
 * returns where it is. When that folder is read-only, a model without external data goes to `cacheDir` (default
 * the OS temp folder's `reelbot-rewrites`); one with external data cannot move, so that is an error
 * that says which folder to make writable.
 */
export async function writeModelBeside(
  originalPath: string,
  fileName: string,
  encode: () => Uint8Array,
  options: { cacheDir?: string; external: readonly string[] },
): Promise<{ path: string; cached: boolean }> {
  const beside = join(dirname(originalPath), fileName);
  if (await isFile(beside)) return { path: beside, cached: true };
  const data = encode();
  try {
    await writeAtomically(beside, data);
    return { path: beside, cached: false };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw error;
    if (options.external.length > 0) {
      throw new Error(
        `Cannot write ${fileName} next to ${originalPath} (${code}); it must sit beside its external data ${options.external.join(', ')}. Make ${dirname(originalPath)} writable.`,
        { cause: error },
      );
    }
    const dir = options.cacheDir ?? join(tmpdir(), 'reelbot-rewrites');
    await mkdir(dir, { recursive: true });
    const elsewhere = join(dir, fileName);
    if (await isFile(elsewhere)) return { path: elsewhere, cached: true };
    await writeAtomically(elsewhere, data);
    return { path: elsewhere, cached: false };
  }
}

/** A non-empty file is there (a rewrite written before). */
export async function isFile(path: string): Promise<boolean> {
  try {
    const info = await stat(path);
    return info.isFile() && info.size > 0;
  } catch {
    return false;
  }
}

/** Write to a temp name and rename, so a concurrent reader never sees half a file. */
export async function writeAtomically(path: string, data: Uint8Array): Promise<void> {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, data);
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}
