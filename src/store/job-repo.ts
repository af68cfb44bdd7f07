/** Job rows: insert, state changes, history and the statistics behind ETAs and `/admin stats`. */
import type { Db } from './db.js';
import type { JobKind, JobRecord, JobState, Platform } from '../jobs/types.js';

interface JobRow {
  id: number;
  kind: JobKind;
  params: string;
  state: JobState;
  user_id: number;
  user_external_id: string;
  platform: Platform;
  group_id: string | null;
  channel_id: string | null;
  message_refs: string;
  seed: number;
  priority: number;
  device: string | null;
  attempts: number;
  estimated_gpu_s: number;
  gpu_seconds: number | null;
  result: string | null;
  error_code: string | null;
  error: string | null;
  queued_at: number;
  started_at: number | null;
  finished_at: number | null;
  cancel_requested_at: number | null;
  owner_instance: string | null;
  output_deleted_at: number | null;
  delivered_at: number | null;
}

const SELECT = `SELECT jobs.*, users.external_id AS user_external_id FROM jobs JOIN users ON users.id = jobs.user_id`;

function toRecord(row: JobRow): JobRecord {
  return {
    id: row.id,
    kind: row.kind,
    params: JSON.parse(row.params) as Record<string, unknown>,
    state: row.state,
    userId: row.user_id,
    userExternalId: row.user_external_id,
    platform: row.platform,
    groupId: row.group_id,
    channelId: row.channel_id,
    messageRefs: JSON.parse(row.message_refs) as Record<string, unknown>,
    seed: row.seed,
    priority: row.priority,
    device: row.device,
    attempts: row.attempts,
    estimatedGpuSeconds: row.estimated_gpu_s,
    gpuSeconds: row.gpu_seconds,
    result: row.result === null ? null : (JSON.parse(row.result) as unknown),
    errorCode: row.error_code,
    error: row.error,
    queuedAt: row.queued_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    cancelRequestedAt: row.cancel_requested_at,
    ownerInstance: row.owner_instance,
    outputDeletedAt: row.output_deleted_at ?? null,
    deliveredAt: row.delivered_at,
  };
}

export interface NewJob {
  kind: JobKind;
  params: Record<string, unknown>;
  userId: number;
  platform: Platform;
  groupId: string | null;
  channelId: string | null;
  messageRefs: Record<string, unknown>;
  seed: number;
  priority: number;
  estimatedGpuSeconds: number;
  /** The model folder the job runs with ('' = the built-in set): cost rates are learned per model. */
  model?: string;
  queuedAt: number;
}

export interface JobStats {
  total: number;
  byState: Record<JobState, number>;
  /** failed / (succeeded + failed); 0 when nothing finished. */
  failureRate: number;
  p50Seconds: number | null;
  p95Seconds: number | null;
  gpuSecondsByGroup: { groupId: string | null; gpuSeconds: number; jobs: number }[];
}

export class JobRepo {
  readonly #db: Db;
  readonly #insert;
  readonly #get;
  readonly #markRunning;
  readonly #finish;
  readonly #requeue;
  readonly #cancelRequested;
  readonly #byState;
  readonly #forUser;
  readonly #pendingCount;
  readonly #recentCosts;
  readonly #lastQueued;
  readonly #lastStarted;
  readonly #messageRefs;
  readonly #outputDeleted;
  readonly #undelivered;
  readonly #markDelivered;

  constructor(db: Db) {
    this.#db = db;
    this.#insert = db.prepare(`INSERT INTO jobs (kind, params, state, user_id, platform, group_id, channel_id, message_refs,
      seed, priority, estimated_gpu_s, model, queued_at) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.#get = db.prepare(`${SELECT} WHERE jobs.id = ?`);
    this.#markRunning = db.prepare(
      `UPDATE jobs SET state = 'running', device = ?, attempts = attempts + 1, started_at = ?, owner_instance = ? WHERE id = ? AND state = 'queued'`,
    );
    this.#finish = db.prepare(`UPDATE jobs SET state = ?, gpu_seconds = ?, result = ?, error_code = ?, error = ?, finished_at = ?
      WHERE id = ? AND state IN ('queued', 'running')`);
    this.#requeue = db.prepare(
      `UPDATE jobs SET state = 'queued', attempts = max(attempts - ?, 0), device = NULL WHERE id = ? AND state = 'running'`,
    );
    this.#cancelRequested = db.prepare(`UPDATE jobs SET cancel_requested_at = ? WHERE id = ? AND cancel_requested_at IS NULL`);
    this.#byState = db.prepare(`${SELECT} WHERE jobs.state = ? ORDER BY jobs.id`);
    this.#forUser = db.prepare(`${SELECT} WHERE jobs.user_id = ? ORDER BY jobs.id DESC LIMIT ? OFFSET ?`);
    this.#pendingCount = db.prepare(`SELECT count(*) AS n FROM jobs WHERE user_id = ? AND state IN ('queued', 'running')`);
    // Jobs made before the model was recorded (NULL) count for the model configured now.
    this.#recentCosts = db.prepare(`SELECT device, params, gpu_seconds FROM jobs
      WHERE kind = ? AND device = ? AND state = 'succeeded' AND gpu_seconds IS NOT NULL AND (model = ? OR model IS NULL)
      ORDER BY finished_at DESC LIMIT ?`);
    this.#lastQueued = db.prepare(`SELECT max(queued_at) FROM jobs WHERE user_id = ?`);
    this.#lastStarted = db.prepare(
      // When each user's last job ended, or (left running by a crash) was expected to end.
      `SELECT user_id, max(coalesce(finished_at, started_at + estimated_gpu_s * 1000)) AS t FROM jobs WHERE started_at IS NOT NULL GROUP BY user_id`,
    );
    this.#messageRefs = db.prepare(`UPDATE jobs SET message_refs = ? WHERE id = ?`);
    this.#undelivered = db.prepare(`${SELECT} WHERE jobs.platform = ? AND jobs.delivered_at IS NULL
      AND jobs.state IN ('succeeded', 'failed', 'cancelled') AND jobs.finished_at >= ? ORDER BY jobs.finished_at, jobs.id`);
    this.#markDelivered = db.prepare(`UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL
      AND state IN ('succeeded', 'failed', 'cancelled')`);
    this.#outputDeleted = db.prepare(`UPDATE jobs SET output_deleted_at = ?, output_deleted_by = ? WHERE id = ? AND output_deleted_at IS NULL`);
  }

  /** Records that a finished job's output was deleted (once); false when it already was. */
  markOutputDeleted(id: number, by: string, now: number): boolean {
    return this.#outputDeleted.run(now, by, id).changes === 1;
  }

  insert(job: NewJob): number {
    const info = this.#insert.run(
      job.kind,
      JSON.stringify(job.params),
      job.userId,
      job.platform,
      job.groupId,
      job.channelId,
      JSON.stringify(job.messageRefs),
      job.seed,
      job.priority,
      job.estimatedGpuSeconds,
      job.model ?? null,
      job.queuedAt,
    );
    return Number(info.lastInsertRowid);
  }

  get(id: number): JobRecord | undefined {
    const row = this.#get.get(id) as JobRow | undefined;
    return row && toRecord(row);
  }

  /** queued → running; false when the job was no longer queued. */
  /** Starts an attempt on `device`; `owner` is the instance that runs it (its lease guards the job against recovery elsewhere). */
  markRunning(id: number, device: string, now: number, owner: string | null = null): boolean {
    return this.#markRunning.run(device, now, owner, id).changes === 1;
  }

  /** queued|running → a finished state; false when it had already finished. */
  finish(
    id: number,
    state: 'succeeded' | 'failed' | 'cancelled',
    fields: { gpuSeconds?: number | null; result?: unknown; errorCode?: string | null; error?: string | null; now: number },
  ): boolean {
    return (
      this.#finish.run(
        state,
        fields.gpuSeconds ?? null,
        fields.result === undefined ? null : JSON.stringify(fields.result),
        fields.errorCode ?? null,
        fields.error ?? null,
        fields.now,
        id,
      ).changes === 1
    );
  }

  /** running → queued. `forgiveAttempt` when the stop was ours (shutdown), not the job's. */
  requeue(id: number, forgiveAttempt: boolean): boolean {
    return this.#requeue.run(forgiveAttempt ? 1 : 0, id).changes === 1;
  }

  markCancelRequested(id: number, now: number): void {
    this.#cancelRequested.run(now, id);
  }

  setMessageRefs(id: number, refs: Record<string, unknown>): void {
    this.#messageRefs.run(JSON.stringify(refs), id);
  }

  /** Finished jobs of a platform whose final message was never delivered, finished since `since`, oldest first. */
  listUndelivered(platform: Platform, since: number): JobRecord[] {
    return (this.#undelivered.all(platform, since) as JobRow[]).map(toRecord);
  }

  /** Records that a finished job's final message went out; false when it already had (or the job is not finished). */
  markDelivered(id: number, now: number): boolean {
    return this.#markDelivered.run(now, id).changes === 1;
  }

  listByState(state: JobState): JobRecord[] {
    return (this.#byState.all(state) as JobRow[]).map(toRecord);
  }

  listForUser(userId: number, limit: number, offset = 0): JobRecord[] {
    return (this.#forUser.all(userId, limit, offset) as JobRow[]).map(toRecord);
  }

  pendingCount(userId: number): number {
    return (this.#pendingCount.get(userId) as { n: number }).n;
  }

  /** The last `window` succeeded jobs of a kind and model on a device (params, measured GPU-seconds), newest first. */
  recentCosts(kind: JobKind, device: string, model: string, window: number): { device: string; params: Record<string, unknown>; gpuSeconds: number }[] {
    const rows = this.#recentCosts.all(kind, device, model, window) as { device: string; params: string; gpu_seconds: number }[];
    return rows.map((row) => ({ device: row.device, params: JSON.parse(row.params) as Record<string, unknown>, gpuSeconds: row.gpu_seconds }));
  }

  /** When the user last submitted a job that was admitted (any state), or undefined. */
  lastQueuedAt(userId: number): number | undefined {
    return (this.#lastQueued.pluck().get(userId) as number | null) ?? undefined;
  }

  /** When each user's most recent job ended (or, if left running by a crash, was expected to): seeds queue fairness after a restart. */
  lastEndedByUser(): Map<number, number> {
    const rows = this.#lastStarted.all() as { user_id: number; t: number }[];
    return new Map(rows.map((row) => [row.user_id, row.t]));
  }

  /** Jobs, failure rate, duration percentiles and GPU-seconds per guild/workspace since a time. */
  stats(since: number): JobStats {
    const byState: Record<JobState, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    const counts = this.#db
      .prepare(`SELECT state, count(*) AS n FROM jobs WHERE queued_at >= ? GROUP BY state`)
      .all(since) as { state: JobState; n: number }[];
    for (const { state, n } of counts) byState[state] = n;
    const durations = (
      this.#db
        .prepare(`SELECT (finished_at - started_at) / 1000.0 AS s FROM jobs
          WHERE state = 'succeeded' AND queued_at >= ? AND started_at IS NOT NULL ORDER BY s`)
        .all(since) as { s: number }[]
    ).map((row) => row.s);
    const gpuSecondsByGroup = (
      this.#db
        .prepare(`SELECT group_id, sum(gpu_seconds) AS gpu, count(*) AS n FROM jobs
          WHERE state = 'succeeded' AND queued_at >= ? GROUP BY group_id ORDER BY gpu DESC`)
        .all(since) as { group_id: string | null; gpu: number; n: number }[]
    ).map((row) => ({ groupId: row.group_id, gpuSeconds: row.gpu, jobs: row.n }));
    const finished = byState.succeeded + byState.failed;
    return {
      total: Object.values(byState).reduce((a, b) => a + b, 0),
      byState,
      failureRate: finished === 0 ? 0 : byState.failed / finished,
      p50Seconds: percentile(durations, 0.5),
      p95Seconds: percentile(durations, 0.95),
      gpuSecondsByGroup,
    };
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}
