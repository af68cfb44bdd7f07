import { describe, expect, it } from 'vitest';
import { JobFollower, type FinalEvent, type FollowedJob, type FollowerPlatform } from '../../../src/bots/shared/job-follower.js';
import type { JobRecord } from '../../../src/jobs/types.js';
import { createLogger } from '../../../src/log.js';
import { eventSource } from '../../helpers/event-source.js';

const job = (id: number, refs: Record<string, unknown> = {}) => ({ id, platform: 'discord', messageRefs: refs }) as unknown as JobRecord;

interface Followed extends FollowedJob {
  via: 'submit' | 'refs';
}

/** A platform that records what it is asked to send. */
function recordingPlatform(follower: () => JobFollower<Followed>) {
  const sent: string[] = [];
  let releaseFinal: (() => void) | undefined;
  const platform: FollowerPlatform<Followed> & { finished: number[] } = {
    finished: [],
    reattach(record) {
      if (record.messageRefs.test === undefined) return undefined;
      return { jobId: record.id, via: 'refs', editor: follower().editor(record.id, async (text) => void sent.push(`#${record.id} ${text}`)) };
    },
    progressText: (followed, event) => (event.type === 'progress' ? `${followed.via} ${event.progress.step}/${event.progress.total}` : undefined),
    deliverFinal: async (followed, event: FinalEvent) => {
      await new Promise<void>((resolve) => (releaseFinal = resolve));
      sent.push(`#${followed.jobId} ${followed.via} ${event.type}`);
    },
    onFinished: (record) => void platform.finished.push(record.id),
  };
  return { platform, sent, releaseFinal: () => releaseFinal?.() };
}

describe('JobFollower', () => {
  it('follows a recovered job from its refs, ignores jobs without them, and a drain waits for the final message', async () => {
    const source = eventSource();
    let follower!: JobFollower<Followed>;
    const { platform, sent, releaseFinal } = recordingPlatform(() => follower);
    follower = new JobFollower({ jobs: source, logger: createLogger('silent'), platform, platformName: 'discord', progressIntervalMs: 0 });
    // Recovery notices come before the adapter is connected: held until open().
    source.emit({ type: 'progress', job: job(1, { test: true }), progress: { step: 1, total: 4 } });
    source.emit({ type: 'progress', job: job(2), progress: { step: 1, total: 4 } });
    expect(follower.get(1)).toBeUndefined();
    follower.open();
    expect(follower.get(1)?.via).toBe('refs');
    expect(follower.get(2)).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sent).toEqual(['#1 refs 1/4']);

    source.emit({ type: 'cancelled', job: job(1, { test: true }), refunded: true });
    source.emit({ type: 'cancelled', job: job(2), refunded: true });
    expect(platform.finished).toEqual([1, 2]);
    // A finished job is followed no more; its final message is still being sent.
    expect(follower.get(1)).toBeUndefined();
    expect(await follower.finalDeliveriesSettled(50)).toBe('timed_out');
    releaseFinal();
    expect(await follower.finalDeliveriesSettled(1000)).toBe('settled');
    expect(sent).toEqual(['#1 refs 1/4', '#1 refs cancelled']);
  });

  it('a queued event never reattaches (the submit follows its own job), and follow() keeps the job already followed', () => {
    const source = eventSource();
    let follower!: JobFollower<Followed>;
    const { platform } = recordingPlatform(() => follower);
    follower = new JobFollower({ jobs: source, logger: createLogger('silent'), platform, platformName: 'discord', progressIntervalMs: 0 });
    follower.open();
    source.emit({ type: 'queued', job: job(3, { test: true }), position: 1, etaMs: 0 });
    expect(follower.get(3)).toBeUndefined();
    const submitted = follower.follow(3, () => ({ jobId: 3, via: 'submit', editor: follower.editor(3, async () => undefined) }));
    expect(follower.follow(3, () => ({ jobId: 3, via: 'refs', editor: follower.editor(3, async () => undefined) }))).toBe(submitted);
    source.emit({ type: 'started', job: job(3, { test: true }), device: 'cpu', attempt: 1 });
    expect(follower.get(3)).toBe(submitted);
    follower.close();
    expect(follower.get(3)).toBeUndefined();
  });

  it('at open, sends each outcome left undelivered once (a recovery notice held before open is not sent twice), and marks each delivered', async () => {
    const held = { type: 'failed', job: job(5, { test: true }), code: 'interrupted', message: 'restarted twice', refunded: true } as const;
    const source = eventSource({
      undelivered: [
        { type: 'succeeded', job: job(6, { test: true }), result: {}, gpuSeconds: 1 },
        // No refs on this platform: nobody can deliver it; it is given up, not tried at every start.
        { type: 'cancelled', job: job(7), refunded: true },
        { type: 'succeeded', job: { ...job(8, { test: true }), platform: 'slack' } as JobRecord, result: {}, gpuSeconds: 1 },
      ],
    });
    let follower!: JobFollower<Followed>;
    const { platform, sent } = recordingPlatform(() => follower);
    // Final messages go out at once here.
    platform.deliverFinal = async (followed, event) => void sent.push(`#${followed.jobId} ${followed.via} ${event.type}`);
    follower = new JobFollower({ jobs: source, logger: createLogger('silent'), platform, platformName: 'discord', progressIntervalMs: 0 });
    // Recovery fails job 5 before the adapter is connected: held, and in the outbox as well.
    source.emit(held);
    follower.open();
    expect(await follower.finalDeliveriesSettled(1_000)).toBe('settled');
    expect(sent.sort()).toEqual(['#5 refs failed', '#6 refs succeeded']);
    expect(source.delivered.sort()).toEqual([5, 6, 7]);
    // A second open (nothing new) sends nothing.
    follower.open();
    expect(sent).toHaveLength(2);
  });
});
