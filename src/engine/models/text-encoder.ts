/**
 * The built-in text encoder: a small CLIPTextModel (pre-LN transformer with a causal mask and
 * quick_gelu), node names as a TorchScript export of transformers' CLIP writes them.
 *
 * I/O (optimum names): `input_ids` int64 [batch_size, 77] → `last_hidden_state` float32
 * [batch_size, 77, hidden] and `pooler_output` float32 [batch_size, hidden], the final hidden
 * state at the position of the highest token id (CLIP's eos, `<|endoftext|>`, has the highest id).
 */
import { GraphBuilder, type BuiltModel, type WeightStorage } from './graph-builder.js';
import { add, attention, layerNorm, linear, quickGelu, type Sequence } from './layers.js';

/** Shape of a built-in text encoder. */
export interface TextEncoderConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly layers: number;
  readonly heads: number;
  /** CLIP's max_position_embeddings (77). */
  readonly maxLength: number;
}

/** Token embeddings have std 1 and position embeddings 0.5, so the prompt dominates but position still counts. */
const TOKEN_STD = 1;
const POSITION_STD = 0.5;
/** What CLIP adds above the diagonal; finite so a fully masked row could never turn into NaN. */
const MASKED = -1e9;

/** Builds the text encoder graph with weights from `seed`, kept as `storage` says (default inline). */
export function buildTextEncoder(config: TextEncoderConfig, seed: number, storage: WeightStorage = 'inline'): BuiltModel {
  const b = new GraphBuilder(seed, storage);
  const { hiddenSize: c, maxLength: n } = config;
  const ids = b.input('input_ids', 'int64', ['batch_size', n]);

  // 1. Embeddings: token Gather + learned positions.
  const embScope = '/text_model/embeddings';
  const tokenTable = b.param('text_model.embeddings.token_embedding.weight', [config.vocabSize, c], () => b.rng.normals(config.vocabSize * c, TOKEN_STD));
  const tokens = b.op('Gather', [tokenTable, ids], `${embScope}/token_embedding`, { attrs: { axis: 0 } });
  const positions = b.param('text_model.embeddings.position_embedding.weight', [n, c], () => b.rng.normals(n * c, POSITION_STD));
  let x: Sequence = { name: b.op('Add', [tokens, positions], embScope), n, c };

  // 2. Causal mask [n, n]: token i attends to tokens 0..i.
  const mask = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) mask[i * n + j] = MASKED;
  const causalMask = b.constFloat('/text_model/encoder', [n, n], mask);

  // 3. Pre-LN layers: x + attn(ln1(x)), then x + mlp(ln2(x)).
  for (let i = 0; i < config.layers; i++) {
    const scope = `/text_model/encoder/layers.${i}`;
    const h1 = layerNorm(b, x, `${scope}/layer_norm1`);
    const attended = attention(b, h1, h1, `${scope}/self_attn`, {
      heads: config.heads,
      qkvBias: true,
      names: { q: 'q_proj', k: 'k_proj', v: 'v_proj', out: 'out_proj' },
      mask: causalMask,
    });
    x = add(b, x, attended, scope);
    const h2 = layerNorm(b, x, `${scope}/layer_norm2`);
    const up = quickGelu(b, linear(b, h2, `${scope}/mlp/fc1`, 4 * c), `${scope}/mlp/activation_fn`);
    x = add(b, x, linear(b, up, `${scope}/mlp/fc2`, c), scope);
  }
  const last = layerNorm(b, x, '/text_model/final_layer_norm', 1e-5, 'last_hidden_state');
  b.output('last_hidden_state', 'float32', ['batch_size', n, c]);

  // 4. Pooler: the hidden state at argmax(input_ids) per row (ids cast to int32 as CLIP's export does).
  const poolScope = '/text_model';
  const ids32 = b.op('Cast', [ids], poolScope, { attrs: { to: 6 } });
  const eos = b.op('ArgMax', [ids32], poolScope, { attrs: { axis: -1, keepdims: 1 } }); // [B, 1]
  const eos3 = b.op('Unsqueeze', [eos, b.constInt64(poolScope, [2])], poolScope); // [B, 1, 1]
  const index = b.op('Expand', [eos3, b.constInt64(poolScope, [1, 1, c])], poolScope); // [B, 1, C]
  const gathered = b.op('GatherElements', [last.name, index], poolScope, { attrs: { axis: 1 } });
  b.op('Squeeze', [gathered, b.constInt64(poolScope, [1])], poolScope, { outputs: ['pooler_output'] });
  b.output('pooler_output', 'float32', ['batch_size', c]);

  return b.finish('text_encoder', 'reelbot built-in CLIPTextModel (untrained, seeded random weights)');
}
