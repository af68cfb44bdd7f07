/**
 * The outbox of final messages: every finished job (succeeded, failed, cancelled) stays undelivered
 * until its adapter marks it, across restarts, and comes back as the final event it had.
 */
import { afterEach, expect, test } from 'vitest';
import { alice, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  if (h) removeDir(h.dir);
  h = undefined;
});

test('finished jobs stay undelivered until marked, across a restart, as the final events they had', async () => {
  h = startService(tempDir(), { quota: { tiers: { free: { maxPendingJobs: 10 } } } });
  const done = (await h.service.submit(video(alice, { ms: 10 }))).job.id;
  const failed = (await h.service.submit(video(alice, { mode: 'user-error' }))).job.id;
  const slow = (await h.service.submit(video(alice, { ms: 5000 }))).job.id;
  const cancelled = (await h.service.submit(video(alice, { ms: 10 }))).job.id;
  await h.service.cancel(alice, cancelled);
  const slack = (await h.service.submit(video({ platform: 'slack', externalId: 'U1' }, { ms: 10 }))).job.id;
  await h.waitFor(isType('succeeded', done));
  await h.waitFor(isType('failed', failed));
  await h.waitFor(isType('succeeded', slack));
  const live = h.events.find(isType('succeeded', done))!;

  // The job still running is not finished: not in the outbox.
  const outcomes = h.service.undeliveredOutcomes('discord');
  expect(outcomes.map((event) => [event.type, event.job.id])).toEqual(
    expect.arrayContaining([
      ['succeeded', done],
      ['failed', failed],
      ['cancelled', cancelled],
    ]),
  );
  expect(outcomes.map((event) => event.job.id)).not.toContain(slow);
  expect(outcomes.map((event) => event.job.id)).not.toContain(slack);
  expect(outcomes.find((event) => event.job.id === done)).toMatchObject({ result: live.result, gpuSeconds: live.type === 'succeeded' ? live.gpuSeconds : -1 });
  expect(outcomes.find((event) => event.job.id === failed)).toMatchObject({ code: 'engine_failed', refunded: true, message: expect.stringContaining('The clip could not be read.') });
  expect(outcomes.find((event) => event.job.id === cancelled)).toMatchObject({ refunded: true });

  await h.service.markDelivered(done);
  await h.service.markDelivered(slow); // not finished: nothing to mark
  expect(h.service.undeliveredOutcomes('discord').map((event) => event.job.id)).not.toContain(done);

  // A restart (the slow job is requeued and runs again) still knows what was never delivered.
  const dir = h.dir;
  await h.close();
  h = startService(dir);
  expect(h.service.undeliveredOutcomes('discord').map((event) => event.job.id).sort()).toEqual([failed, cancelled].sort());
  expect(h.service.undeliveredOutcomes('slack').map((event) => event.job.id)).toEqual([slack]);
  expect(h.service.status(done)?.job.deliveredAt).toBeTypeOf('number');
  await h.service.cancel(alice, slow);
  await h.waitFor(isType('cancelled', slow));
  expect(h.service.undeliveredOutcomes('discord').map((event) => event.job.id)).toContain(slow);
});

test('outcomes older than a day are not resent', async () => {
  let now = Date.now();
  h = startService(tempDir(), {}, { now: () => now });
  const { job } = await h.service.submit(video(alice, { ms: 10 }));
  await h.waitFor(isType('succeeded', job.id));
  now += 25 * 60 * 60 * 1000;
  expect(h.service.undeliveredOutcomes('discord')).toEqual([]);
});
