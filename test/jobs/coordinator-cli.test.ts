/**
 * The operator's commands beside a running coordinator, with real processes: `reelbot serve`
 * against the fake Discord (its dispatch through a Redis that is not there, so the jobs wait and the
 * dispatcher has something to say), and the real bin for each command. They go through the
 * coordinator's control socket: `reelbot queue` shows its live order, ETAs and notice; `jobs show`
 * and `usage` print what they print from the file; `jobs cancel` and `queue pause` change the
 * coordinator's memory (the user hears of the cancel from the bot; the queue reads paused at once)
 * and are audited as the operator's; and the command line wrote nothing to the database file
 * (seen with strace where it is installed). The commands whose files matter run as the real bin;
 * the rest through the CLI's entry point in the test process, which is quicker. Without the coordinator, the same commands use the file.
 */
import { execFile, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, expect, test } from 'vitest';
import { main } from '../../src/cli.js';
import { FakeDiscord, snowflake, type FakeUser, type RecordedRequest } from '../fakes/fake-discord.js';
import { removeDir, tempDir } from '../helpers/harness.js';
import { freePort } from '../helpers/redis-server.js';
import { BIN, startServe, type ServeProcess } from '../helpers/serve-process.js';
import { waitUntil as until } from '../helpers/worker-host.js';
import { openDatabase } from '../../src/store/db.js';
import { JobRepo } from '../../src/store/job-repo.js';

const run = promisify(execFile);
/** strace -f, to see which files the command line opens and writes; where it is missing, that check says so and is left out. */
const STRACE = spawnSync('strace', ['-V']).status === 0;

const alice: FakeUser = { id: snowflake(), username: 'alice' };
const bob: FakeUser = { id: snowflake(), username: 'bob' };

let dir: string | undefined;
let fake: FakeDiscord | undefined;
let bot: ServeProcess | undefined;
afterEach(async (context) => {
  if (context.task.result?.state === 'fail' && bot) console.error(`--- serve ---\n${bot.output().slice(-8000)}`);
  bot?.child.kill('SIGKILL');
  bot = undefined;
  await fake?.close();
  fake = undefined;
  if (dir) removeDir(dir);
  dir = undefined;
});

interface Cli {
  code: number;
  stdout: string;
  stderr: string;
  /** The database files (reelbot.db, -wal, -journal) the command opened for writing or wrote to, per strace; undefined without strace. */
  dbWrites?: string[];
}

function cliEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? '', REELBOT_DB_PATH: join(dir!, 'reelbot.db'), REELBOT_OUTPUT_DIR: join(dir!, 'out'), REELBOT_LOG_LEVEL: 'silent' };
}

/** A command through the CLI's entry point in this process (quick): for what needs no look at the files it writes. */
async function cli(args: string[]): Promise<Cli> {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'reelbot', ...args], { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: (text: string) => (stderr += text) }, env: cliEnv() });
  return { code, stdout, stderr };
}

/** The real bin in its own process, under strace where it is installed: `dbWrites` says what it wrote to the database. */
async function bin(args: string[]): Promise<Cli> {
  const trace = join(dir!, `strace-${Math.random().toString(36).slice(2)}.txt`);
  const [command, argv] = STRACE
    ? ['strace', ['-f', '-y', '-qq', '-o', trace, '-e', 'trace=openat,write,pwrite64,ftruncate', process.execPath, BIN, ...args]]
    : [process.execPath, [BIN, ...args]];
  let result: Cli;
  try {
    const { stdout, stderr } = await run(command as string, argv as string[], { env: cliEnv() });
    result = { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    result = { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
  if (!STRACE) return result;
  // The main file and its journals, not -shm: every reader, `reelbot audit` too, marks its read there.
  // SQLite opens the -wal read-write even for a read-only connection, so only what is written to it counts.
  const dbFile = /reelbot\.db(-wal|-journal)?[">]/;
  const writes = readFileSync(trace, 'utf8')
    .split('\n')
    .filter((line) => dbFile.test(line) && ((/openat\(/.test(line) && /O_RDWR|O_WRONLY/.test(line) && !/-wal"/.test(line)) || /^\d+\s+(write|pwrite64|ftruncate)\(/.test(line)));
  return { ...result, dbWrites: writes };
}

/** A /video from a user; resolves once the bot has answered that it is queued. */
async function queueVideo(user: FakeUser, prompt: string): Promise<{ id: string; token: string }> {
  const interaction = fake!.slashCommand(user, { prompt });
  fake!.sendInteraction(interaction);
  await fake!.waitForRequest((r) => isOriginal(interaction.token)(r) && /is queued/.test(contentOf(r)), 30_000);
  return interaction;
}

const isOriginal = (token: string) => (r: RecordedRequest) => r.method === 'PATCH' && r.path.endsWith(`/${token}/messages/@original`);
function contentOf(request: RecordedRequest): string {
  return String((request.body as { content?: unknown } | null)?.content ?? '');
}

/** The job ids of the running table, then of the waiting table: the order jobs run in. */
function startOrder(stdout: string): number[] {
  const [running, waiting] = stdout.split(/^Waiting/m);
  const ids = (text: string | undefined) => [...(text ?? '').matchAll(/^\s+(?:\d+\s+)?#(\d+)\s/gm)].map((m) => Number(m[1]));
  return [...ids(running), ...ids(waiting)];
}

/** The waiting table's rows: [position, job id, user]. */
function waitingRows(stdout: string): [number, number, string][] {
  const waiting = stdout.split(/^Waiting/m)[1] ?? '';
  return [...waiting.matchAll(/^\s+(\d+)\s+#(\d+)\s+(\S+)/gm)].map((m) => [Number(m[1]), Number(m[2]), m[3]!]);
}

async function startCoordinator(): Promise<ServeProcess> {
  fake ??= await FakeDiscord.start();
  const serve = startServe(dir!, {
    REELBOT_DISCORD_TOKEN: 'fake-bot-token',
    REELBOT_DISCORD_API_URL: fake.apiUrl,
    // Nothing listens there: the jobs are admitted and wait, and the dispatcher says why.
    REELBOT_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    REELBOT_HTTP_PORT: String(await freePort()),
    REELBOT_LOG_LEVEL: 'info',
  });
  await until(() => serve.output().includes('reelbot is running'), 'serve to start');
  await until(() => serve.output().includes('Redis is unreachable'), 'the coordinator to find Redis unreachable');
  return serve;
}

test('beside a running coordinator, queue, jobs show, usage, cancel and pause go through it; without it they use the file', async () => {
  dir = tempDir();
  bot = await startCoordinator();
  await queueVideo(alice, 'first corgi');
  await queueVideo(alice, 'second corgi');
  await queueVideo(bob, 'bob corgi');
  const bobsJob = 3;

  // The coordinator's live view: its fair order (one job per user per round), ETAs, and why nothing starts.
  const queue = await bin(['queue']);
  expect(queue).toMatchObject({ code: 0, stderr: '' });
  expect(queue.stdout).toMatch(new RegExp(`^Live view of the running reelbot serve \\(pid ${bot.child.pid} on `));
  expect(queue.stdout).toContain('Notice: The job queue server (Redis) is unreachable: jobs are kept and start when it is back.');
  // The coordinator's order: one job per user per round (alice's first, bob's, alice's second). Alice's
  // first may be the coordinator's already, taken from the fair queue and waiting for a worker slot
  // (the file still says queued): then it is listed running, "waiting for a worker".
  expect(startOrder(queue.stdout)).toEqual([1, bobsJob, 2]);
  const taken = /^Running \(1\)/m.test(queue.stdout);
  if (taken) expect(queue.stdout).toMatch(new RegExp(`\\n\\s+#1\\s+discord:${alice.id}\\s+text2video\\s+-\\s+waiting for a worker\\s+0\\s+\\d+\\.\\d\\s+in \\d+`));
  expect(waitingRows(queue.stdout).map(([position]) => position)).toEqual(taken ? [1, 2] : [1, 2, 3]);
  expect(queue.stdout).toMatch(/#2\s+discord:\d+\s+text2video\s+normal\s+\S+\s+\S+\s+\d+\.\d\s+in \d+/);

  const liveShow = await bin(['jobs', 'show', '1']);
  expect(liveShow.code).toBe(0);
  expect(liveShow.stdout).toMatch(/state\s+queued/);
  expect(liveShow.stdout).toMatch(/Quota ledger \(1 row\)/);
  const liveShowJson = await cli(['jobs', 'show', '1', '--json']);
  expect(JSON.parse(liveShowJson.stdout).job).toMatchObject({ id: 1, state: 'queued', owner: `discord:${alice.id}` });
  const liveUsage = await bin(['usage', '--json']);
  expect(JSON.parse(liveUsage.stdout)).toMatchObject({ total: { jobs: 3 } });
  const liveUsageText = await cli(['usage', '--user', `discord:${bob.id}`]);
  expect(liveUsageText.stdout).toMatch(/Total: 1 job,/);
  expect(await cli(['jobs', 'show', '99'])).toMatchObject({ code: 1, stdout: '', stderr: 'reelbot: No job #99.\n' });
  expect((await cli(['usage', '--user', 'discord:nobody'])).stderr).toContain('No user discord:nobody in the database');

  // A cancel through the coordinator: it drops the job from its queue, and the bot tells bob.
  const cancel = await bin(['jobs', 'cancel', String(bobsJob)]);
  expect(cancel).toMatchObject({ code: 0, stderr: '' });
  expect(cancel.stdout).toMatch(new RegExp(`Cancelled job #${bobsJob} of discord:${bob.id}; its quota was refunded\\. \\(through the running reelbot serve`));
  await fake!.waitForRequest((r) => r.method === 'PATCH' && /was cancelled/.test(contentOf(r)), 15_000);
  expect(startOrder((await cli(['queue'])).stdout)).toEqual([1, 2]);
  expect(await cli(['jobs', 'cancel', String(bobsJob)])).toMatchObject({ code: 1, stderr: `reelbot: Job #${bobsJob} has already been cancelled, so there is nothing to cancel.\n` });
  expect((await cli(['jobs', 'cancel', '99'])).stderr).toBe('reelbot: No job #99.\n');

  // Pausing changes the coordinator's run queue at once (the file's flag alone would wait for a restart).
  const pause = await bin(['queue', 'pause']);
  expect(pause.stdout).toMatch(/^Queue paused: .*\(through the running reelbot serve/);
  expect((await cli(['queue'])).stdout).toMatch(/^Queue: paused/m);

  // Audited as the operator's, at the command line.
  const audit = await cli(['audit', '--json']);
  const entries = audit.stdout.trim().split('\n').map((line) => JSON.parse(line) as { platform: string; action: string; target: string | null });
  expect(entries.map((entry) => [entry.platform, entry.action, entry.target])).toEqual([
    ['cli', 'queue.pause', null],
    ['cli', 'job.cancel', `discord:${bob.id}`],
  ]);

  // The retention sweep runs in the coordinator; migrate has nothing to do and changes nothing beneath it.
  expect((await cli(['db', 'prune'])).stdout).toMatch(/\(swept by the running reelbot serve/);
  expect((await cli(['db', 'migrate'])).stdout).toMatch(/is up to date/);

  const liveShowAfter = await cli(['jobs', 'show', '1']);
  const liveUsageAfter = await cli(['usage', '--since', '2020-01-01']);
  // Killed, not drained: a serve whose Redis is unreachable does not finish its drain (see the report). Its
  // lease names a process that is gone, so the command line finds no coordinator at once.
  bot.child.kill('SIGKILL');
  await bot.exited;

  // Without it: the file, and the same text for the same data.
  const fileQueue = await cli(['queue']);
  expect(fileQueue.stdout).toMatch(/^The bot \(reelbot serve\) is not running: read from the database file .*reelbot\.db\. No ETAs/);
  expect(fileQueue.stdout).toMatch(/^Queue: paused/m);
  expect(fileQueue.stdout).not.toContain('Notice:');
  // The file knows nothing of what the coordinator had taken: both of alice's jobs are queued there.
  expect(fileQueue.stdout).toMatch(/^Running: none/m);
  expect(waitingRows(fileQueue.stdout)).toEqual([
    [1, 1, `discord:${alice.id}`],
    [2, 2, `discord:${alice.id}`],
  ]);
  expect(await cli(['jobs', 'show', '1'])).toMatchObject({ code: 0, stdout: liveShowAfter.stdout });
  expect(await cli(['usage', '--since', '2020-01-01'])).toMatchObject({ code: 0, stdout: liveUsageAfter.stdout });
  expect(await cli(['jobs', 'show', '99'])).toMatchObject({ code: 1, stderr: 'reelbot: No job #99.\n' });
  const resume = await bin(['queue', 'resume']);
  expect(resume.stdout).toMatch(/^Queue resumed: .*\(in .*reelbot\.db: the bot is not running/);
  const fileCancel = await bin(['jobs', 'cancel', '2']);
  expect(fileCancel.stdout).toMatch(new RegExp(`Cancelled job #2 of discord:${alice.id}`));
  const db = openDatabase(join(dir, 'reelbot.db'));
  try {
    expect(new JobRepo(db).get(2)).toMatchObject({ state: 'cancelled' });
  } finally {
    db.close();
  }
  expect((await cli(['queue'])).stdout).toMatch(/^Queue: active/m);
  if (STRACE) {
    // The check can fail: the commands that had to write the file did write it.
    expect(resume.dbWrites!.length).toBeGreaterThan(0);
    expect(fileCancel.dbWrites!.length).toBeGreaterThan(0);
    // Beside the coordinator, nothing was written to the file: the lease was read read-only, the rest went through the socket.
    for (const live of [queue, liveShow, liveUsage, cancel, pause]) expect(live.dbWrites).toEqual([]);
  } else {
    console.warn('strace is not installed: the check that the command line wrote nothing to the database beside the coordinator is left out');
  }
}, 180_000);

test('the control socket is 0600, answers only its operations with clear refusals, and db migrate refuses to change the schema beneath the coordinator', async () => {
  dir = tempDir();
  bot = await startCoordinator();
  const socket = join(dir, 'reelbot.db.control.sock');
  expect(statSync(socket).mode & 0o777).toBe(0o600);
  const ask = (method: string, path: string, body?: unknown) =>
    new Promise<{ status: number; body: { message?: string } }>((resolve, reject) => {
      const req = request({ socketPath: socket, method, path, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) as { message?: string } }));
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  const unknown = await ask('DELETE', '/jobs');
  expect(unknown.status).toBe(404);
  expect(unknown.body.message).toMatch(/does not answer DELETE \/jobs\. It answers: POST \/jobs \(submit\), GET \/queue/);
  expect((await ask('GET', '/queue')).body.message).toBe('A request to the control socket names the operator: "user", their login name.');
  expect((await ask('GET', '/jobs/abc?user=op')).body.message).toBe('A job id is a whole number, such as 42.');
  expect((await ask('GET', '/jobs/7?user=op')).body.message).toBe('No job #7.');
  expect((await ask('POST', '/usage', { user: 'op', query: { since: 'yesterday', limit: 5 } })).body.message).toBe('A usage query needs since (ms since the epoch).');
  expect((await ask('POST', '/jobs/1/cancel', {})).status).toBe(422);

  // A schema the running coordinator did not start with is not applied beneath it.
  const db = openDatabase(join(dir, 'reelbot.db'), { migrate: false });
  const latest = db.prepare(`SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version DESC LIMIT 1`).get() as Record<string, unknown>;
  db.prepare(`DELETE FROM schema_migrations WHERE version = ?`).run(latest.version);
  const migrate = await cli(['db', 'migrate']);
  db.prepare(`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)`).run(latest.version, latest.name, latest.checksum, latest.applied_at);
  db.close();
  expect(migrate.code).toBe(1);
  expect(migrate.stderr).toMatch(new RegExp(`^reelbot: reelbot serve \\(pid ${bot.child.pid} on .+\\) runs on .*reelbot\\.db, so its schema is not changed beneath it\\. Stop it first`));
  expect(migrate.stderr).toMatch(/applies the 1 pending migration \(\d{3}_\w+\) when it starts/);
}, 60_000);
