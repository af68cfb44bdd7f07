/**
 * `/reelbot` and `/reelbot-admin` on Slack: own usage and history for everyone; admin commands
 * allowed only to the Slack ids in the config's admin allowlist, each recorded in the audit log.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../../src/store/db.js';
import type { SlackAdapter } from '../../../src/bots/slack/slack-adapter.js';
import { FakeSlack } from '../../fakes/fake-slack.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { alice, bob, MP4_ENGINE, newAdapter } from './setup.js';

const admin = { id: 'UADMIN001', name: 'root' };

let dir: string;
let harness: Harness;
let fake: FakeSlack;
let adapter: SlackAdapter;

beforeEach(async () => {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE, admins: { slack: [admin.id] } });
  fake = await FakeSlack.start();
  adapter = newAdapter(fake, harness.service, dir, { adminIds: [admin.id] });
  await adapter.start();
  await fake.connected();
});

afterEach(async () => {
  await adapter.stop();
  await fake.close();
  await harness.close();
  removeDir(dir);
});

/**
 * Sends a slash command and returns what the user reads: the ack's ephemeral text, or, for a
 * command that writes (acked at once, before any write), the ephemeral reply on its response_url.
 */
async function say(user: { id: string; name?: string }, command: string, text: string): Promise<string> {
  const sent = fake.slashCommand(command, text, user);
  const ack = await sent.ack;
  if (ack.payload?.text === undefined) {
    const reply = await fake.waitForRequest((r) => r.method === 'response' && r.path === new URL(String(sent.payload.response_url)).pathname);
    expect(reply.body.response_type).toBe('ephemeral');
    return String(reply.body.text);
  }
  expect(ack.payload?.response_type).toBe('ephemeral');
  return String(ack.payload?.text);
}

const auditRows = () => harness.db.prepare(`SELECT actor_id, action, target FROM admin_audit ORDER BY id`).all() as { actor_id: string; action: string; target: string }[];

describe('SlackAdapter /reelbot and /reelbot-admin', () => {
  it('/reelbot usage shows the own quota and recent videos; /reelbot history lists them', async () => {
    const queued = await say(alice, '/video', 'a corgi');
    const jobId = Number(/Job #(\d+)/.exec(queued)?.[1]);
    await harness.waitFor(isType('succeeded', jobId), 30_000);
    const usage = await say(alice, '/reelbot', 'usage');
    expect(usage).toContain('*Your usage* · tier `free`');
    expect(usage).toMatch(/Today: 1 video of 20/);
    expect(usage).toContain(`#${jobId} done`);
    const history = await say(alice, '/reelbot', 'history');
    expect(history).toContain('*Your videos, page 1*');
    expect(history).toContain('“a corgi”');
    expect(await say(bob, '/reelbot', 'history')).toMatch(/no videos yet/);
    expect(await say(bob, '/reelbot', 'history two')).toMatch(/page must be a whole number/);
    expect(await say(bob, '/reelbot', 'dance')).toMatch(/Unknown command `dance`/);
    // /video usage is the same as /reelbot usage (as the Slack help text says).
    expect(await say(alice, '/video', 'usage')).toContain('*Your usage*');
  });

  it('a non-admin is refused every admin command, and nothing changes', async () => {
    for (const text of [`ban <@${bob.id}|bob>`, 'queue pause', 'usage', `quota set <@${bob.id}> jobs_per_day=1`]) {
      expect(await say(alice, '/reelbot-admin', text)).toBe('Only the bot admins can use /reelbot-admin.');
    }
    expect(auditRows()).toEqual([]);
    expect(harness.service.queue().paused).toBe(false);
    expect(await say(bob, '/video', 'a corgi')).toMatch(/is queued/);
  });

  it('an admin bans and unbans (audited), and the ban holds for /video', async () => {
    expect(await say(admin, '/reelbot-admin', `ban <@${bob.id}|bob> spamming`)).toBe(`<@${bob.id}> is banned: spamming. Their queued jobs are cancelled.`);
    expect(await say(bob, '/video', 'a corgi')).toMatch(/not allowed to make videos/);
    expect(await say(admin, '/reelbot-admin', `unban <@${bob.id}>`)).toBe(`<@${bob.id}> may make videos again.`);
    expect(await say(bob, '/video', 'a corgi')).toMatch(/is queued/);
    expect(auditRows().map((r) => [r.actor_id, r.action, r.target])).toEqual([
      [admin.id, 'user.ban', `slack:${bob.id}`],
      [admin.id, 'user.unban', `slack:${bob.id}`],
    ]);
  });

  it('quota set changes a user\'s limits; usage reports per user; queue pause and resume', async () => {
    expect(await say(admin, '/reelbot-admin', `quota set <@${bob.id}|bob> jobs_per_day=1`)).toBe(`Quota of <@${bob.id}>: tier default; jobsPerDay 1.`);
    const first = await say(bob, '/video', 'a corgi');
    await harness.waitFor(isType('succeeded', Number(/Job #(\d+)/.exec(first)?.[1])), 30_000);
    expect(await say(bob, '/video', 'a second corgi')).toMatch(/limit|quota|today/i);

    const report = await say(admin, '/reelbot-admin', `usage <@${bob.id}> today`);
    expect(report).toContain(`*Usage of <@${bob.id}>, today (UTC)*`);
    expect(report).toContain('Total: 1 job');

    expect(await say(admin, '/reelbot-admin', 'queue pause')).toMatch(/paused/);
    expect(harness.service.queue().paused).toBe(true);
    expect(await say(admin, '/reelbot-admin', 'queue resume')).toMatch(/running again/);
    expect(harness.service.queue().paused).toBe(false);
    expect(await say(admin, '/reelbot-admin', 'stats all')).toMatch(/\*Stats, all time\*/);
    expect(auditRows().map((r) => [r.actor_id, r.action])).toEqual([
      [admin.id, 'quota.set'],
      [admin.id, 'queue.pause'],
      [admin.id, 'queue.resume'],
    ]);
  });

  it('commands that write are acked at once while another process holds the write lock, and answered when it is gone', async () => {
    const locker = openDatabase(harness.config.dbPath);
    locker.exec('BEGIN IMMEDIATE');
    try {
      const pause = fake.slashCommand('/reelbot-admin', 'queue pause', admin);
      const ack = await pause.ack;
      expect(ack.at - pause.at).toBeLessThan(1000);
      const usage = fake.slashCommand('/reelbot', 'usage', alice);
      expect((await usage.ack).at - usage.at).toBeLessThan(1000);
      await new Promise((resolve) => setTimeout(resolve, 800));
      expect(harness.service.queue().paused).toBe(false);
    } finally {
      locker.exec('COMMIT');
      locker.close();
    }
    const reply = await fake.waitForRequest((r) => r.method === 'response' && String(r.body.text).includes('paused'));
    expect(reply.body).toMatchObject({ response_type: 'ephemeral', text: 'The queue is paused: running jobs finish, new ones wait.' });
    expect(harness.service.queue().paused).toBe(true);
  });

  it('/reelbot-admin audit pages through the audit log with where each action ran', async () => {
    await say(admin, '/reelbot-admin', 'queue pause');
    await say(admin, '/reelbot-admin', `ban <@${bob.id}|bob> spamming`);
    const rows = harness.db.prepare(`SELECT action, group_id, channel_id FROM admin_audit ORDER BY id`).all();
    expect(rows).toEqual([
      { action: 'queue.pause', group_id: 'T0000TEAM', channel_id: 'C0000CHAN' },
      { action: 'user.ban', group_id: 'T0000TEAM', channel_id: 'C0000CHAN' },
    ]);
    const page = await say(admin, '/reelbot-admin', 'audit');
    const lines = page.split('\n');
    expect(lines[0]).toBe('*Audit log, page 1*');
    expect(lines[1]).toMatch(new RegExp(`^• .* UTC · <@${admin.id}> \`user.ban\` <@${bob.id}> \\(reason “spamming”\\) in <#C0000CHAN>$`));
    expect(lines[2]).toContain('`queue.pause`');
    expect(await say(admin, '/reelbot-admin', 'audit 2')).toBe('Page 2 of the audit log is empty.');
    expect(await say(admin, '/reelbot-admin', 'audit last')).toMatch(/audit takes a page number/);
    expect(await say(alice, '/reelbot-admin', 'audit')).toBe('Only the bot admins can use /reelbot-admin.');
  });

  it('mistakes in admin commands get the usage lines, not a stack trace', async () => {
    const answer = await say(admin, '/reelbot-admin', 'quota set bob jobs_per_day=1');
    expect(answer).toContain('`bob` is not a Slack user mention.');
    expect(answer).toContain('/reelbot-admin quota set @user');
    expect(await say(admin, '/reelbot-admin', `quota set <@${bob.id}> jobs_per_day=-3`)).toMatch(/jobs_per_day must be a whole number/);
    expect(await say(admin, '/reelbot-admin', 'queue explode')).toMatch(/queue takes pause, resume or clear/);
    expect(await say(admin, '/reelbot-admin', 'launch')).toMatch(/Unknown admin command `launch`/);
    expect(auditRows()).toEqual([]);
  });
});
