/**
 * One coordinator per database, with the real bin in separate processes: two `reelbot render` on
 * one database run one after the other and never run each other's jobs; a second `reelbot serve`
 * refuses and names the running one; a render beside a serve goes through it.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { FakeDiscord } from '../fakes/fake-discord.js';
import { MP4_ENGINE } from '../fakes/mp4-engine.js';
import { removeDir, tempDir } from '../helpers/harness.js';
import { BIN, startServe, type ServeProcess } from '../helpers/serve-process.js';
import { openDatabase } from '../../src/store/db.js';
import { JobRepo } from '../../src/store/job-repo.js';
import { QuotaLedger } from '../../src/store/quota-ledger.js';

let dir: string | undefined;
let fake: FakeDiscord | undefined;
const serves: ServeProcess[] = [];
afterEach(async () => {
  for (const serve of serves.splice(0)) serve.child.kill('SIGKILL');
  await fake?.close();
  fake = undefined;
  if (dir) removeDir(dir);
  dir = undefined;
});

interface Cli {
  output(): string;
  exited: Promise<number | null>;
}

function render(root: string, prompt: string, out: string, env: Record<string, string> = {}): Cli {
  const child = spawn(process.execPath, [BIN, 'render', '--prompt', prompt, '--out', out], {
    env: { PATH: process.env.PATH, REELBOT_DB_PATH: join(root, 'reelbot.db'), REELBOT_OUTPUT_DIR: join(root, 'out'), REELBOT_ENGINE_MODULE: MP4_ENGINE, REELBOT_LOG_LEVEL: 'silent', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { output: () => output, exited };
}

async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function jobsIn(root: string) {
  const db = openDatabase(join(root, 'reelbot.db'));
  try {
    const jobs = new JobRepo(db);
    const ledger = new QuotaLedger(db);
    return [1, 2, 3].map((id) => jobs.get(id)).filter((job) => job !== undefined).map((job) => ({ ...job, ledger: ledger.forJob(job.id).map((row) => row.entry) }));
  } finally {
    db.close();
  }
}

test('two reelbot render on one database run one after the other, each its own job, once', async () => {
  dir = tempDir();
  const root = dir;
  const first = render(root, 'first slow', join(root, 'first.mp4'));
  await until(() => first.output().includes('Job #1'), 'the first render to submit');
  const second = render(root, 'second slow', join(root, 'second.mp4'));
  expect(await first.exited).toBe(0);
  expect(await second.exited).toBe(0);
  expect(second.output()).toMatch(/Waiting for reelbot render \(pid \d+ on .+\), which runs a job on this database, to finish/);
  expect(second.output()).toContain('Job #2');
  expect(existsSync(join(root, 'first.mp4')) && existsSync(join(root, 'second.mp4'))).toBe(true);
  const [one, two] = jobsIn(root);
  // Before the lease, the second render recovered job #1 and ran it again as attempt 2.
  expect(one).toMatchObject({ state: 'succeeded', attempts: 1, ledger: ['reserve', 'settle'] });
  expect(two).toMatchObject({ state: 'succeeded', attempts: 1, ledger: ['reserve', 'settle'] });
  expect(two!.params.prompt).toBe('second slow');
  expect(two!.startedAt!).toBeGreaterThanOrEqual(one!.finishedAt!);
  expect(one!.ownerInstance).not.toBe(two!.ownerInstance);
}, 90_000);

test('a second reelbot serve on the database refuses and names the running one; a render beside it goes through it', async () => {
  dir = tempDir();
  const root = dir;
  fake = await FakeDiscord.start();
  const env = { REELBOT_DISCORD_TOKEN: 'fake-bot-token', REELBOT_DISCORD_API_URL: fake.apiUrl, REELBOT_ENGINE_MODULE: MP4_ENGINE };
  const bot = startServe(root, env);
  serves.push(bot);
  await until(() => bot.output().includes('reelbot is running'), 'serve to start');
  const second = startServe(root, env);
  serves.push(second);
  expect(await second.exited).toBe(75);
  expect(second.output()).toMatch(new RegExp(`Another reelbot serve \\(pid ${bot.child.pid} on .+, since .+\\) is the coordinator of the database`));
  expect(second.output()).not.toContain('fake-bot-token');

  const cli = render(root, 'beside serve slow', join(root, 'beside.mp4'), { REELBOT_DB_PATH: join(root, 'reelbot.db'), REELBOT_OUTPUT_DIR: join(root, 'out') });
  expect(await cli.exited).toBe(0);
  expect(cli.output()).toMatch(/Submitting through the running reelbot serve \(pid \d+/);
  expect(cli.output()).toMatch(/Saved .*beside\.mp4/);
  expect(existsSync(join(root, 'beside.mp4'))).toBe(true);
  bot.child.kill('SIGTERM');
  expect(await bot.exited).toBe(0);
  const [job] = jobsIn(root);
  expect(job).toMatchObject({ state: 'succeeded', attempts: 1, platform: 'cli', ledger: ['reserve', 'settle'] });
}, 90_000);
