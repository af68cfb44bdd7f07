/**
 * `/video` end to end: a real Bolt App in Socket Mode on the fake Slack, a real JobService with
 * worker processes running the MP4 test engine, real ffmpeg.
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JobService } from '../../../src/jobs/job-service.js';
import type { JobRequest } from '../../../src/jobs/types.js';
import type { SlackAdapter } from '../../../src/bots/slack/slack-adapter.js';
import { FakeSlack } from '../../fakes/fake-slack.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { alice, bob, buttonsOf, CHANNEL, isMethod, MP4_ENGINE, newAdapter, textOf } from './setup.js';

let dir: string;
let harness: Harness;
let fake: FakeSlack;
let adapter: SlackAdapter | undefined;

beforeEach(async () => {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE });
  fake = await FakeSlack.start();
});

afterEach(async () => {
  await adapter?.stop();
  adapter = undefined;
  await fake.close();
  await harness.close();
  removeDir(dir);
});

async function startAdapter(extra: Parameters<typeof newAdapter>[3] = {}): Promise<SlackAdapter> {
  adapter = newAdapter(fake, harness.service, dir, extra);
  await adapter.start();
  await fake.connected();
  return adapter;
}

const jobIdOf = (text: string) => Number(/Job #(\d+)/.exec(text)?.[1]);

/** The job service with a submit that takes `ms` longer (a slow disk or a busy database). */
function slowSubmits(service: JobService, ms: number): JobService {
  return new Proxy(service, {
    get(target, key) {
      if (key === 'submit') return async (request: JobRequest) => (await sleep(ms), target.submit(request));
      const value = Reflect.get(target, key, target) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe('SlackAdapter /video', () => {
  it('connects with auth.test and apps.connections.open (app token), then Socket Mode hello', async () => {
    await startAdapter();
    expect(fake.calls('auth.test')[0]?.headers.authorization).toBe('Bearer xoxb-fake-bot-token');
    expect(fake.calls('apps.connections.open')[0]?.headers.authorization).toBe('Bearer xapp-fake-app-token');
  });

  it('acks at once with the ephemeral queued text, shows progress in one message, uploads the MP4 and keeps Re-roll / Cancel', async () => {
    await startAdapter();
    const sent = fake.slashCommand('/video', 'a slow corgi surfing --frames 8 --seed 7', alice);
    const ack = await sent.ack;
    expect(ack.at - sent.at).toBeLessThan(3000);
    expect(ack.payload).toMatchObject({ response_type: 'ephemeral' });
    const ackText = String(ack.payload?.text);
    expect(ackText).toMatch(/\*Job #\d+\* is queued: (running now|next in line)/);
    expect(ackText).toContain('a slow corgi surfing');
    expect(ackText).toMatch(/videos? left today/);
    const jobId = jobIdOf(ackText);
    // The queued notice carries the Cancel button.
    expect(buttonsOf({ blocks: ack.payload?.blocks })).toEqual([`v1:cancel:${jobId}`]);
    expect(harness.service.status(jobId)?.job.params).toMatchObject({ prompt: 'a slow corgi surfing', numFrames: 8 });
    expect(harness.service.status(jobId)?.job.seed).toBe(7);

    const complete = await fake.waitForRequest(isMethod('files.completeUploadExternal'), 30_000);
    const final = await fake.waitForRequest((r) => r.method === 'chat.update' && /done/.test(textOf(r)));

    // One public message: posted once, then only updated.
    const posts = fake.calls('chat.postMessage');
    expect(posts).toHaveLength(1);
    expect(posts[0]!.body.channel).toBe(CHANNEL);
    const statusTs = fake.message(CHANNEL, fake.channels.get(CHANNEL)![0]!.ts)!.ts;
    const updates = fake.calls('chat.update');
    expect(updates.every((u) => u.body.ts === statusTs)).toBe(true);
    const progress = updates.filter((u) => /denoising/.test(textOf(u)));
    expect(progress.length).toBeGreaterThan(0);
    // Throttled: progress edits of the message are at least the interval apart (200 ms in tests);
    // the final edit replaces whatever progress was waiting.
    const edits = updates.filter((u) => !/done/.test(textOf(u)));
    for (let i = 1; i < edits.length; i++) expect(edits[i]!.at - edits[i - 1]!.at).toBeGreaterThanOrEqual(150);

    // uploadV2's order: URL, bytes (a real MP4), completion into the channel with the comment.
    const order = fake.requests.map((r) => r.method).filter((m) => ['files.getUploadURLExternal', 'upload', 'files.completeUploadExternal'].includes(m));
    expect(order).toEqual(['files.getUploadURLExternal', 'upload', 'files.completeUploadExternal']);
    const upload = fake.calls('upload')[0]!;
    expect(upload.bytes!.subarray(4, 8).toString('latin1')).toBe('ftyp');
    expect(fake.calls('files.getUploadURLExternal')[0]!.body.filename).toBe(`reelbot-${jobId}.mp4`);
    expect(complete.body.channel_id).toBe(CHANNEL);
    expect(complete.body.thread_ts).toBeUndefined();
    expect(String(complete.body.initial_comment)).toContain(`<@${alice.id}>`);

    expect(textOf(final)).toMatch(new RegExp(`\\*Job #${jobId}\\* done: “a slow corgi surfing”`));
    expect(textOf(final)).toContain('seed `7`');
    expect(buttonsOf(final)).toEqual([`v1:reroll:${jobId}`, `v1:delete:${jobId}`]);
    // The refs let the job be followed after a restart.
    expect(harness.service.status(jobId)?.job.messageRefs.slack).toMatchObject({ channelId: CHANNEL, userId: alice.id, statusTs });
  });

  it('a result from untrained demo weights or a per-frame UNet says so; others do not', async () => {
    await startAdapter();
    const texts: string[] = [];
    for (const prompt of ['a corgi surfing', 'an untrained corgi', 'a per-frame corgi']) {
      const jobId = jobIdOf(String((await fake.slashCommand('/video', prompt, alice).ack).payload?.text));
      const final = await fake.waitForRequest((r) => r.method === 'chat.update' && new RegExp(`Job #${jobId}\\* done`).test(textOf(r)), 30_000);
      texts.push(textOf(final));
    }
    const [plain, untrained, perFrame] = texts as [string, string, string];
    expect(plain).not.toMatch(/untrained|flicker/);
    expect(untrained).toContain('_Made with untrained demo weights: it shows abstract patterns, not your prompt, until the operator sets a model folder');
    expect(untrained).not.toMatch(/flicker/);
    expect(perFrame).toContain('each frame was made on its own and the video may flicker._');
    expect(perFrame).not.toMatch(/untrained/);
  });

  it('a bad prompt or option gets a clear ephemeral refusal and no job', async () => {
    await startAdapter();
    const bad = await fake.slashCommand('/video', 'a corgi --frames many', alice).ack;
    expect(String(bad.payload?.text)).toMatch(/frames/i);
    expect(String(bad.payload?.text)).not.toMatch(/at .*\.ts:\d+/); // no stack trace
    const unknown = await fake.slashCommand('/video', 'a corgi --color red', alice).ack;
    expect(String(unknown.payload?.text)).toMatch(/--color/);
    const help = await fake.slashCommand('/video', '', alice).ack;
    expect(String(help.payload?.text)).toContain('/video a corgi surfing');
    expect(harness.service.history({ platform: 'slack', externalId: alice.id })).toHaveLength(0);
  });

  it('failure mode 5: the same command redelivered (Socket Mode retry) makes exactly one job', async () => {
    await startAdapter();
    const payload = fake.slashPayload('/video', 'a corgi', alice);
    const first = await fake.sendEnvelope('slash_commands', payload).ack;
    const again = await fake.sendEnvelope('slash_commands', payload, { retry_attempt: 1, retry_reason: 'timeout' }).ack;
    const third = await fake.sendEnvelope('slash_commands', payload, { retry_attempt: 2, retry_reason: 'timeout' }).ack;
    const jobId = jobIdOf(String(first.payload?.text));
    expect(String(again.payload?.text)).toMatch(new RegExp(`^This request already made job #${jobId}; it is (queued|running|succeeded)\\.$`));
    expect(String(third.payload?.text)).toContain(`already made job #${jobId}`);
    await harness.waitFor(isType('succeeded', jobId));
    expect(harness.service.history({ platform: 'slack', externalId: alice.id })).toHaveLength(1);
    expect(harness.db.prepare(`SELECT count(*) FROM jobs`).pluck().get()).toBe(1);
  });

  it('Cancel: the owner cancels, someone else is refused (ephemeral), Re-roll makes a new job with a new seed', async () => {
    await startAdapter();
    const ack = await fake.slashCommand('/video', 'a slow cat', alice).ack;
    const jobId = jobIdOf(String(ack.payload?.text));
    const post = await fake.waitForRequest(isMethod('chat.postMessage'));
    const message = fake.message(CHANNEL, fake.channels.get(CHANNEL)![0]!.ts)!;
    expect(buttonsOf(post)).toEqual([`v1:reroll:${jobId}`, `v1:cancel:${jobId}`]);

    const bobUrl = fake.responseUrl();
    await fake.clickButton(bob, CHANNEL, message, `v1:cancel:${jobId}`, bobUrl).ack;
    const refused = await fake.waitForRequest((r) => r.method === 'response' && r.path.endsWith(new URL(bobUrl).pathname));
    expect(refused.body).toMatchObject({ response_type: 'ephemeral' });
    expect(String(refused.body.text)).toMatch(/belongs to someone else/);

    await fake.clickButton(alice, CHANNEL, message, `v1:cancel:${jobId}`).ack;
    await harness.waitFor(isType('cancelled', jobId));
    const cancelledEdit = await fake.waitForRequest((r) => r.method === 'chat.update' && /was cancelled/.test(textOf(r)));
    expect(textOf(cancelledEdit)).toContain(`*Job #${jobId}* was cancelled.`);

    const rerollUrl = fake.responseUrl();
    await fake.clickButton(bob, CHANNEL, message, `v1:reroll:${jobId}`, rerollUrl).ack;
    const queued = await fake.waitForRequest((r) => r.method === 'response' && r.path.endsWith(new URL(rerollUrl).pathname));
    const newId = jobIdOf(String(queued.body.text));
    expect(newId).not.toBe(jobId);
    const rerolled = harness.service.status(newId)!.job;
    expect(rerolled.params).toEqual(harness.service.status(jobId)!.job.params);
    expect(rerolled.userExternalId).toBe(bob.id);
    await harness.waitFor(isType('succeeded', newId), 30_000);
  });

  it('🗑 Delete under a delivered video: someone else is refused privately; the owner\'s click removes the stored video, the upload and the message', async () => {
    await startAdapter();
    const ack = await fake.slashCommand('/video', 'a corgi surfing', alice).ack;
    const jobId = jobIdOf(String(ack.payload?.text));
    const complete = await fake.waitForRequest(isMethod('files.completeUploadExternal'), 30_000);
    const final = await fake.waitForRequest((r) => r.method === 'chat.update' && /done/.test(textOf(r)));
    expect(buttonsOf(final)).toEqual([`v1:reroll:${jobId}`, `v1:delete:${jobId}`]);
    const status = fake.message(CHANNEL, String(final.body.ts))!;
    const file = (harness.service.status(jobId)!.job.result as { file: string }).file;
    const uploadedId = (complete.body.files as { id: string }[])[0]!.id;

    const bobUrl = fake.responseUrl();
    await fake.clickButton(bob, CHANNEL, status, `v1:delete:${jobId}`, bobUrl).ack;
    const refused = await fake.waitForRequest((r) => r.method === 'response' && r.path.endsWith(new URL(bobUrl).pathname));
    expect(String(refused.body.text)).toMatch(/belongs to someone else/);
    expect(existsSync(file)).toBe(true);

    const aliceUrl = fake.responseUrl();
    await fake.clickButton(alice, CHANNEL, status, `v1:delete:${jobId}`, aliceUrl).ack;
    const answer = await fake.waitForRequest((r) => r.method === 'response' && r.path.endsWith(new URL(aliceUrl).pathname));
    expect(answer.body).toMatchObject({ response_type: 'ephemeral', text: `Deleted job #${jobId}'s video and its message.` });
    expect(existsSync(file)).toBe(false);
    expect(fake.calls('files.delete').map((c) => c.body.file)).toEqual([uploadedId]);
    expect(fake.calls('chat.delete').map((c) => c.body.ts)).toEqual([status.ts]);
    expect(fake.message(CHANNEL, status.ts)).toBeUndefined();
  });

  it('failure mode 10: 429s on progress edits are skipped until Retry-After, and never hold up the job', async () => {
    await startAdapter();
    fake.rateLimit('chat.update', 1, 2);
    const ack = await fake.slashCommand('/video', 'a slow fox', alice).ack;
    const jobId = jobIdOf(String(ack.payload?.text));
    const succeeded = await harness.waitFor(isType('succeeded', jobId), 30_000);
    const limited = fake.requests.find((r) => r.method === 'chat.update' && r.status === 429)!;
    expect(limited).toBeDefined();
    // The job finished on its own schedule: 6 × 300 ms, not waiting on the 2 s Retry-After.
    expect(succeeded.job.finishedAt! - succeeded.job.startedAt!).toBeLessThan(4000);
    const final = await fake.waitForRequest((r) => r.method === 'chat.update' && /done/.test(textOf(r)) && r.status === 200, 30_000);
    // No progress edit went out within the Retry-After window after the 429.
    const duringWindow = fake.requests.filter((r) => r.method === 'chat.update' && r.at > limited.at && r.at < limited.at + 1900 && /denoising/.test(textOf(r)));
    expect(duringWindow).toEqual([]);
    expect(final.at).toBeGreaterThan(limited.at);
  });

  it('failure mode 6: a response_url already used 5 times is left alone; the bot token answers instead', async () => {
    await startAdapter();
    const ack = await fake.slashCommand('/video', 'a slow owl', alice).ack;
    const jobId = jobIdOf(String(ack.payload?.text));
    await fake.waitForRequest(isMethod('chat.postMessage'));
    const message = fake.message(CHANNEL, fake.channels.get(CHANNEL)![0]!.ts)!;
    const shared = fake.responseUrl();
    // Bob clicks Cancel seven times on a job that is not his: each answer is a private notice.
    for (let i = 0; i < 7; i++) await fake.clickButton(bob, CHANNEL, message, `v1:cancel:${jobId}`, shared).ack;
    await fake.waitForCount(isMethod('chat.postEphemeral'), 2);
    const viaUrl = fake.requests.filter((r) => r.method === 'response' && r.path === new URL(shared).pathname);
    expect(viaUrl).toHaveLength(5);
    expect(viaUrl.every((r) => r.status === 200)).toBe(true);
    const ephemerals = fake.calls('chat.postEphemeral');
    expect(ephemerals).toHaveLength(2);
    expect(ephemerals[0]!.body).toMatchObject({ channel: CHANNEL, user: bob.id });
  });

  it('failure mode 6: after 30 minutes a slow submit answer goes through chat.postEphemeral, not the stale response_url', async () => {
    let now = Date.now();
    await startAdapter({ now: () => now, ackDeadlineMs: 100, jobs: slowSubmits(harness.service, 400) });
    const sent = fake.slashCommand('/video', 'a corgi', alice);
    // The ack deadline passes first: a short ack, then the queued text separately, 31 min later.
    const ack = await sent.ack;
    now += 31 * 60 * 1000;
    expect(ack.payload?.text).toBe('Working on it…');
    const late = await fake.waitForRequest(isMethod('chat.postEphemeral'));
    expect(textOf(late)).toMatch(/Job #\d+\* is queued/);
    expect(fake.requests.filter((r) => r.method === 'response')).toEqual([]);
  });

  it('within its lifetime, a slow submit answer goes through the response_url', async () => {
    await startAdapter({ ackDeadlineMs: 100, jobs: slowSubmits(harness.service, 400) });
    const sent = fake.slashCommand('/video', 'a corgi', alice);
    expect((await sent.ack).payload?.text).toBe('Working on it…');
    const late = await fake.waitForRequest((r) => r.method === 'response' && r.path === new URL(String(sent.payload.response_url)).pathname);
    expect(late.body).toMatchObject({ response_type: 'ephemeral' });
    expect(String(late.body.text)).toMatch(/Job #\d+\* is queued/);
    // The use is counted in the job's stored refs, so the 5-use budget holds after a restart.
    const jobId = jobIdOf(String(late.body.text));
    await expect.poll(() => (harness.service.status(jobId)?.job.messageRefs.slack as { responseUrl?: { uses: number } } | undefined)?.responseUrl?.uses).toBe(1);
  });

  it('a retry that arrives while its first delivery is still being admitted is acked at once, and makes no second job', async () => {
    await startAdapter({ ackDeadlineMs: 100, jobs: slowSubmits(harness.service, 1500) });
    const first = fake.slashCommand('/video', 'a patient crane', alice);
    const retry = fake.sendEnvelope('slash_commands', first.payload, { retry_attempt: 1, retry_reason: 'timeout' });
    const [firstAck, retryAck] = await Promise.all([first.ack, retry.ack]);
    // Before, the retry waited for the first's admission (1.5 s here) before it was acked.
    expect(retryAck.at - retry.at).toBeLessThan(1000);
    expect(retryAck.payload?.text).toBe('Working on it…');
    expect(firstAck.payload?.text).toBe('Working on it…');
    const late = await fake.waitForRequest((r) => r.method === 'response' && r.path === new URL(String(first.payload.response_url)).pathname);
    expect(String(late.body.text)).toMatch(/Job #\d+\* is queued/);
    expect(harness.db.prepare(`SELECT count(*) FROM jobs WHERE platform = 'slack'`).pluck().get()).toBe(1);
  });

  it('failure mode 7: a failed POST to the upload URL gets a fresh upload; empty shares are fine', async () => {
    fake.emptyShares = true;
    fake.failUploads(3, 'halfway');
    await startAdapter();
    const ack = await fake.slashCommand('/video', 'a heron', alice).ack;
    const jobId = jobIdOf(String(ack.payload?.text));
    const final = await fake.waitForRequest((r) => r.method === 'chat.update' && /done/.test(textOf(r)), 30_000);
    expect(textOf(final)).toContain(`*Job #${jobId}* done`);
    const uploads = fake.calls('upload');
    expect(uploads.filter((u) => u.status === 0)).toHaveLength(3);
    expect(uploads.filter((u) => u.status === 200)).toHaveLength(1);
    expect(fake.calls('files.getUploadURLExternal')).toHaveLength(2);
    expect(fake.calls('files.completeUploadExternal')).toHaveLength(1);
  });

  it('an upload that keeps failing ends in a clear message on the job, with Re-roll', async () => {
    fake.failUploads(100, 'status');
    await startAdapter();
    const ack = await fake.slashCommand('/video', 'a crane', alice).ack;
    const jobId = jobIdOf(String(ack.payload?.text));
    const final = await fake.waitForRequest((r) => r.method === 'chat.update' && /failed/.test(textOf(r)), 30_000);
    expect(textOf(final)).toContain(`*Job #${jobId}* failed: Slack did not take the upload`);
    expect(buttonsOf(final)).toContain(`v1:reroll:${jobId}`);
    expect(fake.calls('files.completeUploadExternal')).toHaveLength(0);
  });

  it('a channel the bot is not in: refused privately before admission, with the /invite hint; no job, no charge', async () => {
    fake.notInChannel.add(CHANNEL);
    await startAdapter();
    const sent = fake.slashCommand('/video', 'a wren', alice);
    const ack = (await sent.ack).payload;
    expect(ack?.response_type).toBe('ephemeral');
    expect(String(ack?.text)).toMatch(/I am not a member of this channel/);
    expect(String(ack?.text)).toMatch(/\/invite <@U[A-Z0-9]+>/);
    expect(String(ack?.text)).toMatch(/Nothing was charged/);
    expect(fake.calls('conversations.info').map((r) => r.body.channel)).toEqual([CHANNEL]);
    expect(harness.db.prepare('SELECT count(*) FROM jobs').pluck().get()).toBe(0);
    expect(harness.db.prepare('SELECT count(*) FROM quota_ledger').pluck().get()).toBe(0);
    expect(fake.calls('chat.postMessage')).toHaveLength(0);
    expect(fake.channels.get(CHANNEL) ?? []).toEqual([]);

    // Once invited, the same command goes through (a refusal is not remembered).
    fake.notInChannel.delete(CHANNEL);
    const again = fake.slashCommand('/video', 'a wren', alice);
    const jobId = jobIdOf(String((await again.ack).payload?.text));
    expect(jobId).toBeGreaterThan(0);
    await harness.waitFor(isType('succeeded', jobId), 30_000);
  });

  it('a private channel the bot cannot see is refused the same way; a channel known to have the bot is not asked again', async () => {
    const hidden = 'G0000PRIV';
    fake.hiddenChannels.add(hidden);
    await startAdapter();
    const refused = fake.slashCommand('/video', 'a wren', alice, hidden);
    expect(String((await refused.ack).payload?.text)).toMatch(/I cannot see this channel.*\/invite/s);
    expect(harness.db.prepare('SELECT count(*) FROM jobs').pluck().get()).toBe(0);

    const first = fake.slashCommand('/video', 'a wren', alice);
    const firstJob = jobIdOf(String((await first.ack).payload?.text));
    await harness.waitFor(isType('succeeded', firstJob), 30_000);
    const second = fake.slashCommand('/video', 'a robin', bob);
    const secondJob = jobIdOf(String((await second.ack).payload?.text));
    await harness.waitFor(isType('succeeded', secondJob), 30_000);
    // The member answer is remembered for a few minutes: one conversations.info for the two jobs.
    expect(fake.calls('conversations.info').filter((r) => r.body.channel === CHANNEL)).toHaveLength(1);
  });
});
