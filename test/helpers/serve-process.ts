/** `reelbot serve` as an operator runs it: the real bin in its own process, settings from the environment. */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../bin/reelbot.js', import.meta.url));

export interface ServeProcess {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
}

/**
 * Starts `reelbot serve` with its database and outputs under `dir` and the given settings (log
 * level `silent` unless `env` says otherwise), in `options.cwd` if given (where the built-in model set
 * would be made). The caller stops it (SIGTERM, or SIGKILL in cleanup).
 */
export function startServe(dir: string, env: Record<string, string>, options: { cwd?: string } = {}): ServeProcess {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    ...(options.cwd ? { cwd: options.cwd } : {}),
    env: { PATH: process.env.PATH, REELBOT_DB_PATH: join(dir, 'reelbot.db'), REELBOT_OUTPUT_DIR: join(dir, 'out'), REELBOT_LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}
