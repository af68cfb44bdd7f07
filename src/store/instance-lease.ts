/**
 * The instance lease: one coordinator per database. The process that runs jobs holds the
 * 'coordinator' row and renews it every third of its time to live; a second process finds the row
 * live and is told who holds it. A lease is free when it expired, was released, or names a process
 * on this host that no longer exists (a kill -9 needs no wait for the expiry then).
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';
import type { Db } from './db.js';
import { isBusyError, openDatabaseReadOnly, writeWithoutBlocking } from './db.js';

export type InstanceRole = 'serve' | 'render' | 'edit';

export interface LeaseHolder {
  instanceId: string;
  role: InstanceRole;
  pid: number;
  host: string;
  controlSocket: string | null;
  acquiredAt: number;
  heartbeatAt: number;
  expiresAt: number;
}

interface LeaseRow {
  instance_id: string;
  role: InstanceRole;
  pid: number;
  host: string;
  control_socket: string | null;
  acquired_at: number;
  heartbeat_at: number;
  expires_at: number;
}

const LEASE = 'coordinator';

export interface InstanceLeaseOptions {
  ttlMs: number;
  now?: () => number;
  /** Whether a process of this host runs (default: signal 0). */
  processAlive?: (pid: number) => boolean;
}

export class InstanceLease {
  /** This process's instance id: running jobs record it as their owner. */
  readonly instanceId = randomUUID();
  readonly #db: Db;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #alive: (pid: number) => boolean;
  readonly #read;
  #timer: NodeJS.Timeout | undefined;
  #held = false;

  constructor(db: Db, options: InstanceLeaseOptions) {
    this.#db = db;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
    this.#alive = options.processAlive ?? processAlive;
    this.#read = db.prepare(`SELECT * FROM instance_leases WHERE name = ?`);
  }

  get held(): boolean {
    return this.#held;
  }

  /** The live holder of the coordinator lease, if any (this process included). */
  holder(): LeaseHolder | undefined {
    const row = this.#read.get(LEASE) as LeaseRow | undefined;
    if (!row || !this.#isLive(row)) return undefined;
    return toHolder(row);
  }

  /**
   * Takes the coordinator lease unless another live process holds it; returns that holder then.
   * Starts renewing the lease on success.
   */
  acquire(role: InstanceRole, controlSocket: string | null = null): { acquired: true } | { acquired: false; holder: LeaseHolder } {
    const outcome = this.#db
      .transaction(() => {
        const row = this.#read.get(LEASE) as LeaseRow | undefined;
        if (row && row.instance_id !== this.instanceId && this.#isLive(row)) return { acquired: false as const, holder: toHolder(row) };
        const now = this.#now();
        this.#db
          .prepare(
            `INSERT INTO instance_leases (name, instance_id, role, pid, host, control_socket, acquired_at, heartbeat_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET instance_id = excluded.instance_id, role = excluded.role, pid = excluded.pid,
               host = excluded.host, control_socket = excluded.control_socket, acquired_at = excluded.acquired_at,
               heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at`,
          )
          .run(LEASE, this.instanceId, role, process.pid, hostname(), controlSocket, now, now, now + this.#ttlMs);
        return { acquired: true as const };
      })
      .immediate();
    if (outcome.acquired) {
      this.#held = true;
      this.#timer = setInterval(() => void this.renew(), Math.max(50, Math.floor(this.#ttlMs / 3)));
      this.#timer.unref();
    }
    return outcome;
  }

  /** Sets where CLI commands reach this coordinator (after its socket listens). */
  setControlSocket(path: string | null): void {
    this.#db.prepare(`UPDATE instance_leases SET control_socket = ? WHERE name = ? AND instance_id = ?`).run(path, LEASE, this.instanceId);
  }

  /**
   * Pushes the expiry out without holding the event loop while another process has the write lock
   * (tries until half a beat has passed); a database still busy is tried again at the next beat (the
   * lease lasts three beats).
   */
  async renew(): Promise<void> {
    if (!this.#held) return;
    const now = this.#now();
    try {
      await writeWithoutBlocking(
        this.#db,
        () => this.#db.prepare(`UPDATE instance_leases SET heartbeat_at = ?, expires_at = ? WHERE name = ? AND instance_id = ?`).run(now, now + this.#ttlMs, LEASE, this.instanceId),
        { deadlineMs: Math.max(20, Math.floor(this.#ttlMs / 6)), stop: () => !this.#held },
      );
    } catch (error) {
      if (!isBusyError(error)) throw error;
    }
  }

  /** Instance ids whose lease is live now: running jobs of any other owner were left by a process that is gone. */
  liveInstanceIds(): Set<string> {
    const row = this.#read.get(LEASE) as LeaseRow | undefined;
    return new Set(row && this.#isLive(row) ? [row.instance_id] : []);
  }

  /** Gives the lease up (a drained stop): the next coordinator may start at once. */
  release(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (!this.#held) return;
    this.#held = false;
    this.#db.prepare(`DELETE FROM instance_leases WHERE name = ? AND instance_id = ?`).run(LEASE, this.instanceId);
  }

  #isLive(row: LeaseRow): boolean {
    if (row.expires_at <= this.#now()) return false;
    if (row.host === hostname() && row.pid !== process.pid && !this.#alive(row.pid)) return false;
    return true;
  }
}

function toHolder(row: LeaseRow): LeaseHolder {
  return {
    instanceId: row.instance_id,
    role: row.role,
    pid: row.pid,
    host: row.host,
    controlSocket: row.control_socket,
    acquiredAt: row.acquired_at,
    heartbeatAt: row.heartbeat_at,
    expiresAt: row.expires_at,
  };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The live coordinator of the database file at `dbPath`, read without writing anything (the file
 * opened read-only); undefined when there is none, no file yet, or a file from before the lease.
 */
export function liveCoordinator(dbPath: string, ttlMs: number): LeaseHolder | undefined {
  if (dbPath === ':memory:' || !existsSync(dbPath)) return undefined;
  const db = openDatabaseReadOnly(dbPath);
  try {
    const known = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'instance_leases'`).get();
    return known === undefined ? undefined : new InstanceLease(db, { ttlMs }).holder();
  } finally {
    db.close();
  }
}

/** "reelbot serve (pid 1234 on host-a, since 2026-12-02T00:40:00Z)" */
export function describeHolder(holder: LeaseHolder): string {
  return `reelbot ${holder.role} (pid ${holder.pid} on ${holder.host}, since ${new Date(holder.acquiredAt).toISOString()})`;
}
