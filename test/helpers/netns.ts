/**
 * A network namespace for a test process, as a separate host would have: its own loopback, and one
 * veth pair to the root namespace on a 10.x.y.0/30 of its own. A process inside reaches the test's
 * servers only at {@link NetworkNamespace.hostAddress} (servers listen there or on 0.0.0.0), and
 * their 127.0.0.1 is not its 127.0.0.1.
 *
 * It needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's `ip`; where either is missing,
 * {@link createNetworkNamespace} says why and the caller runs a plain process instead. Names are
 * unique per process and call; a namespace is deleted (with whatever still runs in it) by
 * `dispose()`, on this process's exit, and, when a killed test run left one, by the next run.
 */
import { spawn, spawnSync, type ChildProcessByStdio, type SpawnOptions } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import type { Readable } from 'node:stream';

/** Every namespace this module makes is named `reelbot-<pid>-<random>`, so a later run can tell leftovers of a process that is gone. */
const NAME = /^reelbot-(\d+)-[0-9a-f]+$/;

export interface NetworkNamespace {
  name: string;
  /** The root namespace's end of the veth pair: what a process inside connects to. */
  hostAddress: string;
  /** The namespace's own end. */
  address: string;
  /** Spawns `command` inside the namespace (`ip netns exec` execs it: the child's pid is the command's). */
  spawn(command: string, args: readonly string[], options?: Omit<SpawnOptions, 'stdio'>): ChildProcessByStdio<null, Readable, Readable>;
  /** Whether process `pid` runs in this namespace. */
  holds(pid: number): boolean;
  /** Whether a TCP connection from inside the namespace to `host:port` succeeds. */
  canConnect(host: string, port: number): boolean;
  /** Kills what still runs inside and deletes the namespace and its veth pair; safe to call twice. */
  dispose(): void;
}

const live = new Set<NetworkNamespace>();
process.once('exit', () => {
  for (const namespace of live) namespace.dispose();
});

function ip(args: readonly string[]): { ok: boolean; out: string } {
  const run = spawnSync('ip', args, { encoding: 'utf8' });
  if (run.error) return { ok: false, out: run.error.message };
  return { ok: run.status === 0, out: `${run.stdout}${run.stderr}`.trim() };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killInside(name: string): void {
  for (const pid of ip(['netns', 'pids', name]).out.split(/\s+/).filter((word) => /^\d+$/.test(word))) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Deletes namespaces that an earlier test process (now gone) made and could not clean up. */
function sweepLeftovers(): void {
  for (const line of ip(['netns', 'list']).out.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const owner = NAME.exec(name)?.[1];
    if (owner === undefined || alive(Number(owner))) continue;
    killInside(name);
    ip(['netns', 'delete', name]);
  }
}

/** A 10.x.y.z/30 that no interface here uses yet: [host end, namespace end]. */
function freeSubnet(): [string, string] {
  const used = ip(['-o', '-4', 'addr', 'show']).out;
  for (;;) {
    const second = randomInt(64, 250);
    const third = randomInt(0, 256);
    const base = randomInt(0, 64) * 4;
    const prefix = `10.${second}.${third}.`;
    if (![1, 2].some((offset) => used.includes(` ${prefix}${base + offset}/`))) return [`${prefix}${base + 1}`, `${prefix}${base + 2}`];
  }
}

/**
 * Makes a namespace with a veth pair to this one and its loopback up, or says why it cannot (not
 * root, no `ip`, no permission in this container).
 */
export function createNetworkNamespace(): NetworkNamespace | { unavailable: string } {
  if (process.platform !== 'linux') return { unavailable: 'network namespaces are Linux only' };
  if (process.getuid?.() !== 0) return { unavailable: 'network namespaces need root (ip netns add)' };
  if (ip(['-V']).ok === false) return { unavailable: 'iproute2 (the ip command) is not installed' };
  sweepLeftovers();
  // Random as well as the pid: test files in threads of one process share the pid. Interface names have at most 15 characters.
  const tag = randomBytes(4).toString('hex');
  const name = `reelbot-${process.pid}-${tag}`;
  const hostEnd = `rb${tag}h`;
  const insideEnd = `rb${tag}n`;
  const [hostAddress, address] = freeSubnet();
  let disposed = false;
  const namespace: NetworkNamespace = {
    name,
    hostAddress,
    address,
    spawn(command, args, options = {}) {
      return spawn('ip', ['netns', 'exec', name, command, ...args], { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    },
    holds(pid) {
      return ip(['netns', 'identify', String(pid)]).out.split(/\s+/).includes(name);
    },
    canConnect(host, port) {
      const probe = `const s=require('node:net').connect(${port},${JSON.stringify(host)});s.setTimeout(3000);s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1));s.on('timeout',()=>process.exit(1));`;
      return ip(['netns', 'exec', name, process.execPath, '-e', probe]).ok;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      live.delete(namespace);
      killInside(name);
      ip(['netns', 'delete', name]);
      // Gone with the namespace's end unless something still holds it; make sure.
      ip(['link', 'delete', hostEnd]);
    },
  };
  const added = ip(['netns', 'add', name]);
  if (!added.ok) return { unavailable: `ip netns add failed: ${added.out}` };
  live.add(namespace);
  const steps: string[][] = [
    ['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', insideEnd, 'netns', name],
    ['addr', 'add', `${hostAddress}/30`, 'dev', hostEnd],
    ['link', 'set', hostEnd, 'up'],
    ['-n', name, 'addr', 'add', `${address}/30`, 'dev', insideEnd],
    ['-n', name, 'link', 'set', insideEnd, 'up'],
    ['-n', name, 'link', 'set', 'lo', 'up'],
  ];
  for (const step of steps) {
    const done = ip(step);
    if (!done.ok) {
      namespace.dispose();
      return { unavailable: `ip ${step.join(' ')} failed: ${done.out}` };
    }
  }
  return namespace;
}
