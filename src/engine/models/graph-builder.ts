/**
 * A small ONNX graph builder over onnx-proto, plus the seeded random numbers the built-in model
 * sets draw their weights from.
 *
 * Names follow a TorchScript `torch.onnx.export` of a diffusers model: a node is called
 * `<module path>/<OpType>` (`/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul`),
 * a second node of the same type in the same module gets `_1`, `_2`…, and a node's output tensor
 * is `<node name>_output_0`. Linear weights are initializers named `onnx::MatMul_<n>`, other
 * parameters get their state-dict name (`down_blocks.0.resnets.0.conv1.weight`). Graph rewrites
 * elsewhere in the engine match on these names, so keep them stable.
 */
import { onnx } from '../onnx/proto.js';
import { Random } from '../random.js';
import type { ExternalDataFile } from './external-data.js';

/** The onnx-proto message classes (ModelProto, NodeProto, TensorProto…), from the engine's one import of onnx-proto. */
export { onnx };
type NodeProto = onnx.INodeProto;
type TensorProto = onnx.ITensorProto;
type ValueInfoProto = onnx.IValueInfoProto;
type AttributeProto = onnx.IAttributeProto;

const DataType = onnx.TensorProto.DataType;
const AttrType = onnx.AttributeProto.AttributeType;

/** ONNX opset of the default domain. 17 has LayerNormalization; GroupNormalization is built from InstanceNormalization as torch exports it. */
export const OPSET = 17;
/** IR version 8 (ONNX 1.10+), what onnx-proto 8 carries and onnxruntime-node 1.30 loads. */
export const IR_VERSION = 8;

/** Element types used by the built-in models. */
export type ElemType = 'float32' | 'int64' | 'int32';
const ELEM: Record<ElemType, number> = { float32: DataType.FLOAT, int64: DataType.INT64, int32: DataType.INT32 };

/** A dimension: a fixed size or a symbolic name (`dimParam`) such as `batch_size`. */
export type Dim = number | string;

/** Marks a float attribute (plain numbers are written as INT attributes). */
export interface FloatAttr {
  readonly float: number;
}
/** A float attribute value, e.g. `{ epsilon: float(1e-5) }`. */
export const float = (value: number): FloatAttr => ({ float: value });
/** Attribute values: int, float (via {@link float}), ints or string. */
export type AttrValue = number | FloatAttr | readonly number[] | string;

/** Options of {@link GraphBuilder.op}. */
export interface OpOptions {
  attrs?: Record<string, AttrValue>;
  /** Output tensor names to use instead of `<node name>_output_<i>` (for graph outputs). */
  outputs?: readonly string[];
  /** How many outputs the node has when `outputs` is not given (default 1). */
  outputCount?: number;
  /** Operator domain, e.g. `com.microsoft`; default the ONNX domain. */
  domain?: string;
}

/**
 * Where a builder puts its weights: `inline` in the model proto (the small sets), an
 * {@link ExternalDataFile} streamed as they are made (state-dict parameters of
 * {@link EXTERNAL_DATA_THRESHOLD} bytes or more; shape constants and small tensors stay inline, as
 * `onnx.save_model(..., save_as_external_data=True)` does), or `count`: nothing is drawn or kept,
 * the builder only counts parameters and multiply-accumulates (it cannot encode).
 */
export type WeightStorage = 'inline' | 'count' | ExternalDataFile;

/** Parameters smaller than this stay in the model proto even with external data (onnx's default size_threshold). */
export const EXTERNAL_DATA_THRESHOLD = 1024;

/** A weight's values, or a function that makes them (not called when the builder only counts). */
export type Values = Float32Array | (() => Float32Array);

/** A built graph: its parameter and multiply-accumulate counts, and its model proto on demand. */
export interface BuiltModel {
  /** Multiply-accumulates per frame (batch 1) at the reference size. */
  readonly macs: number;
  /** State-dict parameters (as torch's `sum(p.numel() for p in model.parameters())` counts them). */
  readonly parameters: number;
  /** The encoded `model.onnx` (weights inline or as external-data references); throws for a counting build. */
  encode(): Uint8Array;
}

/** A 32-bit seed derived from a base seed and a label (FNV-1a), so each model gets its own stream. */
export function deriveSeed(seed: number, label: string): number {
  let hash = 0x811c9dc5;
  for (const char of `${seed >>> 0}:${label}`) {
    hash ^= char.charCodeAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** The state-dict prefix of a module scope: `/down_blocks.0/attn1/to_out/to_out.0` → `down_blocks.0.attn1.to_out.0`. */
export function paramPrefix(scope: string): string {
  const parts = scope.split('/').filter((part) => part !== '');
  const kept: string[] = [];
  for (const part of parts) {
    // torch scopes list a ModuleList element under its list (`to_out/to_out.0`); the state dict says `to_out.0`.
    const previous = kept[kept.length - 1];
    if (previous !== undefined && part.startsWith(`${previous}.`)) kept[kept.length - 1] = part;
    else kept.push(part);
  }
  return kept.join('.');
}

function attribute(name: string, value: AttrValue): AttributeProto {
  if (typeof value === 'string') return { name, type: AttrType.STRING, s: new TextEncoder().encode(value) };
  if (typeof value === 'number') return { name, type: AttrType.INT, i: value };
  if (Array.isArray(value)) return { name, type: AttrType.INTS, ints: [...(value as readonly number[])] };
  return { name, type: AttrType.FLOAT, f: (value as FloatAttr).float };
}

function valueInfo(name: string, elemType: ElemType, dims: readonly Dim[]): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ELEM[elemType],
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
}

/**
 * Collects nodes, initializers, inputs and outputs, hands out torch-style unique names, and
 * counts multiply-accumulates that the model builders report (`macs`).
 */
export class GraphBuilder {
  readonly rng: Random;
  /** Multiply-accumulates of the MatMul/Conv nodes, as added by the layer helpers (batch 1, reference size). */
  macs = 0;
  /** Elements of the state-dict parameters added with {@link param} / {@link matmulWeight} (not shape or math constants). */
  parameters = 0;
  readonly #storage: WeightStorage;
  readonly #nodes: NodeProto[] = [];
  readonly #initializers: TensorProto[] = [];
  readonly #inputs: ValueInfoProto[] = [];
  readonly #outputs: ValueInfoProto[] = [];
  readonly #used = new Map<string, number>();
  readonly #tensorNames = new Set<string>();
  #matmulWeights = 0;

  constructor(seed: number, storage: WeightStorage = 'inline') {
    this.rng = new Random(seed);
    this.#storage = storage;
  }

  /** Declares a graph input. */
  input(name: string, elemType: ElemType, dims: readonly Dim[]): string {
    this.#claimTensor(name);
    this.#inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Declares a graph output; `name` must be the output of a node already added. */
  output(name: string, elemType: ElemType, dims: readonly Dim[]): void {
    if (!this.#tensorNames.has(name)) throw new Error(`Graph output ${name} is not produced by any node.`);
    this.#outputs.push(valueInfo(name, elemType, dims));
  }

  /** Adds a node named `<scope>/<opType>[_k]` and returns its output tensor names. */
  ops(opType: string, inputs: readonly string[], scope: string, options: OpOptions = {}): string[] {
    const name = this.#uniqueNodeName(`${scope}/${opType}`);
    const outputs = options.outputs
      ? [...options.outputs]
      : Array.from({ length: options.outputCount ?? 1 }, (_, i) => `${name}_output_${i}`);
    for (const output of outputs) this.#claimTensor(output);
    this.#nodes.push(
      onnx.NodeProto.create({
        opType,
        name,
        input: [...inputs],
        output: outputs,
        ...(options.domain ? { domain: options.domain } : {}),
        attribute: Object.entries(options.attrs ?? {}).map(([key, value]) => attribute(key, value)),
      }),
    );
    return outputs;
  }

  /** {@link ops} for a single-output node. */
  op(opType: string, inputs: readonly string[], scope: string, options: OpOptions = {}): string {
    const [output] = this.ops(opType, inputs, scope, options);
    if (output === undefined) throw new Error(`${opType} in ${scope} produced no output.`);
    return output;
  }

  /**
   * A float32 state-dict parameter with a fixed name. `values` may be a function: it is called at
   * once (so random draws keep their order) unless the builder only counts.
   */
  param(name: string, dims: readonly number[], values: Values): string {
    this.parameters += dims.reduce((a, b) => a * b, 1);
    return this.#floatInitializer(name, dims, values, this.#storage);
  }

  /** A linear layer's weight [in, out] as torch exports it: an initializer named `onnx::MatMul_<n>`. */
  matmulWeight(dims: readonly [number, number], values: Values): string {
    this.#matmulWeights += 1;
    return this.param(`onnx::MatMul_${this.#matmulWeights}`, dims, values);
  }

  /** A float32 constant initializer named `<scope>/Constant[_k]_output_0`. */
  constFloat(scope: string, dims: readonly number[], values: readonly number[] | Float32Array): string {
    const name = `${this.#uniqueNodeName(`${scope}/Constant`)}_output_0`;
    return this.#floatInitializer(name, dims, Float32Array.from(values), this.#storage === 'count' ? 'count' : 'inline');
  }

  /** An int64 constant initializer named `<scope>/Constant[_k]_output_0` (shapes, axes, perms). */
  constInt64(scope: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    const name = `${this.#uniqueNodeName(`${scope}/Constant`)}_output_0`;
    this.#claimTensor(name);
    const data = BigInt64Array.from(values.map((v) => BigInt(v)));
    this.#initializers.push(
      onnx.TensorProto.create({ name, dims: [...dims], dataType: DataType.INT64, rawData: new Uint8Array(data.buffer) }),
    );
    return name;
  }

  /** The graph as built so far, with its counts; encoding is deferred to {@link BuiltModel.encode}. */
  finish(graphName: string, docString: string): BuiltModel {
    return { macs: this.macs, parameters: this.parameters, encode: () => this.encode(graphName, docString) };
  }

  /** Encodes the model: IR 8, default domain at {@link OPSET}, plus com.microsoft 1 for later contrib-op rewrites. */
  encode(graphName: string, docString: string): Uint8Array {
    if (this.#storage === 'count') throw new Error(`The ${graphName} builder only counted its weights; it has none to encode.`);
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: 'reelbot',
      producerVersion: '1',
      docString,
      opsetImport: [
        { domain: '', version: OPSET },
        { domain: 'com.microsoft', version: 1 },
      ],
      graph: onnx.GraphProto.create({
        name: graphName,
        node: this.#nodes,
        initializer: this.#initializers,
        input: this.#inputs,
        output: this.#outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }

  #floatInitializer(name: string, dims: readonly number[], values: Values, storage: WeightStorage): string {
    this.#claimTensor(name);
    const count = dims.reduce((a, b) => a * b, 1);
    if (storage === 'count') {
      // No data, not even drawn: the initializer only keeps the graph's names and shapes.
      this.#initializers.push(onnx.TensorProto.create({ name, dims: [...dims], dataType: DataType.FLOAT }));
      return name;
    }
    const array = typeof values === 'function' ? values() : values;
    if (array.length !== count) throw new Error(`Initializer ${name}: ${array.length} values for dims [${dims.join(',')}].`);
    const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
    if (storage === 'inline' || bytes.byteLength < EXTERNAL_DATA_THRESHOLD) {
      this.#initializers.push(onnx.TensorProto.create({ name, dims: [...dims], dataType: DataType.FLOAT, rawData: bytes }));
      return name;
    }
    const { location, offset, length } = storage.append(bytes);
    this.#initializers.push(
      onnx.TensorProto.create({
        name,
        dims: [...dims],
        dataType: DataType.FLOAT,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(length) },
        ],
      }),
    );
    return name;
  }

  #uniqueNodeName(base: string): string {
    const count = this.#used.get(base) ?? 0;
    this.#used.set(base, count + 1);
    return count === 0 ? base : `${base}_${count}`;
  }

  #claimTensor(name: string): void {
    if (this.#tensorNames.has(name)) throw new Error(`Tensor name ${name} is used twice.`);
    this.#tensorNames.add(name);
  }
}
