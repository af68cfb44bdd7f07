/**
 * Restart mid-job (platforms.md failure mode 4) with the Discord adapter: a real discord.js client
 * on the fake Discord, real JobServices on one SQLite file. The first service is drained with
 * `shutdown(0)` (the harness's close: the running job's worker is killed and the job requeued,
 * as a restart after SIGTERM leaves it); a crash that leaves a job `running` after its second
 * attempt is simulated by writing that row state before the next start.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import type { JobService } from '../../../src/jobs/job-service.js';
import { createLogger } from '../../../src/log.js';
import { startApp, type App } from '../../../src/main.js';
import { openDatabase } from '../../../src/store/db.js';
import { isOriginalEdit, MP4_ENGINE, newAdapter } from './setup.js';
import { FakeDiscord, snowflake, type RecordedRequest } from '../../fakes/fake-discord.js';
import { isType, removeDir, startService, tempDir, testConfig, type Harness } from '../../helpers/harness.js';

const alice = { id: snowflake(), username: 'alice' };

interface Payload {
  content?: string;
  components?: { type: number; components: { type: number; custom_id: string; label: string }[] }[];
}

let dir: string | undefined;
let fake: FakeDiscord | undefined;
const adapters: DiscordAdapter[] = [];
const closers: (() => Promise<void>)[] = [];

function makeAdapter(jobs: JobService, tempDirPath: string): DiscordAdapter {
  const adapter = newAdapter(fake!, jobs, tempDirPath, { registerCommands: false, progressIntervalMs: 100 });
  adapters.push(adapter);
  return adapter;
}

afterEach(async () => {
  for (const adapter of adapters.splice(0)) await adapter.stop().catch(() => undefined);
  for (const close of closers.splice(0)) await close().catch(() => undefined);
  await fake?.close();
  if (dir !== undefined) removeDir(dir);
  dir = undefined;
  fake = undefined;
});

const jobIdOf = (request: RecordedRequest) => Number(/Job #(\d+)/.exec((request.body as Payload).content ?? '')?.[1]);

/** Adapter A on a first service: submits `prompts` as /video and waits until the first one runs. */
async function submitBeforeRestart(prompts: string[]): Promise<{ harness: Harness; adapter: DiscordAdapter; interactions: { id: string; token: string }[]; jobIds: number[] }> {
  dir = tempDir();
  fake = await FakeDiscord.start();
  const harness = startService(dir, { engineModule: MP4_ENGINE });
  closers.push(() => harness.close());
  const adapter = makeAdapter(harness.service, dir);
  await adapter.start();
  const interactions: { id: string; token: string }[] = [];
  const jobIds: number[] = [];
  for (const prompt of prompts) {
    const interaction = fake.slashCommand(alice, { prompt });
    fake.sendInteraction(interaction);
    interactions.push(interaction);
    jobIds.push(jobIdOf(await fake.waitForRequest(isOriginalEdit(interaction.token))));
  }
  await harness.waitFor(isType('progress', jobIds[0]));
  return { harness, adapter, interactions, jobIds };
}

describe('DiscordAdapter after a restart', () => {
  it('delivers a requeued job to the original reply, and Cancel works on a job it never followed', async () => {
    const before = await submitBeforeRestart(['a slow corgi', 'another slow corgi']);
    const [first, second] = before.interactions as [{ id: string; token: string }, { id: string; token: string }];
    const [firstJob, secondJob] = before.jobIds as [number, number];
    // Adapter A forgets everything; the service drains with no grace: the running job is requeued.
    await before.adapter.stop();
    await before.harness.close();
    const restartedAt = Date.now();

    const harness = startService(dir!, { engineModule: MP4_ENGINE });
    closers.push(() => harness.close());
    expect(harness.service.status(firstJob)?.job.state).toMatch(/queued|running/);
    expect(harness.service.status(secondJob)?.job.state).toBe('queued');
    const adapter = makeAdapter(harness.service, dir!);
    await adapter.start();

    // The old Cancel button of the second (queued, never followed by B) job.
    const click = fake!.button(alice, `v1:cancel:${secondJob}`);
    fake!.sendInteraction(click);
    const answer = await fake!.waitForRequest(isOriginalEdit(click.token));
    expect((answer.body as Payload).content).toBe(`Job #${secondJob} is cancelled.`);
    const cancelled = await fake!.waitForRequest((r) => isOriginalEdit(second.token)(r) && r.at >= restartedAt && /was cancelled/.test((r.body as Payload).content ?? ''));
    expect((cancelled.body as Payload).content).toMatch(/did not count against your quota/);
    expect((cancelled.body as Payload).components).toEqual([]);

    // The first job runs again and B uploads it to the first interaction's @original (same token).
    const upload = await fake!.waitForRequest((r) => isOriginalEdit(first.token)(r) && r.at >= restartedAt && r.files.length > 0 && r.status === 200, 20_000);
    expect(upload.headers.authorization).toBeUndefined();
    expect(upload.files[0]!.contentType).toBe('video/mp4');
    expect(upload.files[0]!.size).toBeGreaterThan(100);
    const done = upload.body as Payload;
    expect(done.content).toMatch(new RegExp(`Job #${firstJob}\\*\\* done`));
    expect(done.components?.[0]?.components.map((b) => b.custom_id)).toEqual([`v1:reroll:${firstJob}`, `v1:edit:${firstJob}`, `v1:delete:${firstJob}`]);
    expect(harness.service.status(firstJob)?.job.state).toBe('succeeded');
    // Nothing overwrote the video afterwards.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(fake!.requests.filter(isOriginalEdit(first.token)).at(-1)).toBe(upload);
  }, 30_000);

  it('posts the failure notice with the refund for a job that recovery fails (restarted twice)', async () => {
    const before = await submitBeforeRestart(['a slow corgi']);
    const [first] = before.interactions as [{ id: string; token: string }];
    const [jobId] = before.jobIds as [number];
    await before.adapter.stop();
    await before.harness.close();
    // A crash during the second attempt leaves the row like this.
    const config = testConfig(dir!, { engineModule: MP4_ENGINE });
    const db = openDatabase(config.dbPath);
    db.prepare(`UPDATE jobs SET state = 'running', attempts = 2, started_at = ? WHERE id = ?`).run(Date.now(), jobId);
    db.close();
    const restartedAt = Date.now();

    // As `reelbot serve` does it: the adapter is built in beforeStart, connected after start().
    let adapter: DiscordAdapter | undefined;
    const app: App = startApp(config, { logger: createLogger('silent'), beforeStart: ({ jobs }) => (adapter = makeAdapter(jobs, dir!)) });
    closers.push(() => app.stop());
    expect(app.jobs.status(jobId)?.job.state).toBe('failed');
    await adapter!.start();
    const notice = await fake!.waitForRequest((r) => isOriginalEdit(first.token)(r) && r.at >= restartedAt);
    const content = (notice.body as Payload).content ?? '';
    expect(content).toMatch(new RegExp(`Job #${jobId}\\*\\* failed`));
    expect(content).toMatch(/restarted while making this video, twice/);
    expect(content).toMatch(/did not count against your quota/);
    expect((notice.body as Payload).components).toEqual([]);
  }, 30_000);

  it('once the stored token has expired, posts in the channel with the bot token, mentioning the owner', async () => {
    const before = await submitBeforeRestart(['a slow corgi']);
    const [first] = before.interactions as [{ id: string; token: string }];
    const [jobId] = before.jobIds as [number];
    await before.adapter.stop();
    await before.harness.close();
    // The restart took longer than the token lives, and the reply's message id was never stored.
    const config = testConfig(dir!, { engineModule: MP4_ENGINE });
    const db = openDatabase(config.dbPath);
    const row = db.prepare(`SELECT message_refs FROM jobs WHERE id = ?`).get(jobId) as { message_refs: string };
    const refs = JSON.parse(row.message_refs) as { discord: Record<string, unknown> };
    delete refs.discord.messageId;
    refs.discord.tokenExpiresAt = Date.now() - 1000;
    db.prepare(`UPDATE jobs SET message_refs = ? WHERE id = ?`).run(JSON.stringify(refs), jobId);
    db.close();
    const restartedAt = Date.now();

    const harness = startService(dir!, { engineModule: MP4_ENGINE });
    closers.push(() => harness.close());
    const adapter = makeAdapter(harness.service, dir!);
    await adapter.start();
    const channelPath = `/channels/${fake!.channelId}/messages`;
    const posted = await fake!.waitForRequest((r) => r.method === 'POST' && r.path === channelPath);
    expect(posted.headers.authorization).toBe('Bot fake-bot-token');
    expect((posted.body as Payload).content).toMatch(new RegExp(`^<@${alice.id}> .*Job #${jobId}`, 's'));
    expect((posted.body as { allowed_mentions?: unknown }).allowed_mentions).toEqual({ parse: [], users: [alice.id] });
    const upload = await fake!.waitForRequest((r) => r.method === 'PATCH' && r.path.startsWith(`${channelPath}/`) && r.files.length > 0, 20_000);
    expect(upload.headers.authorization).toBe('Bot fake-bot-token');
    expect(upload.files[0]!.contentType).toBe('video/mp4');
    expect((upload.body as Payload).content).toMatch(/done/);
    // Only one channel message was made, the dead token was not used, and the new id is stored.
    expect(fake!.requests.filter((r) => r.method === 'POST' && r.path === channelPath)).toHaveLength(1);
    expect(fake!.requests.filter((r) => isOriginalEdit(first.token)(r) && r.at >= restartedAt)).toHaveLength(0);
    const stored = harness.service.status(jobId)!.job.messageRefs.discord as { messageId?: string };
    expect(stored.messageId).toBe(upload.path.split('/').at(-1));
  }, 30_000);
});
