/**
 * @file The ONNX protobuf schema (onnx-proto, ONNX 1.10 schema over protobufjs 6) and the small
 * helpers the engine uses to read and build graphs: `Long` → number, element-type names, value
 * infos, constant lookup through initializers and `Constant` nodes, and node/initializer builders.
 *
 * onnx-proto is a CommonJS package whose `module.exports` Node cannot split into named ESM
 * exports, so it is imported once here and re-exported as `onnx`, usable both as the value
 * (`onnx.ModelProto.decode`) and as a type namespace (`onnx.ModelProto`).
 */
import { readFile, stat } from 'node:fs/promises';
import onnxProto from 'onnx-proto';
import type { onnx as OnnxNamespace } from 'onnx-proto';

export const onnx: typeof OnnxNamespace = onnxProto.onnx;

// Type-only twin of the value above, so `onnx.ModelProto` works in type positions.
export declare namespace onnx {
  type ModelProto = OnnxNamespace.ModelProto;
  type IModelProto = OnnxNamespace.IModelProto;
  type GraphProto = OnnxNamespace.GraphProto;
  type IGraphProto = OnnxNamespace.IGraphProto;
  type NodeProto = OnnxNamespace.NodeProto;
  type INodeProto = OnnxNamespace.INodeProto;
  type TensorProto = OnnxNamespace.TensorProto;
  type ITensorProto = OnnxNamespace.ITensorProto;
  type ValueInfoProto = OnnxNamespace.ValueInfoProto;
  type IValueInfoProto = OnnxNamespace.IValueInfoProto;
  type AttributeProto = OnnxNamespace.AttributeProto;
  type IAttributeProto = OnnxNamespace.IAttributeProto;
  type IOperatorSetIdProto = OnnxNamespace.IOperatorSetIdProto;
}

const DT = onnx.TensorProto.DataType;
const AT = onnx.AttributeProto.AttributeType;

/** An int64 protobuf field: a plain number, or a `Long` when the `long` package is installed. */
export type ProtoInt = number | { toNumber(): number } | null | undefined;

/** A protobuf int64 as a JS number (0 for a missing field). */
export function toNumber(value: ProtoInt): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'number' ? value : value.toNumber();
}

/** Element type names as the engine writes them (`float32`, not ONNX's `FLOAT`). */
export type ElemType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint64'
  | 'uint32'
  | 'uint16'
  | 'uint8'
  | 'bool'
  | 'string'
  | 'undefined';

const ELEM_TYPE_NAMES: Readonly<Record<number, ElemType>> = Object.freeze({
  [DT.UNDEFINED]: 'undefined',
  [DT.FLOAT]: 'float32',
  [DT.FLOAT16]: 'float16',
  [DT.BFLOAT16]: 'bfloat16',
  [DT.DOUBLE]: 'float64',
  [DT.INT64]: 'int64',
  [DT.INT32]: 'int32',
  [DT.INT16]: 'int16',
  [DT.INT8]: 'int8',
  [DT.UINT64]: 'uint64',
  [DT.UINT32]: 'uint32',
  [DT.UINT16]: 'uint16',
  [DT.UINT8]: 'uint8',
  [DT.BOOL]: 'bool',
  [DT.STRING]: 'string',
});

/** `onnx.TensorProto.DataType` number → engine name; unknown codes read as `'undefined'`. */
export function elemTypeName(code: number | null | undefined): ElemType {
  return ELEM_TYPE_NAMES[code ?? 0] ?? 'undefined';
}

/** One graph input or output: name, element type and dims (a symbolic name, or null when unknown). */
export interface ValueInfo {
  name: string;
  elemType: ElemType;
  /** Empty for a scalar; `null` when the graph declares no shape at all. */
  dims: (number | string | null)[] | null;
}

/** Reads a ValueInfoProto (tensor types only; anything else reads as `undefined`, no dims). */
export function describeValueInfo(info: onnx.IValueInfoProto): ValueInfo {
  const tensor = info.type?.tensorType;
  const shape = tensor?.shape;
  return {
    name: info.name ?? '',
    elemType: elemTypeName(tensor?.elemType),
    dims: shape
      ? (shape.dim ?? []).map((d) => {
          if (d.dimParam) return d.dimParam;
          if (d.dimValue !== null && d.dimValue !== undefined) {
            const n = toNumber(d.dimValue);
            // protobuf leaves unset oneof members at 0; a 0 dim with no param means "unknown".
            return n > 0 ? n : null;
          }
          return null;
        })
      : null,
  };
}

/** Decodes a serialized ModelProto. */
export function decodeModel(bytes: Uint8Array): onnx.ModelProto {
  return onnx.ModelProto.decode(bytes);
}

/** Serializes a ModelProto. */
export function encodeModel(model: onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Protobuf messages cannot exceed 2 GiB; bigger models keep their weights in external data files. */
const PROTOBUF_LIMIT = 2 ** 31 - 1;

/**
 * Reads and decodes one `.onnx` file. External data (`model.onnx_data`, `weights.pb`) is never
 * read: its initializers stay as location/offset/length references in the decoded proto.
 */
export async function readModelFile(path: string): Promise<{ model: onnx.ModelProto; bytes: Buffer }> {
  const info = await stat(path);
  if (info.size > PROTOBUF_LIMIT) {
    throw new Error(
      `${path} is ${(info.size / 2 ** 30).toFixed(1)} GiB: a single ONNX protobuf cannot exceed 2 GiB. ` +
        'Export the model with its weights as external data (model.onnx + model.onnx_data).',
    );
  }
  const bytes = await readFile(path);
  try {
    return { model: decodeModel(bytes), bytes };
  } catch (error) {
    throw new Error(`${path} is not a readable ONNX model: ${(error as Error).message}`, { cause: error });
  }
}

/** Locations of the external data files a model's initializers refer to (relative to the model's folder). */
export function externalDataLocations(model: onnx.IModelProto): string[] {
  const locations = new Set<string>();
  for (const init of model.graph?.initializer ?? []) {
    if (init.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
      const location = init.externalData?.find((e) => e.key === 'location')?.value;
      if (location) locations.add(location);
    }
  }
  return [...locations];
}

/**
 * Fast lookups over one graph: who produces a tensor, who consumes it, initializers by name.
 * Built once; callers that edit the graph build a new index.
 */
export class GraphIndex {
  readonly producers = new Map<string, onnx.INodeProto>();
  readonly consumers = new Map<string, onnx.INodeProto[]>();
  readonly initializers = new Map<string, onnx.ITensorProto>();
  readonly nodesByName = new Map<string, onnx.INodeProto>();
  readonly graphInputs = new Set<string>();

  constructor(readonly graph: onnx.IGraphProto) {
    for (const init of graph.initializer ?? []) if (init.name) this.initializers.set(init.name, init);
    for (const input of graph.input ?? []) if (input.name) this.graphInputs.add(input.name);
    for (const node of graph.node ?? []) {
      if (node.name) this.nodesByName.set(node.name, node);
      for (const out of node.output ?? []) if (out) this.producers.set(out, node);
      for (const input of node.input ?? []) {
        if (!input) continue;
        const list = this.consumers.get(input);
        if (list) list.push(node);
        else this.consumers.set(input, [node]);
      }
    }
  }

  /** Nodes whose name ends with `suffix`, in graph order. */
  nodesEndingWith(suffix: string): onnx.INodeProto[] {
    return (this.graph.node ?? []).filter((n) => n.name?.endsWith(suffix));
  }

  /**
   * The value of a constant tensor as numbers: an initializer, a `Constant` node, or an
   * `Unsqueeze`/`Concat`/`Cast`/`Identity` of constants (the shapes torch exports build that way).
   * Returns undefined when the tensor is computed at run time.
   */
  constantValue(name: string, depth = 0): number[] | undefined {
    if (depth > 16) return undefined;
    const init = this.initializers.get(name);
    if (init) return tensorValues(init);
    const node = this.producers.get(name);
    if (!node) return undefined;
    const inputs = node.input ?? [];
    switch (node.opType) {
      case 'Constant': {
        const attr = node.attribute?.find((a) => a.name === 'value' || a.name === 'value_ints' || a.name === 'value_int' || a.name === 'value_float' || a.name === 'value_floats');
        if (!attr) return undefined;
        if (attr.t) return tensorValues(attr.t);
        if (attr.name === 'value_ints') return (attr.ints ?? []).map(toNumber);
        if (attr.name === 'value_floats') return [...(attr.floats ?? [])];
        if (attr.name === 'value_int') return [toNumber(attr.i)];
        if (attr.name === 'value_float') return [attr.f ?? 0];
        return undefined;
      }
      case 'Identity':
      case 'Cast':
      case 'Unsqueeze':
      case 'Squeeze':
        return inputs[0] ? this.constantValue(inputs[0], depth + 1) : undefined;
      case 'Concat': {
        const out: number[] = [];
        for (const input of inputs) {
          const part = this.constantValue(input, depth + 1);
          if (!part) return undefined;
          out.push(...part);
        }
        return out;
      }
      default:
        return undefined;
    }
  }

  /** Like {@link constantValue}, but for a Concat returns each part, `undefined` for the run-time ones. */
  concatParts(name: string): (number[] | undefined)[] | undefined {
    const node = this.producers.get(name);
    if (node?.opType !== 'Concat') return undefined;
    return (node.input ?? []).map((input) => this.constantValue(input));
  }
}

/** Numeric contents of a TensorProto with embedded data (undefined for external or string data). */
export function tensorValues(tensor: onnx.ITensorProto): number[] | undefined {
  if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) return undefined;
  const type = tensor.dataType ?? 0;
  const raw = tensor.rawData;
  if (raw && raw.length > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const out: number[] = [];
    const read = (size: number, get: (offset: number) => number): number[] => {
      for (let o = 0; o + size <= raw.length; o += size) out.push(get(o));
      return out;
    };
    switch (type) {
      case DT.FLOAT:
        return read(4, (o) => view.getFloat32(o, true));
      case DT.DOUBLE:
        return read(8, (o) => view.getFloat64(o, true));
      case DT.INT64:
        return read(8, (o) => Number(view.getBigInt64(o, true)));
      case DT.UINT64:
        return read(8, (o) => Number(view.getBigUint64(o, true)));
      case DT.INT32:
        return read(4, (o) => view.getInt32(o, true));
      case DT.UINT32:
        return read(4, (o) => view.getUint32(o, true));
      case DT.INT16:
        return read(2, (o) => view.getInt16(o, true));
      case DT.UINT16:
        return read(2, (o) => view.getUint16(o, true));
      case DT.INT8:
        return read(1, (o) => view.getInt8(o));
      case DT.UINT8:
      case DT.BOOL:
        return read(1, (o) => view.getUint8(o));
      case DT.FLOAT16:
        return read(2, (o) => halfBitsToNumber(view.getUint16(o, true)));
      default:
        return undefined;
    }
  }
  switch (type) {
    case DT.FLOAT:
    case DT.COMPLEX64:
      return [...(tensor.floatData ?? [])];
    case DT.DOUBLE:
      return [...(tensor.doubleData ?? [])];
    case DT.INT64:
      return (tensor.int64Data ?? []).map(toNumber);
    case DT.UINT32:
    case DT.UINT64:
      return (tensor.uint64Data ?? []).map(toNumber);
    case DT.FLOAT16:
      return (tensor.int32Data ?? []).map(halfBitsToNumber);
    case DT.INT32:
    case DT.INT16:
    case DT.INT8:
    case DT.UINT16:
    case DT.UINT8:
    case DT.BOOL:
      return [...(tensor.int32Data ?? [])];
    default:
      return undefined;
  }
}

/** IEEE half bits → number (exact; used only to read fp16 constants out of graphs). */
function halfBitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** The dims of a TensorProto as numbers. */
export function tensorDims(tensor: onnx.ITensorProto): number[] {
  return (tensor.dims ?? []).map(toNumber);
}

// ---------------------------------------------------------------------------------------------
// Builders (graph rewrites, tests, the built-in model maker).

/** An attribute value: int, float, ints, floats, string or tensor. */
export type AttributeValue = number | number[] | string | { float: number } | { floats: number[] } | onnx.ITensorProto;

/** Builds an AttributeProto; integers become INT/INTS, other numbers FLOAT (wrap floats that may be whole as `{ float }`, float lists as `{ floats }`). */
export function attribute(name: string, value: AttributeValue): onnx.IAttributeProto {
  if (typeof value === 'string') return { name, type: AT.STRING, s: new TextEncoder().encode(value) };
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: AT.INT, i: value } : { name, type: AT.FLOAT, f: value };
  }
  if (Array.isArray(value)) return { name, type: AT.INTS, ints: value };
  if ('float' in value && typeof value.float === 'number') return { name, type: AT.FLOAT, f: value.float };
  if ('floats' in value && Array.isArray(value.floats)) return { name, type: AT.FLOATS, floats: value.floats };
  return { name, type: AT.TENSOR, t: value as onnx.ITensorProto };
}

/** Builds a NodeProto; the name defaults to the first output's name. */
export function makeNode(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, AttributeValue> = {},
  options: { name?: string; domain?: string } = {},
): onnx.NodeProto {
  return onnx.NodeProto.create({
    opType,
    input: inputs,
    output: outputs,
    name: options.name ?? outputs[0] ?? opType,
    ...(options.domain ? { domain: options.domain } : {}),
    attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
  });
}

/** Builds a tensor ValueInfoProto; string dims are symbolic. */
export function makeValueInfo(name: string, elemType: number, dims: (number | string)[]): onnx.ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
}

/** A float32 initializer (raw little-endian data). */
export function float32Initializer(name: string, dims: number[], values: Float32Array | number[]): onnx.TensorProto {
  const data = values instanceof Float32Array ? values : Float32Array.from(values);
  return onnx.TensorProto.create({
    name,
    dims,
    dataType: DT.FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
}

/** An int64 initializer (raw little-endian data). */
export function int64Initializer(name: string, dims: number[], values: readonly number[]): onnx.TensorProto {
  const data = BigInt64Array.from(values.map((v) => BigInt(v)));
  return onnx.TensorProto.create({ name, dims, dataType: DT.INT64, rawData: new Uint8Array(data.buffer) });
}

/** ONNX's `TensorProto.DataType` codes, re-exported for builders. */
export const DataType = DT;
