import { afterEach, expect, test } from 'vitest';
import { alice, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  if (h) removeDir(h.dir);
});

test('a job runs through a real worker and is settled', async () => {
  h = startService(tempDir());
  const { job } = await h.service.submit(video(alice, { ms: 50, steps: 3 }));
  const done = await h.waitFor(isType('succeeded', job.id));
  expect(done.type).toBe('succeeded');
  expect(h.events.filter(isType('progress', job.id)).map((e) => e.progress.step)).toEqual([1, 2, 3]);
});
