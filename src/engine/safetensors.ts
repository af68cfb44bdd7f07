/**
 * The safetensors file format (huggingface/safetensors), enough of it for the random-draw files a
 * pipeline can replay and the latent dumps it writes: an 8-byte little-endian header length N, N
 * bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {…}}`, then
 * the tensors' little-endian bytes (offsets relative to the end of the header). Float32 and uint8
 * tensors only. Python reads and writes the same files with `safetensors.numpy` or by hand.
 */

/** The dtypes handled here (safetensors names). */
export type SafetensorsDtype = 'F32' | 'U8';

export interface NamedTensor {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array | Uint8Array;
}

/** A malformed file: the message says what is wrong, the caller adds which file. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Reads every tensor of a safetensors buffer (copies, so they are aligned and independent of `bytes`). */
export function parseSafetensors(bytes: Uint8Array): { tensors: Map<string, NamedTensor>; metadata: Record<string, string> } {
  if (bytes.length < 8) throw new SafetensorsError(`it is ${bytes.length} bytes long, too short for a safetensors header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = Number(view.getBigUint64(0, true));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > bytes.length) {
    throw new SafetensorsError(`its header claims ${headerLength} bytes but the file has ${bytes.length}; it is not a safetensors file`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength)));
  } catch {
    throw new SafetensorsError('its header is not JSON; it is not a safetensors file');
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw new SafetensorsError('its header is not a JSON object');
  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const tensors = new Map<string, NamedTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = (entry ?? {}) as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (dtype !== 'F32' && dtype !== 'U8') throw new SafetensorsError(`tensor "${name}" has dtype ${String(dtype)}; only F32 and U8 are read`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) throw new SafetensorsError(`tensor "${name}" has no valid shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[0] > offsets[1] || offsets[1] > dataLength) {
      throw new SafetensorsError(`tensor "${name}" has data offsets ${JSON.stringify(offsets)} outside the file's ${dataLength} data bytes`);
    }
    const elementBytes = dtype === 'F32' ? 4 : 1;
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (offsets[1] - offsets[0] !== count * elementBytes) {
      throw new SafetensorsError(`tensor "${name}" of shape [${(shape as number[]).join(', ')}] needs ${count * elementBytes} bytes but has ${offsets[1] - offsets[0]}`);
    }
    const raw = bytes.slice(dataStart + offsets[0], dataStart + offsets[1]);
    const data = dtype === 'F32' ? new Float32Array(raw.buffer, raw.byteOffset, count) : raw;
    tensors.set(name, { dtype, shape: shape as number[], data });
  }
  return { tensors, metadata };
}

/** Writes tensors (in the given order) and optional string metadata as one safetensors buffer. */
export function serializeSafetensors(tensors: ReadonlyMap<string, NamedTensor> | Iterable<[string, NamedTensor]>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of tensors) {
    const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  // The data is 8-byte aligned when the header's length is (the format pads it with spaces).
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
