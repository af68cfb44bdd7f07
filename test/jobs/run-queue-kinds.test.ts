/**
 * Starts by kind: with slots that run only some kinds (worker hosts with `--kinds`, or models for
 * one kind only), a job leaves the waiting line only when a slot for its kind is free. A fake
 * dispatch stands in for the hosts: its slots run the kinds they are given, and a job runs until
 * the test ends it.
 */
import { afterEach, expect, test } from 'vitest';
import { AppError, ErrorCode } from '../../src/errors.js';
import type { Dispatcher, DispatchJob, RunOutcome, WorkerSnapshot } from '../../src/jobs/dispatch/port.js';
import { JobService } from '../../src/jobs/job-service.js';
import type { Actor, JobEvent, JobKind, JobRequest } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';
import { openDatabase, type Db } from '../../src/store/db.js';
import { alice, bob, removeDir, tempDir, testConfig, video } from '../helpers/harness.js';

const carol: Actor = { platform: 'discord', externalId: 'carol' };
const edit = (actor: Actor): JobRequest => ({ actor, kind: 'edit', params: { instruction: 'make it snowy', inputFile: '/clips/in.mp4' } });

interface Slot {
  device: string;
  kinds: readonly JobKind[];
  job?: { id: number; finish(): void; interrupt(): void };
}

/** Slots that each run only the kinds they are given; `finish(jobId)` ends a job successfully. */
class KindSlots implements Dispatcher {
  readonly slots: Slot[] = [];
  readonly #listeners = new Set<(size: number) => void>();

  get size(): number {
    return this.slots.length;
  }

  /** A worker host's slot appears. */
  add(device: string, kinds: readonly JobKind[]): void {
    this.slots.push({ device, kinds });
    for (const listener of this.#listeners) listener(this.size);
  }

  slotsFor(kind: JobKind): number {
    return this.slots.filter((slot) => slot.kinds.includes(kind)).length;
  }

  nextIdleDevice(kind?: JobKind): string | undefined {
    return this.#idle(kind)?.device;
  }

  run(job: DispatchJob): Promise<RunOutcome> {
    const slot = this.#idle(job.kind);
    if (!slot) return Promise.reject(new Error(`no idle slot for a ${job.kind} job`));
    return new Promise((resolve, reject) => {
      slot.job = {
        id: job.id,
        finish: () => {
          slot.job = undefined;
          resolve({ result: { video: 'out.mp4' }, gpuSeconds: 1, loadSeconds: 0, device: slot.device });
        },
        interrupt: () => {
          slot.job = undefined;
          reject(new AppError(ErrorCode.Interrupted, 'The bot is shutting down.'));
        },
      };
    });
  }

  finish(jobId: number): void {
    const slot = this.slots.find((candidate) => candidate.job?.id === jobId);
    if (!slot) throw new Error(`job #${jobId} is not running on any slot`);
    slot.job!.finish();
  }

  cancel(): boolean {
    return false;
  }

  snapshot(): WorkerSnapshot[] {
    return this.slots.map((slot) => ({ device: slot.device, state: slot.job ? 'busy' : 'ready', pid: null, jobId: slot.job?.id ?? null, lastHeartbeatAt: null, restarts: 0 }));
  }

  async close(): Promise<void> {
    for (const slot of this.slots) slot.job?.interrupt();
  }

  onSizeChange(listener: (size: number) => void): void {
    this.#listeners.add(listener);
  }

  #idle(kind?: JobKind): Slot | undefined {
    return this.slots.find((slot) => !slot.job && (kind === undefined || slot.kinds.includes(kind)));
  }
}

let opened: { service: JobService; db: Db; dir: string } | undefined;
afterEach(async () => {
  if (!opened) return;
  await opened.service.shutdown(0);
  opened.db.close();
  removeDir(opened.dir);
  opened = undefined;
});

function startWith(dispatcher: KindSlots) {
  const dir = tempDir();
  const config = testConfig(dir);
  const db = openDatabase(config.dbPath);
  const service = new JobService({ config, db, logger: createLogger('silent'), dispatcher });
  const events: JobEvent[] = [];
  service.onEvent((event) => events.push(event));
  service.start();
  opened = { service, db, dir };
  const started = () => events.filter((event) => event.type === 'started').map((event) => event.job.id);
  /** Waits until exactly these jobs have started, in this order (and gives a stray start time to show). */
  const startedAre = async (ids: number[], inOrder = true) => {
    const seen = () => (inOrder ? started() : started().sort((a, b) => a - b));
    const wanted = inOrder ? ids : [...ids].sort((a, b) => a - b);
    await expect.poll(seen, { timeout: 5000 }).toEqual(wanted);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seen()).toEqual(wanted);
  };
  const lines = () => {
    const queue = service.queue();
    return { running: queue.running.map((entry) => entry.job.id), waiting: queue.waiting.map((entry) => [entry.job.id, entry.position]) };
  };
  return { service, started, startedAre, lines };
}

test('a job whose kind has no slot keeps position 1 while jobs of another kind run, and starts first when a slot for it appears', async () => {
  const slots = new KindSlots();
  slots.add('edit-host/cuda:0', ['edit']);
  const { service, startedAre, lines } = startWith(slots);
  const t2v = await service.submit(video(alice));
  const edit1 = await service.submit(edit(bob));
  const edit2 = await service.submit(edit(carol));
  expect(t2v.position).toBe(1);
  await startedAre([edit1.job.id]);
  expect(lines()).toEqual({ running: [edit1.job.id], waiting: [[t2v.job.id, 1], [edit2.job.id, 2]] });
  expect(service.status(t2v.job.id)?.job.state).toBe('queued');

  slots.finish(edit1.job.id);
  await startedAre([edit1.job.id, edit2.job.id]);
  expect(lines()).toEqual({ running: [edit2.job.id], waiting: [[t2v.job.id, 1]] });

  slots.add('t2v-host/cuda:0', ['text2video']);
  await startedAre([edit1.job.id, edit2.job.id, t2v.job.id]);
  expect(lines()).toEqual({ running: [edit2.job.id, t2v.job.id], waiting: [] });
});

test('jobs of one kind never outnumber its slots, even when they are queued in the same turn of the event loop', async () => {
  const slots = new KindSlots();
  slots.add('edit-host/cuda:0', ['edit']);
  slots.add('t2v-host/cuda:0', ['text2video']);
  const { service, startedAre, lines } = startWith(slots);
  const [edit1, edit2, t2v] = await Promise.all([service.submit(edit(alice)), service.submit(edit(bob)), service.submit(video(carol))]);
  // Submitted side by side: which edit job is first in line is the database's order, not the call's.
  const [first, second] = edit1.job.id < edit2.job.id ? [edit1, edit2] : [edit2, edit1];
  await startedAre([first.job.id, t2v.job.id], false);
  expect(lines().running.sort()).toEqual([first.job.id, t2v.job.id].sort());
  expect(lines().waiting).toEqual([[second.job.id, 1]]);
  // The text2video slot frees first: it cannot take the edit job, which starts when the edit slot frees.
  slots.finish(t2v.job.id);
  await startedAre([first.job.id, t2v.job.id], false);
  expect(lines().waiting).toEqual([[second.job.id, 1]]);
  slots.finish(first.job.id);
  await startedAre([first.job.id, t2v.job.id, second.job.id], false);
  expect(lines()).toEqual({ running: [second.job.id], waiting: [] });
});
