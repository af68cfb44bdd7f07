/**
 * @file Rewrites a UNet file for cross-frame attention (./cross-frame.ts) once and keeps the
 * result beside it, where its external data resolves, for every later load.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { CROSS_FRAME_REWRITE_VERSION, rewriteCrossFrameAttention, type CrossFrameBlock, type CrossFrameOptions, type CrossFrameResult } from './cross-frame.js';
import { encodeModel, externalDataLocations, readModelFile } from './proto.js';
import { isFile, writeAtomically } from './rewritten-file.js';

/** The UNet's attention is not one this rewrite can find; load the plain graph (per-frame attention) instead. */
export class CrossFrameUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export interface LoadRewrittenUnetOptions extends CrossFrameOptions {
  /** Where to write the rewritten model when the UNet's folder is read-only (only for models without external data). Default: the OS temp folder. */
  cacheDir?: string;
}

/** Where {@link loadRewrittenUnet} put the rewritten UNet, and what it rewrote. */
export interface RewrittenUnet {
  /** The rewritten model file; load it by path so its external data resolves. */
  path: string;
  blocks: string[];
  details: CrossFrameBlock[];
  kvType: 'float32' | 'float16';
  /** True when the file was already there from an earlier call. */
  cached: boolean;
}

/**
 * Rewrites a UNet file for cross-frame attention and writes the result next to the original, so
 * that its external data (`model.onnx_data`) resolves; load the returned path. Only the graph file
 * is read: the weights stay in the external data file, untouched. The file name carries a hash
 * of the original file, the options and the rewrite version, so a later call (or another worker)
 * reuses it; a `.json` beside it keeps the blocks, so a cached load only streams the file to hash it.
 * Throws {@link CrossFrameUnavailableError} when the graph has no self-attention block the rewrite
 * recognises (attention fused into MultiHeadAttention/Attention nodes, other node names).
 */
export async function loadRewrittenUnet(unetPath: string, options: LoadRewrittenUnetOptions = {}): Promise<RewrittenUnet> {
  const float32Attention = options.float32Attention === true;
  // Hashed from a stream: a cached rewrite is found without holding the UNet (up to 2 GB when its weights are inside) in JS memory.
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(unetPath)) hash.update(chunk as Buffer);
  const digest = hash
    .update(JSON.stringify({ version: CROSS_FRAME_REWRITE_VERSION, heads: options.heads ?? null, ...(float32Attention ? { float32Attention } : {}) }))
    .digest('hex')
    .slice(0, 16);
  const fileName = `${basename(unetPath, '.onnx')}.crossframe-${digest}.onnx`;
  const beside = join(dirname(unetPath), fileName);
  const elsewhere = join(options.cacheDir ?? join(tmpdir(), 'reelbot-crossframe'), fileName);
  for (const path of [beside, elsewhere]) {
    const cached = await readCached(path);
    if (cached) return cached;
  }

  const { model } = await readModelFile(unetPath);
  const external = externalDataLocations(model);
  let result: CrossFrameResult;
  try {
    result = rewriteCrossFrameAttention(model, options);
  } catch (error) {
    if (error instanceof TypeError) throw error;
    throw new CrossFrameUnavailableError(`${unetPath}: ${(error as Error).message}`, { cause: error });
  }
  const { model: rewritten, blocks, details, kvType } = result;
  if (blocks.length === 0) {
    throw new CrossFrameUnavailableError(`${unetPath} has no self-attention block the rewrite recognises (no node named …/attn1/to_q/MatMul)`);
  }
  const encoded = encodeModel(rewritten);
  const summary = JSON.stringify({ version: CROSS_FRAME_REWRITE_VERSION, blocks, details, kvType } satisfies CachedSummary);
  const write = async (path: string): Promise<RewrittenUnet> => {
    // The graph first: a summary is only ever next to a complete graph.
    await writeAtomically(path, encoded);
    await writeAtomically(summaryPath(path), new TextEncoder().encode(summary));
    return { path, blocks, details, kvType, cached: false };
  };
  try {
    return await write(beside);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw error;
    if (external.length > 0) {
      throw new Error(
        `Cannot write the cross-frame UNet next to ${unetPath} (${code}); it must sit beside its external data ${external.join(', ')}. Make ${dirname(unetPath)} writable.`,
        { cause: error },
      );
    }
    await mkdir(dirname(elsewhere), { recursive: true });
    return write(elsewhere);
  }
}

/** What a cached rewrite's `.json` beside it says (so a cached load need not decode the graph). */
interface CachedSummary {
  version: number;
  blocks: string[];
  details: CrossFrameBlock[];
  kvType: 'float32' | 'float16';
}

function summaryPath(rewrittenPath: string): string {
  return rewrittenPath.replace(/\.onnx$/, '.json');
}

/** A cached rewrite and its summary, or undefined when either is missing or unreadable (then it is rebuilt). */
async function readCached(path: string): Promise<RewrittenUnet | undefined> {
  if (!(await isFile(path))) return undefined;
  try {
    const summary = JSON.parse(await readFile(summaryPath(path), 'utf8')) as CachedSummary;
    if (summary.version !== CROSS_FRAME_REWRITE_VERSION || !Array.isArray(summary.blocks) || !Array.isArray(summary.details)) return undefined;
    return { path, blocks: summary.blocks, details: summary.details, kvType: summary.kvType === 'float16' ? 'float16' : 'float32', cached: true };
  } catch {
    return undefined;
  }
}
