/**
 * The outbox on Slack: jobs that finished while no adapter could post their outcome (the process
 * died in between) get it when the adapter starts, once each, and are marked delivered.
 */
import { afterEach, expect, it } from 'vitest';
import type { SlackAdapter } from '../../../src/bots/slack/slack-adapter.js';
import { FakeSlack } from '../../fakes/fake-slack.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { alice, CHANNEL, MP4_ENGINE, newAdapter } from './setup.js';

let dir: string;
let harness: Harness;
let fake: FakeSlack;
const adapters: SlackAdapter[] = [];

afterEach(async () => {
  for (const adapter of adapters.splice(0)) await adapter.stop().catch(() => undefined);
  await fake.close();
  await harness.close();
  removeDir(dir);
});

async function startAdapter(): Promise<void> {
  const adapter = newAdapter(fake, harness.service, dir);
  adapters.push(adapter);
  await adapter.start();
  await fake.connected();
}

it('at start, a success and a failure never delivered are posted once each and marked', async () => {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE });
  fake = await FakeSlack.start();
  const refs = { channelId: CHANNEL, teamId: 'T0000TEAM', userId: alice.id };
  const submit = (prompt: string) =>
    harness.service.submit({ actor: { platform: 'slack', externalId: alice.id }, kind: 'text2video', params: { prompt }, groupId: 'T0000TEAM', channelId: CHANNEL, messageRefs: { slack: refs } });
  const ok = (await submit('a corgi')).job;
  const failed = (await submit('a corgi that will fail')).job;
  await harness.waitFor(isType('succeeded', ok.id), 30_000);
  await harness.waitFor(isType('failed', failed.id), 30_000);
  expect(fake.requests).toHaveLength(0);

  await startAdapter();
  const delivered = (id: number) => harness.service.status(id)?.job.deliveredAt ?? null;
  await expect.poll(() => [delivered(ok.id), delivered(failed.id)].every((at) => at !== null), { timeout: 20_000 }).toBe(true);
  const uploads = fake.calls('files.completeUploadExternal');
  expect(uploads).toHaveLength(1);
  expect(String(uploads[0]!.body.initial_comment)).toContain(`job #${ok.id}`);
  const texts = [...fake.calls('chat.postMessage'), ...fake.calls('chat.update'), ...fake.calls('chat.postEphemeral')].map((r) => String(r.body.text ?? ''));
  expect(texts.filter((text) => text.includes(`Job #${failed.id}`) && /failed/.test(text)).length).toBeGreaterThan(0);

  // The next start sends nothing again.
  await adapters.splice(0)[0]!.stop();
  const before = fake.requests.length;
  await startAdapter();
  await new Promise((resolve) => setTimeout(resolve, 500));
  const later = fake.requests.slice(before).map((r) => r.method);
  expect(later.filter((method) => method.startsWith('chat.') || method.startsWith('files.'))).toEqual([]);
});
