/**
 * Failure mode 2 of platforms.md: the handler is slow before the ack. The bot runs as
 * `reelbot serve` in its own process (so the fake Discord in this process stamps requests when
 * they arrive, not when the bot's event loop lets it), and a third process holds the SQLite write
 * lock on the same file (BEGIN IMMEDIATE) while `/video` comes in. The interaction must be
 * deferred within Discord's 3 s whatever the database does, and answered once the lock is gone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeDiscord, snowflake, type RecordedRequest } from '../../fakes/fake-discord.js';
import { removeDir, tempDir } from '../../helpers/harness.js';
import { startServe } from '../../helpers/serve-process.js';
import { isFirstAnswer, isOriginalEdit, MP4_ENGINE } from './setup.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** Discord invalidates the interaction token unless it is answered this soon. */
const ACK_DEADLINE_MS = 3000;

/** Holds a write transaction on `dbPath` for `ms`, from its own process; prints `locked` once it has it. */
const LOCKER = `
const Database = require('better-sqlite3');
const db = new Database(process.argv[1]);
db.exec('BEGIN IMMEDIATE');
db.prepare("INSERT OR REPLACE INTO settings (key, value) VALUES ('test.lock', '1')").run();
process.stdout.write('locked\\n');
setTimeout(() => { db.exec('COMMIT'); db.close(); }, Number(process.argv[2]));
`;

const alice = { id: snowflake(), username: 'alice' };
const bob = { id: snowflake(), username: 'bob' };

let dir: string;
let fake: FakeDiscord;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = tempDir();
  fake = await FakeDiscord.start();
});
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  await fake.close();
  removeDir(dir);
});

const dbPath = () => join(dir, 'reelbot.db');

/** `reelbot serve` on the fake; resolves once it has registered its commands (it is ready). */
async function serve(): Promise<{ output: () => string }> {
  const bot = startServe(dir, { REELBOT_LOG_LEVEL: 'warn', REELBOT_ENGINE_MODULE: MP4_ENGINE, REELBOT_DISCORD_TOKEN: 'fake-bot-token', REELBOT_DISCORD_API_URL: fake.apiUrl });
  children.push(bot.child);
  await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`, 30_000);
  return { output: bot.output };
}

/** Takes the write lock from another process for `ms`; resolves once it is held. */
async function lockDatabase(ms: number): Promise<{ released: Promise<unknown> }> {
  const child = spawn(process.execPath, ['-e', LOCKER, dbPath(), String(ms)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes('locked')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`the locker exited with ${code} before locking`)));
  });
  return { released: once(child, 'exit') };
}

const contentOf = (request: RecordedRequest) => (request.body as { content?: string } | undefined)?.content ?? '';

/** Sends `/video`, and returns when the fake sent it and when the defer arrived. */
async function videoAck(user: { id: string; username: string }, prompt: string): Promise<{ interaction: { id: string; token: string }; sentAt: number; ackMs: () => Promise<number> }> {
  const interaction = fake.slashCommand(user, { prompt });
  const sentAt = Date.now();
  fake.sendInteraction(interaction);
  return {
    interaction,
    sentAt,
    ackMs: async () => {
      const ack = await fake.waitForRequest((r) => r.method === 'POST' && r.path === `/interactions/${interaction.id}/${interaction.token}/callback`, 15_000);
      expect(ack.body).toMatchObject({ type: 5 });
      return ack.at - sentAt;
    },
  };
}

function jobCount(): number {
  const db = new Database(dbPath(), { readonly: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM jobs').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('Discord failure mode 2: slow database before the ack', () => {
  it('defers /video at once while another process holds the write lock for 4 s, then makes the job', async () => {
    const bot = await serve();
    const lock = await lockDatabase(4000);
    const lockedAt = Date.now();
    const a = await videoAck(alice, 'a corgi while the database is locked');
    expect(await a.ackMs()).toBeLessThan(ACK_DEADLINE_MS);

    // Nothing could be written while the lock was held; afterwards the job is made and shown.
    const queued = await fake.waitForRequest(isOriginalEdit(a.interaction.token), 20_000);
    expect(queued.at - lockedAt).toBeGreaterThanOrEqual(3500);
    expect(contentOf(queued)).toMatch(/\*\*Job #1\*\* is queued/);
    await lock.released;
    const upload = await fake.waitForRequest((r) => isOriginalEdit(a.interaction.token)(r) && r.files.length > 0, 20_000);
    expect(contentOf(upload)).toMatch(/\*\*Job #1\*\* done/);
    expect(jobCount()).toBe(1);
    expect(bot.output()).not.toMatch(/SQLITE_BUSY|database is locked/);
  }, 45_000);

  it('defers a second /video that arrives while the first waits for the lock', async () => {
    await serve();
    await lockDatabase(4000);
    const a = await videoAck(alice, 'a corgi while the database is locked');
    expect(await a.ackMs()).toBeLessThan(ACK_DEADLINE_MS);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const b = await videoAck(bob, 'a cat right behind it');
    expect(await b.ackMs()).toBeLessThan(ACK_DEADLINE_MS);
    const aQueued = await fake.waitForRequest(isOriginalEdit(a.interaction.token), 20_000);
    expect(contentOf(aQueued)).toMatch(/\*\*Job #\d\*\* is queued/);
    const bQueued = await fake.waitForRequest(isOriginalEdit(b.interaction.token), 20_000);
    expect(contentOf(bQueued)).toMatch(/\*\*Job #\d\*\* is queued/);
    expect(jobCount()).toBe(2);
  }, 45_000);

  it('an admin change waiting for the lock holds no other interaction: /queue is acked at once, then the pause completes', async () => {
    const admin = { id: snowflake(), username: 'admin' };
    const bot = startServe(dir, {
      REELBOT_LOG_LEVEL: 'warn',
      REELBOT_ENGINE_MODULE: MP4_ENGINE,
      REELBOT_DISCORD_TOKEN: 'fake-bot-token',
      REELBOT_DISCORD_API_URL: fake.apiUrl,
      REELBOT_DISCORD_ADMINS: admin.id,
    });
    children.push(bot.child);
    await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`, 30_000);
    const lock = await lockDatabase(4000);
    const pause = fake.subcommand(admin, 'admin', ['queue', 'pause']);
    fake.sendInteraction(pause);
    await fake.waitForRequest((r) => r.method === 'POST' && r.path === `/interactions/${pause.id}/${pause.token}/callback`, 15_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    // While the pause waits for the lock, another member's command is acked within Discord's 3 s.
    const queue = fake.command(bob, 'queue');
    const sentAt = Date.now();
    fake.sendInteraction(queue);
    const ack = await fake.waitForRequest((r) => r.method === 'POST' && r.path === `/interactions/${queue.id}/${queue.token}/callback`, 15_000);
    expect(ack.at - sentAt).toBeLessThan(ACK_DEADLINE_MS);
    const paused = await fake.waitForRequest(isOriginalEdit(pause.token), 20_000);
    expect(contentOf(paused)).toContain('The queue is paused');
    await lock.released;
    expect(bot.output()).not.toMatch(/SQLITE_BUSY|database is locked/);
  }, 45_000);

  it('answers /video with "try again", not silence, when the lock outlasts the 10 s a submit waits', async () => {
    await serve();
    // Longer than a submit waits for the lock (ADMISSION_LOCK_WAIT_MS, 10 s).
    const lock = await lockDatabase(11_500);
    const a = await videoAck(alice, 'a corgi while the database is locked');
    expect(await a.ackMs()).toBeLessThan(ACK_DEADLINE_MS);
    const answer = await fake.waitForRequest(isFirstAnswer(a.interaction.token), 15_000);
    expect(contentOf(answer)).toMatch(/too busy to take the job right now\. Please try again/);
    await lock.released;
    expect(jobCount()).toBe(0);
  }, 45_000);
});
