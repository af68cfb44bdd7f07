/**
 * What the bot adapters tell serve's metrics (connection up/down and reconnects, ack times, 429s)
 * and `/admin dashboard` (Discord) and `/reelbot-admin dashboard` (Slack): a private one-time
 * link that signs the admin in, refused to others.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PlatformObserver } from '../../src/bots/shared/platform-observer.js';
import type { DiscordAdapter } from '../../src/bots/discord/discord-adapter.js';
import type { SlackAdapter } from '../../src/bots/slack/slack-adapter.js';
import { FakeDiscord, snowflake } from '../fakes/fake-discord.js';
import { FakeSlack } from '../fakes/fake-slack.js';
import { MP4_ENGINE, isOriginalEdit, newAdapter as newDiscordAdapter } from '../bots/discord/setup.js';
import { newAdapter as newSlackAdapter } from '../bots/slack/setup.js';
import { startDashboard, type Dashboard } from '../helpers/dashboard.js';
import { removeDir, startService, tempDir, type Harness } from '../helpers/harness.js';

/** Records what an adapter reports. */
function recorder(): PlatformObserver & { events: string[]; acks: number[] } {
  const events: string[] = [];
  const acks: number[] = [];
  return {
    events,
    acks,
    connection: (up) => void events.push(up ? 'up' : 'down'),
    reconnected: () => void events.push('reconnected'),
    acked: (ms) => void acks.push(ms),
    rateLimited: () => void events.push('rate-limited'),
  };
}

async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Signs in with a link's token the way the browser's form does; returns the status and whether a session cookie came back. */
async function useLink(dashboard: Dashboard, url: string): Promise<{ status: number; cookie: boolean }> {
  const token = new URL(url).searchParams.get('token') ?? '';
  const answer = await dashboard.http.app.inject({ method: 'POST', url: '/login', payload: `token=${token}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  return { status: answer.statusCode, cookie: String(answer.headers['set-cookie'] ?? '').includes('reelbot_session=') };
}

const linkRows = (harness: Harness) => harness.db.prepare('SELECT count(*) FROM dashboard_links').pluck().get() as number;

let dir: string;
let harness: Harness;
let dashboard: Dashboard;

describe('Discord', () => {
  const admin = { id: snowflake(), username: 'ops' };
  const alice = { id: snowflake(), username: 'alice' };
  let fake: FakeDiscord;
  let adapter: DiscordAdapter;
  let observer: ReturnType<typeof recorder>;

  beforeEach(async () => {
    dir = tempDir();
    harness = startService(dir, { engineModule: MP4_ENGINE, admins: { discord: [admin.id] }, http: { port: 0 } });
    dashboard = await startDashboard({ config: harness.config, db: harness.db, jobs: harness.service });
    fake = await FakeDiscord.start();
    observer = recorder();
    adapter = newDiscordAdapter(fake, harness.service, dir, {
      adminIds: [admin.id],
      observer,
      dashboardLinks: { link: (actor) => dashboard.http.dashboardLink(actor), minutes: 10 },
    });
    await adapter.start();
  });

  afterEach(async () => {
    await adapter.stop();
    await fake.close();
    await dashboard.close();
    await harness.close();
    removeDir(dir);
  });

  it('/admin dashboard answers an admin privately with a link that signs them in once; a non-admin gets none', async () => {
    const interaction = fake.subcommand(admin, 'admin', ['dashboard'], {});
    fake.sendInteraction(interaction);
    const edit = await fake.waitForRequest(isOriginalEdit(interaction.token));
    expect(fake.requestsFor(interaction)[0]?.body).toMatchObject({ type: 5, data: { flags: 64 } });
    const content = String((edit.body as { content?: string }).content);
    expect(content).toContain('Only you can see this message');
    const url = /<(http:\/\/127\.0\.0\.1:\d+\/login\?token=[\w-]+)>/.exec(content)?.[1];
    expect(url, content).toBeDefined();
    expect(await useLink(dashboard, url!)).toEqual({ status: 303, cookie: true });
    expect(await useLink(dashboard, url!)).toEqual({ status: 401, cookie: false });

    const refused = fake.subcommand(alice, 'admin', ['dashboard'], {});
    fake.sendInteraction(refused);
    const answer = await fake.waitForRequest(isOriginalEdit(refused.token));
    expect(String((answer.body as { content?: string }).content)).toContain('Only the bot admins');
    expect(linkRows(harness)).toBe(1);
  });

  it('reports the connection, a reconnect after the gateway drops, ack times and 429s', async () => {
    await until(() => observer.events.includes('up'), 'the connection');
    fake.rateLimit('PATCH', /\/messages\/@original$/, 0.05);
    const interaction = fake.slashCommand(alice, { prompt: 'a corgi' });
    fake.sendInteraction(interaction);
    await until(() => observer.acks.length === 1, 'the ack');
    expect(observer.acks[0]).toBeGreaterThanOrEqual(0);
    expect(observer.acks[0]).toBeLessThan(3000);
    await until(() => observer.events.includes('rate-limited'), 'the 429');
    fake.closeGateway(4000);
    await until(() => observer.events.includes('reconnected'), 'the reconnect');
    const afterStart = observer.events.filter((event) => event !== 'rate-limited');
    expect(afterStart.slice(0, 2)).toEqual(['up', 'down']);
    expect(afterStart.slice(-2)).toEqual(['reconnected', 'up']);
    expect(dashboard.http.metrics.connected('discord')).toBe(false); // this test's observer is not serve's
  });
});

describe('Slack', () => {
  const admin = { id: 'UADMIN001', name: 'root' };
  const alice = { id: 'UALICE001', name: 'alice' };
  let fake: FakeSlack;
  let adapter: SlackAdapter;
  let observer: ReturnType<typeof recorder>;

  beforeEach(async () => {
    dir = tempDir();
    harness = startService(dir, { engineModule: MP4_ENGINE, admins: { slack: [admin.id] }, http: { port: 0 } });
    dashboard = await startDashboard({ config: harness.config, db: harness.db, jobs: harness.service });
    fake = await FakeSlack.start();
    observer = recorder();
    adapter = newSlackAdapter(fake, harness.service, dir, {
      adminIds: [admin.id],
      observer,
      dashboardLinks: { link: (actor) => dashboard.http.dashboardLink(actor), minutes: 10 },
    });
    await adapter.start();
    await fake.connected();
  });

  afterEach(async () => {
    await adapter.stop();
    await fake.close();
    await dashboard.close();
    await harness.close();
    removeDir(dir);
  });

  it('/reelbot-admin dashboard answers an admin privately with a working link; a non-admin is refused', async () => {
    // It writes (the link's row): acked at once, answered privately on the response_url.
    const sent = fake.slashCommand('/reelbot-admin', 'dashboard', admin);
    expect((await sent.ack).payload?.text).toBeUndefined();
    const reply = await fake.waitForRequest((r) => r.method === 'response' && r.path === new URL(String(sent.payload.response_url)).pathname);
    expect(reply.body.response_type).toBe('ephemeral');
    const url = /<(http:\/\/127\.0\.0\.1:\d+\/login\?token=[\w-]+)>/.exec(String(reply.body.text))?.[1];
    expect(url, String(reply.body.text)).toBeDefined();
    expect(await useLink(dashboard, url!)).toEqual({ status: 303, cookie: true });
    const refused = await fake.slashCommand('/reelbot-admin', 'dashboard', alice).ack;
    expect(String(refused.payload?.text)).toBe('Only the bot admins can use /reelbot-admin.');
    expect(linkRows(harness)).toBe(1);
    expect(observer.acks).toHaveLength(2);
    for (const ms of observer.acks) expect(ms).toBeLessThan(3000);
  });

  it('reports the Socket Mode connection and 429s of the Web API', async () => {
    await until(() => observer.events.includes('up'), 'the connection');
    fake.rateLimit('chat.postMessage', 1, 0);
    await adapter.app.client.chat.postMessage({ channel: 'C1', text: 'hello' });
    expect(observer.events).toContain('rate-limited');
    await adapter.stop();
    await until(() => observer.events.at(-1) === 'down', 'the disconnect');
  });
});
