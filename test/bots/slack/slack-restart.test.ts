/**
 * Restart mid-job with the Slack adapter: the first service is drained with `shutdown(0)` (the
 * running job is requeued); a new service and a new adapter on the same SQLite file follow the
 * job again from its stored refs (`messageRefs.slack`) and finish it in the same channel message.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { SlackAdapter } from '../../../src/bots/slack/slack-adapter.js';
import { BOT_USER_ID, FakeSlack } from '../../fakes/fake-slack.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { alice, buttonsOf, CHANNEL, isMethod, MP4_ENGINE, newAdapter, textOf } from './setup.js';

let dir: string | undefined;
let fake: FakeSlack | undefined;
const adapters: SlackAdapter[] = [];
const harnesses: Harness[] = [];

afterEach(async () => {
  for (const adapter of adapters.splice(0)) await adapter.stop().catch(() => undefined);
  for (const harness of harnesses.splice(0)) await harness.close().catch(() => undefined);
  await fake?.close();
  if (dir !== undefined) removeDir(dir);
  dir = undefined;
  fake = undefined;
});

async function startBoth(): Promise<{ harness: Harness; adapter: SlackAdapter }> {
  const harness = startService(dir!, { engineModule: MP4_ENGINE });
  harnesses.push(harness);
  const adapter = newAdapter(fake!, harness.service, dir!);
  adapters.push(adapter);
  await adapter.start();
  return { harness, adapter };
}

describe('SlackAdapter after a restart', () => {
  it('finishes a requeued job in its original channel message, and its Cancel button works on a job it never followed', async () => {
    dir = tempDir();
    fake = await FakeSlack.start();
    const before = await startBoth();
    await fake.connected();
    const first = Number(/Job #(\d+)/.exec(String((await fake.slashCommand('/video', 'a slow corgi', alice).ack).payload?.text))?.[1]);
    const secondCommand = fake.slashCommand('/video', 'another slow corgi', alice);
    const secondAck = await secondCommand.ack;
    const second = Number(/Job #(\d+)/.exec(String(secondAck.payload?.text))?.[1]);
    // The queued notice carries the Cancel button; the public message comes when the job starts.
    expect(buttonsOf({ blocks: secondAck.payload?.blocks })).toEqual([`v1:cancel:${second}`]);
    await before.harness.waitFor(isType('progress', first));
    await fake.waitForCount((r) => r.method === 'chat.postMessage', 1);
    const refs = before.harness.service.status(first)!.job.messageRefs.slack as { statusTs: string };
    expect(refs.statusTs).toMatch(/^\d+\.\d+$/);

    // Everything stops; the running job is requeued.
    adapters.splice(0);
    await before.adapter.stop();
    harnesses.splice(0);
    await before.harness.close();
    const restartedAt = performance.now();

    const after = await startBoth();
    // Cancel on the second job's queued notice (an ephemeral message): resolved from the job row by the new adapter.
    const clickUrl = fake.responseUrl();
    await fake.clickButton(alice, CHANNEL, { type: 'message', ts: 'ephemeral', text: String(secondAck.payload?.text) }, `v1:cancel:${second}`, clickUrl).ack;
    await after.harness.waitFor(isType('cancelled', second));
    const confirmed = await fake.waitForRequest((r) => r.method === 'response' && r.path === new URL(clickUrl).pathname);
    expect(String(confirmed.body.text)).toBe(`Job #${second} is cancelled.`);
    // Its owner hears it through the command's stored response_url (the job never had a public message).
    const notice = await fake.waitForRequest((r) => r.method === 'response' && r.path === new URL(String(secondCommand.payload.response_url)).pathname);
    expect(String(notice.body.text)).toContain(`*Job #${second}* was cancelled.`);

    await after.harness.waitFor(isType('succeeded', first), 30_000);
    const final = await fake.waitForRequest((r) => r.method === 'chat.update' && r.at > restartedAt && r.body.ts === refs.statusTs && /done/.test(textOf(r)), 30_000);
    expect(textOf(final)).toContain(`*Job #${first}* done`);
    expect(buttonsOf(final)).toEqual([`v1:reroll:${first}`, `v1:delete:${first}`]);
    const complete = fake.requests.find((r) => r.method === 'files.completeUploadExternal' && r.at > restartedAt)!;
    expect(complete.body.channel_id).toBe(CHANNEL);
    // No second public message for the job: it was followed, not re-posted.
    expect(fake.calls('chat.postMessage')).toHaveLength(1);
  });

  it('a thread without a clip is hinted once, even across a restart', async () => {
    dir = tempDir();
    fake = await FakeSlack.start();
    const before = await startBoth();
    await fake.connected();
    const parent = fake.addMessage(CHANNEL, { user: alice.id, text: 'no video here' });
    await fake.threadReply(CHANNEL, parent.ts, alice.id, `<@${BOT_USER_ID}> make it snowy`).ack;
    await fake.waitForRequest(isMethod('chat.postEphemeral'));

    adapters.splice(0);
    await before.adapter.stop();
    harnesses.splice(0);
    await before.harness.close();
    await startBoth();
    await fake.connected();
    await fake.threadReply(CHANNEL, parent.ts, alice.id, `<@${BOT_USER_ID}> make it foggy`).ack;
    await fake.waitForCount(isMethod('conversations.replies'), 2);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(fake.calls('chat.postEphemeral')).toHaveLength(1);
  });
});
