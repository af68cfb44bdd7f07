/**
 * Writes the two other VAE encoder graphs optimum's exporter has produced, made from the committed
 * tiny torch export `test/fixtures/diffusers-pipeline/sd/vae_encoder/model.onnx` (which outputs
 * the posterior mode as `latent_sample`) by editing only the graph's tail, so all three share the
 * same weights and the same encoder body:
 *
 * - `latent-parameters/model.onnx`: optimum since October 2024 (huggingface/optimum d3c56cd5,
 *   `optimum/exporters/utils.py`: `{"latent_parameters": vae.encode(x=sample)["latent_dist"].parameters}`),
 *   the quant_conv output itself, 8 channels = mean and log-variance.
 * - `sampling-latent-sample/model.onnx`: optimum before it (`{"latent_sample": ...latent_dist.sample()}`):
 *   diffusers' `DiagonalGaussianDistribution` traced by torch.onnx at opset 14, i.e. mean and logvar
 *   = the two halves (Slice) of the quant_conv output, std = Exp(0.5 · Clip(logvar, −30, 20)), and
 *   `mean + std · randn(mean.shape)` where torch's `randn` symbolic with a traced shape writes
 *   `ConstantOfShape(shape, 0.0) → RandomNormalLike(dtype float)`. No seed: every run differs. The
 *   tail is node for node a torch 1.13 export of that wrapper (the one check made by hand).
 *
 * Run from the repository root: `npx tsx scripts/make-vae-encoder-variants.ts`. To compare with what
 * torch writes, scripts/export-optimum-vae-encoder-forms.py exports both wrappers of a tiny VAE.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DataType,
  encodeModel,
  float32Initializer,
  int64Initializer,
  makeNode,
  makeValueInfo,
  onnx,
  readModelFile,
} from '../src/engine/onnx/proto.js';

const FIXTURES = join('test', 'fixtures', 'diffusers-pipeline');
const SOURCE = join(FIXTURES, 'sd', 'vae_encoder', 'model.onnx');
const OUT = join(FIXTURES, 'vae-encoder-variants');
const QUANT_CONV = '/quant_conv/Conv_output_0';

const { model } = await readModelFile(SOURCE);
const graph = model.graph as onnx.GraphProto;
const nodes = graph.node ?? [];
const quantConv = nodes.findIndex((n) => n.output?.[0] === QUANT_CONV);
if (quantConv < 0 || graph.output?.[0]?.name !== 'latent_sample') throw new Error(`${SOURCE} is not the expected torch export (no ${QUANT_CONV} feeding latent_sample)`);
const body = nodes.slice(0, quantConv + 1);
/** The mode export's chunk (Shape → … → Slice) that computes the first half's end, reused for both halves. */
const chunk = nodes.slice(quantConv + 1, -1);
const meanSlice = nodes.at(-1) as onnx.INodeProto;

function save(name: string, graphNodes: onnx.INodeProto[], outputs: onnx.ValueInfoProto[], initializers: onnx.ITensorProto[] = []): Promise<void> {
  const edited = onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({ ...graph, node: graphNodes, output: outputs, initializer: [...(graph.initializer ?? []), ...initializers] }),
  });
  return mkdir(join(OUT, name), { recursive: true }).then(() => writeFile(join(OUT, name, 'model.onnx'), encodeModel(edited)));
}

// 1. Today's optimum: the distribution's parameters, the quant_conv output renamed (torch names the
//    graph output after output_names; its shape is static in channels).
const renamed = body.map((n) => (n.output?.[0] === QUANT_CONV ? onnx.NodeProto.create({ ...n, output: ['latent_parameters'] }) : n));
await save('latent-parameters', renamed, [makeValueInfo('latent_parameters', DataType.FLOAT, ['batch_size', 8, 'height_latent', 'width_latent'])]);

// 2. Older optimum: latent_dist.sample() in the graph. The tail below is node for node what torch's
//    exporter wrote for optimum's old wrapper around diffusers' DiagonalGaussianDistribution (checked
//    against a torch 1.13 / diffusers 0.31 export of `{"latent_sample": vae.encode(x).latent_dist.sample()}`
//    at opset 14: the same chunk Slices as the mode export, then Clip, Mul, Exp; randn(mean.shape) as
//    four Shape → Gather(scalar) → Unsqueeze, Concat, ConstantOfShape, RandomNormalLike, and the
//    Cast of randn_tensor's `.to(dtype)`; then mean + std · noise).
const mean = '/Slice_output_0';
const half = meanSlice.input?.[2] as string; // ((C + 1) / 2) · 1: the first chunk's end
const axis = meanSlice.input?.[3] as string;
const constant = (name: string, tensor: onnx.ITensorProto, output = `/${name}_output_0`): onnx.NodeProto =>
  makeNode('Constant', [], [output], { value: tensor }, { name: output.startsWith('onnx::') ? name : `/${name}` });
const f32 = (value: number): onnx.ITensorProto => float32Initializer('', [], [value]);
const i64 = (dims: number[], value: number): onnx.ITensorProto => int64Initializer('', dims, [value]);
const sampling: onnx.INodeProto[] = [
  ...body,
  ...chunk,
  onnx.NodeProto.create({ ...meanSlice, output: [mean] }),
  constant('Constant_5', i64([1], 2)),
  makeNode('Mul', ['/Div_output_0', '/Constant_5_output_0'], ['/Mul_1_output_0'], {}, { name: '/Mul_1' }),
  makeNode('Slice', [QUANT_CONV, half, '/Mul_1_output_0', axis], ['/Slice_1_output_0'], {}, { name: '/Slice_1' }),
  constant('Constant_6', f32(-30)),
  constant('Constant_7', f32(20)),
  makeNode('Clip', ['/Slice_1_output_0', '/Constant_6_output_0', '/Constant_7_output_0'], ['/Clip_output_0'], {}, { name: '/Clip' }),
  constant('Constant_8', f32(0.5)),
  makeNode('Mul', ['/Clip_output_0', '/Constant_8_output_0'], ['/Mul_2_output_0'], {}, { name: '/Mul_2' }),
  makeNode('Exp', ['/Mul_2_output_0'], ['/Exp_output_0'], {}, { name: '/Exp' }),
  ...[0, 1, 2, 3].flatMap((d) => [
    makeNode('Shape', [mean], [`/Shape_${1 + d}_output_0`], {}, { name: `/Shape_${1 + d}` }),
    constant(`Constant_${9 + d}`, i64([], d)),
    makeNode('Gather', [`/Shape_${1 + d}_output_0`, `/Constant_${9 + d}_output_0`], [`/Gather_${1 + d}_output_0`], { axis: 0 }, { name: `/Gather_${1 + d}` }),
  ]),
  ...[0, 1, 2, 3].flatMap((d) => [
    constant(`Constant_${494 + 2 * d}`, i64([1], 0), `onnx::Unsqueeze_${741 + 2 * d}`),
    makeNode('Unsqueeze', [`/Gather_${1 + d}_output_0`, `onnx::Unsqueeze_${741 + 2 * d}`], [`/Unsqueeze${d === 0 ? '' : `_${d}`}_output_0`], {}, { name: `/Unsqueeze${d === 0 ? '' : `_${d}`}` }),
  ]),
  makeNode('Concat', ['/Unsqueeze_output_0', '/Unsqueeze_1_output_0', '/Unsqueeze_2_output_0', '/Unsqueeze_3_output_0'], ['/Concat_output_0'], { axis: 0 }, { name: '/Concat' }),
  makeNode('ConstantOfShape', ['/Concat_output_0'], ['/ConstantOfShape_output_0'], { value: float32Initializer('', [1], [0]) }, { name: '/ConstantOfShape' }),
  makeNode('RandomNormalLike', ['/ConstantOfShape_output_0'], ['/RandomNormalLike_output_0'], { dtype: DataType.FLOAT }, { name: '/RandomNormalLike' }),
  makeNode('Cast', ['/RandomNormalLike_output_0'], ['/Cast_output_0'], { to: DataType.FLOAT }, { name: '/Cast' }),
  makeNode('Mul', ['/Exp_output_0', '/Cast_output_0'], ['/Mul_3_output_0'], {}, { name: '/Mul_3' }),
  makeNode('Add', [mean, '/Mul_3_output_0'], ['latent_sample'], {}, { name: '/Add_1' }),
];
await save('sampling-latent-sample', sampling, [makeValueInfo('latent_sample', DataType.FLOAT, ['batch_size', 'Addlatent_sample_dim_1', 'height_latent', 'width_latent'])]);
console.log(`wrote ${join(OUT, 'latent-parameters', 'model.onnx')} and ${join(OUT, 'sampling-latent-sample', 'model.onnx')}`);
