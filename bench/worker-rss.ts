/**
 * How much memory one worker holds for its models: `npx tsx bench/worker-rss.ts [--model DIR] [--edit-model DIR] [--size N]`.
 *
 * Runs, in one process with the built-in engine (as a worker does): a text-to-video job with
 * cross-frame attention, the same job per frame (`crossFrameAttention: false`), and an edit job
 * of the first video, so every UNet variant the pipelines use is exercised. Prints one JSON line:
 *   {"bench":"worker_rss","model":…,"edit_model":…,"weights_mb":…,"rss_start_mb":…,"rss_after_t2v_mb":…,
 *    "rss_after_plain_mb":…,"rss_after_edit_mb":…,"peak_rss_mb":…,"unet_sessions":…}
 * `weights_mb` is the size of every .onnx / .onnx_data file the engine loads (original files only);
 * `peak_rss_mb` is `process.resourceUsage().maxRSS`. Without `--model` / `--edit-model` the built-in
 * small sets are used (made under models/ on first use, as the engine does). `--load-only` loads
 * both models as the engine does and prints `rss_after_load_mb` instead of running jobs. A
 * benchmark, not a test.
 *
 * glibc's malloc raises its mmap threshold after the first large free, so the buffers ORT frees
 * while loading a model (the file it read, the initializers' protobuf copies) stay in the heap and
 * in RSS. Run with `MALLOC_MMAP_THRESHOLD_=131072` (a fixed threshold) to see the RSS a worker
 * started that way holds: on models/small, 48 MB of UNet weights cost 133 MB of RSS after load
 * without it and 80 MB with it (of which ~28 MB is ORT's per-process start-up).
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { createEngine } from '../src/engine/index.js';
import { ensureModelSet } from '../src/engine/models/built-in.js';
import { StableDiffusionComponents } from '../src/engine/pipelines/sd-components.js';
import type { EngineSettings } from '../src/jobs/engine.js';

const { values } = parseArgs({
  options: { model: { type: 'string' }, 'edit-model': { type: 'string' }, size: { type: 'string' }, frames: { type: 'string' }, 'load-only': { type: 'boolean' } },
});
const modelDir = values.model ?? (await ensureModelSet({ size: 'small', kind: 'text2video', dir: join('models', 'small') }));
const editModelDir = values['edit-model'] ?? (await ensureModelSet({ size: 'small', kind: 'instruct-edit', dir: join('models', 'small-edit') }));
const size = values.size ? Number(values.size) : undefined;
const frames = values.frames ? Number(values.frames) : 4;

const mb = (bytes: number): number => Math.round(bytes / 2 ** 20);
const rss = (): number => mb(process.memoryUsage().rss);
const peak = (): number => Math.round(process.resourceUsage().maxRSS / 1024);

/** Bytes of the model files the engine loads (the original graphs and their external data, not rewritten copies). */
function weightBytes(dir: string): number {
  let total = 0;
  for (const part of ['text_encoder', 'unet', 'vae_decoder', 'vae_encoder']) {
    let names: string[];
    try {
      names = readdirSync(join(dir, part));
    } catch {
      continue;
    }
    for (const name of names) if (name === 'model.onnx' || name === 'model.onnx_data') total += statSync(join(dir, part, name)).size;
  }
  return total;
}

const settings: EngineSettings = {
  modelDir,
  editModelDir,
  onnx: { intraOpThreads: 2, interOpThreads: 1, fallbackToCpu: true },
  ffmpegPath: '',
  ffprobePath: '',
  input: { maxBytes: 50 * 2 ** 20, maxDurationSeconds: 60, maxWidth: 1024, maxHeight: 1024, maxFrames: 64, maxFps: 30 },
  editSteps: 2,
  workerCount: 1,
};
if (values['load-only']) {
  const rssStart = rss();
  const options = { device: 'cpu', onnx: settings.onnx };
  const loaded = [
    await StableDiffusionComponents.load(modelDir, { ...options, groups: 2 }),
    await StableDiffusionComponents.load(editModelDir, { ...options, groups: 3, vaeEncoder: true }),
  ];
  console.log(JSON.stringify({ bench: 'worker_rss_load', model: modelDir, edit_model: editModelDir, weights_mb: mb(weightBytes(modelDir) + weightBytes(editModelDir)), rss_start_mb: rssStart, rss_after_load_mb: rss(), peak_rss_mb: peak() }));
  await Promise.all(loaded.map((components) => components.release()));
  process.exit(0);
}
const out = mkdtempSync(join(tmpdir(), 'reelbot-worker-rss-'));
const rssStart = rss();
const engine = await createEngine({ device: 'cpu', settings, logger: pino({ level: 'silent' }) });
const context = { signal: new AbortController().signal, onProgress: () => undefined };
const job = (id: number, kind: 'text2video' | 'edit', params: Record<string, unknown>) => ({ id, kind, params, seed: 1, device: 'cpu', outputDir: join(out, String(id)), attempt: 1 });
try {
  const sizeParams = size ? { width: size, height: size } : {};
  const video = await engine.run(job(1, 'text2video', { prompt: 'a corgi surfing', numFrames: frames, numInferenceSteps: 2, ...sizeParams }), context);
  const rssAfterT2v = rss();
  await engine.run(job(2, 'text2video', { prompt: 'a corgi surfing', numFrames: frames, numInferenceSteps: 2, crossFrameAttention: false, ...sizeParams }), context);
  const rssAfterPlain = rss();
  await engine.run(job(3, 'edit', { instruction: 'make it snowy', inputFile: video.file as string, anchors: 2 }), context);
  const rssAfterEdit = rss();
  console.log(
    JSON.stringify({
      bench: 'worker_rss',
      model: modelDir,
      edit_model: editModelDir,
      weights_mb: mb(weightBytes(modelDir) + weightBytes(editModelDir)),
      rss_start_mb: rssStart,
      rss_after_t2v_mb: rssAfterT2v,
      rss_after_plain_mb: rssAfterPlain,
      rss_after_edit_mb: rssAfterEdit,
      peak_rss_mb: peak(),
    }),
  );
} finally {
  await engine.dispose?.();
  rmSync(out, { recursive: true, force: true });
}
