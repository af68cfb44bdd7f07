/**
 * `/queue`, `/usage`, `/history` and `/cancel` end to end: a real discord.js Client logged in to the
 * fake Discord, a real JobService with worker processes running the MP4 test engine. Each command
 * is acknowledged with an ephemeral defer (type 5, flags 64) before it reads the database.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DiscordAdapter, fitContent } from '../../../src/bots/discord/discord-adapter.js';
import { GENERIC_FAILURE_TEXT } from '../../../src/bots/shared/texts.js';
import type { Actor } from '../../../src/jobs/types.js';
import { actorOf, isOriginalEdit, MP4_ENGINE, newAdapter } from './setup.js';
import { FakeDiscord, snowflake, type FakeUser, type RecordedRequest } from '../../fakes/fake-discord.js';
import { isType, removeDir, startService, tempDir, video, type Harness } from '../../helpers/harness.js';

const alice = { id: snowflake(), username: 'alice' };
const bob = { id: snowflake(), username: 'bob' };
const operator: Actor = { platform: 'cli', externalId: 'operator' };

interface Payload {
  content?: string;
  components?: unknown[];
  allowed_mentions?: { parse?: string[] };
}

let dir: string;
let harness: Harness;
let fake: FakeDiscord;
let adapter: DiscordAdapter | undefined;

beforeEach(async () => {
  dir = tempDir();
  harness = startService(dir, { engineModule: MP4_ENGINE });
  fake = await FakeDiscord.start();
  adapter = newAdapter(fake, harness.service, dir);
  await adapter.start();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await adapter?.stop();
  adapter = undefined;
  await fake.close();
  await harness.close();
  removeDir(dir);
});

const isAck = (interaction: { id: string; token: string }) => (r: RecordedRequest) => r.method === 'POST' && r.path === `/interactions/${interaction.id}/${interaction.token}/callback`;

/** Sends a slash command and returns its ephemeral ack and the reply's content. */
async function run(user: FakeUser, name: string, options: Record<string, string | number | undefined> = {}): Promise<{ ack: RecordedRequest; edit: RecordedRequest; content: string }> {
  const interaction = fake.command(user, name, options);
  fake.sendInteraction(interaction);
  const edit = await fake.waitForRequest(isOriginalEdit(interaction.token));
  const seen = fake.requestsFor(interaction);
  const ack = seen.find(isAck(interaction))!;
  expect(seen[0]).toBe(ack);
  expect(ack.body).toMatchObject({ type: 5, data: { flags: 64 } });
  expect(ack.headers.authorization).toBeUndefined();
  return { ack, edit, content: (edit.body as Payload).content ?? '' };
}

/** A /video job of `user` in the fake's guild (or in another one). */
async function submit(user: FakeUser, prompt: string, groupId: string = fake.guildId): Promise<number> {
  const { job } = await harness.service.submit({ ...video(actorOf(user), { prompt }), groupId });
  return job.id;
}

describe('DiscordAdapter commands', () => {
  it('registers /video, /queue, /usage, /history, /cancel and /admin in one call', async () => {
    const put = await fake.waitForRequest((r) => r.method === 'PUT' && r.path === `/applications/${fake.applicationId}/commands`);
    const commands = put.body as { name: string; options?: { name: string; type: number; min_value?: number; required?: boolean }[] }[];
    expect(commands.map((c) => c.name)).toEqual(['video', 'edit', 'Edit clip…', 'queue', 'usage', 'history', 'cancel', 'admin']);
    expect(commands.find((c) => c.name === 'history')?.options).toEqual([expect.objectContaining({ name: 'page', type: 4, min_value: 1 })]);
    expect(commands.find((c) => c.name === 'cancel')?.options).toEqual([expect.objectContaining({ name: 'job', type: 4, min_value: 1 })]);
    expect(fake.requests.filter((r) => r.method === 'PUT')).toHaveLength(1);
  });

  it('/queue lists the running job and the position of a waiting one', async () => {
    const running = await submit(alice, 'a slow corgi');
    await harness.waitFor(isType('started', running));
    const waiting = await submit(bob, 'a waiting cat');

    const { edit, content } = await run(alice, 'queue');
    expect(content).toContain('Running (1)');
    expect(content).toMatch(new RegExp(`• #${running} <@${alice.id}> “a slow corgi”`));
    expect(content).toContain('Waiting (1)');
    expect(content).toMatch(new RegExp(`^1\\. #${waiting} <@${bob.id}> “a waiting cat”`, 'm'));
    expect((edit.body as Payload).allowed_mentions).toEqual({ parse: [] });
  });

  it('/queue shows jobs of another server only by their place', async () => {
    const running = await submit(alice, 'a slow corgi');
    await harness.waitFor(isType('started', running));
    const elsewhere = await submit(bob, 'a private plan', snowflake());
    const { content } = await run(alice, 'queue');
    expect(content).toMatch(new RegExp(`^1\\. #${elsewhere} from another community`, 'm'));
    expect(content).not.toContain('a private plan');
    expect(content).not.toContain(bob.id);
  });

  it('/queue says when the queue is empty', async () => {
    const { content } = await run(alice, 'queue');
    expect(content).toBe('The queue is empty.');
  });

  it('/usage shows the quota left today and recent jobs', async () => {
    const jobId = await submit(alice, 'a corgi surfing');
    await harness.waitFor(isType('succeeded', jobId));
    const interaction = fake.command(alice, 'usage');
    // The DB is read only after the ack went out.
    const original = harness.service.usage.bind(harness.service);
    const ackedBeforeRead: boolean[] = [];
    vi.spyOn(harness.service, 'usage').mockImplementation((actor) => {
      ackedBeforeRead.push(fake.requests.some(isAck(interaction)));
      return original(actor);
    });
    fake.sendInteraction(interaction);
    const edit = await fake.waitForRequest(isOriginalEdit(interaction.token));
    expect(ackedBeforeRead).toEqual([true]);
    expect(fake.requestsFor(interaction)[0]?.body).toMatchObject({ type: 5, data: { flags: 64 } });
    const content = (edit.body as Payload).content ?? '';
    expect(content).toContain('Your usage');
    expect(content).toContain('19 videos left today');
    expect(content).toContain('Today: 1 video of 20');
    expect(content).toContain(`#${jobId} done`);
  });

  it('/history pages the user’s jobs, newest first, 10 a page', async () => {
    await harness.service.pauseQueue(operator);
    const ids: number[] = [];
    for (let i = 1; i <= 12; i++) {
      const id = await submit(alice, `corgi number ${i}`);
      await harness.service.cancel(actorOf(alice), id);
      ids.push(id);
    }
    await submit(bob, 'not alice’s');

    const first = await run(alice, 'history');
    expect(first.content).toContain('Your videos, page 1');
    expect(first.content).toContain('More on page 2');
    expect(first.content.match(/^• #/gm)).toHaveLength(10);
    expect(first.content.split('\n')[1]).toContain(`#${ids[11]} cancelled`);

    const second = await run(alice, 'history', { page: 2 });
    expect(second.content).toContain('Your videos, page 2');
    expect(second.content).not.toContain('More on page');
    const lines = second.content.split('\n').filter((line) => line.startsWith('• #'));
    expect(lines.map((line) => Number(/#(\d+)/.exec(line)?.[1]))).toEqual([ids[1], ids[0]]);
    expect(second.content).toContain('corgi number 1”');
    expect(second.content).not.toContain('not alice');

    const third = await run(alice, 'history', { page: 3 });
    expect(third.content).toBe('Page 3 is empty.');
  });

  it('/cancel without a job number cancels the user’s latest queued job', async () => {
    await harness.service.pauseQueue(operator);
    const older = await submit(alice, 'an older corgi');
    const latest = await submit(alice, 'the latest corgi');
    const bobs = await submit(bob, 'bob’s newer cat');

    const { content } = await run(alice, 'cancel');
    expect(content).toBe(`Job #${latest} is cancelled.`);
    expect(harness.service.status(latest)?.job.state).toBe('cancelled');
    expect(harness.service.status(older)?.job.state).toBe('queued');
    expect(harness.service.status(bobs)?.job.state).toBe('queued');

    const again = await run(alice, 'cancel');
    expect(again.content).toBe(`Job #${older} is cancelled.`);
    const none = await run(alice, 'cancel');
    expect(none.content).toBe('You have no queued or running job to cancel.');
  });

  it('/cancel with a job number: someone else’s, finished, or missing job is refused', async () => {
    await harness.service.pauseQueue(operator);
    const bobs = await submit(bob, 'bob’s cat');
    const refused = await run(alice, 'cancel', { job: bobs });
    expect(refused.content).toContain('belongs to someone else');
    expect(harness.service.status(bobs)?.job.state).toBe('queued');

    const own = await submit(alice, 'a corgi');
    expect((await run(alice, 'cancel', { job: own })).content).toBe(`Job #${own} is cancelled.`);
    expect(harness.service.status(own)?.job.state).toBe('cancelled');
    expect((await run(alice, 'cancel', { job: own })).content).toContain('nothing to cancel');
    expect((await run(alice, 'cancel', { job: 999_999 })).content).toBe('There is no job #999999.');
  });

  it('/cancel of a running job says it is stopping, and the job ends cancelled', async () => {
    const jobId = await submit(alice, 'a slow corgi');
    await harness.waitFor(isType('started', jobId));
    const { content } = await run(alice, 'cancel');
    expect(content).toBe(`Cancelling job #${jobId}…`);
    await harness.waitFor(isType('cancelled', jobId));
    expect(harness.service.status(jobId)?.job.state).toBe('cancelled');
  });

  it('answers an unexpected error with a short generic message, without details', async () => {
    vi.spyOn(harness.service, 'queue').mockImplementation(() => {
      throw new Error('database exploded at /secret/path.ts:12');
    });
    const { content } = await run(alice, 'queue');
    expect(content).toBe(GENERIC_FAILURE_TEXT);
    // The adapter still works afterwards.
    vi.restoreAllMocks();
    expect((await run(alice, 'queue')).content).toBe('The queue is empty.');
  });
});

describe('fitContent', () => {
  it('keeps short texts and cuts long ones at a line break under 2000 characters', () => {
    expect(fitContent('short')).toBe('short');
    const long = Array.from({ length: 100 }, (_, i) => `line ${i} ${'x'.repeat(30)}`).join('\n');
    const fitted = fitContent(long);
    expect(fitted.length).toBeLessThanOrEqual(2000);
    expect(fitted.endsWith('\n…')).toBe(true);
    expect(long.startsWith(fitted.slice(0, -2))).toBe(true);
  });
});
