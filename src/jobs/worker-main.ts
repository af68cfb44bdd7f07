/**
 * Entry point of a worker process: one per device slot, forked by the worker pool.
 * Loads the engine once, then runs one job at a time and reports over IPC.
 * Heartbeats go out on a timer; an engine that blocks the event loop stops them and gets killed.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { AppError } from '../errors.js';
import { createLogger } from '../log.js';
import type { CreateEngine, Engine } from './engine.js';
import type { ChildMessage, ParentMessage } from './worker-protocol.js';

function send(message: ChildMessage): void {
  if (process.connected) process.send!(message);
}

let engine: Engine | undefined;
let current: { jobId: number; controller: AbortController } | undefined;

async function init(message: Extract<ParentMessage, { type: 'init' }>): Promise<void> {
  const logger = createLogger(message.logLevel).child({ module: 'worker', device: message.device });
  setInterval(() => send({ type: 'heartbeat' }), message.heartbeatIntervalMs).unref();
  try {
    const specifier = message.engineModule
      ? pathToFileURL(resolve(message.engineModule)).href
      : new URL('../engine/index.js', import.meta.url).href;
    const module = (await import(specifier)) as { createEngine?: CreateEngine };
    if (typeof module.createEngine !== 'function') throw new Error(`${message.engineModule} does not export createEngine`);
    engine = await module.createEngine({ device: message.device, settings: message.settings, logger });
    send({ type: 'ready' });
  } catch (error) {
    logger.error({ err: error }, 'engine failed to load');
    send({ type: 'fatal', message: `The engine could not be loaded on ${message.device}: ${(error as Error).message}` });
    process.exitCode = 1;
    process.disconnect();
  }
}

async function start(message: Extract<ParentMessage, { type: 'start' }>): Promise<void> {
  const { job } = message;
  const controller = new AbortController();
  current = { jobId: job.id, controller };
  const started = performance.now();
  try {
    const result = await engine!.run(job, {
      signal: controller.signal,
      onProgress: (progress) => send({ type: 'progress', jobId: job.id, progress }),
    });
    send({ type: 'result', jobId: job.id, result, gpuSeconds: (performance.now() - started) / 1000 });
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

process.on('message', (message: ParentMessage) => {
  switch (message.type) {
    case 'init':
      void init(message);
      break;
    case 'start':
      void start(message);
      break;
    case 'cancel':
      if (current?.jobId === message.jobId) current.controller.abort(new Error('cancelled'));
      break;
  }
});
// The pool going away (crash or shutdown) ends the worker too.
process.on('disconnect', () => process.exit(0));
