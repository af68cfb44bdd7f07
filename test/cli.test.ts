import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { main } from '../src/cli.js';
import { openDatabase, type Db } from '../src/store/db.js';
import { JobRepo } from '../src/store/job-repo.js';
import { QuotaLedger } from '../src/store/quota-ledger.js';
import { Settings } from '../src/store/settings.js';
import { UserRepo } from '../src/store/user-repo.js';
import type { Platform, UserRecord } from '../src/jobs/types.js';

const BIN = fileURLToPath(new URL('../bin/reelbot.js', import.meta.url));

let dir: string;
let dbPath: string;
let db: Db | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'reelbot-cli-'));
  dbPath = join(dir, 'reelbot.db');
});
afterEach(() => {
  db?.close();
  db = undefined;
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const code = await main(['node', 'reelbot', ...args], {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text) },
    env: { REELBOT_DB_PATH: dbPath, ...env },
  });
  return { code, stdout, stderr };
}

/** A migrated database with repos, opened by the test (the CLI opens its own connection). */
function seed() {
  db = openDatabase(dbPath);
  const users = new UserRepo(db);
  const jobs = new JobRepo(db);
  const ledger = new QuotaLedger(db);
  const user = (platform: Platform, externalId: string, name: string | null = null) => users.upsert(platform, externalId, name, Date.now());
  const job = (owner: UserRecord, fields: { groupId?: string; prompt?: string; queuedAt?: number; priority?: number } = {}) =>
    jobs.insert({
      kind: 'text2video',
      params: { prompt: fields.prompt ?? 'a cat on a skateboard' },
      userId: owner.id,
      platform: owner.platform,
      groupId: fields.groupId ?? 'guild-1',
      channelId: 'chan-1',
      messageRefs: {},
      seed: 42,
      priority: fields.priority ?? 0,
      estimatedGpuSeconds: 60,
      queuedAt: fields.queuedAt ?? Date.now(),
    });
  return { db, users, jobs, ledger, user, job };
}

describe('db', () => {
  test('migrate applies 001_init, then status shows it applied and migrate says up to date', async () => {
    const migrated = await cli(['db', 'migrate']);
    expect(migrated).toMatchObject({ code: 0, stderr: '' });
    expect(migrated.stdout).toContain('001_init');

    const status = await cli(['db', 'status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/001_init\s+applied\s+\d{4}-\d{2}-\d{2}T/);

    const again = await cli(['db', 'migrate']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/up to date/);
  });

  test('status of a database that does not exist lists pending migrations and creates nothing', async () => {
    const status = await cli(['db', 'status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/does not exist/);
    expect(status.stdout).toMatch(/001_init\s+pending/);
    // Reading commands do not create the database either.
    const queue = await cli(['queue']);
    expect(queue.code).toBe(1);
    expect(queue.stderr).toMatch(/No database at .*reelbot db migrate/);
  });

  test('an applied migration whose checksum changed is reported as edited (exit 1), and migrate refuses', async () => {
    expect((await cli(['db', 'migrate'])).code).toBe(0);
    db = openDatabase(dbPath, { migrate: false });
    db.prepare(`UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1`).run();

    const status = await cli(['db', 'status']);
    expect(status.code).toBe(1);
    expect(status.stdout).toMatch(/001_init\s+edited/);
    expect(status.stderr).toMatch(/001_init\.sql was edited after it was applied/);

    const migrated = await cli(['db', 'migrate']);
    expect(migrated.code).toBe(1);
    expect(migrated.stderr).toMatch(/Refusing to start: 001_init\.sql was edited/);
    expect(migrated.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe('queue', () => {
  test('lists running jobs, then waiting jobs in fair order', async () => {
    const { user, job, jobs } = seed();
    const a = user('discord', 'alice');
    const b = user('discord', 'bob');
    const c = user('slack', 'carol');
    const a1 = job(a);
    const a2 = job(a);
    const a3 = job(a);
    const b1 = job(b);
    const c1 = job(c);
    expect(jobs.markRunning(c1, 'cuda:0', Date.UTC(2025, 0, 2, 3, 4, 5))).toBe(true);

    const run = await cli(['queue']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Queue: active/);
    const [running, waiting] = run.stdout.split(/^Waiting/m);
    expect(running).toMatch(new RegExp(`#${c1}\\s+slack:carol\\s+text2video\\s+cuda:0\\s+2025-01-02T03:04:05.000Z`));
    // One job per user per round: alice was first in, bob's only job is second.
    const order = [...waiting!.matchAll(/^\s+(\d+)\s+#(\d+)\s+(\S+)/gm)].map((m) => [Number(m[1]), Number(m[2]), m[3]]);
    expect(order).toEqual([
      [1, a1, 'discord:alice'],
      [2, b1, 'discord:bob'],
      [3, a2, 'discord:alice'],
      [4, a3, 'discord:alice'],
    ]);
  });

  test('says when the queue is paused', async () => {
    const { db } = seed();
    new Settings(db).setQueuePaused(true);
    const run = await cli(['queue']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Queue: paused/);
    expect(run.stdout).toMatch(/Running: none/);
    expect(run.stdout).toMatch(/Waiting: none/);
  });
});

describe('jobs show', () => {
  test('prints every field of a job and its ledger rows', async () => {
    const { user, job, jobs, ledger } = seed();
    const alice = user('discord', 'alice');
    const queuedAt = Date.UTC(2025, 4, 6, 7, 8, 9);
    const id = job(alice, { prompt: 'a dog surfing', queuedAt, groupId: 'guild-9' });
    ledger.reserve({ jobId: id, userId: alice.id, groupId: 'guild-9', gpuSeconds: 60, chargedAt: queuedAt, now: queuedAt });
    jobs.markRunning(id, 'cuda:1', queuedAt + 1000);
    jobs.finish(id, 'failed', { gpuSeconds: 12.5, errorCode: 'engine_failed', error: 'out of memory', now: queuedAt + 5000 });
    ledger.refund(id, queuedAt + 5000);

    const run = await cli(['jobs', 'show', String(id)]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Job #${id}`);
    for (const pattern of [
      /state\s+failed/,
      /owner\s+discord:alice/,
      /group\s+guild-9/,
      /channel\s+chan-1/,
      /seed\s+42/,
      /device\s+cuda:1/,
      /attempts\s+1/,
      /queued at\s+2025-05-06T07:08:09.000Z/,
      /started at\s+2025-05-06T07:08:10.000Z/,
      /finished at\s+2025-05-06T07:08:14.000Z/,
      /GPU seconds\s+12.5/,
      /error\s+engine_failed: out of memory/,
      /params\s+\{"prompt":"a dog surfing"\}/,
      /reserve\s+\+1\s+\+60.0/,
      /refund\s+-1\s+-60.0/,
    ]) {
      expect(run.stdout).toMatch(pattern);
    }

    const json = await cli(['jobs', 'show', String(id), '--json']);
    const parsed = JSON.parse(json.stdout) as { job: { id: number; startedAt: string }; ledger: { entry: string }[] };
    expect(parsed.job).toMatchObject({ id, startedAt: '2025-05-06T07:08:10.000Z' });
    expect(parsed.ledger.map((row) => row.entry)).toEqual(['reserve', 'refund']);
  });

  test('an unknown id is exit 1, a non-integer id exit 2', async () => {
    seed();
    const missing = await cli(['jobs', 'show', '999']);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe('');
    expect(missing.stderr).toMatch(/No job #999/);

    for (const bad of ['abc', '1.5', '-3']) {
      const run = await cli(['jobs', 'show', bad]);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/whole number/);
      expect(run.stderr).toMatch(/reelbot jobs show --help/);
    }
  });
});

describe('usage', () => {
  test('sums the ledger for one user, and breaks down by user and guild', async () => {
    const { user, job, ledger } = seed();
    const alice = user('discord', 'alice', 'Alice');
    const bob = user('slack', 'U0BOB');
    const now = Date.now();
    const charge = (owner: UserRecord, groupId: string, gpuSeconds: number) => {
      const id = job(owner, { groupId });
      ledger.reserve({ jobId: id, userId: owner.id, groupId, gpuSeconds, chargedAt: now, now });
      return id;
    };
    ledger.settle(charge(alice, 'guild-1', 60), 12, now); // 1 job, 12 s
    ledger.refund(charge(alice, 'guild-1', 60), now); // nothing
    charge(alice, 'guild-2', 60); // reserved: 1 job, 60 s
    ledger.settle(charge(bob, 'T-team', 30), 100, now); // 1 job, 100 s

    const mine = await cli(['usage', '--user', 'discord:alice', '--since', '2000-01-01', '--json']);
    expect(mine.code).toBe(0);
    const report = JSON.parse(mine.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      since: '2000-01-01T00:00:00.000Z',
      until: null,
      user: 'discord:alice',
      total: { jobs: 2, gpuSeconds: 72 },
      topUsers: [{ user: 'discord:alice', displayName: 'Alice', jobs: 2, gpuSeconds: 72 }],
    });
    expect(report.byGroup).toEqual([
      { groupId: 'guild-2', jobs: 1, gpuSeconds: 60 },
      { groupId: 'guild-1', jobs: 1, gpuSeconds: 12 },
    ]);

    // The internal id works too.
    const byId = await cli(['usage', '--user', String(alice.id), '--json']);
    expect(JSON.parse(byId.stdout)).toMatchObject({ user: 'discord:alice', total: { jobs: 2, gpuSeconds: 72 } });

    const all = await cli(['usage']);
    expect(all.code).toBe(0);
    expect(all.stdout).toMatch(/Total: 3 jobs, 172.0 GPU-seconds/);
    const users = all.stdout.slice(all.stdout.indexOf('Top users'));
    expect(users).toMatch(/slack:U0BOB\s+-\s+1\s+100.0[\s\S]*discord:alice\s+Alice\s+2\s+72.0/);
    expect(all.stdout).toMatch(/T-team\s+1\s+100.0/);

    const past = await cli(['usage', '--until', '2001-01-01', '--since', '2000-01-01', '--json']);
    expect(JSON.parse(past.stdout)).toMatchObject({ until: '2001-01-02T00:00:00.000Z', total: { jobs: 0, gpuSeconds: 0 } });

    const guild = await cli(['usage', '--guild', 'guild-1', '--json']);
    expect(JSON.parse(guild.stdout)).toMatchObject({ total: { jobs: 1, gpuSeconds: 12 } });
  });

  test('bad dates and users are clear errors', async () => {
    seed();
    const since = await cli(['usage', '--since', 'last-tuesday']);
    expect(since.code).toBe(2);
    expect(since.stdout).toBe('');
    expect(since.stderr).toMatch(/--since <date>.*'last-tuesday' is invalid.*YYYY-MM-DD/);
    expect(since.stderr).toMatch(/reelbot usage --help/);

    expect((await cli(['usage', '--since', '2025-02-30'])).stderr).toMatch(/not a real date/);
    expect((await cli(['usage', '--since', '2025-02-01T10:00:00+02:00'])).code).toBe(0);

    const reversed = await cli(['usage', '--since', '2025-03-01', '--until', '2025-01-01']);
    expect(reversed.code).toBe(2);
    expect(reversed.stderr).toMatch(/--until .* must be after --since/);

    const badUser = await cli(['usage', '--user', 'myspace:tom']);
    expect(badUser.code).toBe(2);
    expect(badUser.stderr).toMatch(/platform:externalId/);

    const unknownUser = await cli(['usage', '--user', 'discord:nobody']);
    expect(unknownUser.code).toBe(1);
    expect(unknownUser.stderr).toMatch(/No user discord:nobody/);
  });
});

describe('config and errors', () => {
  test('an invalid setting is exit 78 naming every problem, without a stack trace', async () => {
    const run = await cli(['queue'], { REELBOT_DEVICES: 'gpu7', REELBOT_JOB_TIMEOUT_SECONDS: 'abc' });
    expect(run.code).toBe(78);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/REELBOT_DEVICES/);
    expect(run.stderr).toMatch(/REELBOT_JOB_TIMEOUT_SECONDS/);
    expect(run.stderr).not.toMatch(/\n\s+at /);

    const file = await cli(['--config', join(dir, 'missing.json'), 'config']);
    expect(file.code).toBe(78);
    expect(file.stderr).toMatch(/missing\.json: file not found/);
  });

  test('config prints the settings with secrets redacted', async () => {
    const run = await cli(['config'], { REELBOT_DISCORD_TOKEN: 'super-secret-value', REELBOT_DEVICES: 'cuda:0,cuda:1' });
    expect(run.code).toBe(0);
    expect(run.stdout).not.toContain('super-secret-value');
    const printed = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(printed).toMatchObject({ dbPath, devices: ['cuda:0', 'cuda:1'], discordToken: '[redacted]' });

    // Nor in an error about another setting.
    const failed = await cli(['config'], { REELBOT_DISCORD_TOKEN: 'super-secret-value', REELBOT_LOG_LEVEL: 'loud' });
    expect(failed.code).toBe(78);
    expect(failed.stdout + failed.stderr).not.toContain('super-secret-value');
  });

  test('help and version exit 0; unknown commands and options exit 2 with a hint', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: reelbot/);
    const subHelp = await cli(['usage', '--help']);
    expect(subHelp.code).toBe(0);
    expect(subHelp.stdout).toMatch(/--since <date>/);
    const version = await cli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+/);

    const unknown = await cli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(unknown.stderr).toMatch(/Run "reelbot --help"/);

    const option = await cli(['queue', '--bogus']);
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/unknown option '--bogus'/);
    expect(option.stderr).toMatch(/Run "reelbot queue --help"/);

    const missing = await cli(['jobs', 'show']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/missing required argument 'id'/);
  });

  test('an unexpected error is one line, exit 1', async () => {
    // A directory where the database file should be: SQLite cannot open it.
    const run = await cli(['db', 'migrate'], { REELBOT_DB_PATH: dir });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^reelbot: unexpected error: .+\n$/);
  });
});

test('the bin launcher runs the CLI in a real process', async () => {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('REELBOT_')) env[key] = value;
  env.REELBOT_DB_PATH = dbPath;
  const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'db', 'status'], { env, timeout: 20_000 });
  expect(stdout).toMatch(/001_init\s+pending/);

  // Exit codes reach the shell.
  const failure = await promisify(execFile)(process.execPath, [BIN, 'jobs', 'show', 'x'], { env, timeout: 20_000 }).catch(
    (error: { code: number; stderr: string }) => error,
  );
  expect(failure).toMatchObject({ code: 2 });
  expect((failure as { stderr: string }).stderr).toMatch(/whole number/);
});

test('jobs show never prints the interaction tokens kept in message refs', async () => {
  const { jobs, user, job } = seed();
  const id = job(user('discord', '123456789012345678'));
  jobs.setMessageRefs(id, { discord: { interactionId: '1', interactionToken: 'secret-interaction-token', tokenExpiresAt: 1 } });
  for (const args of [['jobs', 'show', String(id)], ['jobs', 'show', String(id), '--json']]) {
    const run = await cli(args);
    expect(run.code).toBe(0);
    expect(run.stdout).not.toContain('secret-interaction-token');
    expect(run.stdout).toContain('[redacted]');
    expect(run.stdout).toContain('tokenExpiresAt');
  }
});

test('jobs show masks the token part of a Slack response_url kept in message refs', async () => {
  const { jobs, user, job } = seed();
  const id = job(user('slack', 'U0123'));
  jobs.setMessageRefs(id, { slack: { responseUrl: 'https://hooks.slack.com/commands/T0001/1234567890/SeCrEtPaRt42', responseUrlUses: 1 } });
  for (const args of [['jobs', 'show', String(id)], ['jobs', 'show', String(id), '--json']]) {
    const run = await cli(args);
    expect(run.code).toBe(0);
    expect(run.stdout).not.toContain('SeCrEtPaRt42');
    expect(run.stdout).toContain('https://hooks.slack.com/commands/***');
  }
});
