/**
 * Where the operator's commands (`reelbot queue`, `jobs show`, `jobs cancel`, `usage`, `queue
 * pause|resume`, `db prune`…) go. With a `reelbot serve` holding the instance lease on the database
 * (on this host, its control socket up), they go through it: it keeps the fair queue, the paused
 * flag and the running jobs in memory, so it answers with its live view and makes every change
 * itself (audited as the operator's, platform "cli"); the command line then opens the file only to
 * read the lease, read-only. Without a coordinator they read and write the file, each write in one
 * transaction that first checks again that no coordinator took the lease meanwhile.
 */
import { hostname, userInfo } from 'node:os';
import type { Config } from './config.js';
import { ErrorCode } from './errors.js';
import { nothingToCancel } from './jobs/job-service.js';
import type { JobRecord } from './jobs/types.js';
import { AuditLog } from './store/audit-log.js';
import type { Db } from './store/db.js';
import { JobRepo } from './store/job-repo.js';
import { describeHolder, InstanceLease, liveCoordinator, type LeaseHolder } from './store/instance-lease.js';
import { QuotaLedger } from './store/quota-ledger.js';
import { Settings } from './store/settings.js';
import { ControlClient } from './web/control-socket.js';

/** The operator at this command line: the CLI actor's id. */
export function operatorName(): string {
  return userInfo().username || 'operator';
}

export type Route =
  /** Through the running coordinator's control socket. */
  | { via: 'coordinator'; holder: LeaseHolder; client: ControlClient }
  /** From the database file; `note` says why (no coordinator, or one this command cannot reach). */
  | { via: 'file'; holder: LeaseHolder | undefined; note: string };

/** Where a reading command gets its answer. */
export function readRoute(config: Config): Route {
  const holder = liveCoordinator(config.dbPath, config.leaseTtlMs);
  if (holder === undefined) return { via: 'file', holder, note: `The bot (reelbot serve) is not running: read from the database file ${config.dbPath}.` };
  if (reachable(holder)) return { via: 'coordinator', holder, client: new ControlClient(holder.controlSocket!) };
  return { via: 'file', holder, note: `${unreachableReason(holder)} Read from the database file ${config.dbPath}.` };
}

/**
 * Where a command that changes something goes: the running coordinator's client, or undefined when
 * no coordinator runs (the file is written then). A coordinator this command cannot go through (a
 * `reelbot render` running its job, a serve on another host or still starting) is a refusal naming it.
 */
export function writeRoute(config: Config, fail: (message: string) => never): { holder: LeaseHolder; client: ControlClient } | undefined {
  const holder = liveCoordinator(config.dbPath, config.leaseTtlMs);
  if (holder === undefined) return undefined;
  if (reachable(holder)) return { holder, client: new ControlClient(holder.controlSocket!) };
  return fail(`${unreachableReason(holder)} It keeps the state of ${config.dbPath} in memory, so this command does not change the file beside it: ${refusalAdvice(holder)}`);
}

function reachable(holder: LeaseHolder): boolean {
  return holder.role === 'serve' && holder.host === hostname() && holder.controlSocket !== null;
}

function unreachableReason(holder: LeaseHolder): string {
  if (holder.role !== 'serve') return `${describeHolder(holder)} is running a job on this database and takes no commands.`;
  if (holder.host !== hostname()) return `${describeHolder(holder)} is the coordinator of this database, on another host.`;
  return `${describeHolder(holder)} is starting.`;
}

function refusalAdvice(holder: LeaseHolder): string {
  if (holder.role !== 'serve') return 'wait for it to finish (or stop it), then run this again.';
  if (holder.host !== hostname()) return `run this command on ${holder.host}, where it can reach it.`;
  return 'run this again in a moment.';
}

/**
 * Runs `write` on the database file in one IMMEDIATE transaction, after checking inside it that no
 * coordinator holds the lease (one that starts now waits for this write, then reads its result).
 */
export function writeFile<T>(db: Db, config: Config, write: () => T, fail: (message: string) => never): T {
  return db
    .transaction(() => {
      const holder = new InstanceLease(db, { ttlMs: config.leaseTtlMs }).holder();
      if (holder) fail(`${describeHolder(holder)} took over ${config.dbPath} just now; run the command again to go through it.`);
      return write();
    })
    .immediate();
}

/**
 * Cancels a job in the file (no coordinator runs): a queued job, or one left running by a
 * coordinator that is gone, ends cancelled and refunded; the bot tells its user when it starts
 * again (the outbox). Someone else's job gets an audit row, as a cancel through the bot does.
 */
export function cancelInFile(db: Db, operator: string, jobId: number, now: number, fail: (message: string) => never): JobRecord {
  const jobs = new JobRepo(db);
  const job = jobs.get(jobId);
  if (!job) return fail(`No job #${jobId}.`);
  if (!jobs.finish(job.id, 'cancelled', { now, errorCode: ErrorCode.Cancelled, error: 'Cancelled.' })) return fail(nothingToCancel(job));
  new QuotaLedger(db).refund(job.id, now);
  if (!(job.platform === 'cli' && job.userExternalId === operator)) {
    new AuditLog(db).record(auditRow(operator, 'job.cancel', `${job.platform}:${job.userExternalId}`, { jobId: job.id, state: job.state }, now));
  }
  return jobs.get(job.id)!;
}

/** Pauses or resumes the queue in the file (no coordinator runs: the next one starts paused or not), audited. */
export function setPausedInFile(db: Db, operator: string, paused: boolean, now: number): void {
  new Settings(db).setQueuePaused(paused);
  new AuditLog(db).record(auditRow(operator, paused ? 'queue.pause' : 'queue.resume', null, {}, now));
}

function auditRow(operator: string, action: string, target: string | null, details: Record<string, unknown>, now: number) {
  return { platform: 'cli' as const, actorId: operator, groupId: null, channelId: null, action, target, details, createdAt: now };
}
