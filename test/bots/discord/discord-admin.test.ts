/**
 * `/admin …` end to end: a real discord.js Client on the fake Discord, a real JobService whose admin
 * allowlist holds one Discord id. Every subcommand answers ephemerally after a deferred ack; the
 * JobService decides who is an admin, and a refused call changes nothing.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import { actorOf, isFirstAnswer, isOriginalEdit, MP4_ENGINE, newAdapter } from './setup.js';
import { FakeDiscord, snowflake, type FakeUser } from '../../fakes/fake-discord.js';
import { isType, removeDir, startService, tempDir, video, type Harness } from '../../helpers/harness.js';

const admin = { id: snowflake(), username: 'admin' };
const alice = { id: snowflake(), username: 'alice' };
const bob = { id: snowflake(), username: 'bob' };
const NOT_ADMIN = 'Only the bot admins can do this.';

let dir: string;
let harness: Harness;
let fake: FakeDiscord;
let adapter: DiscordAdapter | undefined;

beforeEach(async () => {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE, admins: { discord: [admin.id], slack: [] } });
  fake = await FakeDiscord.start();
  adapter = newAdapter(fake, harness.service, dir);
  await adapter.start();
});

afterEach(async () => {
  await adapter?.stop();
  adapter = undefined;
  await fake.close();
  await harness.close();
  removeDir(dir);
});


/** Sends `/admin <path…>` and returns the reply's content, after checking the ephemeral ack came first. */
async function runAdmin(user: FakeUser, path: [string] | [string, string], options: Record<string, string | number | FakeUser | undefined> = {}): Promise<string> {
  const interaction = fake.subcommand(user, 'admin', path, options);
  fake.sendInteraction(interaction);
  const edit = await fake.waitForRequest(isOriginalEdit(interaction.token));
  const first = fake.requestsFor(interaction)[0];
  expect(first?.path).toBe(`/interactions/${interaction.id}/${interaction.token}/callback`);
  expect(first?.body).toMatchObject({ type: 5, data: { flags: 64 } });
  return (edit.body as { content?: string }).content ?? '';
}

/** Sends `/video prompt` and returns the first edit of its reply (queued message or refusal). */
async function videoReply(user: FakeUser, prompt: string): Promise<string> {
  const interaction = fake.slashCommand(user, { prompt });
  fake.sendInteraction(interaction);
  const edit = await fake.waitForRequest(isFirstAnswer(interaction.token));
  return (edit.body as { content?: string }).content ?? '';
}

describe('DiscordAdapter /admin', () => {
  it('registers /admin with default_member_permissions "32" and its subcommands', async () => {
    const put = await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`);
    const commands = put.body as { name: string; default_member_permissions?: string | null; options?: { name: string; type: number; options?: { name: string }[] }[] }[];
    const adminCommand = commands.find((c) => c.name === 'admin');
    expect(adminCommand?.default_member_permissions).toBe('32');
    expect(adminCommand?.options?.map((o) => [o.name, o.type])).toEqual([
      ['usage', 1],
      ['quota', 2],
      ['ban', 1],
      ['unban', 1],
      ['queue', 2],
      ['stats', 1],
      ['audit', 1],
      ['dashboard', 1],
    ]);
    expect(adminCommand?.options?.find((o) => o.name === 'queue')?.options?.map((o) => o.name)).toEqual(['pause', 'resume', 'clear']);
    expect(commands.find((c) => c.name === 'video')?.default_member_permissions ?? null).toBeNull();
  });

  it('refuses a user who is not on the allowlist, and changes nothing', async () => {
    expect(await runAdmin(alice, ['queue', 'pause'])).toBe(NOT_ADMIN);
    expect(harness.service.queue().paused).toBe(false);
    expect(await runAdmin(alice, ['queue', 'clear'])).toBe(NOT_ADMIN);
    expect(await runAdmin(alice, ['usage'])).toBe(NOT_ADMIN);
    expect(await runAdmin(alice, ['stats'])).toBe(NOT_ADMIN);
    expect(await runAdmin(alice, ['ban'], { user: bob, reason: 'spam' })).toBe(NOT_ADMIN);
    expect(await runAdmin(alice, ['unban'], { user: bob })).toBe(NOT_ADMIN);
    expect(await runAdmin(alice, ['quota', 'set'], { user: alice, jobs_per_day: 100 })).toBe(NOT_ADMIN);
    // Bob is not banned and Alice's quota is untouched.
    expect(harness.service.usage(actorOf(bob)).user.banned).toBe(false);
    expect(harness.service.usage(actorOf(alice)).limits.jobsPerDay).toBe(20);
  });

  it('/admin audit pages through the audit log, newest first, with where each action ran; only admins read it', async () => {
    await runAdmin(admin, ['queue', 'pause']);
    await runAdmin(admin, ['ban'], { user: bob, reason: 'spam' });
    await runAdmin(admin, ['queue', 'resume']);
    const rows = harness.db.prepare(`SELECT action, group_id, channel_id FROM admin_audit ORDER BY id`).all();
    expect(rows).toEqual(['queue.pause', 'user.ban', 'queue.resume'].map((action) => ({ action, group_id: fake.guildId, channel_id: fake.channelId })));
    const page = await runAdmin(admin, ['audit']);
    const lines = page.split('\n');
    expect(lines[0]).toBe('**Audit log, page 1**');
    expect(lines.slice(1).map((line) => /`([a-z.]+)`/.exec(line)?.[1])).toEqual(['queue.resume', 'user.ban', 'queue.pause']);
    expect(lines[2]).toMatch(new RegExp(`^• \\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2} UTC · <@${admin.id}> \`user.ban\` <@${bob.id}> \\(reason “spam”\\) in <#${fake.channelId}>$`));
    for (let i = 0; i < 9; i++) await harness.service.setQuota(actorOf(admin), { platform: 'discord', externalId: `user-${i}` }, { tier: 'pro' });
    expect(await runAdmin(admin, ['audit'])).toContain('_More on page 2._');
    const second = await runAdmin(admin, ['audit'], { page: 2 });
    expect(second.split('\n')).toHaveLength(3);
    expect(second).toContain('`queue.pause`');
    expect(await runAdmin(admin, ['audit'], { page: 3 })).toBe('Page 3 of the audit log is empty.');
    expect(await runAdmin(alice, ['audit'])).toBe(NOT_ADMIN);
  });

  it('pauses and resumes the queue', async () => {
    expect(await runAdmin(admin, ['queue', 'pause'])).toContain('paused');
    expect(harness.service.queue().paused).toBe(true);
    expect(await runAdmin(admin, ['queue', 'resume'])).toContain('running again');
    expect(harness.service.queue().paused).toBe(false);
  });

  it('clears the queue', async () => {
    await harness.service.pauseQueue({ platform: 'cli', externalId: 'operator' });
    const { job } = await harness.service.submit(video(actorOf(alice), { prompt: 'a waiting corgi' }));
    expect(await runAdmin(admin, ['queue', 'clear'])).toContain('1 job cancelled');
    expect(harness.service.status(job.id)?.job.state).toBe('cancelled');
  });

  it('bans a user, whose /video is then refused, and unbans them', async () => {
    expect(await runAdmin(admin, ['ban'], { user: bob, reason: 'spam' })).toBe(`<@${bob.id}> is banned: spam. Their queued jobs are cancelled.`);
    expect(await videoReply(bob, 'a corgi')).toBe('You are not allowed to make videos on this bot: spam');
    expect(await runAdmin(admin, ['unban'], { user: bob })).toBe(`<@${bob.id}> may make videos again.`);
    await harness.service.pauseQueue({ platform: 'cli', externalId: 'operator' });
    expect(await videoReply(bob, 'a corgi')).toContain('Job #');
  });

  it('quota set jobs_per_day 1: the second /video of the day is refused', async () => {
    await harness.service.pauseQueue({ platform: 'cli', externalId: 'operator' });
    expect(await runAdmin(admin, ['quota', 'set'], { user: alice, jobs_per_day: 1 })).toBe(`Quota of <@${alice.id}>: tier default; jobsPerDay 1.`);
    expect(harness.service.usage(actorOf(alice)).limits.jobsPerDay).toBe(1);
    expect(await videoReply(alice, 'the first corgi')).toContain('Job #');
    expect(await videoReply(alice, 'the second corgi')).toContain('You have used the 1 video of your daily quota.');
    expect(await runAdmin(admin, ['quota', 'set'], { user: alice, tier: 'no-such-tier' })).toContain('Unknown tier "no-such-tier"');
  });

  it('usage and stats show totals and counts', async () => {
    const { job } = await harness.service.submit(video(actorOf(alice), { prompt: 'a corgi surfing' }));
    await harness.waitFor(isType('succeeded', job.id));
    await harness.service.pauseQueue({ platform: 'cli', externalId: 'operator' });
    const waiting = await harness.service.submit(video(actorOf(bob), { prompt: 'a waiting cat' }));
    await harness.service.cancel(actorOf(bob), waiting.job.id);

    const usage = await runAdmin(admin, ['usage'], { period: 'month' });
    expect(usage).toContain('Usage, this month (UTC)');
    expect(usage).toMatch(/^Total: 1 job · GPU /m);
    expect(usage).toContain(`• <@${alice.id}>: 1 job`);

    const own = await runAdmin(admin, ['usage'], { user: bob, period: 'all' });
    expect(own).toContain(`Usage of <@${bob.id}>, all time`);
    expect(own).toContain('Total: 0 jobs');

    const stats = await runAdmin(admin, ['stats'], { period: 'today' });
    expect(stats).toContain('Stats, today (UTC)');
    expect(stats).toContain('Jobs: 2 (queued 0 · running 0 · succeeded 1 · failed 0 · cancelled 1)');
    expect(stats).toContain('Failure rate: 0.0%');
    expect(stats).toMatch(/Duration: p50 \d+ s · p95 \d+ s/);
  });
});
