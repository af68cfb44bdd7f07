/**
 * Past one machine on the real built-in engine: `reelbot serve` (the coordinator) holds no model
 * folder of its own; a `reelbot worker` in another folder has a tiny real ONNX model set built
 * here, renders the `/video` and `/edit` that arrive through the fake Discord, and sends the
 * results over the coordinator's blob URLs (an edit's clip travels the other way over them too).
 * The MP4s are what was asked for, and the same bytes as the same jobs rendered on one machine
 * with `reelbot render` / `reelbot edit`: seeds mean the same thing on every host.
 *
 * As root (CI), the worker host runs in its own network namespace, as a real host would: it reaches
 * Redis and the coordinator's HTTP port only at the veth address they listen on. Elsewhere it runs
 * as a plain process on 127.0.0.1, and the test says so.
 */
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { makeModelSet } from '../../src/engine/models/make.js';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import { probeVideo } from '../../src/media/probe.js';
import { FakeDiscord, snowflake, type RecordedRequest } from '../fakes/fake-discord.js';
import { removeDir, tempDir } from '../helpers/harness.js';
import { createNetworkNamespace, type NetworkNamespace } from '../helpers/netns.js';
import { freePort, REDIS_MISSING, startRedis, type RedisServer } from '../helpers/redis-server.js';
import { BIN, startServe, type ServeProcess } from '../helpers/serve-process.js';
import { waitUntil as until } from '../helpers/worker-host.js';
import { openDatabase } from '../../src/store/db.js';
import { JobRepo } from '../../src/store/job-repo.js';

const { ffmpeg, ffprobe } = resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' });
const alice = { id: snowflake(), username: 'alice' };
const EDIT_STEPS = '3';

interface Child {
  child: ChildProcessByStdio<null, Readable, Readable>;
  output(): string;
  exited: Promise<number | null>;
}

let root: string;
let redis: RedisServer | undefined;
let fake: FakeDiscord | undefined;
let coordinator: (ServeProcess & { dir: string }) | undefined;
let worker: Child | undefined;
/** The worker host's own folder: its data, its outputs and its model sets. */
let workerDir: string;
/** The worker host's network namespace, where one could be made. */
let namespace: NetworkNamespace | undefined;

function spawnReelbot(args: string[], cwd: string, env: Record<string, string>, inside?: NetworkNamespace): Child {
  const options = { cwd, env: { PATH: process.env.PATH, ...env } };
  const child = inside
    ? inside.spawn(process.execPath, [BIN, ...args], options)
    : spawn(process.execPath, [BIN, ...args], { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
}

/** The worker host's settings: everything under its own folder, the built-in engine on its tiny sets. */
function workerEnv(redisUrl: string): Record<string, string> {
  return {
    REELBOT_REDIS_URL: redisUrl,
    REELBOT_DB_PATH: join(workerDir, 'unused.db'),
    REELBOT_OUTPUT_DIR: join(workerDir, 'work'),
    REELBOT_MODEL_DIR: join(workerDir, 'models', 'tiny'),
    REELBOT_EDIT_MODEL_DIR: join(workerDir, 'models', 'tiny-edit'),
    REELBOT_EDIT_STEPS: EDIT_STEPS,
    REELBOT_LOG_LEVEL: 'info',
  };
}

beforeAll(async () => {
  if (REDIS_MISSING) return;
  root = tempDir();
  workerDir = join(root, 'worker-host');
  await makeModelSet({ size: 'tiny', kind: 'text2video', out: join(workerDir, 'models', 'tiny') });
  await makeModelSet({ size: 'tiny', kind: 'instruct-edit', out: join(workerDir, 'models', 'tiny-edit') });
  const made = createNetworkNamespace();
  if ('unavailable' in made) console.warn(`The worker host runs as a plain process on 127.0.0.1, not in a network namespace of its own: ${made.unavailable}.`);
  else namespace = made;
  // Where the worker host reaches the coordinator's side: the veth address, or loopback without a namespace.
  const reachable = namespace?.hostAddress ?? '127.0.0.1';
  redis = await startRedis({ password: 'real-engine-pass', host: reachable });
  fake = await FakeDiscord.start();
  const dir = join(root, 'coordinator');
  mkdirSync(dir);
  // No REELBOT_DEVICES: with Redis, the coordinator runs no engine at all. Its model folders only
  // name the models its jobs need (a host's folders of the same names): they are not on this machine.
  const serve = startServe(dir, {
    REELBOT_DISCORD_TOKEN: 'fake-bot-token',
    REELBOT_DISCORD_API_URL: fake.apiUrl,
    REELBOT_REDIS_URL: redis.url,
    REELBOT_MODEL_DIR: join(dir, 'not-on-this-machine', 'tiny'),
    REELBOT_EDIT_MODEL_DIR: join(dir, 'not-on-this-machine', 'tiny-edit'),
    REELBOT_HTTP_HOST: reachable,
    REELBOT_HTTP_PORT: String(await freePort()),
    REELBOT_EDIT_STEPS: EDIT_STEPS,
    REELBOT_LOG_LEVEL: 'info',
  }, { cwd: dir });
  coordinator = { ...serve, dir };
  await until(() => serve.output().includes('reelbot is running'), 'serve to start');
  expect(serve.output()).toContain(`blob URLs at http://${reachable}:`);
  if (namespace) {
    // Its own loopback: the fake Discord on this 127.0.0.1 is out of its reach, Redis at the veth address is not.
    expect(namespace.canConnect('127.0.0.1', fake.port)).toBe(false);
    expect(namespace.canConnect(reachable, redis.port)).toBe(true);
  }
  worker = spawnReelbot(['worker', '--devices', 'cpu'], workerDir, workerEnv(redis.url), namespace);
  await until(() => worker!.output().includes('is taking'), 'the worker host to start');
  if (namespace) expect(namespace.holds(worker.child.pid!)).toBe(true);
  await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake!.applicationId}/commands`, 30_000);
}, 120_000);

afterAll(async () => {
  worker?.child.kill('SIGKILL');
  coordinator?.child.kill('SIGKILL');
  await fake?.close();
  await redis?.stop(true);
  namespace?.dispose();
  if (root) removeDir(root);
});

const isUpload = (token: string) => (r: RecordedRequest) =>
  r.method === 'PATCH' && r.path.endsWith(`/${token}/messages/@original`) && r.files.some((file) => file.name.endsWith('.mp4')) && r.status === 200;

/** Runs `reelbot render` or `reelbot edit` on one machine (no Redis, no coordinator), in a folder of its own, with the worker host's model sets. */
async function renderLocally(args: string[]): Promise<Buffer> {
  const dir = join(root, `local-${snowflake()}`);
  const out = join(dir, 'local.mp4');
  const local = spawnReelbot([...args, '--out', out], root, {
    REELBOT_DB_PATH: join(dir, 'reelbot.db'),
    REELBOT_OUTPUT_DIR: join(dir, 'out'),
    REELBOT_MODEL_DIR: join(workerDir, 'models', 'tiny'),
    REELBOT_EDIT_MODEL_DIR: join(workerDir, 'models', 'tiny-edit'),
  });
  const code = await local.exited;
  expect(code, local.output()).toBe(0);
  return readFileSync(out);
}

/** Every file under `dir` (none when it does not exist). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

/** The decoded RGB frames of an MP4 (to compare pictures when bytes differ). */
function rawFrames(file: string): Buffer {
  const run = spawnSync(ffmpeg, ['-nostdin', '-loglevel', 'error', '-i', file, '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], { maxBuffer: 256 * 1024 * 1024 });
  if (run.status !== 0) throw new Error(`ffmpeg could not decode ${file}: ${String(run.stderr)}`);
  return run.stdout;
}

test.skipIf(REDIS_MISSING !== undefined)('a /video rendered on a worker host\'s tiny real engine arrives as the MP4 asked for, the same bytes as the same render on one machine; an /edit of it travels over the blob URLs and matches too', async () => {
  const video = fake!.slashCommand(alice, { prompt: 'a corgi surfing at sunset', frames: 4, steps: 3, seed: 5 });
  fake!.sendInteraction(video);
  const made = await fake!.waitForRequest(isUpload(video.token), 120_000);
  const remote = join(root, 'remote.mp4');
  writeFileSync(remote, made.files[0]!.data);
  // Smoothed by default: 4 made frames shown over 1 s, interpolated to 24 fps.
  expect(await probeVideo(remote, ffprobe)).toMatchObject({ codec: 'h264', frames: 24, width: 64, height: 64, fps: 24 });

  const local = await renderLocally(['render', '--prompt', 'a corgi surfing at sunset', '--frames', '4', '--steps', '3', '--seed', '5']);
  writeFileSync(join(root, 'local.mp4'), local);
  expect(rawFrames(remote).equals(rawFrames(join(root, 'local.mp4'))), 'the frames differ from the one-machine render').toBe(true);
  expect(made.files[0]!.data.equals(local), 'the MP4 differs from the one-machine render').toBe(true);

  // The clip goes coordinator → worker host over a signed GET URL; the edited clip comes back over a PUT.
  const clip = fake!.hostFile('made.mp4', made.files[0]!.data);
  const edit = fake!.editCommand(alice, clip, 'make it snowy --anchors 2 --seed 7');
  fake!.sendInteraction(edit);
  const edited = await fake!.waitForRequest(isUpload(edit.token), 120_000);
  const remoteEdit = join(root, 'remote-edit.mp4');
  writeFileSync(remoteEdit, edited.files[0]!.data);
  // The 24 fps clip is edited at the 12 fps input cap: 12 frames.
  expect(await probeVideo(remoteEdit, ffprobe)).toMatchObject({ codec: 'h264', frames: 12, width: 64, height: 64 });
  const localEdit = await renderLocally(['edit', '--input', remote, '--instruction', 'make it snowy', '--anchors', '2', '--steps', EDIT_STEPS, '--seed', '7']);
  expect(edited.files[0]!.data.equals(localEdit), 'the edited MP4 differs from the one-machine edit').toBe(true);

  const db = openDatabase(join(coordinator!.dir, 'reelbot.db'));
  try {
    const jobs = new JobRepo(db).listByState('succeeded');
    expect(jobs.map((job) => [job.kind, job.attempts])).toEqual([['text2video', 1], ['edit', 1]]);
  } finally {
    db.close();
  }
  // The coordinator never built or loaded a model set; the worker host kept no job files.
  expect(existsSync(join(coordinator!.dir, 'models'))).toBe(false);
  expect(filesUnder(join(workerDir, 'work'))).toEqual([]);
  expect(coordinator!.output()).not.toContain('"msg":"worker started"');
  expect(worker!.output()).toContain('"msg":"worker started"');

  coordinator!.child.kill('SIGTERM');
  worker!.child.kill('SIGTERM');
  expect(await coordinator!.exited).toBe(0);
  for (const text of [coordinator!.output(), worker!.output()]) {
    expect(text).not.toContain('real-engine-pass');
    expect(text).not.toContain('fake-bot-token');
  }
}, 300_000);
