/**
 * @file The run-time feeds of a UNet rewritten for cross-frame attention (./cross-frame.ts): what
 * each frame attends to (`cross_frame_index`), which frames hand back their keys/values
 * (`cross_frame_export`) and the keys/values imported from an earlier call (`anchor_k.<i>`…).
 */
import { anchorKvName, CROSS_FRAME_EXPORT_INPUT, CROSS_FRAME_INDEX_INPUT, exportedKvName } from './cross-frame.js';
import { Tensor } from './session.js';
import { int64Tensor } from './tensor.js';

/** The index rows of per-frame attention: every frame attends to itself only (the plain UNet's attention). */
export function perFrameIndex(frames: number): number[][] {
  return Array.from({ length: frames }, (_, f) => [f]);
}

/** The index rows of shared anchors: every frame attends to the same frames (Text2Video-Zero: `[0]`). */
export function sharedAnchorsIndex(anchors: readonly number[], frames: number): number[][] {
  return Array.from({ length: frames }, () => [...anchors]);
}

/** One call of a rewritten UNet: what each frame attends to, what to hand back, what to import. */
export interface CrossFrameCall {
  /** UNet batch: `groups` guidance groups of the same frames, [group][frame]. */
  batch: number;
  groups: number;
  /** The rewritten graph's attn1 block count (one imported K/V pair per block). */
  blocks: number;
  /**
   * Row f: the frames of its own group that frame f attends to (negative counts from the last),
   * every row the same length; rows may be empty when `imported` is given.
   */
  index: readonly (readonly number[])[];
  /** Frames whose keys/values come back as `exported_k.<i>` / `exported_v.<i>`. Default: none. */
  exportFrames?: readonly number[];
  /**
   * Keys/values prepended to every frame's own, by input name (`anchor_k.<i>`…, see
   * {@link importExportedKv}); the exported tensors of an earlier call, unchanged. Default: none.
   */
  imported?: ReadonlyMap<string, Tensor>;
  /** The graph's K/V element type (for the empty imports). */
  kvType: 'float32' | 'float16';
}

const emptyKv = new Map<string, Tensor>();

/** A zero-length K/V input ([1, 0, 1]: it broadcasts to any group count and width). */
function emptyKvTensor(type: 'float32' | 'float16'): Tensor {
  let tensor = emptyKv.get(type);
  if (!tensor) {
    tensor = type === 'float16' ? new Tensor('float16', new Uint16Array(0), [1, 0, 1]) : new Tensor('float32', new Float32Array(0), [1, 0, 1]);
    emptyKv.set(type, tensor);
  }
  return tensor;
}

/**
 * The cross-frame feeds of one run (`cross_frame_index`, `cross_frame_export` and every block's
 * imported K/V), checked against the batch: it must split into `groups` equal guidance groups of
 * `index.length` frames, and every index must name one of their frames.
 *
 * @example crossFrameFeeds({ batch: 16, groups: 2, blocks: 16, index: sharedAnchorsIndex([0], 8), kvType: 'float32' })
 */
export function crossFrameFeeds(call: CrossFrameCall): Record<string, Tensor> {
  const { batch, groups, blocks, index, exportFrames = [], imported } = call;
  if (!(Number.isInteger(groups) && groups >= 1)) throw new TypeError(`Expected \`groups\` to be an integer from 1 and up, got \`${String(groups)}\``);
  if (!(Number.isInteger(batch) && batch >= 1) || batch % groups !== 0) {
    throw new RangeError(`The UNet batch (${batch}) must be a multiple of its ${groups} guidance groups`);
  }
  const frames = batch / groups;
  if (index.length !== frames) throw new RangeError(`The cross-frame index has ${index.length} rows; the batch holds ${frames} frames per guidance group`);
  const width = index[0]?.length ?? 0;
  const inRange = (what: string, a: number): void => {
    if (!Number.isInteger(a) || a < -frames || a >= frames) {
      throw new RangeError(`${what} ${a} is outside the ${frames} frames of each guidance group (use 0…${frames - 1}, or −1 for the last)`);
    }
  };
  const flat: number[] = [];
  for (const row of index) {
    if (row.length !== width) throw new RangeError('Every row of the cross-frame index must list the same number of frames');
    for (const a of row) inRange('Anchor frame', a);
    flat.push(...row);
  }
  for (const e of exportFrames) inRange('Exported frame', e);
  if (width === 0 && !imported) throw new RangeError('Cross-frame attention needs at least one anchor frame or imported anchor keys/values');
  const feeds: Record<string, Tensor> = {
    [CROSS_FRAME_INDEX_INPUT]: int64Tensor(flat, [frames, width]),
    [CROSS_FRAME_EXPORT_INPUT]: int64Tensor([...exportFrames], [exportFrames.length]),
  };
  for (let i = 0; i < blocks; i++) {
    for (const role of ['key', 'value'] as const) {
      const name = anchorKvName(role, i);
      if (!imported) {
        feeds[name] = emptyKvTensor(call.kvType);
        continue;
      }
      const tensor = imported.get(name);
      if (!tensor) throw new Error(`No imported anchor ${role}s \`${name}\` (pass every block's exported keys and values)`);
      const first = tensor.dims[0];
      if (tensor.dims.length !== 3 || (first !== groups && first !== 1)) {
        throw new RangeError(`Imported anchor ${role}s \`${name}\` have dims [${tensor.dims.join(', ')}]; expected [${groups}, tokens, width]`);
      }
      feeds[name] = tensor;
    }
  }
  return feeds;
}

/** Output names of every block's exported keys and values (the `fetches` of an exporting call). */
export function exportedKvNames(blocks: number): string[] {
  return Array.from({ length: blocks }, (_, i) => [exportedKvName('key', i), exportedKvName('value', i)]).flat();
}

/**
 * An exporting call's K/V outputs keyed by the input names a later call imports them under. The
 * tensors are handed on as they are, never copied or converted: on the CPU provider their data is
 * the JS memory ORT returned (wrapped again, zero-copy, as a feed); on WebGPU a GPU buffer.
 */
export function importExportedKv(results: Readonly<Record<string, Tensor>>, blocks: number): Map<string, Tensor> {
  const kv = new Map<string, Tensor>();
  for (let i = 0; i < blocks; i++) {
    for (const role of ['key', 'value'] as const) {
      const tensor = results[exportedKvName(role, i)];
      if (!tensor) throw new Error(`The UNet run did not return \`${exportedKvName(role, i)}\` (fetch exportedKvNames(blocks))`);
      kv.set(anchorKvName(role, i), tensor);
    }
  }
  return kv;
}
