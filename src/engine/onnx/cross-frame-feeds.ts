/**
 * @file The run-time feeds of a UNet rewritten for cross-frame attention (./cross-frame.ts): how
 * the batch splits into attention groups and what they attend to (`cross_frame_group_frames`,
 * `cross_frame_anchors`), which frames hand back their keys/values (`cross_frame_export`) and the
 * keys/values imported from an earlier call (`anchor_k.<i>`…).
 */
import { anchorKvName, CROSS_FRAME_ANCHORS_INPUT, CROSS_FRAME_EXPORT_INPUT, CROSS_FRAME_GROUP_INPUT, exportedKvName } from './cross-frame.js';
import { Tensor } from './session.js';
import { int64Tensor } from './tensor.js';

/** One call of a rewritten UNet: how the batch groups, what each group attends to, what to hand back, what to import. */
export interface CrossFrameCall {
  /** UNet batch items, [guidance group][frame]. */
  batch: number;
  /**
   * Frames per attention group: consecutive batch items that attend to the same keys/values
   * (1 = per-frame attention; the frames of one guidance group for cross-frame attention).
   */
  framesPerGroup: number;
  /** Frames of each attention group (negative from its last) whose own keys/values it attends to; may be empty when `imported` is given. */
  anchors: readonly number[];
  /** The rewritten graph's attn1 block count (one imported K/V pair per block). */
  blocks: number;
  /** Frames whose keys/values come back as `exported_k.<i>` / `exported_v.<i>`. Default: none. */
  exportFrames?: readonly number[];
  /**
   * Keys/values put before every group's own, by input name (`anchor_k.<i>`…, see
   * {@link importExportedKv}); the exported tensors of an earlier call, unchanged. Default: none.
   */
  imported?: ReadonlyMap<string, Tensor>;
  /** The graph's K/V element type (for the empty imports). */
  kvType: 'float32' | 'float16';
}

/** The call shape of per-frame attention (the plain UNet's): every frame its own group, attending to itself. */
export function perFrame(batch: number): Pick<CrossFrameCall, 'batch' | 'framesPerGroup' | 'anchors'> {
  return { batch, framesPerGroup: 1, anchors: [0] };
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
 * The cross-frame feeds of one run (`cross_frame_group_frames`, `cross_frame_anchors`,
 * `cross_frame_export` and every block's imported K/V), checked against the batch: it must split
 * into groups of `framesPerGroup`, and every anchor and exported frame must be one of a group's.
 *
 * @example crossFrameFeeds({ batch: 16, framesPerGroup: 8, anchors: [0], blocks: 16, kvType: 'float32' }) // Text2Video-Zero, CFG
 */
export function crossFrameFeeds(call: CrossFrameCall): Record<string, Tensor> {
  const { batch, framesPerGroup: frames, anchors, blocks, exportFrames = [], imported } = call;
  if (!(Number.isInteger(frames) && frames >= 1)) throw new TypeError(`Expected \`framesPerGroup\` to be an integer from 1 and up, got \`${String(frames)}\``);
  if (!(Number.isInteger(batch) && batch >= 1) || batch % frames !== 0) {
    throw new RangeError(`The UNet batch (${batch}) must split into attention groups of ${frames} frames`);
  }
  const inRange = (what: string, a: number): void => {
    if (!Number.isInteger(a) || a < -frames || a >= frames) {
      throw new RangeError(`${what} ${a} is outside the ${frames} frames of each attention group (use 0…${frames - 1}, or −1 for the last)`);
    }
  };
  for (const a of anchors) inRange('Anchor frame', a);
  for (const e of exportFrames) inRange('Exported frame', e);
  if (anchors.length === 0 && !imported) throw new RangeError('Cross-frame attention needs at least one anchor frame or imported anchor keys/values');
  const groups = batch / frames;
  const feeds: Record<string, Tensor> = {
    [CROSS_FRAME_GROUP_INPUT]: int64Tensor([frames], [1]),
    [CROSS_FRAME_ANCHORS_INPUT]: int64Tensor([...anchors], [anchors.length]),
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
        throw new RangeError(`Imported anchor ${role}s \`${name}\` have dims [${tensor.dims.join(', ')}]; expected [${groups}, tokens, width] for ${groups} attention groups`);
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
