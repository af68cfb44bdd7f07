import PQueue from 'p-queue';
import { expect, test } from 'vitest';
import { FairQueue, type FairQueueOptions } from '../../src/jobs/fair-queue.js';

const noop = async () => undefined;

function fill(queue: FairQueue, jobs: [id: string, userId: number, priority?: number][]): void {
  for (const [id, userId, priority] of jobs) queue.enqueue(noop, { id, userId, priority: priority ?? 0 });
}

function drain(queue: FairQueue, ids: Map<() => Promise<unknown>, string>): string[] {
  const order: string[] = [];
  for (let run = queue.dequeue(); run; run = queue.dequeue()) order.push(ids.get(run)!);
  return order;
}

function tagged(queue: FairQueue, jobs: [id: string, userId: number, priority?: number][]): Map<() => Promise<unknown>, string> {
  const ids = new Map<() => Promise<unknown>, string>();
  for (const [id, userId, priority] of jobs) {
    const run = async () => id;
    ids.set(run, id);
    queue.enqueue(run, { id, userId, priority: priority ?? 0 });
  }
  return ids;
}

test('GIVEN one user with 20 jobs and another with 1 THEN the second user goes next', () => {
  const queue = new FairQueue();
  const jobs: [string, number][] = Array.from({ length: 20 }, (_, i) => [`a${i}`, 1]);
  const ids = tagged(queue, [...jobs, ['b0', 2]]);
  // A's first job is taken (it runs); then B arrives later in the list but goes first.
  expect(ids.get(queue.dequeue()!)).toBe('a0');
  expect(drain(queue, ids).slice(0, 3)).toEqual(['b0', 'a1', 'a2']);
});

test('round-robin across three users, FIFO within each', () => {
  const queue = new FairQueue();
  const ids = tagged(queue, [['a1', 1], ['a2', 1], ['a3', 1], ['b1', 2], ['c1', 3], ['c2', 3]]);
  expect(queue.order().map((entry) => entry.id)).toEqual(['a1', 'b1', 'c1', 'a2', 'c2', 'a3']);
  expect(drain(queue, ids)).toEqual(['a1', 'b1', 'c1', 'a2', 'c2', 'a3']);
  expect(queue.size).toBe(0);
});

test('admin priority jumps the line; positions agree with the dequeue order', () => {
  const queue = new FairQueue();
  const jobs: [string, number, number?][] = [['a1', 1], ['a2', 1], ['b1', 2], ['x1', 9, 1], ['b2', 2], ['x2', 9, 1]];
  fill(queue, jobs);
  const order = queue.order().map((entry) => entry.id);
  expect(order).toEqual(['x1', 'x2', 'a1', 'b1', 'a2', 'b2']);
  for (const [index, id] of order.entries()) expect(queue.aheadCount(id)).toBe(index);
  expect(queue.aheadCount('nope')).toBeUndefined();
});

test('positions agree with the dequeue order for many users with uneven queues', () => {
  const queue = new FairQueue();
  queue.seedLastServed(new Map([[3, 10], [5, 20]]));
  const jobs: [string, number][] = [];
  for (let i = 0; i < 60; i++) jobs.push([`j${i}`, (i * 7) % 6]);
  const ids = tagged(queue, jobs);
  const expected = queue.order().map((entry) => entry.id);
  for (const [index, id] of expected.entries()) expect(queue.aheadCount(id)).toBe(index);
  expect(drain(queue, ids)).toEqual(expected);
});

test('a user served after the others arrived waits behind them (state seeded after a restart)', () => {
  const queue = new FairQueue({ now: () => 1_000 });
  queue.seedLastServed(new Map([[1, 500], [2, 100]]));
  // All three were waiting since 50 when the bot stopped; A was served last, then B.
  for (const [id, userId] of [['a1', 1], ['b1', 2], ['c1', 3]] as const) queue.enqueue(noop, { id, userId, priority: 0, arrivedAt: 50 });
  expect(queue.order().map((entry) => entry.id)).toEqual(['c1', 'b1', 'a1']);
});

test('GIVEN a stream of newcomers THEN a returning user waits only for those who arrived before them', () => {
  let now = 0;
  const queue = new FairQueue({ now: () => now });
  // The returning user was served an hour ago; three newcomers are already waiting when they come back.
  queue.seedLastServed(new Map([[1, -3_600_000]]));
  const ids = new Map<() => Promise<unknown>, string>();
  const arrive = (id: string, userId: number) => {
    const run = async () => id;
    ids.set(run, id);
    queue.enqueue(run, { id, userId, priority: 0 });
  };
  for (let i = 0; i < 3; i++) arrive(`n${i}`, 100 + i);
  now = 1;
  arrive('r1', 1);
  const started: string[] = [];
  // One one-minute job after another, and a new user arrives during each: 60 minutes of newcomers.
  for (let minute = 0; minute < 60; minute++) {
    now = 2 + minute * 60_000;
    arrive(`n${minute + 3}`, 103 + minute);
    started.push(ids.get(queue.dequeue()!)!);
  }
  expect(started.indexOf('r1')).toBe(3);
});

test('GIVEN newcomers arriving THEN the position of a waiting first job never grows', () => {
  let now = 0;
  const queue = new FairQueue({ now: () => ++now });
  fill(queue, [['a1', 1], ['a2', 1], ['b1', 2], ['c1', 3]]);
  queue.seedLastServed(new Map([[2, 0]]));
  let before = queue.aheadCount('c1')!;
  for (let i = 0; i < 20; i++) {
    queue.enqueue(noop, { id: `n${i}`, userId: 10 + i, priority: 0 });
    const after = queue.aheadCount('c1');
    if (after === undefined) break; // c1 has started
    expect(after).toBeLessThanOrEqual(before);
    before = after;
    if (i % 3 === 0) queue.dequeue();
  }
});

test('jobs recovered with their arrival times keep their order against new ones', () => {
  const queue = new FairQueue({ now: () => 1_000 });
  queue.seedLastServed(new Map([[1, 400]]));
  queue.enqueue(noop, { id: 'new', userId: 3, priority: 0 });
  queue.enqueue(noop, { id: 'old-a', userId: 1, priority: 0, arrivedAt: 300 });
  queue.enqueue(noop, { id: 'old-b', userId: 2, priority: 0, arrivedAt: 200 });
  // old-a's user was served at 400, after old-b arrived (200) but before the new job (1000).
  expect(queue.order().map((entry) => entry.id)).toEqual(['old-b', 'old-a', 'new']);
});

test('remove() takes a waiting task out; size and order follow', () => {
  const queue = new FairQueue();
  fill(queue, [['a1', 1], ['a2', 1], ['b1', 2], ['x', 3, 5]]);
  queue.remove('a1');
  queue.remove('x');
  queue.remove('missing');
  expect(queue.size).toBe(2);
  expect(queue.order().map((entry) => entry.id)).toEqual(['a2', 'b1']);
});

test('as p-queue\'s queueClass: aborting a queued task removes it, concurrency holds', async () => {
  const started: string[] = [];
  const queue = new PQueue<FairQueue, FairQueueOptions>({ concurrency: 1, autoStart: false, queueClass: FairQueue });
  const controller = new AbortController();
  const add = (id: string, userId: number, signal?: AbortSignal) =>
    queue.add(async () => void started.push(id), { id, userId, priority: 0, signal }).catch((error: unknown) => `aborted:${(error as Error).name}`);
  const results = [add('a1', 1), add('a2', 1, controller.signal), add('a3', 1), add('b1', 2)];
  controller.abort();
  expect(queue.size).toBe(3);
  queue.start();
  expect(await Promise.all(results)).toEqual([undefined, 'aborted:AbortError', undefined, undefined]);
  expect(started).toEqual(['a1', 'b1', 'a3']);
});
