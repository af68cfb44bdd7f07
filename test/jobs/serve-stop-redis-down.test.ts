/**
 * `reelbot serve` with worker hosts behind Redis stops on SIGTERM while Redis is unreachable (an
 * outage during a deploy): the drain may not wait for Redis, and nothing may hold the process open
 * afterwards. The waiting job stays queued in SQLite for the next start.
 */
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { openDatabase } from '../../src/store/db.js';
import { FakeDiscord, snowflake, type FakeUser, type RecordedRequest } from '../fakes/fake-discord.js';
import { removeDir, tempDir } from '../helpers/harness.js';
import { freePort } from '../helpers/redis-server.js';
import { startServe, type ServeProcess } from '../helpers/serve-process.js';
import { waitUntil } from '../helpers/worker-host.js';

const alice: FakeUser = { id: snowflake(), username: 'alice' };
const GRACE_MS = 500;

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

const contentOf = (request: RecordedRequest) => String((request.body as { content?: unknown } | null)?.content ?? '');

test('SIGTERM while Redis is unreachable: serve exits within the grace period plus a few seconds, and the job stays queued', { timeout: 60_000 }, async () => {
  dir = tempDir();
  fake = await FakeDiscord.start();
  bot = startServe(dir, {
    REELBOT_DISCORD_TOKEN: 'fake-bot-token',
    REELBOT_DISCORD_API_URL: fake.apiUrl,
    // Nothing listens there.
    REELBOT_REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    REELBOT_HTTP_PORT: String(await freePort()),
    REELBOT_SHUTDOWN_GRACE_MS: String(GRACE_MS),
    REELBOT_LOG_LEVEL: 'info',
  });
  await waitUntil(() => bot!.output().includes('reelbot is running'), 'serve to start');
  await waitUntil(() => bot!.output().includes('Redis is unreachable'), 'the coordinator to find Redis unreachable');
  const interaction = fake.slashCommand(alice, { prompt: 'a corgi waiting for Redis' });
  fake.sendInteraction(interaction);
  await fake.waitForRequest((r) => r.method === 'PATCH' && r.path.endsWith(`/${interaction.token}/messages/@original`) && /is queued/.test(contentOf(r)), 30_000);

  const signalledAt = Date.now();
  bot.child.kill('SIGTERM');
  const exit = await Promise.race([bot.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), GRACE_MS + 10_000))]);
  expect(exit).toBe(0);
  expect(Date.now() - signalledAt).toBeLessThan(GRACE_MS + 10_000);
  const db = openDatabase(join(dir, 'reelbot.db'), { migrate: false });
  try {
    expect(db.prepare(`SELECT state FROM jobs`).pluck().all()).toEqual(['queued']);
  } finally {
    db.close();
  }
});
