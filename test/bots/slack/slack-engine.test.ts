/**
 * Slack on the real built-in engine: `/video` runs Text2Video-Zero on the tiny set in a worker
 * process; while it denoises the job's message shows live previews (an image block of a PNG the
 * bot uploaded, shared nowhere), and the final message has none.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { SlackAdapter } from '../../../src/bots/slack/slack-adapter.js';
import { makeModelSet } from '../../../src/engine/models/make.js';
import { FakeSlack } from '../../fakes/fake-slack.js';
import { removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';
import { alice, newAdapter, textOf } from './setup.js';

let dir: string;
let harness: Harness;
let fake: FakeSlack;
let adapter: SlackAdapter;

beforeAll(async () => {
  dir = tempDir();
  await makeModelSet({ size: 'tiny', kind: 'text2video', out: join(dir, 'tiny') });
  harness = startService(join(dir, 'service'), { engineModule: '', modelDir: join(dir, 'tiny'), jobs: { timeoutSeconds: 120 }, previews: { intervalSeconds: 0.02 } });
  fake = await FakeSlack.start();
  adapter = newAdapter(fake, harness.service, dir, { progressIntervalMs: 50 });
  await adapter.start();
  await fake.connected();
}, 60_000);

afterAll(async () => {
  await adapter?.stop();
  await fake?.close();
  await harness?.close();
  removeDir(dir);
});

type Block = { type: string; slack_file?: { id: string } };
const imagesOf = (blocks: unknown): Block[] => (Array.isArray(blocks) ? (blocks as Block[]).filter((block) => block.type === 'image') : []);

test('/video shows live previews in its message while it denoises; the final message shows none', async () => {
  fake.slashCommand('/video', 'a lighthouse in a storm --frames 6 --steps 40', alice);
  const final = await fake.waitForRequest((r) => r.method === 'chat.update' && /done/.test(textOf(r)), 90_000);
  const withPreview = fake.calls('chat.update').filter((u) => imagesOf(u.body.blocks).length > 0);
  expect(withPreview.length).toBeGreaterThan(0);
  // The first comes while denoising; the last one shown stays until the final message replaces it.
  expect(textOf(withPreview[0]!)).toMatch(/denoising/);
  expect(withPreview.every((u) => u.at < final.at)).toBe(true);
  // The image block names a file the bot uploaded as a PNG, into no channel.
  const fileId = imagesOf(withPreview[0]!.body.blocks)[0]!.slack_file!.id;
  const completion = fake.calls('files.completeUploadExternal').find((c) => (c.body.files as { id: string }[]).some((f) => f.id === fileId))!;
  expect(completion.body.channel_id).toBeUndefined();
  const bytes = fake.calls('upload').find((u) => u.path.endsWith(fileId))?.bytes;
  expect(bytes?.subarray(1, 4).toString()).toBe('PNG');
  expect(imagesOf(final.body.blocks)).toEqual([]);
}, 120_000);
