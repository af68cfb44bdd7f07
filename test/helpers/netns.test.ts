/**
 * The network-namespace helper that puts a worker host on a "host" of its own: a process inside
 * has its own loopback, reaches the root namespace only at the veth address, and nothing of the
 * namespace outlives dispose() or a killed test run. Skips (and says why) where namespaces cannot
 * be made.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { createNetworkNamespace, type NetworkNamespace } from './netns.js';

const probe = createNetworkNamespace();
const UNAVAILABLE = 'unavailable' in probe ? probe.unavailable : undefined;
if (UNAVAILABLE) console.warn(`network namespace tests skipped: ${UNAVAILABLE}`);
else (probe as NetworkNamespace).dispose();

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

function made(): NetworkNamespace {
  const namespace = createNetworkNamespace();
  if ('unavailable' in namespace) throw new Error(namespace.unavailable);
  cleanups.push(() => namespace.dispose());
  return namespace;
}

async function listen(host: string): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.end());
  server.listen(0, host);
  await once(server, 'listening');
  cleanups.push(() => server.close());
  return { server, port: (server.address() as { port: number }).port };
}

const ip = (...args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });

test.skipIf(UNAVAILABLE !== undefined)('a process inside reaches the root namespace at the veth address only; its 127.0.0.1 is its own', async () => {
  const namespace = made();
  expect(namespace.hostAddress).toMatch(/^10\.\d+\.\d+\.\d+$/);
  const onLoopback = await listen('127.0.0.1');
  const onVeth = await listen(namespace.hostAddress);
  expect(namespace.canConnect('127.0.0.1', onLoopback.port)).toBe(false);
  expect(namespace.canConnect(namespace.hostAddress, onVeth.port)).toBe(true);
  // Its loopback is up: a server inside answers on its own 127.0.0.1.
  const inside = namespace.spawn(process.execPath, ['-e', "require('node:net').createServer((s)=>s.end()).listen(0,'127.0.0.1',function(){console.log(this.address().port)})"]);
  const [chunk] = (await once(inside.stdout, 'data')) as [Buffer];
  expect(namespace.holds(inside.pid!)).toBe(true);
  expect(namespace.canConnect('127.0.0.1', Number(chunk.toString().trim()))).toBe(true);
  inside.kill('SIGKILL');
});

test.skipIf(UNAVAILABLE !== undefined)('dispose() kills what runs inside and deletes the namespace and both veth ends', async () => {
  const namespace = made();
  const inside = namespace.spawn('sleep', ['600']);
  const exited = once(inside, 'exit');
  const hostEnd = ip('-o', 'addr', 'show').stdout.split('\n').find((line) => line.includes(` ${namespace.hostAddress}/30`));
  expect(hostEnd).toBeDefined();
  namespace.dispose();
  const [, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  expect(signal).toBe('SIGKILL');
  expect(ip('netns', 'list').stdout).not.toContain(namespace.name);
  expect(ip('-o', 'addr', 'show').stdout).not.toContain(` ${namespace.hostAddress}/30`);
  namespace.dispose(); // twice is fine
});

test.skipIf(UNAVAILABLE !== undefined)('a namespace that a killed test run left behind is deleted by the next one', () => {
  // A pid that no process has: the highest one allowed, which the kernel hands out last.
  const deadPid = Number(spawnSync('cat', ['/proc/sys/kernel/pid_max'], { encoding: 'utf8' }).stdout.trim()) - 1;
  const leftover = `reelbot-${deadPid}-0badcafe`;
  expect(ip('netns', 'add', leftover).status).toBe(0);
  cleanups.push(() => ip('netns', 'delete', leftover));
  made();
  expect(ip('netns', 'list').stdout).not.toContain(leftover);
});
