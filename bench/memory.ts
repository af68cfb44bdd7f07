/**
 * Worker memory at real scale: `npm run -s bench:memory` (several minutes to an hour on 2 cores).
 *
 * Prints one JSON line (extra fields after these):
 *   {"bench":"memory","model":"sd15","weights_mb":…,"peak_rss_after_t2v_mb":…,"peak_rss_after_edit_mb":…,
 *    "rss_to_weights":…,"unet_call_s_batch2":…,"unet_call_s_batch16":…,"unet_gflops":…,
 *    "machine_peak_gflops":…,"fraction_of_peak":…}
 *
 * 1. The sd15-size built-in sets (SD 1.5's architecture, random weights) are made into
 *    ./models/sd15 and ./models/sd15-edit unless they are there already (about a minute each).
 * 2. The real app runs (startApp, as `reelbot render` does: SQLite, queue, one CPU worker process
 *    running the built-in engine) one text-to-video job (8 frames, 2 steps, 512²) and then one edit
 *    job (8 frames, 2 steps) in the same worker, on a clip of 8 moving-gradient frames (bench/edit.ts's
 *    pattern) at the set's resolution. The worker's peak RSS is its VmHWM in /proc/<pid>/status,
 *    read after each job (the engine and its ONNX sessions live in that process, whatever thread
 *    they run on), with its RSS then split into anonymous memory and mapped files (`rss_anon_*`,
 *    `rss_file_*`: mmapped weights count as file pages). A watchdog reads VmRSS every 2 s and kills
 *    the worker when it passes `--max-rss-gb` (default 18; the machine is shared): the peaks not
 *    reached are null, `stopped` says why, `peak_rss_seen_mb` is the largest VmHWM seen, step 4
 *    still runs, and the exit code is 1.
 * 3. `weights_mb`: the bytes of every initializer of every model the worker loaded (both sets'
 *    text encoder, UNet and VAE decoder, the edit set's VAE encoder), read from the graph protos;
 *    each model counted once however many sessions hold it. `rss_to_weights` = the worker's peak
 *    RSS over both jobs / weights_mb. MB here are MiB (2^20 bytes), as /proc reports kB as KiB.
 * 4. With the app stopped, in this process: `machine_peak_gflops` is the better of a
 *    [16384,1280]·[1280,1280] MatMul and a 3×3 320→320 Conv on [4,320,64,64] in ORT, each the
 *    fastest of its runs over `--peak-seconds` (default 20) after 2 warm-ups, once before and once
 *    after the UNet calls (the machine is shared: the best run is the one least disturbed), same
 *    thread count as the worker; `unet_call_s_batch2` / `_batch16` are single
 *    calls of the text-to-video set's cross-frame UNet (anchor frame 0, so attn1 does the same work as
 *    plain self-attention) on the 64×64 latent, after one warm-up call at batch 16.
 *    `unet_gflops` = 16 × the UNet's GFLOP per sample / unet_call_s_batch16, where GFLOP per sample
 *    is counted from the architecture by the model builder (reelbot.json `unetGflopsPerFrame`):
 *    2 × the multiply-accumulates of every Conv and MatMul node at batch 1 on the 64×64 latent with
 *    the 77-token text, attention's Q·Kᵀ and P·V products included; GroupNorm, Softmax and the
 *    elementwise ops are not counted (803.3 GFLOP for SD 1.5). `fraction_of_peak` = unet_gflops /
 *    machine_peak_gflops.
 *
 * `--size tiny|small` runs the same on a small built-in size (a quick check of the bench itself).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { startApp, type App } from '../src/main.js';
import type { JobEvent } from '../src/jobs/types.js';
import { GraphBuilder } from '../src/engine/models/graph-builder.js';
import { conv2d } from '../src/engine/models/layers.js';
import { makeModelSet, SIZES, type ModelSetInfo, type ModelSetKind, type ModelSetSize } from '../src/engine/models/make.js';
import { onnx, readModelFile } from '../src/engine/onnx/proto.js';
import { createSession, releaseSession, Tensor } from '../src/engine/onnx/session.js';
import { StableDiffusionComponents } from '../src/engine/pipelines/sd-components.js';
import { encodeFrames } from '../src/media/encode.js';
import { resolveFfmpegPaths } from '../src/media/ffmpeg-paths.js';
import { WORKER_ENTRY } from '../src/jobs/dispatch/local-pool.js';
import { movingGradient } from './moving-gradient.js';

const FRAMES = 8;
const STEPS = 2;
const RSS_TARGET = 1.6;
const MIB = 1024 * 1024;
const WATCH_MS = 2000;
const ACTOR = { platform: 'cli' as const, externalId: 'bench-memory' };

const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

function argument(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index >= 0 && process.argv[index + 1] !== undefined ? process.argv[index + 1]! : fallback;
}

/** The built-in set of this size and kind in ./models, made there first when missing. */
async function ensureSet(size: ModelSetSize, kind: ModelSetKind): Promise<{ dir: string; info: ModelSetInfo }> {
  const dir = resolve('models', kind === 'instruct-edit' ? `${size}-edit` : size);
  try {
    const info = JSON.parse(readFileSync(join(dir, 'reelbot.json'), 'utf8')) as ModelSetInfo;
    if (info.size === size && info.kind === kind) return { dir, info };
  } catch {
    // Not there (or not a set): make it.
  }
  process.stderr.write(`bench:memory: making the ${size} ${kind} set in ${dir}…\n`);
  return { dir, info: await makeModelSet({ size, kind, out: dir }) };
}

/** Bytes of every initializer of `<dir>/<component>/model.onnx`, from its dims and element type (inline or external). */
async function weightBytes(dir: string, component: string): Promise<number> {
  const { model } = await readModelFile(join(dir, component, 'model.onnx'));
  const DT = onnx.TensorProto.DataType;
  const size: Record<number, number> = { [DT.FLOAT]: 4, [DT.FLOAT16]: 2, [DT.BFLOAT16]: 2, [DT.DOUBLE]: 8, [DT.INT64]: 8, [DT.INT32]: 4, [DT.INT8]: 1, [DT.UINT8]: 1, [DT.BOOL]: 1 };
  let bytes = 0;
  for (const tensor of model.graph?.initializer ?? []) {
    const elements = (tensor.dims ?? []).reduce<number>((product, dim) => product * Number(dim), 1);
    bytes += elements * (size[tensor.dataType ?? 0] ?? 4);
  }
  return bytes;
}

/** A `field: value kB` line of /proc/<pid>/status in MiB, or undefined when the process is gone. */
function procStatusMb(pid: number, field: 'VmHWM' | 'VmRSS' | 'RssAnon' | 'RssFile'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** The pids of this process's children whose command line runs the job worker. */
function workerPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(WORKER_ENTRY)) pids.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return pids;
}

/** Watches one worker: its pid once the first job starts, its VmHWM, and the RSS limit. */
class WorkerWatch {
  pid: number | undefined;
  stopped: string | undefined;
  /** The largest VmHWM seen so far (kept when the worker is gone). */
  seenPeakMb: number | undefined;
  readonly #limitMb: number;
  readonly #onOver: () => void;
  readonly #timer: NodeJS.Timeout;

  constructor(limitMb: number, onOver: () => void) {
    this.#limitMb = limitMb;
    this.#onOver = onOver;
    this.#timer = setInterval(() => this.check(), WATCH_MS);
  }

  check(): void {
    const pids = workerPids();
    if (pids.length > 1 || (this.pid !== undefined && pids.length === 1 && pids[0] !== this.pid)) {
      this.stop('the job ran in more than one worker process (one was replaced), so no single worker held both models');
      return;
    }
    this.pid ??= pids[0];
    if (this.pid === undefined || this.stopped) return;
    this.peakMb();
    const rss = procStatusMb(this.pid, 'VmRSS');
    if (rss !== undefined && rss > this.#limitMb) this.stop(`the worker's RSS reached ${Math.round(rss)} MB, over the ${Math.round(this.#limitMb)} MB limit`);
  }

  /** The worker's VmHWM now (MiB); undefined before it started or after it is gone. */
  peakMb(): number | undefined {
    this.pid ??= workerPids()[0];
    const peak = this.pid === undefined ? undefined : procStatusMb(this.pid, 'VmHWM');
    if (peak !== undefined) this.seenPeakMb = Math.max(this.seenPeakMb ?? 0, peak);
    return peak;
  }

  stop(reason: string): void {
    if (this.stopped) return;
    this.stopped = reason;
    this.#onOver();
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/** Runs one job through the app; resolves with its wall time, rejects with the job's own message. */
async function runJob(app: App, watch: WorkerWatch, kind: 'text2video' | 'edit', params: Record<string, unknown>): Promise<number> {
  let jobId = -1;
  const started = performance.now();
  const finished = new Promise<JobEvent>((done) => {
    const off = app.jobs.onEvent((event) => {
      if (event.job.id !== jobId) return;
      if (event.type === 'started') watch.check();
      if (event.type === 'succeeded' || event.type === 'failed' || event.type === 'cancelled') {
        off();
        done(event);
      }
    });
  });
  jobId = (await app.jobs.submit({ actor: ACTOR, kind, params, seed: 1 })).job.id;
  const stopWatching = setInterval(() => {
    if (watch.stopped) void app.jobs.cancel(ACTOR, jobId).catch(() => undefined);
  }, WATCH_MS);
  try {
    const event = await finished;
    if (event.type === 'failed') throw new Error(`${kind} job failed: ${event.message}`);
    if (event.type === 'cancelled') throw new Error(`${kind} job was cancelled: ${watch.stopped ?? 'by someone else'}`);
    return (performance.now() - started) / 1000;
  } finally {
    clearInterval(stopWatching);
  }
}

/** A large MatMul's and a 3×3 Conv's rate in ORT on this CPU, in GFLOP/s: the fastest run of each over `seconds` (at least 5), after 2 warm-ups. */
async function machinePeakGflops(threads: number, seconds: number): Promise<{ matmul: number; conv: number }> {
  const rate = async (build: (b: GraphBuilder) => { shape: number[]; macs: number }): Promise<number> => {
    const b = new GraphBuilder(11);
    const { shape, macs } = build(b);
    const { session } = await createSession(b.encode('peak', 'bench:memory machine peak'), { device: 'cpu', intraOpThreads: threads, interOpThreads: 1, fallbackToCpu: false });
    try {
      const x = new Tensor('float32', b.rng.normals(shape.reduce((p, d) => p * d, 1), 1), shape);
      let best = Infinity;
      const until = performance.now() + 1000 * seconds;
      for (let i = 0; i < 7 || performance.now() < until; i++) {
        const started = performance.now();
        await session.run({ x });
        if (i >= 2) best = Math.min(best, (performance.now() - started) / 1000);
      }
      return (2 * macs) / best / 1e9;
    } finally {
      await releaseSession(session);
    }
  };
  const matmul = await rate((b) => {
    const [m, k, n] = [16384, 1280, 1280];
    const x = b.input('x', 'float32', [m, k]);
    const w = b.matmulWeight([k, n], () => b.rng.normals(k * n, 1 / Math.sqrt(k)));
    b.op('MatMul', [x, w], '/peak', { outputs: ['y'] });
    b.output('y', 'float32', [m, n]);
    return { shape: [m, k], macs: m * k * n };
  });
  const conv = await rate((b) => {
    const shape = [4, 320, 64, 64];
    conv2d(b, { name: b.input('x', 'float32', shape), c: 320, h: 64, w: 64 }, '/peak', 320, { output: 'y' });
    b.output('y', 'float32', [4, 320, 64, 64]);
    return { shape, macs: 4 * b.macs };
  });
  return { matmul, conv };
}

/** Wall seconds of single UNet calls at batch 2 and 16 (after one warm-up at 16) on the set's latent. */
async function unetCalls(dir: string, threads: number): Promise<{ batch2: number; batch16: number; latent: number }> {
  const components = await StableDiffusionComponents.load(dir, { device: 'cpu', onnx: { intraOpThreads: threads, interOpThreads: 1, fallbackToCpu: true }, groups: 2 });
  try {
    const latent = components.resolution / 8;
    const call = async (batch: number): Promise<number> => {
      const sample = new Float32Array(batch * components.unetInChannels * latent * latent).fill(0.5);
      const context = new Float32Array(batch * 77 * components.textWidth).fill(0.1);
      const started = performance.now();
      await components.unet(sample, batch, latent, latent, 500, context, [0]);
      return (performance.now() - started) / 1000;
    };
    await call(16);
    const batch2 = await call(2);
    const batch16 = await call(16);
    return { batch2, batch16, latent };
  } finally {
    await components.release();
  }
}

/** What the two jobs measured; `stopped` says why they did not both finish (the RSS watchdog, a failed job). */
interface JobsMeasured {
  peakAfterT2vMb: number | null;
  /** The worker's RSS when the text-to-video job ended, split into anonymous memory and mapped files (e.g. mmapped weights). */
  afterT2v: { anonMb: number | null; fileMb: number | null };
  peakAfterEditMb: number | null;
  afterEdit: { anonMb: number | null; fileMb: number | null };
  /** The largest VmHWM seen, also when the worker was stopped. */
  peakSeenMb: number | null;
  t2vSeconds: number | null;
  editSeconds: number | null;
  workerPid: number | null;
  stopped: string | null;
}

/** Phase 1: the two jobs in one app with one CPU worker, watched. */
async function runJobs(work: string, t2vDir: string, editDir: string, resolution: number, maxRssMb: number): Promise<JobsMeasured> {
  const measured: JobsMeasured = { peakAfterT2vMb: null, afterT2v: { anonMb: null, fileMb: null }, peakAfterEditMb: null, afterEdit: { anonMb: null, fileMb: null }, peakSeenMb: null, t2vSeconds: null, editSeconds: null, workerPid: null, stopped: null };
  // The clip to edit: 8 frames at the set's resolution, 8 fps.
  const clip = join(work, 'clip.mp4');
  const { ffmpeg } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
  await encodeFrames({ frames: movingGradient(FRAMES, resolution), width: resolution, height: resolution, fps: 8, out: clip, ffmpegPath: ffmpeg });
  mkdirSync(join(work, 'outputs'));
  const config = loadConfig({
    env: {},
    overrides: {
      dbPath: join(work, 'bench.db'),
      outputDir: join(work, 'outputs'),
      devices: ['cpu'],
      modelDir: t2vDir,
      editModelDir: editDir,
      logLevel: 'warn',
      // Real-size calls block for minutes on 2 cores: nothing here may time the worker out.
      jobs: { timeoutSeconds: 6 * 3600, heartbeatTimeoutMs: 6 * 3600 * 1000 },
    },
  });
  const app = startApp(config, { logger: createLogger(config.logLevel) });
  const watch = new WorkerWatch(maxRssMb, () => {
    for (const pid of workerPids()) process.kill(pid, 'SIGKILL');
  });
  const mb = (value: number | undefined): number | null => (value === undefined ? null : round(value, 1));
  const split = (): { anonMb: number | null; fileMb: number | null } =>
    watch.pid === undefined ? { anonMb: null, fileMb: null } : { anonMb: mb(procStatusMb(watch.pid, 'RssAnon')), fileMb: mb(procStatusMb(watch.pid, 'RssFile')) };
  try {
    measured.t2vSeconds = round(await runJob(app, watch, 'text2video', { prompt: 'a panda surfing a wave at sunset', numFrames: FRAMES, numInferenceSteps: STEPS, format: 'mp4' }), 1);
    measured.peakAfterT2vMb = mb(watch.peakMb());
    measured.afterT2v = split();
    measured.editSeconds = round(await runJob(app, watch, 'edit', { instruction: 'make it look like a watercolor painting', inputFile: clip, numInferenceSteps: STEPS, format: 'mp4' }), 1);
    measured.peakAfterEditMb = mb(watch.peakMb());
    measured.afterEdit = split();
    watch.check();
  } catch (error) {
    measured.stopped = watch.stopped ?? (error instanceof Error ? error.message : String(error));
  } finally {
    watch.peakMb();
    watch.close();
    measured.stopped ??= watch.stopped ?? null;
    measured.peakSeenMb = mb(watch.seenPeakMb);
    measured.workerPid = watch.pid ?? null;
    await app.stop();
  }
  if (measured.stopped) measured.peakAfterEditMb = null;
  return measured;
}

async function main(): Promise<void> {
  const size = argument('--size', 'sd15') as ModelSetSize;
  if (!(size in SIZES)) throw new Error(`--size must be one of ${Object.keys(SIZES).join(', ')}, got "${size}".`);
  const maxRssMb = Number(argument('--max-rss-gb', '18')) * 1024;
  if (!(maxRssMb > 0)) throw new Error('--max-rss-gb must be a positive number.');
  const peakSeconds = Number(argument('--peak-seconds', '20'));
  if (!(peakSeconds >= 0)) throw new Error('--peak-seconds must be a number of seconds, 0 or more.');
  const t2v = await ensureSet(size, 'text2video');
  const editSet = await ensureSet(size, 'instruct-edit');
  const sum = async (dir: string, components: string[]): Promise<number> =>
    (await Promise.all(components.map((component) => weightBytes(dir, component)))).reduce((a, b) => a + b, 0) / MIB;
  const t2vWeightsMb = await sum(t2v.dir, ['text_encoder', 'unet', 'vae_decoder']);
  const weightsMb = t2vWeightsMb + (await sum(editSet.dir, ['text_encoder', 'unet', 'vae_encoder', 'vae_decoder']));
  const threads = availableParallelism();

  const work = mkdtempSync(join(tmpdir(), 'reelbot-bench-memory-'));
  let jobs: JobsMeasured;
  try {
    jobs = await runJobs(work, t2v.dir, editSet.dir, editSet.info.resolution, maxRssMb);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  // Phase 2, with the worker gone: single UNet calls and the machine's peak, in this process.
  const before = await machinePeakGflops(threads, peakSeconds);
  const unet = await unetCalls(t2v.dir, threads);
  const after = await machinePeakGflops(threads, peakSeconds);
  const peak = { matmul: Math.max(before.matmul, after.matmul), conv: Math.max(before.conv, after.conv) };
  const machinePeak = Math.max(peak.matmul, peak.conv);
  const unetGflops = (16 * t2v.info.unetGflopsPerFrame) / unet.batch16;
  const rssToWeights = jobs.peakAfterEditMb === null ? null : round(jobs.peakAfterEditMb / weightsMb);
  process.stdout.write(
    `${JSON.stringify({
      bench: 'memory',
      model: size,
      weights_mb: round(weightsMb, 1),
      peak_rss_after_t2v_mb: jobs.peakAfterT2vMb,
      peak_rss_after_edit_mb: jobs.peakAfterEditMb,
      rss_to_weights: rssToWeights,
      unet_call_s_batch2: round(unet.batch2, 2),
      unet_call_s_batch16: round(unet.batch16, 2),
      unet_gflops: round(unetGflops, 1),
      machine_peak_gflops: round(machinePeak, 1),
      fraction_of_peak: round(unetGflops / machinePeak),
      target_rss_to_weights: RSS_TARGET,
      target_met: rssToWeights !== null && rssToWeights <= RSS_TARGET,
      ...(jobs.stopped ? { stopped: jobs.stopped, peak_rss_seen_mb: jobs.peakSeenMb, rss_seen_to_weights: jobs.peakSeenMb === null ? null : round(jobs.peakSeenMb / weightsMb) } : {}),
      t2v_weights_mb: round(t2vWeightsMb, 1),
      t2v_rss_to_weights: jobs.peakAfterT2vMb === null ? null : round(jobs.peakAfterT2vMb / t2vWeightsMb),
      rss_anon_after_t2v_mb: jobs.afterT2v.anonMb,
      rss_file_after_t2v_mb: jobs.afterT2v.fileMb,
      rss_anon_after_edit_mb: jobs.afterEdit.anonMb,
      rss_file_after_edit_mb: jobs.afterEdit.fileMb,
      t2v_job_s: jobs.t2vSeconds,
      edit_job_s: jobs.editSeconds,
      frames: FRAMES,
      steps: STEPS,
      resolution: editSet.info.resolution,
      latent: unet.latent,
      threads,
      worker_pid: jobs.workerPid,
      unet_gflops_per_sample: t2v.info.unetGflopsPerFrame,
      unet_gflops_batch2: round((2 * t2v.info.unetGflopsPerFrame) / unet.batch2, 1),
      matmul_gflops: round(peak.matmul, 1),
      conv_gflops: round(peak.conv, 1),
      unet_gflops_method: '16 x builder-counted GFLOP per sample (2 x MACs of every Conv/MatMul at batch 1, 64x64 latent, attention products included) / wall s of one cross-frame UNet call at batch 16',
    })}\n`,
  );
  if (jobs.stopped) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
