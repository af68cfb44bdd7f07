/**
 * Failure modes of platforms.md §5 as Discord users see them (modes 11, 13, 14 and 15): a real
 * discord.js Client logged in to the fake Discord, a real JobService on a SQLite file with real
 * worker processes running failure-engine.ts. Mode 2 (slow database) is in
 * discord-slow-db.test.ts and mode 3 (upload limits) in discord-upload-limit.test.ts.
 */
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { DiscordAdapter } from '../../../src/bots/discord/discord-adapter.js';
import { isFirstAnswer, isOriginalEdit, newAdapter } from './setup.js';
import { FakeDiscord, snowflake, type FakeUser, type RecordedRequest } from '../../fakes/fake-discord.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../../helpers/harness.js';

const FAILURE_ENGINE = fileURLToPath(new URL('./failure-engine.ts', import.meta.url));

const alice = { id: snowflake(), username: 'alice' };
const bob = { id: snowflake(), username: 'bob' };

interface Payload {
  content?: string;
  components?: { type: number; components: { custom_id: string; label: string }[] }[];
}

let dir: string | undefined;
let harness: Harness | undefined;
let fake: FakeDiscord | undefined;
let adapter: DiscordAdapter | undefined;

async function startAll(overrides: Record<string, unknown> = {}): Promise<{ harness: Harness; fake: FakeDiscord }> {
  dir = tempDir();
  harness = startService(dir, { engineModule: FAILURE_ENGINE, ...overrides });
  fake = await FakeDiscord.start();
  adapter = newAdapter(fake, harness.service, dir, { registerCommands: false, progressIntervalMs: 100 });
  await adapter.start();
  return { harness, fake };
}

afterEach(async () => {
  await adapter?.stop().catch(() => undefined);
  await fake?.close();
  await harness?.close();
  if (dir !== undefined) removeDir(dir);
  adapter = undefined;
  fake = undefined;
  harness = undefined;
  dir = undefined;
});

const contentOf = (request: RecordedRequest) => (request.body as Payload | undefined)?.content ?? '';
const jobIdOf = (request: RecordedRequest) => Number(/Job #(\d+)/.exec(contentOf(request))?.[1]);
const isUpload = (token: string) => (r: RecordedRequest) => isOriginalEdit(token)(r) && r.files.length > 0 && r.status === 200;
const isAck = (interaction: { id: string; token: string }) => (r: RecordedRequest) => r.method === 'POST' && r.path === `/interactions/${interaction.id}/${interaction.token}/callback`;

/** Sends `/video prompt` as `user` and returns the interaction and its first reply edit (queued or refused). */
async function video(user: FakeUser, prompt: string): Promise<{ interaction: { id: string; token: string }; first: RecordedRequest }> {
  const interaction = fake!.slashCommand(user, { prompt });
  fake!.sendInteraction(interaction);
  return { interaction, first: await fake!.waitForRequest(isFirstAnswer(interaction.token)) };
}

function jobRows(): { id: number; state: string; attempts: number }[] {
  return harness!.db.prepare('SELECT id, state, attempts FROM jobs ORDER BY id').all() as { id: number; state: string; attempts: number }[];
}

describe('Discord failure modes', () => {
  it('mode 11: B\'s one /video queued behind A\'s ten is next in line and runs second; A\'s eleventh is refused at the cap', async () => {
    const tiers = { free: { jobsPerDay: 100, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 10 } };
    await startAll({ quota: { tiers } });
    const aliceJobs: number[] = [];
    aliceJobs.push(jobIdOf((await video(alice, 'a slow corgi 1')).first));
    for (let n = 2; n <= 10; n++) aliceJobs.push(jobIdOf((await video(alice, `a corgi ${n}`)).first));
    expect(aliceJobs.every((id) => id > 0)).toBe(true);

    const b = await video(bob, 'a cat on a skateboard');
    const bobJob = jobIdOf(b.first);
    expect(contentOf(b.first)).toContain(`**Job #${bobJob}** is queued: next in line`);

    // Alice has 10 jobs waiting or running: the eleventh is refused with the count and the limit.
    const refused = await video(alice, 'a corgi 11');
    expect(contentOf(refused.first)).toMatch(/^You already have 10 jobs waiting or running \(the limit is 10\)/);
    expect(jobRows()).toHaveLength(11);

    await harness!.waitFor(isType('succeeded', aliceJobs[9]), 40_000);
    const started = harness!.events.filter(isType('started')).map((event) => event.job.id);
    expect(started.slice(0, 2)).toEqual([aliceJobs[0], bobJob]);
    expect(started.slice(2)).toEqual(aliceJobs.slice(1));
    await fake!.waitForRequest(isUpload(b.interaction.token));
  }, 60_000);

  it('mode 11: the per-user cap refusal says where the user\'s jobs stand in the queue', async () => {
    const tiers = { free: { jobsPerDay: 100, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 2 } };
    await startAll({ quota: { tiers } });
    await video(bob, 'a slow cat');
    const first = await video(alice, 'a slow corgi');
    expect(contentOf(first.first)).toMatch(/next in line/);
    await video(alice, 'another slow corgi');
    const refused = await video(alice, 'a third corgi');
    expect(contentOf(refused.first)).toMatch(/already have 2 jobs/);
    // The next of Alice's jobs is next in line (#1): the refusal should say so.
    expect(contentOf(refused.first)).toMatch(/next in line|#1 in the queue|position 1/);
  });

  it('mode 12: two /video at once at the daily quota edge make one job, and the other reply is the refusal', async () => {
    const tiers = { free: { jobsPerDay: 1, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 5 } };
    await startAll({ quota: { tiers } });
    const first = fake!.slashCommand(alice, { prompt: 'a corgi from the phone' });
    const second = fake!.slashCommand(alice, { prompt: 'a corgi from the laptop' });
    // Back to back on the gateway: both handlers are deferred before either submits.
    fake!.sendInteraction(first);
    fake!.sendInteraction(second);
    const answers = await Promise.all([first, second].map((interaction) => fake!.waitForRequest(isFirstAnswer(interaction.token))));
    const texts = answers.map(contentOf);
    expect(texts.filter((text) => /is queued/.test(text))).toHaveLength(1);
    expect(texts.filter((text) => /^You have used the 1 video of your daily quota\. Your quota resets at 00:00 UTC/.test(text))).toHaveLength(1);
    expect(jobRows()).toHaveLength(1);
    const reserves = harness!.db.prepare("SELECT COUNT(*) AS n FROM quota_ledger WHERE entry = 'reserve'").get() as { n: number };
    expect(reserves.n).toBe(1);
  });

  it('mode 13: Cancel on a finished video is refused, ephemerally, and the video stays', async () => {
    await startAll();
    const { interaction } = await video(alice, 'a corgi surfing');
    const upload = await fake!.waitForRequest(isUpload(interaction.token));
    const jobId = jobIdOf(upload);
    // A finished video offers no Cancel; the click comes from a client still showing the running job's buttons.
    const buttons = (upload.body as Payload).components?.[0]?.components ?? [];
    expect(buttons.map((button) => button.label)).not.toContain('Cancel');
    const cancel = { custom_id: `v1:cancel:${jobId}` };

    const click = fake!.button(alice, cancel!.custom_id, { id: snowflake(), content: contentOf(upload) });
    fake!.sendInteraction(click);
    const answer = await fake!.waitForRequest(isOriginalEdit(click.token));
    expect(fake!.requestsFor(click)[0]).toMatchObject({ method: 'POST', body: { type: 5, data: { flags: 64 } } });
    expect(contentOf(answer)).toBe(`Job #${jobId} has already finished, so there is nothing to cancel.`);
    expect(harness!.service.status(jobId)?.job.state).toBe('succeeded');
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The result message was not touched again, and no refund was made.
    expect(fake!.requests.filter(isOriginalEdit(interaction.token)).at(-1)).toBe(upload);
    expect(harness!.events.filter((event) => event.type === 'cancelled')).toHaveLength(0);
  });

  it('mode 14: a worker that crashes twice gets one retry, then the reply says failed and refunded; the next job still runs', async () => {
    await startAll();
    const crashing = await video(alice, 'a crash test');
    const crashJob = jobIdOf(crashing.first);
    const next = await video(bob, 'a cat queued behind it');
    const nextJob = jobIdOf(next.first);
    expect(contentOf(next.first)).toMatch(/next in line/);

    const notice = await fake!.waitForRequest((r) => isOriginalEdit(crashing.interaction.token)(r) && /failed/.test(contentOf(r)), 30_000);
    expect(contentOf(notice)).toBe(
      `**Job #${crashJob}** failed: The video worker crashed twice on this job. Please try again, perhaps with other settings. It did not count against your quota.`,
    );
    expect((notice.body as Payload).components).toEqual([]);
    expect(harness!.events.filter(isType('started', crashJob)).map((event) => event.attempt)).toEqual([1, 2]);
    const failed = harness!.events.find(isType('failed', crashJob));
    expect(failed?.refunded).toBe(true);

    // No stall: Bob's job runs on a fresh worker and is delivered.
    const upload = await fake!.waitForRequest(isUpload(next.interaction.token), 30_000);
    expect(contentOf(upload)).toMatch(new RegExp(`Job #${nextJob}\\*\\* done`));
    expect(jobRows()).toEqual([
      { id: crashJob, state: 'failed', attempts: 2 },
      { id: nextJob, state: 'succeeded', attempts: 1 },
    ]);
    const ledger = harness!.db.prepare('SELECT COUNT(*) AS n FROM quota_ledger WHERE job_id = ? AND entry = ?').get(crashJob, 'refund') as { n: number };
    expect(ledger.n).toBe(1);
  }, 45_000);

  it('mode 14: a worker crash on the first attempt only is retried and the video is delivered', async () => {
    await startAll();
    const { interaction, first } = await video(alice, 'a crash once corgi');
    const jobId = jobIdOf(first);
    const upload = await fake!.waitForRequest(isUpload(interaction.token), 30_000);
    expect(contentOf(upload)).toMatch(new RegExp(`Job #${jobId}\\*\\* done`));
    expect(harness!.events.filter(isType('started', jobId)).map((event) => event.attempt)).toEqual([1, 2]);
    expect(fake!.requests.filter((r) => isOriginalEdit(interaction.token)(r) && /failed/.test(contentOf(r)))).toHaveLength(0);
  }, 45_000);

  it('mode 15: the gateway drops mid-job, discord.js resumes, the missed interaction is replayed, and the results post', async () => {
    await startAll();
    const slow = await video(alice, 'a slow corgi');
    const slowJob = jobIdOf(slow.first);
    expect(fake!.gatewayFrames.filter((frame) => frame.op === 2)).toHaveLength(1);

    fake!.closeGateway(4000);
    // Sent while no client is connected: Discord keeps it for the session and replays it on RESUME.
    const missed = fake!.slashCommand(bob, { prompt: 'a cat sent during the outage' });
    fake!.sendInteraction(missed);
    await fake!.waitForGatewayFrame(6);
    const resume = fake!.gatewayFrames.find((frame) => frame.op === 6)!.d as { token?: string; session_id?: string; seq?: number };
    expect(resume.token).toBe('fake-bot-token');
    expect(resume.session_id).toMatch(/^session-/);
    const missedReply = await fake!.waitForRequest(isOriginalEdit(missed.token));
    // It reached the bot only through the replay.
    expect(fake!.replayed.length).toBeGreaterThanOrEqual(1);
    expect(fake!.requestsFor(missed)[0]).toMatchObject({ method: 'POST', body: { type: 5 } });
    const missedJob = jobIdOf(missedReply);
    expect(missedJob).toBeGreaterThan(slowJob);

    const upload = await fake!.waitForRequest(isUpload(slow.interaction.token), 30_000);
    expect(contentOf(upload)).toMatch(new RegExp(`Job #${slowJob}\\*\\* done`));
    await fake!.waitForRequest(isUpload(missed.token), 30_000);
    // A resume, not a new session.
    expect(fake!.gatewayFrames.filter((frame) => frame.op === 2)).toHaveLength(1);
  }, 45_000);

  it('mode 15: an INTERACTION_CREATE replayed after a resume, and one after a new session, make no second job', async () => {
    await startAll();
    const first = await video(alice, 'a slow corgi');
    const jobId = jobIdOf(first.first);

    fake!.closeGateway(4000);
    await fake!.waitForGatewayFrame(6);
    await new Promise((resolve) => setTimeout(resolve, 100));
    fake!.sendInteraction(first.interaction); // the same id and token, delivered again

    // The next resume is refused (op 9): discord.js identifies again and gets a new session.
    fake!.invalidateNextResume();
    fake!.closeGateway(4000);
    await fake!.waitForGatewayFrame(2, 2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    fake!.sendInteraction(first.interaction);

    // The new session works: a new interaction makes a new job.
    const after = await video(bob, 'a cat after the new session');
    expect(jobIdOf(after.first)).toBe(jobId + 1);
    await fake!.waitForRequest(isUpload(first.interaction.token), 30_000);
    await fake!.waitForRequest(isUpload(after.interaction.token), 30_000);

    expect(fake!.requests.filter(isAck(first.interaction))).toHaveLength(3);
    expect(jobRows().map((row) => row.id)).toEqual([jobId, jobId + 1]);
    const events = harness!.db.prepare('SELECT COUNT(*) AS n FROM processed_events WHERE job_id = ?').get(jobId) as { n: number };
    expect(events.n).toBe(1);
    // The redeliveries did not overwrite the reply: the video is its last edit.
    const edits = fake!.requests.filter(isOriginalEdit(first.interaction.token));
    expect(edits.at(-1)!.files).toHaveLength(1);
    expect(harness!.events.filter(isType('queued'))).toHaveLength(2);
  }, 45_000);
});
