/**
 * The engine thread of a worker process: loads the engine module once, then prepares and runs one
 * job at a time. It may block for as long as the engine blocks it (ONNX Runtime's `run` and model
 * loading are synchronous); the process's main thread keeps answering the pool meanwhile.
 * Started by process-main.ts through engine-thread-boot.mjs.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { AppError } from '../../errors.js';
import { createLogger } from '../../log.js';
import type { CreateEngine, Engine, EngineJob, EngineRunContext } from '../engine.js';
import type { ThreadCommand, ThreadInit, ThreadMessage } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('engine-thread.ts runs as a worker thread of the worker process');
const init = workerData as ThreadInit;
const logger = createLogger(init.logLevel).child({ module: 'worker', device: init.device });

function send(message: ThreadMessage): void {
  port!.postMessage(message);
}

let current: { jobId: number; controller: AbortController } | undefined;

async function loadEngine(): Promise<Engine | undefined> {
  try {
    const specifier = init.engineModule ? pathToFileURL(init.engineModule).href : new URL('../../engine/index.js', import.meta.url).href;
    const module = (await import(specifier)) as { createEngine?: CreateEngine };
    if (typeof module.createEngine !== 'function') throw new Error(`${init.engineModule} does not export createEngine`);
    return await module.createEngine({ device: init.device, settings: init.settings, logger });
  } catch (error) {
    logger.error({ err: error }, 'engine failed to load');
    send({ type: 'fatal', message: `The engine could not be loaded on ${init.device}: ${(error as Error).message}` });
    return undefined;
  }
}

async function runJob(engine: Engine, job: EngineJob): Promise<void> {
  const controller = new AbortController();
  current = { jobId: job.id, controller };
  const context: EngineRunContext = {
    signal: controller.signal,
    onProgress: (progress) => send({ type: 'progress', jobId: job.id, progress }),
  };
  try {
    let loadSeconds = 0;
    if (engine.prepare) {
      send({ type: 'loading', jobId: job.id });
      const loadStarted = performance.now();
      await engine.prepare(job, context);
      loadSeconds = (performance.now() - loadStarted) / 1000;
    }
    controller.signal.throwIfAborted();
    send({ type: 'running', jobId: job.id, loadSeconds });
    const started = performance.now();
    const result = await engine.run(job, context);
    send({ type: 'result', jobId: job.id, result, gpuSeconds: (performance.now() - started) / 1000, loadSeconds });
  } catch (error) {
    if (controller.signal.aborted) {
      send({ type: 'error', jobId: job.id, code: 'cancelled', message: 'cancelled' });
    } else if (error instanceof AppError) {
      send({ type: 'error', jobId: job.id, code: error.code, message: error.message, userMessage: error.userMessage });
    } else {
      send({ type: 'error', jobId: job.id, code: 'engine_failed', message: (error as Error)?.stack ?? String(error) });
    }
  } finally {
    current = undefined;
  }
}

const engine = await loadEngine();
if (engine) {
  port.on('message', (command: ThreadCommand) => {
    switch (command.type) {
      case 'start':
        void runJob(engine, command.job);
        break;
      case 'cancel':
        if (current?.jobId === command.jobId) current.controller.abort(new Error('cancelled'));
        break;
    }
  });
  send({ type: 'ready' });
}
