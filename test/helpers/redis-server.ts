/**
 * A real redis-server (Debian's package) on a free port of 127.0.0.1, with its own temp dir, for
 * the scale-out tests; `.ci/run` installs it. Where it is missing, {@link REDIS_MISSING} says why
 * and only those suites skip.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
/** Why the scale-out suites skip, or undefined when redis-server is here. */
export const REDIS_MISSING: string | undefined =
  found.status === 0 ? undefined : 'redis-server is not installed (apt-get install redis-server; .ci/run does it): the scale-out tests are skipped';
if (REDIS_MISSING) console.warn(REDIS_MISSING);

export interface RedisServer {
  port: number;
  url: string;
  /** Stops it (SIGTERM; kill -9 with `hard`). */
  stop(hard?: boolean): Promise<void>;
  /** Starts it again on the same port (after a stop). */
  restart(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * `host` is the address it binds to and its URL names (default 127.0.0.1; a network namespace's
 * veth address for a worker host in one). `persist`: an append-only file written at every
 * command, so that a Redis killed -9 comes back with everything it had (without it, a restart
 * starts empty, as a crash of a Redis without persistence does).
 */
export async function startRedis(options: { password?: string; host?: string; persist?: boolean } = {}): Promise<RedisServer> {
  const host = options.host ?? '127.0.0.1';
  const dir = mkdtempSync(join(tmpdir(), 'reelbot-redis-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async () => {
    const args = ['--port', String(port), '--bind', host, '--dir', dir, '--save', '', ...(options.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']), ...(options.password ? ['--requirepass', options.password] : [])];
    const started = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = started;
    await new Promise<void>((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10_000);
      started.stdout!.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      started.once('exit', (code) => reject(new Error(`redis-server exited (${code}): ${output}`)));
    });
  };
  await launch();
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
  return {
    port,
    url: `redis://${auth}${host}:${port}`,
    async stop(hard = false) {
      const running = child;
      child = undefined;
      if (!running || running.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        running.once('exit', () => resolve());
        running.kill(hard ? 'SIGKILL' : 'SIGTERM');
      });
      if (!hard) rmSync(dir, { recursive: true, force: true });
    },
    restart: launch,
  };
}
