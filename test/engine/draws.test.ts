import { expect, test } from 'vitest';
import { DrawsError, DrawsFile, seededDraws } from '../../src/engine/draws.js';
import { Random } from '../../src/engine/random.js';
import { parseSafetensors, SafetensorsError, serializeSafetensors, type NamedTensor } from '../../src/engine/safetensors.js';

const f32 = (shape: number[], at: (i: number) => number = (i) => i): NamedTensor => {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = at(i);
  return { dtype: 'F32', shape, data };
};

test('safetensors: what is written reads back, 8-byte aligned, with metadata; broken files say what is wrong', () => {
  const bytes = serializeSafetensors(new Map([['a', f32([2, 3])], ['b', { dtype: 'U8', shape: [4], data: Uint8Array.from([1, 2, 3, 250]) }]]), { what: 'test' });
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  expect(headerLength % 8).toBe(0);
  const { tensors, metadata } = parseSafetensors(bytes);
  expect(metadata).toEqual({ what: 'test' });
  expect(tensors.get('a')).toMatchObject({ dtype: 'F32', shape: [2, 3] });
  expect(Array.from(tensors.get('a')!.data)).toEqual([0, 1, 2, 3, 4, 5]);
  expect(Array.from(tensors.get('b')!.data)).toEqual([1, 2, 3, 250]);

  expect(() => parseSafetensors(new Uint8Array(3))).toThrow(SafetensorsError);
  expect(() => parseSafetensors(new TextEncoder().encode('not a safetensors file at all'))).toThrow(/not a safetensors file/);
  const short = bytes.slice(0, bytes.length - 4);
  expect(() => parseSafetensors(short)).toThrow(/data offsets .* outside the file/);
});

test('seeded draws are the per-frame Random streams: x_T first, then the step noise in order', () => {
  const draws = seededDraws(7);
  const stream = new Random(7, 2);
  expect(Array.from(draws.initialNoise(2, 16, 14.5))).toEqual(Array.from(stream.normals(16, 14.5)));
  expect(Array.from(draws.stepNoise(2, 0, 16))).toEqual(Array.from(stream.normals(16)));
  expect(Array.from(draws.stepNoise(2, 1, 16))).toEqual(Array.from(stream.normals(16)));
  expect(Array.from(draws.forwardNoise(3, 16))).toEqual(Array.from(new Random(7, 3).normals(16)));
  expect(() => draws.check({ latentShape: [4, 8, 8], initialFrames: 100, forwardFrames: 0, noisySteps: 50, stepFrames: 100, what: 'anything' })).not.toThrow();
});

test('a draws file gives the rows it holds and refuses a job it does not fit, saying what was needed', () => {
  const file = serializeSafetensors(new Map([
    ['x_T', f32([3, 4, 2, 2])],
    ['forward_noise', f32([2, 4, 2, 2], (i) => 1000 + i)],
    ['step_noise', f32([5, 3, 4, 2, 2], (i) => -i)],
  ]));
  const draws = DrawsFile.fromBytes(file, 'draws.safetensors');
  expect(Array.from(draws.initialNoise(1, 16)).slice(0, 2)).toEqual([16, 17]);
  expect(Array.from(draws.initialNoise(1, 16, 2)).slice(0, 2)).toEqual([32, 34]);
  expect(draws.forwardNoise(2, 16)[0]).toBe(1016); // frame k is row k − 1
  expect(draws.stepNoise(2, 4, 16)[0]).toBe(-(4 * 3 + 2) * 16);
  expect(() => draws.forwardNoise(0, 16)).toThrow(DrawsError);

  const needs = { latentShape: [4, 2, 2] as const, initialFrames: 3, forwardFrames: 2, noisySteps: 5, stepFrames: 3, what: 'this 3-frame job' };
  expect(() => draws.check(needs)).not.toThrow();
  expect(() => draws.check({ ...needs, initialFrames: 4 })).toThrow('has `x_T` of shape [3, 4, 2, 2]; this 3-frame job needs [≥4, 4, 2, 2]');
  expect(() => draws.check({ ...needs, latentShape: [4, 4, 4] })).toThrow('needs [≥3, 4, 4, 4]');
  expect(() => draws.check({ ...needs, noisySteps: 6 })).toThrow('has `step_noise` of shape [5, 3, 4, 2, 2]; this 3-frame job needs [≥6, ≥3, 4, 2, 2]');
  expect(() => draws.check({ ...needs, noisySteps: 0, stepFrames: 99 })).not.toThrow(); // DDIM draws nothing

  const partial = DrawsFile.fromBytes(serializeSafetensors(new Map([['x_T', f32([1, 4, 2, 2])]])), 't2v.safetensors');
  expect(() => partial.check({ ...needs, initialFrames: 1 })).toThrow('The draws file t2v.safetensors has no `forward_noise`');
});

test('a draws file with the wrong rank, dtype or a non-finite value is refused by name', () => {
  const read = (tensors: Map<string, NamedTensor>) => () => DrawsFile.fromBytes(serializeSafetensors(tensors), 'd.safetensors');
  expect(read(new Map([['x_T', f32([4, 2, 2])]]))).toThrow('`x_T` must have 4 dimensions');
  expect(read(new Map([['x_T', { dtype: 'U8', shape: [1, 4, 1, 1], data: new Uint8Array(4) }]]))).toThrow('`x_T` must be float32 (F32), not U8');
  expect(read(new Map([['x_T', f32([1, 4, 1, 1], (i) => (i === 2 ? Number.NaN : i))]]))).toThrow('`x_T` holds a value that is not a finite number (element 2)');
  expect(() => DrawsFile.fromBytes(new TextEncoder().encode('{}'), 'e.json')).toThrow('The draws file e.json is not usable');
});
