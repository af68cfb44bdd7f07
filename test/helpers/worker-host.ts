/**
 * A `reelbot worker` process for the scale tests, in its own folder (its own data and outputs,
 * nothing shared with the coordinator) on the fake MP4 engine, with short BullMQ lock and stall
 * intervals so that a killed host is noticed within seconds.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { MP4_ENGINE } from '../fakes/mp4-engine.js';
import { tempDir } from './harness.js';
import { BIN } from './serve-process.js';

export interface WorkerHostProcess {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Its folder: the caller removes it. */
  dir: string;
  output(): string;
  exited: Promise<number | null>;
}

/** A `reelbot worker --devices cpu` in a folder of its own; `args` are more flags (`--kinds edit`). */
export function startWorkerHost(redisUrl: string, env: Record<string, string> = {}, args: string[] = []): WorkerHostProcess {
  const dir = tempDir();
  const child = spawn(process.execPath, [BIN, 'worker', '--devices', 'cpu', ...args], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      REELBOT_REDIS_URL: redisUrl,
      REELBOT_DB_PATH: join(dir, 'unused.db'),
      REELBOT_OUTPUT_DIR: join(dir, 'work'),
      REELBOT_ENGINE_MODULE: MP4_ENGINE,
      REELBOT_LOG_LEVEL: 'info',
      REELBOT_WORKER_LOCK_MS: '2000',
      REELBOT_STALLED_INTERVAL_MS: '1000',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, dir, output: () => output, exited: new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))) };
}

/** Polls `check` every 50 ms until it is true; throws "timed out waiting for <what>" after `timeoutMs`. */
export async function waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
