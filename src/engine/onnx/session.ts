/**
 * @file The only module that imports onnxruntime-node. Everything else in the engine goes through
 * these functions and the re-exported `Tensor`/`InferenceSession` types, so the runtime can be
 * swapped, mocked or upgraded in one place (the transformers.js `backends/onnx.js` rule).
 *
 * Why the provider fallback is built by hand: in onnxruntime-node 1.30 an execution-provider
 * list such as `['cuda', 'cpu']` does NOT fall back to the CPU when the CUDA provider fails to
 * load; session creation throws (measured, /work/shared/onnx-runtime.md §4). So each provider is
 * tried on its own and the errors are collected.
 */
import * as ort from 'onnxruntime-node';
import { DataType, encodeModel, makeNode, makeValueInfo, onnx } from './proto.js';

/** The ORT tensor class and type, for the rest of the engine (which must not import onnxruntime-node). */
export const Tensor = ort.Tensor;
export type Tensor = ort.Tensor;
export type TensorType = ort.Tensor.Type;
/** A loaded model. */
export type InferenceSession = ort.InferenceSession;
/** Input feeds of `session.run`. */
export type SessionFeeds = ort.InferenceSession.FeedsType;
/** Outputs of `session.run`. */
export type SessionResults = ort.InferenceSession.ReturnType;
/** Per-input/output metadata as ORT reports it. */
export type ValueMetadata = ort.InferenceSession.ValueMetadata;

/** A device slot as configured: `cpu`, `webgpu`, `cuda` (= `cuda:0`) or `cuda:N`. */
export type Device = string;

/** The execution providers the engine knows how to start. */
export type ProviderName = 'cuda' | 'webgpu' | 'cpu';

/** Device kind → the execution provider that serves it. `cpu` is also the fallback for the others. */
export const DEVICE_TO_EXECUTION_PROVIDER: Readonly<Record<'cpu' | 'cuda' | 'webgpu', ProviderName>> = Object.freeze({
  cpu: 'cpu',
  cuda: 'cuda',
  webgpu: 'webgpu',
});

/** Pino-like logger; only `info` and `warn` are used. */
export interface SessionLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface CreateSessionOptions {
  device: Device;
  /** Threads inside one op; 0 = ORT's default (all cores). */
  intraOpThreads: number;
  /** Threads across independent ops. */
  interOpThreads: number;
  /** When the GPU provider fails to start, create a CPU session instead of throwing. */
  fallbackToCpu: boolean;
  logger?: SessionLogger;
  /**
   * Outputs to leave in GPU memory (`preferredOutputLocation: 'gpu-buffer'`) when the session runs
   * on WebGPU, for tensors that only go back into a later run (the UNet's anchor keys/values).
   * Ignored on other providers: the CPU one always returns outputs as JS memory. Not tested on a
   * real GPU (none on the development machines).
   */
  gpuBufferOutputs?: readonly string[];
}

/** One provider tried while creating a session, with why it failed (absent for the one that worked). */
export interface ProviderAttempt {
  provider: string;
  error?: string;
}

export interface CreatedSession {
  session: InferenceSession;
  provider: ProviderName;
  attempts: ProviderAttempt[];
}

/** Every provider the device allowed failed; `attempts` says why each one did. */
export class SessionCreateError extends Error {
  readonly device: Device;
  readonly attempts: readonly ProviderAttempt[];

  constructor(message: string, device: Device, attempts: ProviderAttempt[], cause?: unknown) {
    super(message, { cause });
    this.name = new.target.name;
    this.device = device;
    this.attempts = attempts;
  }
}

const DEVICE_PATTERN = /^(cpu|webgpu|cuda)(?::(\d+))?$/;

/** Splits `cuda:1` into its provider and device index; throws a TypeError naming the accepted forms. */
export function parseDevice(device: Device): { kind: 'cpu' | 'cuda' | 'webgpu'; index: number } {
  const match = DEVICE_PATTERN.exec(device.trim());
  if (!match || (match[1] !== 'cuda' && match[2] !== undefined)) {
    throw new TypeError(`Expected \`device\` to be cpu, webgpu, cuda or cuda:N, got \`${device}\``);
  }
  return { kind: match[1] as 'cpu' | 'cuda' | 'webgpu', index: match[2] === undefined ? 0 : Number(match[2]) };
}

/**
 * The providers to try for a device, in order: its own provider, then the CPU when
 * `fallbackToCpu` is set (and the device is not the CPU already).
 */
export function providerPlan(device: Device, fallbackToCpu: boolean): { name: ProviderName; config: ort.InferenceSession.ExecutionProviderConfig }[] {
  const { kind, index } = parseDevice(device);
  const provider = DEVICE_TO_EXECUTION_PROVIDER[kind];
  const plan: { name: ProviderName; config: ort.InferenceSession.ExecutionProviderConfig }[] = [];
  if (provider === 'cuda') plan.push({ name: 'cuda', config: { name: 'cuda', deviceId: index } });
  else plan.push({ name: provider, config: provider });
  if (provider !== 'cpu' && fallbackToCpu) plan.push({ name: 'cpu', config: 'cpu' });
  return plan;
}

let runtimeLogLevelSet = false;

/**
 * Creates an inference session on the device's provider, falling back to the CPU when allowed.
 * Loading by path is preferred for models with external data (the data file is found next to the
 * model); bytes are resolved against the process's working directory.
 *
 * @example
 * const { session, provider } = await createSession('models/small/unet/model.onnx',
 *   { device: 'cuda:0', intraOpThreads: 0, interOpThreads: 1, fallbackToCpu: true, logger });
 */
export async function createSession(modelPathOrBytes: string | Uint8Array, options: CreateSessionOptions): Promise<CreatedSession> {
  checkThreads('intraOpThreads', options.intraOpThreads, 0);
  checkThreads('interOpThreads', options.interOpThreads, 1);
  const plan = providerPlan(options.device, options.fallbackToCpu);
  if (!runtimeLogLevelSet) {
    // ORT's own logging is very chatty at session creation; only errors are worth a line.
    ort.env.logLevel = 'error';
    runtimeLogLevelSet = true;
  }
  const model = typeof modelPathOrBytes === 'string' ? modelPathOrBytes : `<${modelPathOrBytes.byteLength} bytes>`;
  const attempts: ProviderAttempt[] = [];
  let lastError: unknown;
  for (const [i, step] of plan.entries()) {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [step.config],
      graphOptimizationLevel: 'all',
      intraOpNumThreads: options.intraOpThreads,
      interOpNumThreads: options.interOpThreads,
      logSeverityLevel: 3,
      // No CPU arena: an arena keeps each session's peak activations for good, so a worker that ran
      // a text-to-video job and then an edit held both peaks next to its weights. Without it the
      // memory goes back after each run (peak RSS of such a worker on the diffusers-pipeline
      // export: 818 → 540 MB; 378 MB with MALLOC_MMAP_THRESHOLD_=131072, see bench/worker-rss.ts).
      enableCpuMemArena: false,
      ...(step.name === 'webgpu' && options.gpuBufferOutputs?.length
        ? { preferredOutputLocation: Object.fromEntries(options.gpuBufferOutputs.map((name) => [name, 'gpu-buffer' as const])) }
        : {}),
    };
    try {
      const session =
        typeof modelPathOrBytes === 'string'
          ? await ort.InferenceSession.create(modelPathOrBytes, sessionOptions)
          : await ort.InferenceSession.create(modelPathOrBytes, sessionOptions);
      attempts.push({ provider: step.name });
      options.logger?.info(
        { device: options.device, provider: step.name, model, failed: attempts.filter((a) => a.error) },
        `ONNX Runtime session on ${step.name}${i > 0 ? ` (fallback for ${options.device})` : ''}`,
      );
      return { session, provider: step.name, attempts };
    } catch (error) {
      lastError = error;
      const message = error instanceof Error ? error.message : String(error);
      attempts.push({ provider: step.name, error: message });
      const next = plan[i + 1];
      options.logger?.warn(
        { device: options.device, provider: step.name, model, error: message },
        next ? `execution provider ${step.name} failed to start; trying ${next.name}` : `execution provider ${step.name} failed to start`,
      );
    }
  }
  const tried = attempts.map((a) => `${a.provider}: ${a.error ?? 'ok'}`).join('; ');
  const hint =
    plan.length === 1 && plan[0]?.name !== 'cpu'
      ? ' Enable onnx.fallbackToCpu (REELBOT_ONNX_FALLBACK_TO_CPU=true) to run on the CPU instead, or fix the GPU runtime.'
      : '';
  throw new SessionCreateError(`Could not create an ONNX Runtime session for ${model} on device ${options.device} (${tried}).${hint}`, options.device, attempts, lastError);
}

function checkThreads(name: string, value: number, minimum: number): void {
  if (!(Number.isInteger(value) && value >= minimum)) {
    throw new TypeError(`Expected \`${name}\` to be an integer from ${minimum} and up, got \`${String(value)}\` (${typeof value})`);
  }
}

/** The providers this onnxruntime-node build was compiled with; `bundled: false` ones need extra libraries. Compiled in does not mean usable. */
export function listProviders(): { name: string; bundled: boolean }[] {
  return ort.listSupportedBackends().map((b) => ({ name: b.name, bundled: b.bundled }));
}

/** Releases a session's native memory. Calling it twice is harmless (checked with onnxruntime-node 1.30). */
export async function releaseSession(session: InferenceSession): Promise<void> {
  await session.release();
}

/** Is this value an ORT tensor? */
export function isTensor(value: unknown): value is Tensor {
  return value instanceof ort.Tensor;
}

/** What {@link probeProvider} found: the provider a session on `device` starts on, and the attempts. */
export interface ProviderProbe {
  device: Device;
  /** Undefined when no provider the device allows could start. */
  provider?: ProviderName;
  attempts: ProviderAttempt[];
}

/**
 * Which provider a session on `device` starts on, found by creating one for a one-node graph (an
 * Add of two floats) with the same fallback rule as {@link createSession}; never throws.
 */
export async function probeProvider(device: Device, fallbackToCpu: boolean): Promise<ProviderProbe> {
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: onnx.GraphProto.create({
      name: 'probe',
      node: [makeNode('Add', ['a', 'a'], ['b'])],
      input: [makeValueInfo('a', DataType.FLOAT, [1])],
      output: [makeValueInfo('b', DataType.FLOAT, [1])],
    }),
  });
  try {
    const created = await createSession(encodeModel(model), { device, intraOpThreads: 1, interOpThreads: 1, fallbackToCpu });
    await releaseSession(created.session);
    return { device, provider: created.provider, attempts: created.attempts };
  } catch (error) {
    return { device, attempts: error instanceof SessionCreateError ? [...error.attempts] : [{ provider: device, error: (error as Error).message }] };
  }
}
