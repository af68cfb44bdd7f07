/**
 * The one way the running bot writes to SQLite: a single writer queue.
 *
 * better-sqlite3 is synchronous, and a write that meets another process's lock (an operator's
 * sqlite3 shell in `BEGIN IMMEDIATE`, a backup, a migration) would wait out `busy_timeout` on the
 * calling thread, freezing every handler, ack and gateway heartbeat. Here writes wait their turn
 * asynchronously; only the write at the head of the queue tries, each try waiting at most a few
 * milliseconds inside SQLite ({@link writeWithoutBlocking}), with asynchronous pauses between tries.
 * So however many writes wait for a foreign lock, the event loop is held for one short try at a time.
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
import { writeWithoutBlocking, type Db } from './db.js';

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
}

export class StoreWriter {
  readonly #db: Db;
  readonly #logger: Logger | undefined;
  readonly #tryMs: number;
  readonly #retryPause: { first: number; max: number };
  /** The connection's busy timeout, set when it was opened: the default deadline of a write. */
  readonly #busyTimeoutMs: number;
  /** The tail of the queue: every write starts after the one before it settled. */
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** Pauses of writes retried until done, cut short by {@link close}. */
  readonly #pauses = new Set<() => void>();

  constructor(db: Db, options: StoreWriterOptions = {}) {
    this.#db = db;
    this.#logger = options.logger;
    this.#tryMs = options.tryMs ?? 20;
    this.#retryPause = options.retryPauseMs ?? { first: 50, max: 5000 };
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
    // Each write waits for a turn of the event loop first. Without it a burst of writes (200
    // admissions at once) ran back to back in one drain of the microtask queue, and every
    // interaction, envelope and heartbeat that arrived meanwhile waited for all of them.
    const turn = this.#tail.then(nextTurnOfEventLoop).then(() => {
      if (this.#closed) throw new StoreClosedError();
      return writeWithoutBlocking(this.#db, write, {
        deadlineMs: Math.max(0, deadline - Date.now()),
        tryMs: this.#tryMs,
        busyTimeoutMs: this.#busyTimeoutMs,
        stop: () => this.#closed,
      });
    });
    this.#tail = turn.catch(() => undefined);
    return turn;
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
