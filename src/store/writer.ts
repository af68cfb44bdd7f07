/**
 * The one way the running bot writes to SQLite: a single writer queue.
 *
 * better-sqlite3 is synchronous, and a write that meets another process's lock (an operator's
 * sqlite3 shell in `BEGIN IMMEDIATE`, a backup, a migration) would wait out `busy_timeout` on the
 * calling thread, freezing every handler, ack and gateway heartbeat. Here writes wait their turn
 * asynchronously; only the write at the head of the queue tries, each try waiting at most a few
 * milliseconds inside SQLite ({@link writeWithoutBlocking}), with asynchronous pauses between tries.
 * So however many writes wait for a foreign lock, the event loop is held for one short try at a time.
 * Queued writes run in batches of a few milliseconds, each batch after a turn of the event loop.
 *
 * Two kinds of write:
 * - {@link StoreWriter.write}: a write someone waits for (a submit, a cancel, an admin change). It
 *   gives up with SQLITE_BUSY after its deadline, so the caller can say "try again".
 * - {@link StoreWriter.writeUntilDone}: a write that records what already happened (a job's result,
 *   its settlement). Any store error is retried, with a growing pause, until it succeeds or the
 *   writer is closed: such an error is never turned into an outcome for the job.
 */
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { isBusyError, withBusyTimeout, type Db } from './db.js';

/** Thrown by a write still waiting when the writer is closed. */
export class StoreClosedError extends Error {
  constructor() {
    super('the store writer is closed');
    this.name = 'StoreClosedError';
  }
}

export interface StoreWriterOptions {
  logger?: Logger;
  /** The longest a single try waits inside SQLite, blocking the thread (default 20 ms). */
  tryMs?: number;
  /** The first and the longest pause between two tries of a write that is retried until done (default 50 ms and 5 s). */
  retryPauseMs?: { first: number; max: number };
  /** How long one batch of queued writes may hold the thread before the event loop gets a turn (default 4 ms). */
  batchMs?: number;
}

interface QueuedWrite {
  write: () => unknown;
  /** When a write that meets another connection's lock gives up (Date.now() time). */
  deadline: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export class StoreWriter {
  readonly #db: Db;
  readonly #logger: Logger | undefined;
  readonly #tryMs: number;
  readonly #retryPause: { first: number; max: number };
  readonly #batchMs: number;
  /** The connection's busy timeout, set when it was opened: the default deadline of a write. */
  readonly #busyTimeoutMs: number;
  /** Writes waiting for their turn, in the order they were asked for. */
  readonly #queue: QueuedWrite[] = [];
  #draining = false;
  #closed = false;
  /** Pauses of writes retried until done, cut short by {@link close}. */
  readonly #pauses = new Set<() => void>();

  constructor(db: Db, options: StoreWriterOptions = {}) {
    this.#db = db;
    this.#logger = options.logger;
    this.#tryMs = options.tryMs ?? 20;
    this.#retryPause = options.retryPauseMs ?? { first: 50, max: 5000 };
    this.#batchMs = options.batchMs ?? 4;
    this.#busyTimeoutMs = Number(db.pragma('busy_timeout', { simple: true }));
  }

  /**
   * Runs `write` (synchronous, one transaction, no `await` inside) when its turn comes. Rejects with
   * the SQLITE_BUSY error when another connection held the lock past `deadlineMs` (counted from
   * this call; default: the connection's busy timeout), and with any other error at once.
   */
  write<T>(write: () => T, options: { deadlineMs?: number } = {}): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreClosedError());
    const deadline = Date.now() + (options.deadlineMs ?? this.#busyTimeoutMs);
    const queued = new Promise<T>((resolve, reject) => {
      this.#queue.push({ write, deadline, resolve: resolve as (value: unknown) => void, reject });
    });
    if (!this.#draining) {
      this.#draining = true;
      void this.#drain();
    }
    return queued;
  }

  /**
   * Runs the queue in batches. Each batch waits for a turn of the event loop and then runs writes,
   * one after the other, for at most `batchMs`: a burst of writes (200 admissions at once) neither
   * runs back to back in one drain of the microtask queue, holding up every interaction, envelope
   * and heartbeat that arrives meanwhile, nor waits a whole turn per write, falling behind the
   * requests that made them. A head write that meets another connection's lock is tried again
   * after a pause (5 ms, doubling up to 100 ms) until its deadline; the writes behind it wait.
   */
  async #drain(): Promise<void> {
    let pause = 5;
    try {
      while (this.#queue.length > 0) {
        await nextTurnOfEventLoop();
        if (this.#closed) return;
        const outcome = this.#runBatch();
        if (outcome === 'busy') {
          await new Promise((resolve) => setTimeout(resolve, pause));
          pause = Math.min(pause * 2, 100);
        } else {
          pause = 5;
        }
      }
    } finally {
      this.#draining = false;
      if (this.#closed) this.#rejectQueued();
    }
  }

  /** Runs queued writes for up to `batchMs`; 'busy' when the head write met a lock and waits to try again. */
  #runBatch(): 'ran' | 'busy' {
    const started = performance.now();
    return withBusyTimeout(this.#db, this.#tryMs, this.#busyTimeoutMs, () => {
      while (this.#queue.length > 0 && performance.now() - started < this.#batchMs) {
        const head = this.#queue[0]!;
        let value: unknown;
        try {
          value = head.write();
        } catch (error) {
          if (isBusyError(error) && Date.now() < head.deadline && !this.#closed) return 'busy';
          this.#queue.shift();
          head.reject(error);
          continue;
        }
        this.#queue.shift();
        head.resolve(value);
      }
      return 'ran';
    });
  }

  #rejectQueued(): void {
    for (const waiting of this.#queue.splice(0)) waiting.reject(new StoreClosedError());
  }

  /**
   * Runs `write` until it succeeds: a store error (busy past the busy timeout, disk full, I/O) is
   * logged and tried again after a pause that doubles up to the maximum; other writes go first
   * meanwhile. Rejects only with {@link StoreClosedError} once {@link close} is called, or with an
   * error that is not SQLite's (a bug in `write`). `what` names the write in the log.
   */
  async writeUntilDone<T>(what: string, write: () => T, context: Record<string, unknown> = {}): Promise<T> {
    for (let attempt = 1, pause = this.#retryPause.first; ; attempt++, pause = Math.min(pause * 2, this.#retryPause.max)) {
      try {
        return await this.write(write);
      } catch (error) {
        if (!(error instanceof Database.SqliteError)) throw error;
        this.#logger?.warn({ ...context, code: error.code, attempt, retryInMs: pause }, `could not ${what}; retrying`);
      }
      await this.#pause(pause);
    }
  }

  /** Stops taking writes: waiting ones reject ({@link StoreClosedError}, or SQLITE_BUSY for one waiting for a lock); a try in progress finishes. */
  close(): void {
    this.#closed = true;
    for (const wake of this.#pauses) wake();
    if (!this.#draining) this.#rejectQueued();
  }

  get closed(): boolean {
    return this.#closed;
  }

  #pause(ms: number): Promise<void> {
    if (this.#closed) return Promise.reject(new StoreClosedError());
    return new Promise((resolve, reject) => {
      const wake = () => {
        clearTimeout(timer);
        this.#pauses.delete(wake);
        if (this.#closed) reject(new StoreClosedError());
        else resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#pauses.add(wake);
    });
  }
}

function nextTurnOfEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
