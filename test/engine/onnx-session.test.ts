import { describe, expect, it } from 'vitest';
import { DataType, encodeModel, makeNode, makeValueInfo, onnx } from '../../src/engine/onnx/proto.js';
import {
  DEVICE_TO_EXECUTION_PROVIDER,
  SessionCreateError,
  Tensor,
  type InferenceSession,
  createSession,
  listProviders,
  parseDevice,
  providerPlan,
  releaseSession,
} from '../../src/engine/onnx/session.js';
import {
  float16BitsToFloat32,
  float16Tensor,
  float16ToFloat32Array,
  float32ArrayToFloat16,
  float32Tensor,
  float32ToFloat16Bits,
  int64Tensor,
  sessionIo,
  tensorOfType,
  tensorToFloat32,
} from '../../src/engine/onnx/tensor.js';

/** c = a + b, a [batch, 4] float32, b [1, 4]. */
function addModel(elemType = DataType.FLOAT): Uint8Array {
  return encodeModel(
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: onnx.GraphProto.create({
        name: 'add',
        node: [makeNode('Add', ['a', 'b'], ['c'])],
        input: [makeValueInfo('a', elemType, ['batch', 4]), makeValueInfo('b', elemType, [1, 4])],
        output: [makeValueInfo('c', elemType, ['batch', 4])],
      }),
    }),
  );
}

interface LogLine {
  level: 'info' | 'warn';
  obj: Record<string, unknown>;
  msg: string | undefined;
}

function recordingLogger(): { lines: LogLine[]; info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void } {
  const lines: LogLine[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', obj: obj as Record<string, unknown>, msg }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj: obj as Record<string, unknown>, msg }),
  };
}

const THREADS = { intraOpThreads: 1, interOpThreads: 1 };

describe('createSession', () => {
  it('creates a CPU session that runs', async () => {
    const logger = recordingLogger();
    const { session, provider, attempts } = await createSession(addModel(), { device: 'cpu', ...THREADS, fallbackToCpu: false, logger });
    expect(provider).toBe('cpu');
    expect(attempts).toEqual([{ provider: 'cpu' }]);
    const out = await session.run({ a: float32Tensor([1, 2, 3, 4, 5, 6, 7, 8], [2, 4]), b: float32Tensor([1, 1, 1, 1], [1, 4]) });
    expect(Array.from(out.c?.data as Float32Array)).toEqual([2, 3, 4, 5, 6, 7, 8, 9]);
    expect(sessionIo(session)).toEqual({
      inputs: [
        { name: 'a', type: 'float32', dims: ['batch', 4] },
        { name: 'b', type: 'float32', dims: [1, 4] },
      ],
      outputs: [{ name: 'c', type: 'float32', dims: ['batch', 4] }],
    });
    expect(logger.lines).toEqual([expect.objectContaining({ level: 'info', msg: 'ONNX Runtime session on cpu' })]);
    await releaseSession(session);
  });

  it('falls back to the CPU when CUDA cannot start, recording why', async () => {
    const logger = recordingLogger();
    const { session, provider, attempts } = await createSession(addModel(), { device: 'cuda:1', ...THREADS, fallbackToCpu: true, logger });
    // On a host with the CUDA provider installed and a second GPU there is nothing to fall back from.
    if (provider === 'cuda') return void (await releaseSession(session));
    expect(provider).toBe('cpu');
    expect(attempts).toHaveLength(2);
    expect(attempts[0]).toMatchObject({ provider: 'cuda', error: expect.any(String) });
    expect(attempts[0]?.error?.length).toBeGreaterThan(0);
    expect(attempts[1]).toEqual({ provider: 'cpu' });
    expect(logger.lines.map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'execution provider cuda failed to start; trying cpu'],
      ['info', 'ONNX Runtime session on cpu (fallback for cuda:1)'],
    ]);
    await releaseSession(session);
  });

  it('falls back from WebGPU too', async () => {
    const { session, provider, attempts } = await createSession(addModel(), { device: 'webgpu', ...THREADS, fallbackToCpu: true });
    expect(provider).toBe('cpu');
    expect(attempts.map((a) => a.provider)).toEqual(['webgpu', 'cpu']);
    await releaseSession(session);
  });

  it('throws a clear error when CUDA cannot start and fallback is off', async () => {
    const error = await createSession(addModel(), { device: 'cuda', ...THREADS, fallbackToCpu: false }).catch((e: unknown) => e);
    if (!(error instanceof Error)) return void (await releaseSession((error as { session: InferenceSession }).session)); // a CUDA host
    expect(error).toBeInstanceOf(SessionCreateError);
    const e = error as SessionCreateError;
    expect(e.message).toMatch(/^Could not create an ONNX Runtime session for <\d+ bytes> on device cuda \(cuda: .+\)\. Enable onnx\.fallbackToCpu/);
    expect(e.attempts).toEqual([{ provider: 'cuda', error: expect.any(String) }]);
    expect(e.device).toBe('cuda');
  });

  it('names the model problem when even the CPU cannot load it', async () => {
    await expect(createSession(new Uint8Array([1, 2, 3]), { device: 'cpu', ...THREADS, fallbackToCpu: true })).rejects.toThrow(
      /Could not create an ONNX Runtime session for <3 bytes> on device cpu \(cpu: .+\)\.$/,
    );
  });

  it('checks its options', async () => {
    await expect(createSession(addModel(), { device: 'gpu', ...THREADS, fallbackToCpu: true })).rejects.toThrow('Expected `device` to be cpu, webgpu, cuda or cuda:N, got `gpu`');
    await expect(createSession(addModel(), { device: 'cpu', intraOpThreads: -1, interOpThreads: 1, fallbackToCpu: true })).rejects.toThrow(
      'Expected `intraOpThreads` to be an integer from 0 and up, got `-1` (number)',
    );
  });
});

describe('device table', () => {
  it('maps devices to providers and plans the fallback', () => {
    expect(Object.isFrozen(DEVICE_TO_EXECUTION_PROVIDER)).toBe(true);
    expect(parseDevice('cuda:1')).toEqual({ kind: 'cuda', index: 1 });
    expect(parseDevice('cuda')).toEqual({ kind: 'cuda', index: 0 });
    expect(() => parseDevice('webgpu:1')).toThrow(TypeError);
    expect(providerPlan('cuda:2', true)).toEqual([
      { name: 'cuda', config: { name: 'cuda', deviceId: 2 } },
      { name: 'cpu', config: 'cpu' },
    ]);
    expect(providerPlan('webgpu', false)).toEqual([{ name: 'webgpu', config: 'webgpu' }]);
    expect(providerPlan('cpu', true)).toEqual([{ name: 'cpu', config: 'cpu' }]);
  });

  it('lists the compiled-in providers', () => {
    const providers = listProviders();
    expect(providers).toContainEqual({ name: 'cpu', bundled: true });
    expect(providers.every((p) => typeof p.name === 'string' && typeof p.bundled === 'boolean')).toBe(true);
  });
});

describe('float16', () => {
  it('converts known values', () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(0.5)).toBe(0x3800);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff); // below the halfway point to 65536
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00); // halfway, ties to even = Infinity
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(float32ToFloat16Bits(0)).toBe(0);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(float32ToFloat16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(float32ToFloat16Bits(1e-8)).toBe(0); // under half the smallest subnormal (2^-25 ≈ 2.98e-8)
    expect(float32ToFloat16Bits(3e-8)).toBe(0x0001);
    expect(float32ToFloat16Bits(1e-5)).toBe(0x00a8); // subnormal: 1e-5 / 2^-24 = 167.77 → 168
    const nan = float32ToFloat16Bits(Number.NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x03ff).not.toBe(0);
    expect(float16BitsToFloat32(nan)).toBeNaN();
  });

  it('rounds to nearest, ties to even', () => {
    // Between 1 and 1 + 2^-10 (0x3c00, 0x3c01): the midpoint goes to the even 0x3c00.
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(float32ToFloat16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
    // Between 0x3c01 and 0x3c02 the midpoint goes up to the even 0x3c02.
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    // Subnormal ties: 1.5 · 2^-24 → 2 · 2^-24 (even), 2.5 · 2^-24 → 2 · 2^-24.
    expect(float32ToFloat16Bits(1.5 * 2 ** -24)).toBe(0x0002);
    expect(float32ToFloat16Bits(2.5 * 2 ** -24)).toBe(0x0002);
    // Mantissa carry into the exponent: just under 2 rounds up to 2.
    expect(float32ToFloat16Bits(2 - 2 ** -12)).toBe(0x4000);
  });

  it('round-trips every finite half exactly, and float32 values to the nearest half', () => {
    const wrong: number[] = [];
    for (let bits = 0; bits < 0x10000; bits++) {
      if ((bits & 0x7c00) === 0x7c00) continue; // Inf / NaN
      if (float32ToFloat16Bits(float16BitsToFloat32(bits)) !== bits) wrong.push(bits);
    }
    expect(wrong).toEqual([]);
    // Random float32 values: the chosen half is never farther than any other half.
    let seed = 12345;
    const random = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const values = Float32Array.from({ length: 2000 }, () => (random() * 2 - 1) * 2 ** Math.floor(random() * 40 - 26));
    const halves = float32ArrayToFloat16(values);
    const back = float16ToFloat32Array(halves);
    const farther: number[] = [];
    for (let i = 0; i < values.length; i++) {
      const v = values[i] ?? 0;
      const h = halves[i] ?? 0;
      const err = Math.abs((back[i] ?? 0) - v);
      // The neighbouring halves away from and towards zero.
      const away = float16BitsToFloat32(h + 1);
      const toward = (h & 0x7fff) === 0 ? Number.NaN : float16BitsToFloat32(h - 1);
      if (Number.isFinite(away) && err > Math.abs(away - v)) farther.push(v);
      if (Number.isFinite(toward) && err > Math.abs(toward - v)) farther.push(v);
    }
    expect(farther).toEqual([]);
  });

  it('feeds a float16 graph through ORT as Uint16Array bits', async () => {
    const { session } = await createSession(addModel(DataType.FLOAT16), { device: 'cpu', ...THREADS, fallbackToCpu: false });
    const out = await session.run({ a: float16Tensor([1, 2.5, -3, 0.1], [1, 4]), b: float16Tensor(new Float32Array([1, 1, 1, 1]), [1, 4]) });
    const c = out.c as Tensor;
    expect(c.type).toBe('float16');
    expect(c.data).toBeInstanceOf(Uint16Array);
    const values = tensorToFloat32(c);
    expect(values[0]).toBe(2);
    expect(values[1]).toBe(3.5);
    expect(values[2]).toBe(-2);
    expect(values[3]).toBeCloseTo(1.1, 3);
    expect(sessionIo(session).inputs[0]).toEqual({ name: 'a', type: 'float16', dims: ['batch', 4] });
    await releaseSession(session);
  });
});

describe('tensor makers', () => {
  it('check the element count against the dims', () => {
    expect(() => float32Tensor([1, 2, 3], [2, 2])).toThrow('A float32 tensor of dims [2, 2] needs 4 values, got 3');
    expect(() => float32Tensor([1], [1.5])).toThrow(TypeError);
    const data = new Float32Array(4);
    expect(float32Tensor(data, [2, 2]).data).toBe(data); // wrapped, not copied
  });

  it('make int64 tensors and tensors of a metadata dtype', () => {
    expect(int64Tensor([0, -1]).data).toEqual(BigInt64Array.from([0n, -1n]));
    expect(int64Tensor([0, -1]).dims).toEqual([2]);
    expect(() => int64Tensor([0.5])).toThrow('Expected an integer for an int64 tensor, got 0.5');
    expect(tensorOfType('int64', [981], [1]).data).toEqual(BigInt64Array.from([981n]));
    expect(tensorOfType('float32', [981], []).dims).toEqual([]);
    expect(tensorOfType('float16', [1], [1]).data).toEqual(Uint16Array.from([0x3c00]));
    expect(() => tensorOfType('string', [1], [1])).toThrow('Cannot make a string tensor from float values');
  });
});
