/**
 * The waiting list behind p-queue (its `queueClass`): round-robin across users instead of FIFO.
 *
 * Each user has a FIFO of their own jobs. The next job comes from the user who was served least
 * recently (a user never served goes first; ties go to whoever has waited longest), so a user with
 * 20 queued jobs does not hold up a user with 1. Jobs with a higher priority (admin jobs) go
 * before all others, FIFO among themselves.
 *
 * Because a served user moves behind everyone else, the order is a plain round-robin over users
 * sorted by when they were last served, which gives positions in O(users) without simulating.
 * Users are few next to jobs, so the linear scans over users here stay cheap.
 */
import type { Queue, QueueAddOptions } from 'p-queue';

/** A task as p-queue hands it to its queue class. */
export type RunFunction = () => Promise<unknown>;

export interface FairQueueOptions extends QueueAddOptions {
  /** The job id, as a string (p-queue's task id). */
  id: string;
  userId: number;
  /** > 0 jumps the line. */
  priority: number;
}

export interface FairEntry {
  id: string;
  userId: number;
  priority: number;
  run: RunFunction;
  seq: number;
}

interface UserLine {
  userId: number;
  jobs: FairEntry[];
}

export class FairQueue implements Queue<RunFunction, FairQueueOptions> {
  readonly #priority: FairEntry[] = [];
  readonly #lines = new Map<number, UserLine>();
  readonly #lastServed = new Map<number, number>();
  /** Waiting (non-priority) entry id → its user. */
  readonly #userOf = new Map<string, number>();
  #serveClock = 0;
  #seq = 0;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** When each user was last served (any increasing numbers, e.g. start times from the database). */
  seedLastServed(lastServed: ReadonlyMap<number, number>): void {
    for (const [userId, at] of lastServed) {
      this.#lastServed.set(userId, at);
      this.#serveClock = Math.max(this.#serveClock, at);
    }
  }

  enqueue(run: RunFunction, options?: Partial<FairQueueOptions>): void {
    if (options?.id === undefined || options.userId === undefined) {
      throw new TypeError('FairQueue needs the `id` and `userId` of every task');
    }
    const entry: FairEntry = { id: options.id, userId: options.userId, priority: options.priority ?? 0, run, seq: this.#seq++ };
    if (entry.priority > 0) {
      // Higher priority first; FIFO within one priority.
      const index = this.#priority.findIndex((other) => other.priority < entry.priority);
      this.#priority.splice(index === -1 ? this.#priority.length : index, 0, entry);
    } else {
      let line = this.#lines.get(entry.userId);
      if (!line) {
        line = { userId: entry.userId, jobs: [] };
        this.#lines.set(entry.userId, line);
      }
      line.jobs.push(entry);
      this.#userOf.set(entry.id, entry.userId);
    }
    this.#size++;
  }

  dequeue(): RunFunction | undefined {
    const entry = this.#priority.shift() ?? this.#takeFromNextUser();
    if (!entry) return undefined;
    this.#size--;
    this.#lastServed.set(entry.userId, ++this.#serveClock);
    return entry.run;
  }

  /** Removes a waiting task (p-queue calls this when a queued task's signal aborts). */
  remove(id: string): void {
    const index = this.#priority.findIndex((entry) => entry.id === id);
    if (index !== -1) {
      this.#priority.splice(index, 1);
      this.#size--;
      return;
    }
    const userId = this.#userOf.get(id);
    const line = userId === undefined ? undefined : this.#lines.get(userId);
    if (!line) return;
    line.jobs.splice(line.jobs.findIndex((entry) => entry.id === id), 1);
    this.#userOf.delete(id);
    if (line.jobs.length === 0) this.#lines.delete(line.userId);
    this.#size--;
  }

  filter(options: Readonly<Partial<FairQueueOptions>>): RunFunction[] {
    return this.order()
      .filter((entry) => (options.priority === undefined || entry.priority === options.priority) && (options.userId === undefined || entry.userId === options.userId))
      .map((entry) => entry.run);
  }

  setPriority(id: string, priority: number): void {
    const entry = this.#find(id);
    if (!entry) throw new ReferenceError(`No queued task with id ${id}`);
    this.remove(id);
    this.enqueue(entry.run, { id: entry.id, userId: entry.userId, priority });
  }

  /** Every waiting entry in the order it will start (if nothing else arrives). */
  order(): FairEntry[] {
    const users = this.#usersInTurnOrder();
    const result = [...this.#priority];
    const longest = Math.max(0, ...users.map((line) => line.jobs.length));
    for (let round = 0; round < longest; round++) {
      for (const line of users) {
        const entry = line.jobs[round];
        if (entry) result.push(entry);
      }
    }
    return result;
  }

  /**
   * How many entries start before this one, or undefined when it is not waiting.
   * O(users): cheap enough for every submit and every status query.
   */
  aheadCount(id: string): number | undefined {
    const priorityIndex = this.#priority.findIndex((entry) => entry.id === id);
    if (priorityIndex !== -1) return priorityIndex;
    const userId = this.#userOf.get(id);
    const owner = userId === undefined ? undefined : this.#lines.get(userId);
    if (!owner) return undefined;
    const round = owner.jobs.findIndex((entry) => entry.id === id);
    // Every user's jobs of the earlier rounds, plus this round's job of each user whose turn comes first.
    let count = this.#priority.length;
    for (const line of this.#lines.values()) {
      count += Math.min(line.jobs.length, round);
      if (line !== owner && line.jobs.length > round && this.#compareTurn(line, owner) < 0) count++;
    }
    return count;
  }

  #takeFromNextUser(): FairEntry | undefined {
    let best: UserLine | undefined;
    for (const line of this.#lines.values()) {
      if (!best || this.#compareTurn(line, best) < 0) best = line;
    }
    if (!best) return undefined;
    const entry = best.jobs.shift()!;
    this.#userOf.delete(entry.id);
    if (best.jobs.length === 0) this.#lines.delete(best.userId);
    return entry;
  }

  #usersInTurnOrder(): UserLine[] {
    return [...this.#lines.values()].sort((a, b) => this.#compareTurn(a, b));
  }

  /** Least recently served first (never served before all); then whoever has waited longest. */
  #compareTurn(a: UserLine, b: UserLine): number {
    const servedA = this.#lastServed.get(a.userId);
    const servedB = this.#lastServed.get(b.userId);
    if (servedA !== servedB) {
      if (servedA === undefined) return -1;
      if (servedB === undefined) return 1;
      return servedA - servedB;
    }
    return a.jobs[0]!.seq - b.jobs[0]!.seq;
  }

  #find(id: string): FairEntry | undefined {
    return this.#priority.find((entry) => entry.id === id) ?? [...this.#lines.values()].flatMap((line) => line.jobs).find((entry) => entry.id === id);
  }
}
