/**
 * @file Typed-array helpers around ORT tensors: makers that check the element count against the
 * dims, float16 as raw IEEE-754 bits (Node 20 has no Float16Array, and onnxruntime-common then
 * wants a Uint16Array of half bits), and a session's input/output metadata in engine terms.
 */
import { Tensor, type InferenceSession, type TensorType, type ValueMetadata } from './session.js';

/** Dims of a tensor: fixed sizes, or symbolic names (`batch`) / null where the model leaves them open. */
export type MetaDims = readonly (number | string | null)[];

/** One input or output of a loaded session. */
export interface IoMetadata {
  name: string;
  /** `float32`, `float16`, `int64`…; `unknown` for non-tensor values. */
  type: TensorType | 'unknown';
  /** Empty for a scalar, null when ORT does not know the shape. */
  dims: MetaDims | null;
}

// ---------------------------------------------------------------------------------------------
// float16 bits.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * float → IEEE-754 half bits, round-to-nearest-even. The value is first stored as a float32 (as
 * in every Float32Array the engine holds), so conversion from float32 data is exact.
 * Overflow gives ±Infinity (0x7c00), values under half the smallest subnormal give ±0, and NaN
 * stays a quiet NaN.
 *
 * @example float32ToFloat16Bits(1) === 0x3c00; float32ToFloat16Bits(65504) === 0x7bff
 */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0] ?? 0;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) {
    // Inf stays Inf; NaN keeps its top payload bits and is forced quiet.
    return mantissa === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mantissa >>> 13);
  }
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Half subnormal: value = m · 2^-24, m = (1.mantissa · 2^23) >> (14 − e).
    if (e < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - e;
    let half = significand >>> shift;
    const rest = significand & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
    // A carry out of the subnormal range lands exactly on the smallest normal (0x0400).
    return sign | half;
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry into the exponent is correct rounding (and turns 65520 and up into Infinity).
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

/** IEEE-754 half bits → number (exact). */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/** Float32Array → half bits. */
export function float32ArrayToFloat16(values: Float32Array | readonly number[]): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float32ToFloat16Bits(values[i] ?? 0);
  return out;
}

/** Half bits → Float32Array. */
export function float16ToFloat32Array(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = float16BitsToFloat32(bits[i] ?? 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tensor makers.

function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) {
    if (!(Number.isInteger(d) && d >= 0)) throw new TypeError(`Expected tensor dims to be non-negative integers, got [${dims.join(', ')}]`);
    n *= d;
  }
  return n;
}

function checkLength(type: string, length: number, dims: readonly number[]): void {
  const expected = elementCount(dims);
  if (length !== expected) {
    throw new RangeError(`A ${type} tensor of dims [${dims.join(', ')}] needs ${expected} values, got ${length}`);
  }
}

/** A float32 tensor over `data` (wrapped, not copied, when it is a Float32Array). */
export function float32Tensor(data: Float32Array | readonly number[], dims: readonly number[]): Tensor {
  const array = data instanceof Float32Array ? data : Float32Array.from(data);
  checkLength('float32', array.length, dims);
  return new Tensor('float32', array, dims);
}

/** A float16 tensor from float values (converted) or from half bits (a Uint16Array, wrapped). */
export function float16Tensor(data: Float32Array | Uint16Array | readonly number[], dims: readonly number[]): Tensor {
  const bits = data instanceof Uint16Array ? data : float32ArrayToFloat16(data);
  checkLength('float16', bits.length, dims);
  return new Tensor('float16', bits, dims);
}

/** An int64 tensor; numbers must be safe integers. */
export function int64Tensor(data: BigInt64Array | readonly (number | bigint)[], dims?: readonly number[]): Tensor {
  const array =
    data instanceof BigInt64Array
      ? data
      : BigInt64Array.from(data, (v) => {
          if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new TypeError(`Expected an integer for an int64 tensor, got ${v}`);
          return BigInt(v);
        });
  const shape = dims ?? [array.length];
  checkLength('int64', array.length, shape);
  return new Tensor('int64', array, shape);
}

/** An int32 tensor. */
export function int32Tensor(data: Int32Array | readonly number[], dims?: readonly number[]): Tensor {
  const array = data instanceof Int32Array ? data : Int32Array.from(data);
  const shape = dims ?? [array.length];
  checkLength('int32', array.length, shape);
  return new Tensor('int32', array, shape);
}

/**
 * A tensor of the element type a model asks for (read from its metadata), from float values:
 * the way to feed inputs whose dtype differs between exports (the UNet's `timestep`).
 */
export function tensorOfType(type: TensorType | 'unknown', values: Float32Array | readonly number[], dims: readonly number[]): Tensor {
  switch (type) {
    case 'float32':
      return float32Tensor(values, dims);
    case 'float16':
      return float16Tensor(values, dims);
    case 'int64':
      return int64Tensor(Array.from(values, (v) => Math.round(v)), dims);
    case 'int32':
      return int32Tensor(Array.from(values, (v) => Math.round(v)), dims);
    case 'float64': {
      const array = Float64Array.from(values);
      checkLength('float64', array.length, dims);
      return new Tensor('float64', array, dims);
    }
    default:
      throw new TypeError(`Cannot make a ${type} tensor from float values`);
  }
}

/** A float tensor's values as float32 (float16 is converted, float32 returned as is). */
export function tensorToFloat32(tensor: Tensor): Float32Array {
  const data = tensor.data;
  if (tensor.type === 'float32' && data instanceof Float32Array) return data;
  if (tensor.type === 'float16' && data instanceof Uint16Array) return float16ToFloat32Array(data);
  if (tensor.type === 'float64' && data instanceof Float64Array) return Float32Array.from(data);
  throw new TypeError(`Expected a float32 or float16 tensor, got ${tensor.type}`);
}

// ---------------------------------------------------------------------------------------------
// Session metadata.

/** A session's inputs and outputs with dtypes and dims (ORT 1.30's `inputMetadata`/`outputMetadata`). */
export function sessionIo(session: InferenceSession): { inputs: IoMetadata[]; outputs: IoMetadata[] } {
  const read = (names: readonly string[], metadata: readonly ValueMetadata[] | undefined): IoMetadata[] =>
    names.map((name, i) => {
      const meta = metadata?.find((m) => m.name === name) ?? metadata?.[i];
      if (!meta || !meta.isTensor) return { name, type: 'unknown', dims: null };
      return {
        name,
        type: meta.type,
        dims: meta.shape.map((d) => (typeof d === 'number' ? (d >= 0 ? d : null) : d || null)),
      };
    });
  return { inputs: read(session.inputNames, session.inputMetadata), outputs: read(session.outputNames, session.outputMetadata) };
}
