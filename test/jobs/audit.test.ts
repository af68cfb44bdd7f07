/** The audit trail: every admin action with where it ran, one transaction with its change, readable in pages and from the CLI. */
import { afterEach, expect, test } from 'vitest';
import { main } from '../../src/cli.js';
import { ErrorCode } from '../../src/errors.js';
import type { Actor } from '../../src/jobs/types.js';
import { alice, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

const admins = { admins: { discord: ['admin-1'], slack: [] } };
const adminInGuild: Actor = { platform: 'discord', externalId: 'admin-1', groupId: 'guild-9', channelId: 'chan-3' };
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  if (h) removeDir(h.dir);
  h = undefined;
});

const rows = () => h!.db.prepare(`SELECT actor_id, group_id, channel_id, action, target, details FROM admin_audit ORDER BY id`).all();

test('an admin cancelling someone else\'s job is recorded with where it ran; an owner\'s own cancel is not an admin action', async () => {
  h = startService(tempDir(), admins);
  await h.service.pauseQueue(adminInGuild);
  const first = await h.service.submit(video(alice, { ms: 1 }));
  const second = await h.service.submit(video(alice, { ms: 1 }));
  await h.service.cancel(adminInGuild, first.job.id);
  await h.service.cancel(alice, second.job.id);
  expect(rows()).toEqual([
    { actor_id: 'admin-1', group_id: 'guild-9', channel_id: 'chan-3', action: 'queue.pause', target: null, details: '{}' },
    { actor_id: 'admin-1', group_id: 'guild-9', channel_id: 'chan-3', action: 'job.cancel', target: 'discord:alice', details: JSON.stringify({ jobId: first.job.id, state: 'queued' }) },
  ]);
  await h.waitFor(isType('cancelled', second.job.id));
});

test('pause and resume write the audit row and the setting in one transaction: a failed setting leaves no audit row', async () => {
  h = startService(tempDir(), admins);
  h.db.exec(`CREATE TEMP TRIGGER refuse_pause BEFORE INSERT ON settings BEGIN SELECT RAISE(ABORT, 'settings are read-only'); END`);
  await expect(h.service.pauseQueue(adminInGuild)).rejects.toThrow(/read-only/);
  expect(rows()).toEqual([]);
  expect(h.service.queue().paused).toBe(false);
  h.db.exec(`DROP TRIGGER refuse_pause`);
  await h.service.pauseQueue(adminInGuild);
  await h.service.resumeQueue(adminInGuild);
  expect(rows().map((row) => (row as { action: string }).action)).toEqual(['queue.pause', 'queue.resume']);
});

test('the audit log reads newest first, in pages, since a time; only admins may read it', async () => {
  let clock = Date.UTC(2026, 0, 1);
  h = startService(tempDir(), admins, { now: () => clock });
  for (let i = 0; i < 5; i++) {
    clock += 60_000;
    await h.service.setQuota(adminInGuild, { platform: 'discord', externalId: `user-${i}` }, { tier: 'pro' });
  }
  const page1 = h.service.auditLog(adminInGuild, { limit: 2 });
  expect(page1.map((entry) => entry.target)).toEqual(['discord:user-4', 'discord:user-3']);
  const page2 = h.service.auditLog(adminInGuild, { limit: 2, beforeId: page1.at(-1)!.id });
  expect(page2.map((entry) => entry.target)).toEqual(['discord:user-2', 'discord:user-1']);
  expect(h.service.auditLog(adminInGuild, { limit: 10, since: Date.UTC(2026, 0, 1, 0, 4) }).map((entry) => entry.target)).toEqual(['discord:user-4', 'discord:user-3']);
  expect(page1[0]).toMatchObject({ platform: 'discord', actorId: 'admin-1', groupId: 'guild-9', channelId: 'chan-3', action: 'quota.set', details: { tier: 'pro' } });
  expect(() => h!.service.auditLog(alice, { limit: 2 })).toThrow(expect.objectContaining({ code: ErrorCode.NotAdmin }));
});

test('reelbot audit prints the log with --limit and --since', async () => {
  let clock = Date.UTC(2026, 0, 1);
  h = startService(tempDir(), admins, { now: () => clock });
  await h.service.pauseQueue(adminInGuild);
  clock = Date.UTC(2026, 0, 3);
  await h.service.setBanned(adminInGuild, { platform: 'discord', externalId: 'spammer' }, true, 'spam');
  await h.service.resumeQueue({ platform: 'cli', externalId: 'operator' });
  const run = async (args: string[]) => {
    let stdout = '';
    let stderr = '';
    const code = await main(['node', 'reelbot', 'audit', ...args], {
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text) },
      env: { REELBOT_DB_PATH: h!.config.dbPath },
    });
    return { code, stdout, stderr };
  };
  const all = await run([]);
  expect(all).toMatchObject({ code: 0, stderr: '' });
  const lines = all.stdout.trim().split('\n');
  expect(lines[0]).toMatch(/^ID\s+TIME\s+BY\s+WHERE\s+ACTION\s+TARGET\s+DETAILS$/);
  expect(lines.slice(1).map((line) => line.split(/\s{2,}/).slice(2, 6))).toEqual([
    ['cli:operator', '-', 'queue.resume', '-'],
    ['discord:admin-1', 'guild-9/chan-3', 'user.ban', 'discord:spammer'],
    ['discord:admin-1', 'guild-9/chan-3', 'queue.pause', '-'],
  ]);
  expect(lines[2]).toContain('{"reason":"spam"}');
  const limited = await run(['--limit', '1']);
  expect(limited.stdout.trim().split('\n')).toHaveLength(2);
  const since = await run(['--since', '2026-01-02', '--json']);
  expect(since.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { action: string }).action)).toEqual(['queue.resume', 'user.ban']);
  const none = await run(['--since', '2027-01-01']);
  expect(none.stdout).toBe('No admin actions since 2027-01-01T00:00:00.000Z.\n');
  const bad = await run(['--limit', 'zero']);
  expect(bad.code).toBe(2);
});
