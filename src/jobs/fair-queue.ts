/**
 * The run queue's waiting list (run-queue.ts; it also fits p-queue's `queueClass`): round-robin
 * across users instead of FIFO.
 *
 * Each user has a FIFO of their own jobs. Users take turns by a virtual time: a user's turn is
 * max(when their last job ended or is expected to end, when their first waiting job arrived),
 * earliest first; ties go to whoever has waited longest. A running job counts until its estimated
 * end (its `cost`), and until its real end once {@link FairQueue.finished} says so. So a user with
 * 20 queued jobs does not hold up a user with 1 who arrives while the first one runs, and a
 * newcomer cannot undercut the users already waiting: their turn is their arrival, later than
 * everyone's already in line, so a returning user never waits behind a stream of later
 * newcomers. Jobs with a higher priority (admin jobs) go before all others, FIFO among themselves.
 *
 * A waiting user's turn only moves when one of their jobs starts or ends, and a new arrival's turn
 * is later than that of anyone who was waiting already, so a shown position only grows when a
 * newcomer's first job takes its round-robin share ahead of someone's second or later job. The
 * order is a round-robin over users sorted by turn, which gives positions in O(users) without
 * simulating. Users are few next to jobs, so the linear scans over users here stay cheap.
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
  /**
   * When the job arrived, on the same clock as {@link FairQueue.seedLastServed} (ms since the epoch
   * by default): jobs recovered from the database pass their submit time. Default: now.
   */
  arrivedAt?: number;
  /** The job's expected run time (ms) on the same clock: its user's turn waits that long after it starts. Default 0. */
  cost?: number;
}

export interface FairQueueSettings {
  /** The clock for arrivals and serves (ms); default Date.now. */
  now?: () => number;
}

export interface FairEntry {
  id: string;
  userId: number;
  priority: number;
  run: RunFunction;
  seq: number;
  cost: number;
}

interface UserLine {
  userId: number;
  jobs: FairEntry[];
  /** When the first of the waiting jobs arrived (the line is made when the user had none waiting). */
  since: number;
}

export class FairQueue implements Queue<RunFunction, FairQueueOptions> {
  readonly #priority: FairEntry[] = [];
  readonly #lines = new Map<number, UserLine>();
  /** When each user's last finished job ended (or, seeded, their last job started or ended). */
  readonly #lastEnded = new Map<number, number>();
  /** Started jobs not yet reported finished: their user and expected end. */
  readonly #running = new Map<string, { userId: number; until: number }>();
  /** Waiting (non-priority) entry id → its user. */
  readonly #userOf = new Map<string, number>();
  readonly #now: () => number;
  /** The latest arrival or serve time handed out; stamps strictly increase. */
  #clock = -Infinity;
  #seq = 0;
  #size = 0;

  constructor(settings: FairQueueSettings = {}) {
    this.#now = settings.now ?? Date.now;
  }

  get size(): number {
    return this.#size;
  }

  /** When each user's last job ended, on the queue's clock (e.g. from the database after a restart, in ms). */
  seedLastServed(lastEnded: ReadonlyMap<number, number>): void {
    for (const [userId, at] of lastEnded) {
      this.#lastEnded.set(userId, at);
      this.#clock = Math.max(this.#clock, at);
    }
  }

  /** A started job has ended (at `at`, default now): its user's turn no longer waits for its estimate. */
  finished(id: string, at: number = this.#now()): void {
    const running = this.#running.get(id);
    if (!running) return;
    this.#running.delete(id);
    this.#lastEnded.set(running.userId, at);
  }

  enqueue(run: RunFunction, options?: Partial<FairQueueOptions>): void {
    if (options?.id === undefined || options.userId === undefined) {
      throw new TypeError('FairQueue needs the `id` and `userId` of every task');
    }
    const cost = options.cost ?? 0;
    if (!(Number.isFinite(cost) && cost >= 0)) throw new RangeError(`Expected \`cost\` to be a finite number of ms >= 0, got ${String(cost)}`);
    const entry: FairEntry = { id: options.id, userId: options.userId, priority: options.priority ?? 0, run, seq: this.#seq++, cost };
    if (entry.priority > 0) {
      // Higher priority first; FIFO within one priority.
      const index = this.#priority.findIndex((other) => other.priority < entry.priority);
      this.#priority.splice(index === -1 ? this.#priority.length : index, 0, entry);
    } else {
      let line = this.#lines.get(entry.userId);
      if (!line) {
        line = { userId: entry.userId, jobs: [], since: this.#stamp(options.arrivedAt) };
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
    this.#running.set(entry.id, { userId: entry.userId, until: this.#stamp() + entry.cost });
    return entry.run;
  }

  /**
   * Takes the first waiting entry, in the order of {@link order}, that `accept` takes (the run
   * queue: its kind has a free slot), and counts it as started, as {@link dequeue} does. Entries
   * ahead of it keep their places.
   */
  dequeueFirst(accept: (entry: FairEntry) => boolean): FairEntry | undefined {
    const entry = this.order().find(accept);
    if (!entry) return undefined;
    this.remove(entry.id);
    this.#running.set(entry.id, { userId: entry.userId, until: this.#stamp() + entry.cost });
    return entry;
  }

  /** Removes a waiting task (a cancel; p-queue calls this when a queued task's signal aborts). */
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
    this.enqueue(entry.run, { id: entry.id, userId: entry.userId, priority, cost: entry.cost });
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

  /** A user's turn: max(when their last job ended or their running ones are expected to end, arrival of their first waiting job). */
  #turn(line: UserLine): number {
    let busyUntil = this.#lastEnded.get(line.userId) ?? -Infinity;
    for (const running of this.#running.values()) {
      if (running.userId === line.userId && running.until > busyUntil) busyUntil = running.until;
    }
    return Math.max(busyUntil, line.since);
  }

  /** Earliest turn first; then whoever's first waiting job came first. */
  #compareTurn(a: UserLine, b: UserLine): number {
    const turnA = this.#turn(a);
    const turnB = this.#turn(b);
    if (turnA !== turnB) return turnA < turnB ? -1 : 1;
    return a.jobs[0]!.seq - b.jobs[0]!.seq;
  }

  /**
   * A time on the queue's clock, strictly after every earlier stamp. An arrival in the past
   * (a recovered job) keeps its own time so that recovered jobs keep their order.
   */
  #stamp(at?: number): number {
    if (at !== undefined && Number.isFinite(at)) return at;
    // 1 µs apart at least: well above a double's resolution at today's ms timestamps.
    this.#clock = Math.max(this.#clock + 0.001, this.#now());
    return this.#clock;
  }

  #find(id: string): FairEntry | undefined {
    return this.#priority.find((entry) => entry.id === id) ?? [...this.#lines.values()].flatMap((line) => line.jobs).find((entry) => entry.id === id);
  }
}
