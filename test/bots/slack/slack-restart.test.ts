/**
 * Restart mid-job with the Slack adapter: the first service is drained with `shutdown(0)` (the
 * running job is requeued); a new service and a new adapter on the same SQLite file follow the
 * job again from its stored refs (`messageRefs.slack`) and finish it in the same channel message.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { SlackAdapter } from '../../../src/bots/slack/slack-adapter.js';
import { FakeSlack } from '../../fakes/fake-slack.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { alice, buttonsOf, CHANNEL, MP4_ENGINE, newAdapter, textOf } from './setup.js';

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
    const second = Number(/Job #(\d+)/.exec(String((await fake.slashCommand('/video', 'another slow corgi', alice).ack).payload?.text))?.[1]);
    await before.harness.waitFor(isType('progress', first));
    await fake.waitForCount((r) => r.method === 'chat.postMessage', 2);
    const refs = before.harness.service.status(first)!.job.messageRefs.slack as { statusTs: string };
    const secondRefs = before.harness.service.status(second)!.job.messageRefs.slack as { statusTs: string };
    expect(refs.statusTs).toMatch(/^\d+\.\d+$/);

    // Everything stops; the running job is requeued.
    adapters.splice(0);
    await before.adapter.stop();
    harnesses.splice(0);
    await before.harness.close();
    const restartedAt = performance.now();

    const after = await startBoth();
    // Cancel on the second job's old message: resolved from the job row by the new adapter.
    const secondMessage = fake.message(CHANNEL, secondRefs.statusTs)!;
    await fake.clickButton(alice, CHANNEL, secondMessage, `v1:cancel:${second}`).ack;
    await after.harness.waitFor(isType('cancelled', second));

    await after.harness.waitFor(isType('succeeded', first), 30_000);
    const final = await fake.waitForRequest((r) => r.method === 'chat.update' && r.at > restartedAt && r.body.ts === refs.statusTs && /done/.test(textOf(r)), 30_000);
    expect(textOf(final)).toContain(`*Job #${first}* done`);
    expect(buttonsOf(final)).toEqual([`v1:reroll:${first}`, `v1:cancel:${first}`]);
    const complete = fake.requests.find((r) => r.method === 'files.completeUploadExternal' && r.at > restartedAt)!;
    expect(complete.body.channel_id).toBe(CHANNEL);
    // No second public message for the job: it was followed, not re-posted.
    expect(fake.calls('chat.postMessage')).toHaveLength(2);
    const cancelled = await fake.waitForRequest((r) => r.method === 'chat.update' && r.body.ts === secondRefs.statusTs && /cancelled/.test(textOf(r)));
    expect(textOf(cancelled)).toContain(`*Job #${second}* was cancelled.`);
  });
});
