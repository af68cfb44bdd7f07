import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { admin, alice, bob, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  if (h) removeDir(h.dir);
  h = undefined;
});

test('the owner deletes a finished job\'s stored output: the folder is gone, the job stays in history and usage', async () => {
  h = startService(tempDir(), { admins: { discord: ['admin-1'], slack: [] } });
  const { job } = await h.service.submit(video(alice));
  const done = await h.waitFor(isType('succeeded', job.id));
  const file = (done.type === 'succeeded' ? done.result : {}) as { file: string };
  expect(existsSync(file.file)).toBe(true);

  // Someone else may not; a job still running may not be deleted either.
  await expect(h.service.deleteResult(bob, job.id)).rejects.toMatchObject({ code: 'not_job_owner' });
  expect(existsSync(file.file)).toBe(true);

  const deleted = await h.service.deleteResult(alice, job.id);
  expect(deleted.outputDeletedAt).toEqual(expect.any(Number));
  expect(existsSync(dirname(file.file))).toBe(false);
  const row = h.db.prepare('SELECT output_deleted_by AS by, state FROM jobs WHERE id = ?').get(job.id);
  expect(row).toEqual({ by: 'discord:alice', state: 'succeeded' });
  await expect(h.service.deleteResult(alice, job.id)).rejects.toMatchObject({ userMessage: `Job #${job.id}'s video was already deleted.` });
  expect(h.service.usage(alice).today.jobs).toBe(1);
});

test('an admin deletes anyone\'s output, and it is audited; a queued job is refused until cancelled', async () => {
  h = startService(tempDir(), { admins: { discord: ['admin-1'], slack: [] } });
  const { job } = await h.service.submit(video(alice));
  await h.waitFor(isType('succeeded', job.id));
  await h.service.deleteResult(admin, job.id);
  expect(h.db.prepare("SELECT action, target FROM admin_audit WHERE action = 'delete-result'").all()).toEqual([{ action: 'delete-result', target: `job:${job.id}` }]);

  const slow = await h.service.submit(video(alice, { ms: 5000 }));
  await expect(h.service.deleteResult(alice, slow.job.id)).rejects.toMatchObject({ userMessage: expect.stringMatching(/is still (queued|running); cancel it first/) });
  await h.service.cancel(alice, slow.job.id);
});
