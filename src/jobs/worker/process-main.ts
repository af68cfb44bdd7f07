/**
 * Entry point of a worker process: one per device slot, forked by the worker pool.
 *
 * The engine runs on a thread of its own (engine-thread.ts); this main thread does nothing that
 * can block: it sends heartbeats, hands `start` and `cancel` down to the engine thread and passes
 * what the engine thread says up to the pool. So a synchronous ONNX Runtime call of a minute does
 * not silence the heartbeats; an engine that is truly stuck is caught by the pool's stall and
 * load deadlines instead (it kills this process).
 */
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { createLogger } from '../../log.js';
import type { ChildMessage, ParentMessage, ThreadCommand, ThreadInit, ThreadMessage } from './protocol.js';

const ENGINE_THREAD_ENTRY = new URL('./engine-thread-boot.mjs', import.meta.url);

function send(message: ChildMessage): void {
  if (process.connected) process.send!(message);
}

let engineThread: Worker | undefined;

function init(message: Extract<ParentMessage, { type: 'init' }>): void {
  const logger = createLogger(message.logLevel).child({ module: 'worker', device: message.device });
  setInterval(() => send({ type: 'heartbeat' }), message.heartbeatIntervalMs).unref();
  const workerData: ThreadInit = {
    device: message.device,
    engineModule: message.engineModule ? resolve(message.engineModule) : '',
    settings: message.settings,
    logLevel: message.logLevel,
  };
  const thread = new Worker(ENGINE_THREAD_ENTRY, { workerData });
  engineThread = thread;
  let fatal = false;
  thread.on('message', (reply: ThreadMessage) => {
    if (reply.type === 'fatal') fatal = true;
    send(reply);
    // The engine could not be loaded: this worker is of no use; the pool starts a new one for the next job.
    if (fatal) {
      process.exitCode = 1;
      process.disconnect();
    }
  });
  thread.on('error', (error) => logger.error({ err: error }, 'the engine thread threw'));
  thread.on('exit', (code) => {
    if (fatal) return;
    // The engine is gone (it threw, or an engine module called process.exit, which ends only its
    // thread): the process goes too, so the pool sees a crash and gives the next job a fresh worker.
    logger.warn({ code }, 'the engine thread stopped');
    process.exit(code === 0 ? 1 : code);
  });
}

function forward(command: ThreadCommand): void {
  engineThread?.postMessage(command);
}

process.on('message', (message: ParentMessage) => {
  switch (message.type) {
    case 'init':
      init(message);
      break;
    case 'start':
    case 'cancel':
      forward(message);
      break;
  }
});
// The pool going away (crash or shutdown) ends the worker too, engine thread and all.
process.on('disconnect', () => process.exit(process.exitCode ?? 0));
