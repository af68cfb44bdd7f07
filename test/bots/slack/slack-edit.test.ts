/**
 * Editing clips on Slack end to end: thread replies and the "Edit clip" shortcut, with a real
 * small MP4 served by the fake Slack, downloaded with the bot token, handed to real worker
 * processes; platforms.md failure modes 5 (event retries), 7 (empty shares), 8 (HTML / 403
 * downloads) and 9 (non-clip threads and bot messages).
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NO_CLIP_HINT, type SlackAdapter } from '../../../src/bots/slack/slack-adapter.js';
import { BOT_ID, BOT_USER_ID, FakeSlack, type StoredMessage } from '../../fakes/fake-slack.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { alice, bob, buttonsOf, CHANNEL, isMethod, MP4_ENGINE, newAdapter, smallMp4, textOf } from './setup.js';

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

/** A user's message in the channel with a real MP4 attached (the thread's parent). */
function clipMessage(): StoredMessage {
  const file = fake.addFile(smallMp4(dir), 'beach.mp4');
  return fake.addMessage(CHANNEL, { user: alice.id, text: 'look at this', subtype: 'file_share', files: [file] });
}

const inputs = () => (existsSync(join(dir, 'inputs')) ? readdirSync(join(dir, 'inputs')) : []);
const slackJobs = () => harness.db.prepare(`SELECT count(*) FROM jobs`).pluck().get() as number;

describe('SlackAdapter edits', () => {
  it('a thread reply mentioning the bot edits the parent clip; the result goes into the same thread; the clip is removed after', async () => {
    await startAdapter();
    const parent = clipMessage();
    fake.threadReply(CHANNEL, parent.ts, bob.id, `<@${BOT_USER_ID}> make it snowy --anchors 4`);
    const complete = await fake.waitForRequest(isMethod('files.completeUploadExternal'), 30_000);
    expect(complete.body.thread_ts).toBe(parent.ts);
    expect(complete.body.channel_id).toBe(CHANNEL);

    // The parent was looked up, and the clip fetched with the bot token from the fake's file host.
    expect(fake.calls('conversations.replies')[0]!.body).toMatchObject({ channel: CHANNEL, ts: parent.ts });
    const download = fake.calls('download')[0]!;
    expect(download.headers.authorization).toBe('Bearer xoxb-fake-bot-token');
    expect(download.status).toBe(200);

    const done = await harness.waitFor((e) => e.type === 'succeeded');
    const job = done.job;
    expect(job.kind).toBe('edit');
    expect(job.params).toMatchObject({ instruction: 'make it snowy', anchors: 4 });
    expect((done as { result: { inputBytes: number } }).result.inputBytes).toBe(smallMp4(dir).length);
    expect(job.userExternalId).toBe(bob.id);

    // The queued text privately in the thread; the job's message in the thread, updated to done with the buttons.
    const queued = fake.calls('chat.postEphemeral')[0]!;
    expect(queued.body).toMatchObject({ channel: CHANNEL, user: bob.id, thread_ts: parent.ts });
    expect(textOf(queued)).toMatch(new RegExp(`\\*Job #${job.id}\\* is queued`));
    const post = fake.calls('chat.postMessage')[0]!;
    expect(post.body.thread_ts).toBe(parent.ts);
    expect(textOf(post)).toContain(`_Edit for <@${bob.id}>: “make it snowy”_`);
    const final = await fake.waitForRequest((r) => r.method === 'chat.update' && /edited/.test(textOf(r)));
    expect(textOf(final)).toContain(`*Job #${job.id}* edited: “make it snowy”`);
    expect(buttonsOf(final)).toEqual([`v1:reroll:${job.id}`, `v1:delete:${job.id}`]);
    // The downloaded clip is deleted once the job is final.
    await expect.poll(inputs).toEqual([]);
  });

  it('a reply with its own clip edits that clip (no parent lookup needed)', async () => {
    await startAdapter();
    const parent = fake.addMessage(CHANNEL, { user: alice.id, text: 'ideas?' });
    const file = fake.addFile(smallMp4(dir), 'mine.mp4');
    fake.threadReply(CHANNEL, parent.ts, alice.id, `<@${BOT_USER_ID}> make it sepia`, { files: [file] });
    const done = await harness.waitFor((e) => e.type === 'succeeded', 30_000);
    expect(done.job.params).toMatchObject({ instruction: 'make it sepia' });
    expect(fake.calls('download')[0]!.path).toContain(file.id);
  });

  it('in a configured edit channel any thread reply is an edit; elsewhere a reply without a mention is ignored', async () => {
    await startAdapter({ editChannels: ['CEDITS001'] });
    const elsewhere = clipMessage();
    fake.threadReply(CHANNEL, elsewhere.ts, bob.id, 'make it snowy');
    const file = fake.addFile(smallMp4(dir), 'beach.mp4');
    const parent = fake.addMessage('CEDITS001', { user: alice.id, text: '', subtype: 'file_share', files: [file] });
    fake.threadReply('CEDITS001', parent.ts, bob.id, 'make it foggy');
    const done = await harness.waitFor((e) => e.type === 'succeeded', 30_000);
    expect(done.job.params).toMatchObject({ instruction: 'make it foggy' });
    expect(done.job.channelId).toBe('CEDITS001');
    expect(slackJobs()).toBe(1);
    expect(fake.calls('conversations.replies').map((r) => r.body.channel)).toEqual(['CEDITS001']);
  });

  it('failure mode 5: the same event_id redelivered with retry_attempt 1–3 makes exactly one job and one download', async () => {
    await startAdapter();
    const parent = clipMessage();
    const first = fake.threadReply(CHANNEL, parent.ts, bob.id, `<@${BOT_USER_ID}> make it snowy`);
    const event = { ...fake.message(CHANNEL, first.message.ts)!, channel: CHANNEL, event_ts: first.message.ts, channel_type: 'channel' };
    const acks = [await first.ack];
    for (let retry = 1; retry <= 3; retry++) acks.push(await fake.sendEvent(event, { eventId: first.eventId, retryAttempt: retry }).ack);
    // Bolt acks events at once with an empty payload.
    expect(acks.every((a) => a.payload === undefined || Object.keys(a.payload).length === 0)).toBe(true);
    await harness.waitFor((e) => e.type === 'succeeded', 30_000);
    await sleep(300);
    expect(slackJobs()).toBe(1);
    expect(fake.calls('download')).toHaveLength(1);
    expect(fake.calls('files.completeUploadExternal')).toHaveLength(1);
  });

  it('failure mode 5 across an adapter restart: redeliveries that only SQLite remembers make no second job', async () => {
    await startAdapter();
    const parent = clipMessage();
    const reply = fake.threadReply(CHANNEL, parent.ts, bob.id, `<@${BOT_USER_ID}> make it snowy`);
    const command = fake.slashPayload('/video', 'a corgi', alice);
    await fake.sendEnvelope('slash_commands', command).ack;
    await harness.waitFor((e) => e.type === 'succeeded' && e.job.kind === 'edit', 30_000);
    // A new adapter (nothing in memory) on the same job core gets both again as retries.
    await adapter!.stop();
    adapter = undefined;
    const connections = fake.calls('apps.connections.open').length;
    await startAdapter();
    await fake.waitForCount(isMethod('apps.connections.open'), connections + 1);
    const event = { ...reply.message, channel: CHANNEL, event_ts: reply.message.ts, channel_type: 'channel' };
    await fake.sendEvent(event, { eventId: reply.eventId, retryAttempt: 2 }).ack;
    const again = await fake.sendEnvelope('slash_commands', command, { retry_attempt: 1, retry_reason: 'timeout' }).ack;
    expect(String(again.payload?.text)).toMatch(/^This request already made job #\d+; it is (queued|running|succeeded)\.$/);
    await sleep(500);
    expect(slackJobs()).toBe(2);
    // The clip fetched again for the redelivered reply was removed when the job core said "seen".
    await expect.poll(inputs).toEqual([]);
  });

  it('failure mode 8: a sign-in page (HTML) or a 403 instead of the clip is a clear message and never reaches the engine', async () => {
    await startAdapter();
    const htmlParent = clipMessage();
    fake.setDownload(htmlParent.files![0]!.id, 'html');
    fake.threadReply(CHANNEL, htmlParent.ts, bob.id, `<@${BOT_USER_ID}> make it snowy`);
    const htmlNotice = await fake.waitForRequest(isMethod('chat.postEphemeral'));
    expect(htmlNotice.body).toMatchObject({ channel: CHANNEL, user: bob.id, thread_ts: htmlParent.ts });
    expect(textOf(htmlNotice)).toMatch(/web page/);

    const deniedParent = clipMessage();
    fake.setDownload(deniedParent.files![0]!.id, '403');
    fake.threadReply(CHANNEL, deniedParent.ts, bob.id, `<@${BOT_USER_ID}> make it snowy`);
    const deniedNotice = await fake.waitForCount(isMethod('chat.postEphemeral'), 2);
    expect(textOf(deniedNotice[1]!)).toMatch(/refused to share the clip with the bot \(403\)/);
    for (const notice of deniedNotice) expect(textOf(notice)).not.toMatch(/\n\s+at /);

    // A link off Slack's file hosts (and off the configured API host) is never fetched.
    const elsewhere = fake.addMessage(CHANNEL, {
      user: alice.id,
      text: '',
      subtype: 'file_share',
      files: [{ ...fake.addFile(smallMp4(dir)), url_private_download: 'https://evil.example.com/clip.mp4', url_private: 'https://evil.example.com/clip.mp4' }],
    });
    fake.threadReply(CHANNEL, elsewhere.ts, bob.id, `<@${BOT_USER_ID}> make it snowy`);
    const offHost = await fake.waitForCount(isMethod('chat.postEphemeral'), 3);
    expect(textOf(offHost[2]!)).toMatch(/not a Slack file/);
    expect(fake.calls('download')).toHaveLength(2);

    expect(slackJobs()).toBe(0);
    expect(inputs()).toEqual([]);
  });

  it('failure mode 9: a reply in a thread without a clip gets one hint, however often it comes; bots (ourselves included) are ignored', async () => {
    await startAdapter();
    const parent = fake.addMessage(CHANNEL, { user: alice.id, text: 'no video here' });
    const first = fake.threadReply(CHANNEL, parent.ts, bob.id, `<@${BOT_USER_ID}> make it snowy`);
    await first.ack;
    const hint = await fake.waitForRequest(isMethod('chat.postEphemeral'));
    expect(textOf(hint)).toBe(NO_CLIP_HINT);
    // The same event again, and another reply in the same thread: no second hint.
    const event = { ...first.message, channel: CHANNEL, event_ts: first.message.ts, channel_type: 'channel' };
    await fake.sendEvent(event, { eventId: first.eventId, retryAttempt: 1 }).ack;
    await fake.threadReply(CHANNEL, parent.ts, alice.id, `<@${BOT_USER_ID}> make it foggy`).ack;

    // Our own message and another bot's, both mentioning us in a thread with a clip: nothing happens.
    const clip = clipMessage();
    await fake.threadReply(CHANNEL, clip.ts, BOT_USER_ID, `<@${BOT_USER_ID}> make it snowy`, { botId: BOT_ID }).ack;
    await fake.threadReply(CHANNEL, clip.ts, 'UOTHERBOT', `<@${BOT_USER_ID}> make it snowy`, { botId: 'BOTHER001' }).ack;
    // A top-level message with a mention is not a reply to a clip.
    await fake.sendEvent({ type: 'message', user: bob.id, text: `<@${BOT_USER_ID}> hi`, ts: fake.nextTs(), channel: CHANNEL }).ack;
    await sleep(500);
    expect(fake.calls('chat.postEphemeral')).toHaveLength(1);
    expect(fake.calls('conversations.replies')).toHaveLength(2);
    expect(slackJobs()).toBe(0);
    expect(fake.calls('chat.postMessage')).toHaveLength(0);
  });

  it('failure mode 7: a clip we uploaded with empty shares can still be edited by replying to it', async () => {
    fake.emptyShares = true;
    await startAdapter();
    const ack = await fake.slashCommand('/video', 'a kite', alice).ack;
    const firstId = Number(/Job #(\d+)/.exec(String(ack.payload?.text))?.[1]);
    await fake.waitForRequest(isMethod('files.completeUploadExternal'), 30_000);
    // completeUploadExternal gave no ts; the clip's message is found by the reply's thread_ts.
    const ourClip = fake.channels.get(CHANNEL)!.find((m) => m.files !== undefined && m.bot_id === BOT_ID)!;
    fake.threadReply(CHANNEL, ourClip.ts, alice.id, `<@${BOT_USER_ID}> make it rainy`);
    const edit = await harness.waitFor((e) => e.type === 'succeeded' && e.job.kind === 'edit', 30_000);
    expect(edit.job.id).not.toBe(firstId);
    const completes = await fake.waitForCount(isMethod('files.completeUploadExternal'), 2);
    expect(completes[1]!.body.thread_ts).toBe(ourClip.ts);
  });

  it('a bad instruction is explained privately in the thread; the downloaded clip is removed', async () => {
    await startAdapter();
    const parent = clipMessage();
    fake.threadReply(CHANNEL, parent.ts, bob.id, `<@${BOT_USER_ID}> make it snowy --anchors lots`);
    const notice = await fake.waitForRequest(isMethod('chat.postEphemeral'));
    expect(textOf(notice)).toMatch(/anchors/);
    expect(slackJobs()).toBe(0);
    expect(inputs()).toEqual([]);
  });

  it('the "Edit clip" shortcut opens a modal; a bad instruction is shown on the field; a good one edits in the thread', async () => {
    await startAdapter();
    const parent = clipMessage();
    const shortcut = fake.messageShortcut(bob, CHANNEL, parent);
    await shortcut.ack;
    const open = await fake.waitForRequest(isMethod('views.open'));
    expect(open.body.trigger_id).toBe(shortcut.triggerId);
    const view = open.body.view as Record<string, unknown>;
    expect(view).toMatchObject({ type: 'modal', callback_id: 'edit_clip_modal' });

    const bad = await fake.submitView(bob, view, { instruction: { instruction_input: { type: 'plain_text_input', value: 'snow --steps 0' } } }).ack;
    expect(bad.payload).toMatchObject({ response_action: 'errors' });
    expect(String((bad.payload?.errors as Record<string, string>).instruction)).toMatch(/steps/);
    expect(slackJobs()).toBe(0);

    const good = await fake.submitView(bob, view, { instruction: { instruction_input: { type: 'plain_text_input', value: 'make it snowy' } } }).ack;
    expect(good.payload === undefined || Object.keys(good.payload).length === 0).toBe(true);
    const complete = await fake.waitForRequest(isMethod('files.completeUploadExternal'), 30_000);
    expect(complete.body.thread_ts).toBe(parent.ts);
    const done = await harness.waitFor(isType('succeeded'));
    expect(done.job).toMatchObject({ kind: 'edit', userExternalId: bob.id });
  });

  it('the shortcut on a message without a video says so through the response_url and opens nothing', async () => {
    await startAdapter();
    const plain = fake.addMessage(CHANNEL, { user: alice.id, text: 'just words' });
    const shortcut = fake.messageShortcut(bob, CHANNEL, plain);
    await shortcut.ack;
    const notice = await fake.waitForRequest((r) => r.method === 'response' && r.path === new URL(shortcut.responseUrl).pathname);
    expect(String(notice.body.text)).toMatch(/no video/);
    expect(fake.calls('views.open')).toHaveLength(0);
  });

  it('Re-roll of an edit fetches the clip again and makes a new edit in the same thread', async () => {
    await startAdapter();
    const parent = clipMessage();
    fake.threadReply(CHANNEL, parent.ts, bob.id, `<@${BOT_USER_ID}> make it snowy`);
    const first = await harness.waitFor(isType('succeeded'), 30_000);
    const status = fake.channels.get(CHANNEL)!.find((m) => m.thread_ts === parent.ts && m.bot_id === BOT_ID && m.files === undefined)!;
    await fake.clickButton(bob, CHANNEL, status, `v1:reroll:${first.job.id}`).ack;
    const second = await harness.waitFor((e) => e.type === 'succeeded' && e.job.id !== first.job.id, 30_000);
    expect(second.job.kind).toBe('edit');
    expect(second.job.params.instruction).toBe('make it snowy');
    expect(fake.calls('download')).toHaveLength(2);
    await fake.waitForCount(isMethod('files.completeUploadExternal'), 2);
    expect(fake.calls('files.completeUploadExternal').map((r) => r.body.thread_ts)).toEqual([parent.ts, parent.ts]);
    await expect.poll(inputs).toEqual([]);
  });
});
