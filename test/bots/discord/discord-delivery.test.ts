/**
 * Every finished job delivered, on Discord: the message refs are in the job row from its admission
 * on; an upload Discord refuses for a reason other than size is retried when it can be (5xx, a
 * dropped connection) and otherwise told to the user in the job's message with Re-roll; a channel
 * where the bot may not post (403 on the bot-token edits) is given up after the first refusal and
 * the outcome goes to its user privately instead (an ephemeral follow-up while the interaction
 * token lives, else a DM); and a job whose outcome was never delivered is resent at start, once.
 * A real discord.js Client on the fake Discord, a real JobService with worker processes making MP4s.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import type { JobRecord } from '../../../src/jobs/types.js';
import { FakeDiscord, snowflake, type RecordedRequest } from '../../fakes/fake-discord.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { actorOf, isOriginalEdit, MP4_ENGINE, newAdapter } from './setup.js';

interface Payload {
  content?: string;
  flags?: number;
  components?: { type: number; components: { custom_id: string; label: string }[] }[];
}

const alice = { id: snowflake(), username: 'alice' };

let dir: string;
let harness: Harness;
let fake: FakeDiscord;
let adapter: DiscordAdapter | undefined;

beforeEach(async () => {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE });
  fake = await FakeDiscord.start();
});
afterEach(async () => {
  await adapter?.stop().catch(() => undefined);
  adapter = undefined;
  await fake.close();
  await harness.close();
  removeDir(dir);
});

async function startAdapter(extra: Parameters<typeof newAdapter>[3] = {}): Promise<DiscordAdapter> {
  adapter = newAdapter(fake, harness.service, dir, { registerCommands: false, progressIntervalMs: 100, deliveryRetryDelaysMs: [50, 100], ...extra });
  await adapter.start();
  return adapter;
}

const payload = (request: RecordedRequest) => (request.body ?? {}) as Payload;
const labels = (request: RecordedRequest) => (payload(request).components ?? []).flatMap((row) => row.components.map((button) => button.label));
const isUploadTo = (token: string) => (r: RecordedRequest) => isOriginalEdit(token)(r) && r.files.length > 0;
const uploadRoute = (token: string) => new RegExp(`/${token}/messages/@original$`);
const channelEdits = () => fake.requests.filter((r) => r.method === 'PATCH' && r.path.startsWith(`/channels/${fake.channelId}/messages/`));
const delivered = (jobId: number) => harness.service.status(jobId)?.job.deliveredAt ?? null;

async function until(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out; seen: ${fake.requests.map((r) => `${r.method} ${r.path} ${r.status}`).join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Sends `/video prompt` and resolves with the interaction once its job has finished and its last message went out. */
async function videoAndWait(prompt: string): Promise<{ interaction: { id: string; token: string }; jobId: number; last: () => RecordedRequest }> {
  const interaction = fake.slashCommand(alice, { prompt });
  fake.sendInteraction(interaction);
  const finished = await harness.waitFor((event) => event.type === 'succeeded' || event.type === 'failed', 30_000);
  await until(() => delivered(finished.job.id) !== null);
  const last = () => fake.requests.filter(isOriginalEdit(interaction.token)).at(-1)!;
  return { interaction, jobId: finished.job.id, last };
}

describe('message refs', () => {
  it('are stored in the admission transaction: the job row has them when the job is first seen', async () => {
    await startAdapter();
    const atAdmission: unknown[] = [];
    harness.service.onEvent((event) => {
      if (event.type === 'queued') atAdmission.push(harness.service.status(event.job.id)?.job.messageRefs.discord);
    });
    const interaction = fake.slashCommand(alice, { prompt: 'a corgi' });
    fake.sendInteraction(interaction);
    await harness.waitFor(isType('queued'));
    expect(atAdmission).toEqual([expect.objectContaining({ interactionId: interaction.id, interactionToken: interaction.token, channelId: fake.channelId })]);
  });
});

describe('an upload Discord refuses for a reason other than size', () => {
  it('400 / 50035: not retried; the message says what happened, with Re-roll, instead of its last progress line', async () => {
    await startAdapter();
    fake.fail('PATCH', /\/messages\/@original$/, 400, { message: 'Invalid Form Body', code: 50035, errors: { files: { '0': { _errors: [{ code: 'BINARY_TYPE_MAX_SIZE', message: 'bad' }] } } } }, { uploadsOnly: true });
    const { interaction, jobId, last } = await videoAndWait('a corgi surfing');
    expect(fake.requests.filter(isUploadTo(interaction.token))).toHaveLength(1);
    expect(last().files).toHaveLength(0);
    expect(payload(last()).content).toMatch(new RegExp(`Job #${jobId}`));
    expect(payload(last()).content).toMatch(/Discord refused the upload/);
    expect(payload(last()).content).not.toMatch(/step \d/i);
    expect(labels(last())).toContain('Re-roll');
    expect(harness.service.status(jobId)?.job.state).toBe('succeeded');
  });

  it('500: retried with backoff after discord.js\'s own retries, then delivered', async () => {
    await startAdapter();
    // discord.js tries a 5xx four times at once; the fifth (our second try) fails too, the sixth goes through.
    fake.fail('PATCH', /\/messages\/@original$/, 500, { message: 'Internal Server Error', code: 0 }, { uploadsOnly: true, times: 5 });
    const { interaction, last } = await videoAndWait('a corgi surfing');
    const uploads = fake.requests.filter(isUploadTo(interaction.token));
    expect(uploads.map((r) => r.status)).toEqual([500, 500, 500, 500, 500, 200]);
    expect(last()).toBe(uploads.at(-1));
    expect(payload(last()).content).toMatch(/done/);
  });

  it('500 every time: after a few tries the user is told, with Re-roll', async () => {
    await startAdapter();
    fake.fail('PATCH', /\/messages\/@original$/, 503, { message: 'Service Unavailable', code: 0 }, { uploadsOnly: true, times: 1000 });
    const { interaction, jobId, last } = await videoAndWait('a corgi surfing');
    // Three tries of ours, each retried at once by discord.js (4 requests): then it stops.
    expect(fake.requests.filter(isUploadTo(interaction.token))).toHaveLength(12);
    expect(last().files).toHaveLength(0);
    expect(payload(last()).content).toMatch(new RegExp(`Job #${jobId}`));
    expect(payload(last()).content).toMatch(/Discord kept failing/);
    expect(labels(last())).toContain('Re-roll');
  });

  it('a dropped connection: retried, then delivered', async () => {
    await startAdapter();
    fake.dropConnection('PATCH', uploadRoute('[^/]+'), { uploadsOnly: true });
    const { interaction, last } = await videoAndWait('a corgi surfing');
    const uploads = fake.requests.filter(isUploadTo(interaction.token));
    expect(uploads.map((r) => r.status)).toEqual([0, 200]);
    expect(payload(last()).content).toMatch(/done/);
  });
});

describe('a channel where the bot may not post', () => {
  const forbidden = () => fake.fail('PATCH', /^\/channels\/\d+\/messages\/\d+$/, 403, { message: 'Missing Permissions', code: 50013 }, { times: 1000 });

  it('past the token switch: after the first 403 no edit is tried again, and the video comes as an ephemeral follow-up, once', async () => {
    // Every edit after the queued text goes through the bot token (the switch is at once here).
    await startAdapter({ tokenSwitchAfterMs: 0 });
    forbidden();
    const interaction = fake.slashCommand(alice, { prompt: 'a slow corgi' });
    fake.sendInteraction(interaction);
    const { job } = await harness.waitFor(isType('succeeded'), 30_000);
    await until(() => delivered(job.id) !== null);
    expect(channelEdits().map((r) => r.status)).toEqual([403]);
    const followUps = fake.requests.filter((r) => r.method === 'POST' && r.path === `/webhooks/${fake.applicationId}/${interaction.token}`);
    expect(followUps).toHaveLength(1);
    expect(payload(followUps[0]!).flags! & 64).toBe(64);
    expect(followUps[0]!.files[0]).toMatchObject({ contentType: 'video/mp4' });
    expect(payload(followUps[0]!).content).toMatch(/done/);
    expect(payload(followUps[0]!).content).toMatch(/cannot post in this channel/);
  });

  it('with the interaction token gone: the outcome comes as a DM to the owner, once', async () => {
    await startAdapter();
    forbidden();
    // A job from before a restart whose interaction token has expired: only the bot token is left.
    const messageId = snowflake();
    const refs = { applicationId: fake.applicationId, interactionId: snowflake(), interactionToken: 'expired-token', tokenExpiresAt: Date.now() - 60_000, channelId: fake.channelId, guildId: fake.guildId, messageId };
    const { job } = await harness.service.submit({ actor: actorOf(alice), kind: 'text2video', params: { prompt: 'a slow corgi' }, groupId: fake.guildId, channelId: fake.channelId, messageRefs: { discord: refs } });
    await harness.waitFor(isType('succeeded', job.id), 30_000);
    await until(() => delivered(job.id) !== null);
    expect(channelEdits().map((r) => r.status)).toEqual([403]);
    const dmChannel = fake.dmChannels.get(alice.id);
    expect(dmChannel).toBeDefined();
    const dms = fake.requests.filter((r) => r.method === 'POST' && r.path === `/channels/${dmChannel}/messages`);
    expect(dms).toHaveLength(1);
    expect(dms[0]!.files[0]).toMatchObject({ contentType: 'video/mp4' });
    expect(payload(dms[0]!).content).toMatch(new RegExp(`Job #${job.id}`));
    expect(fake.requests.some((r) => r.path.includes('expired-token'))).toBe(false);
  });
});

describe('a channel where the bot may not post, and an owner who takes no DMs', () => {
  it('the outcome is given up after the one DM try: marked delivered, nothing retried', async () => {
    await startAdapter();
    fake.fail('PATCH', /^\/channels\/\d+\/messages\/\d+$/, 403, { message: 'Missing Permissions', code: 50013 }, { times: 1000 });
    fake.fail('POST', /^\/channels\/\d+\/messages$/, 403, { message: 'Cannot send messages to this user', code: 50007 }, { times: 1000 });
    const refs = { applicationId: fake.applicationId, interactionId: snowflake(), interactionToken: 'expired-token', tokenExpiresAt: Date.now() - 60_000, channelId: fake.channelId, guildId: fake.guildId, messageId: snowflake() };
    const { job } = await harness.service.submit({ actor: actorOf(alice), kind: 'text2video', params: { prompt: 'a corgi' }, groupId: fake.guildId, channelId: fake.channelId, messageRefs: { discord: refs } });
    await harness.waitFor(isType('succeeded', job.id), 30_000);
    await until(() => delivered(job.id) !== null);
    expect(channelEdits().map((r) => r.status)).toEqual([403]);
    expect(fake.requests.filter((r) => r.method === 'POST' && /^\/channels\/\d+\/messages$/.test(r.path)).map((r) => r.status)).toEqual([403]);
  });
});

describe('the outbox', () => {
  it('at start, the outcomes never delivered (a success, a failure, a cancel) are sent once each and marked', async () => {
    // Three jobs finish while no adapter runs (as if the process had died before posting them).
    const refsFor = (token: string) => ({ applicationId: fake.applicationId, interactionId: snowflake(), interactionToken: token, tokenExpiresAt: Date.now() + 10 * 60_000, channelId: fake.channelId, guildId: fake.guildId });
    const submit = (prompt: string, token: string) =>
      harness.service.submit({ actor: actorOf(alice), kind: 'text2video', params: { prompt }, groupId: fake.guildId, channelId: fake.channelId, messageRefs: { discord: refsFor(token) } });
    const ok = (await submit('a corgi', 'token-ok')).job;
    const failed = (await submit('a corgi that will fail', 'token-failed')).job;
    const cancelled = (await submit('a slow corgi', 'token-cancelled')).job;
    await harness.service.cancel(actorOf(alice), cancelled.id);
    await harness.waitFor(isType('succeeded', ok.id), 30_000);
    await harness.waitFor(isType('failed', failed.id), 30_000);
    await harness.waitFor(isType('cancelled', cancelled.id), 30_000);
    expect(harness.service.undeliveredOutcomes('discord').map((event: { job: JobRecord }) => event.job.id).sort()).toEqual([ok.id, failed.id, cancelled.id].sort());

    await startAdapter();
    await until(() => [ok, failed, cancelled].every((job) => delivered(job.id) !== null));
    const editsOf = (token: string) => fake.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith(`/${token}/messages/@original`));
    expect(editsOf('token-ok')).toHaveLength(1);
    expect(editsOf('token-ok')[0]!.files[0]).toMatchObject({ contentType: 'video/mp4' });
    expect(editsOf('token-failed').map((r) => payload(r).content)).toEqual([expect.stringMatching(/failed/)]);
    expect(editsOf('token-cancelled').map((r) => payload(r).content)).toEqual([expect.stringMatching(/cancelled/)]);

    // A second adapter (the next start) sends nothing again.
    const before = fake.requests.length;
    await adapter!.stop();
    await startAdapter();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(fake.requests.slice(before).filter((r) => r.path.startsWith('/webhooks/'))).toHaveLength(0);
  });
});
