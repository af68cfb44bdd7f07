/**
 * The BullMQ dispatch (REELBOT_REDIS_URL): jobs run on worker hosts (`reelbot worker`) behind
 * Redis. The coordinator keeps the fair queue; this hands BullMQ a job only when a host slot is
 * idle (`size` is the slots the hosts advertise, `nextIdleDevice` says whether one is free), so
 * order, positions and ETAs are the coordinator's. BullMQ does the rest: the host's lock on the job
 * (renewed by the host's main thread, which the engine in its child process cannot block), stalled
 * jobs (a host killed -9: its job fails as stalled and the job runner retries it once, on whichever
 * host is free), progress and results through its events.
 *
 * Files never travel through Redis: the job carries signed URLs of the coordinator's HTTP port
 * (src/blob/) for its clip and its result, or with an S3 bucket presigned URLs of the job's objects
 * there (the coordinator puts the clip in first, and fetches and checks the result itself). A coordinator restarted while hosts compute finds each
 * job it had handed out by its BullMQ id (`<database namespace>.<job>.<attempt>`) and waits for that run's result
 * instead of starting it again. While Redis is unreachable no slot is idle: submits are admitted
 * into SQLite as always and wait, and dispatch resumes when Redis is back.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';
import { Job, Queue, QueueEvents, type ConnectionOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { S3Bucket } from '../../blob/s3-bucket.js';
import type { BlobSigner } from '../../blob/signed-urls.js';
import { MAX_PRESIGN_SECONDS } from '../../blob/sigv4.js';
import type { Db } from '../../store/db.js';
import { fileDigest } from '../../blob/signed-urls.js';
import { AppError, ErrorCode } from '../../errors.js';
import { JOB_KINDS, type JobKind } from '../types.js';
import type { Dispatcher, DispatchJob, RunOptions, RunOutcome, WorkerSnapshot } from './port.js';
import { connectRedis, describeModel, redisLabel, scaleKeys, type HostAdvert, type RemoteJobData, type RemoteJobResult, type RemoteProgress } from './redis-connection.js';

export interface BullmqDispatcherOptions {
  redisUrl: string;
  prefix: string;
  /** This database's own part of the BullMQ job ids ({@link dispatchNamespace}): a fresh database never follows another's runs. */
  namespace: string;
  /**
   * The model each kind's jobs run with ({@link kindModels}: the names of the coordinator's
   * REELBOT_MODEL_DIR and REELBOT_EDIT_MODEL_DIR, '' = the built-in set): a job goes only to a
   * host that advertises the same model for its kind.
   */
  models: Record<JobKind, string>;
  /** The coordinator's base URL as the worker hosts reach it (REELBOT_HTTP_PUBLIC_URL). */
  publicUrl(): string;
  signer: BlobSigner;
  /** With a bucket (REELBOT_S3_*), clips and results go through it instead of the coordinator's blob URLs. */
  s3?: S3Bucket;
  blobUrlTtlMs: number;
  maxInputBytes: number;
  maxResultBytes: number;
  cancelGraceMs: number;
  /** Where uploaded results go (per job and attempt). */
  resultPath(jobId: number, attempt: number, name: string): string;
  logger: Logger;
  /** How often the hosts' advertisements are read. */
  refreshMs?: number;
}

/** A result is stored under this name: the engines make MP4s. */
export const RESULT_NAME = 'result.mp4';
/** After a cancel, how long past the grace period the coordinator waits for the host to confirm before it counts the job as stopped. */
const CANCEL_CONFIRM_MARGIN_MS = 2000;
/** How long a close waits for Redis before it cuts the connections. */
const CLOSE_WAIT_MS = 2000;
/**
 * The coordinator's own Redis commands (the hosts' adverts, cancels) give up after this long. Its
 * connection queues commands while Redis is away (they would wait for ever): with the timeout a
 * refresh fails, and the coordinator sees that Redis is unreachable and says so.
 */
const REDIS_COMMAND_TIMEOUT_MS = 3000;

interface Task {
  jobId: number;
  kind: JobKind;
  options: RunOptions;
  reject(error: AppError): void;
  timers: NodeJS.Timeout[];
  bullJob?: Job;
}

export class BullmqDispatcher implements Dispatcher {
  readonly #o: BullmqDispatcherOptions;
  readonly #keys;
  readonly #redis: Redis;
  readonly #queues = new Map<JobKind, Queue>();
  readonly #events = new Map<JobKind, QueueEvents>();
  readonly #tasks = new Map<number, Task>();
  readonly #sizeListeners = new Set<(size: number) => void>();
  readonly #timer: NodeJS.Timeout;
  /** Slots that the live hosts with this coordinator's models advertise: in all, and per kind. */
  #slots = { total: 0, byKind: new Map<JobKind, number>() };
  /** Why some kind's jobs cannot go to any live host (none runs the kind, or none has its model), for /queue; logged once per such kind. */
  #unroutable: { text: string; kinds: string } | undefined;
  /** The live hosts' adverts at the last refresh that reached Redis, and when that was. */
  #adverts: { hosts: HostAdvert[]; at: number | null } = { hosts: [], at: null };
  #reachable: boolean | undefined;
  /** Jobs are handed out once the coordinator's HTTP port (the blob URLs) listens. */
  #open = false;
  #closed = false;
  /** A refresh is under way (one waits for Redis up to the command timeout): the timer skips a beat. */
  #refreshing = false;

  /** The Redis connections of the BullMQ queues and queue events: owned here, so that close can cut them. */
  readonly #connections: Redis[] = [];

  constructor(options: BullmqDispatcherOptions) {
    this.#o = options;
    this.#keys = scaleKeys(options.prefix);
    this.#redis = connectRedis(options.redisUrl, { commandTimeout: REDIS_COMMAND_TIMEOUT_MS });
    this.#redis.on('error', () => undefined); // reported once by #refresh, without the URL
    for (const kind of JOB_KINDS) {
      const name = this.#keys.queue(kind, options.models[kind]);
      const queue = new Queue(name, { connection: this.#connection(), prefix: options.prefix });
      queue.on('error', () => undefined);
      this.#queues.set(kind, queue);
      // QueueEvents blocks on its connection (XREAD): one of its own.
      const events = new QueueEvents(name, { connection: this.#connection(), prefix: options.prefix });
      events.on('error', () => undefined);
      events.on('progress', ({ jobId, data }) => this.#onProgress(jobId, data as RemoteProgress));
      this.#events.set(kind, events);
    }
    this.#timer = setInterval(() => void this.#refresh(), options.refreshMs ?? 500);
    this.#timer.unref();
    void this.#refresh();
  }

  #connection(): ConnectionOptions {
    const connection = connectRedis(this.#o.redisUrl);
    connection.on('error', () => undefined); // reported once by #refresh, without the URL
    this.#connections.push(connection);
    return connection as unknown as ConnectionOptions;
  }

  get size(): number {
    return this.#slots.total;
  }

  /** Where clips and results go when not over the coordinator's blob URLs, for the start-up line. */
  get blobs(): string | undefined {
    return this.#o.s3 ? `clips and results through the S3 bucket ${this.#o.s3.label}` : undefined;
  }

  /** Whether Redis answers (undefined until the first try). */
  get reachable(): boolean | undefined {
    return this.#reachable;
  }

  /** A line for /queue when jobs cannot be dispatched now. */
  notice(): string | undefined {
    if (this.#reachable === false) return 'The job queue server (Redis) is unreachable: jobs are kept and start when it is back.';
    if (this.#reachable && this.#adverts.hosts.length === 0) return 'No worker host is connected: jobs start when one is.';
    return this.#reachable ? this.#unroutable?.text : undefined;
  }

  slotsFor(kind: JobKind): number {
    return this.#slots.byKind.get(kind) ?? 0;
  }

  onSizeChange(listener: (size: number) => void): void {
    this.#sizeListeners.add(listener);
  }

  /** The blob URLs are served from now on: jobs may be handed out. */
  startDispatching(): void {
    this.#open = true;
    for (const listener of this.#sizeListeners) listener(this.#slots.total);
  }

  /**
   * One entry per slot the live worker hosts with this coordinator's models advertise
   * (`host/device`), the first ones busy with the jobs handed out (BullMQ does not say which host
   * took which); the last heartbeat is the last refresh that saw the host's advert.
   */
  snapshot(): WorkerSnapshot[] {
    const jobIds = [...this.#tasks.keys()];
    const slots = this.#adverts.hosts.filter((advert) => JOB_KINDS.some((kind) => this.#takes(advert, kind))).flatMap((advert) => advert.devices.map((device) => `${advert.hostname}/${device}`));
    return slots.map((device, index) => ({
      device,
      state: index < jobIds.length ? 'busy' : 'ready',
      pid: null,
      jobId: jobIds[index] ?? null,
      lastHeartbeatAt: this.#adverts.at,
      restarts: 0,
    }));
  }

  nextIdleDevice(kind?: JobKind): string | undefined {
    if (this.#closed || !this.#open || !this.#reachable) return undefined;
    if (this.#tasks.size >= this.#slots.total) return undefined;
    if (kind !== undefined) {
      const handedOut = [...this.#tasks.values()].filter((task) => task.kind === kind).length;
      if (handedOut >= (this.#slots.byKind.get(kind) ?? 0)) return undefined;
    }
    return 'remote';
  }

  async run(job: DispatchJob, options: RunOptions): Promise<RunOutcome> {
    if (this.#closed) throw new AppError(ErrorCode.Interrupted, 'The bot is shutting down.');
    let reject!: (error: AppError) => void;
    const stopped = new Promise<never>((_, rej) => (reject = rej));
    stopped.catch(() => undefined);
    const task: Task = { jobId: job.id, kind: job.kind, options, reject, timers: [] };
    this.#tasks.set(job.id, task);
    try {
      return await Promise.race([this.#run(job, task), stopped]);
    } finally {
      for (const timer of task.timers) clearTimeout(timer);
      this.#tasks.delete(job.id);
    }
  }

  async #run(job: DispatchJob, task: Task): Promise<RunOutcome> {
    const queue = this.#queues.get(job.kind)!;
    const events = this.#events.get(job.kind)!;
    // A run this job already has (the coordinator restarted, or stopped, while a host computed it): follow it.
    let bullJob = await this.#adoptable(queue, job);
    if (bullJob) {
      this.#o.logger.info({ jobId: job.id, bullJob: bullJob.id }, 'following the run a worker host already has for this job');
    } else {
      bullJob = await queue.add('run', await this.#data(job, task.options.timeoutMs), {
        jobId: `${this.#o.namespace}.${job.id}.${job.attempt}`,
        attempts: 1,
        removeOnComplete: { age: 24 * 3600 },
        removeOnFail: { age: 24 * 3600 },
      });
    }
    task.bullJob = bullJob;
    let returned: RemoteJobResult;
    try {
      returned = (await bullJob.waitUntilFinished(events)) as RemoteJobResult;
    } catch (error) {
      // A stopping coordinator leaves the run's objects to the next one, which follows the run.
      if (this.#o.s3 && !this.#closed) void this.#removeObjects(job, Number(String(bullJob.id).split('.').pop()));
      throw remoteError((error as Error).message);
    }
    const file = this.#o.resultPath(job.id, returned.attempt, RESULT_NAME);
    if (returned.uploaded && this.#o.s3) {
      await this.#collect(job, returned.attempt, file, returned.uploaded);
    } else if (returned.uploaded) {
      const size = (await stat(file).catch(() => undefined))?.size;
      if (size !== returned.uploaded.bytes) throw new AppError(ErrorCode.WorkerCrashed, 'The result did not arrive from the worker host.');
    }
    return {
      result: returned.uploaded ? { ...returned.result, file } : returned.result,
      gpuSeconds: returned.gpuSeconds,
      loadSeconds: returned.loadSeconds,
      device: returned.device,
    };
  }

  /** The BullMQ job of this attempt (a stop or restart in between) or of the one before it (a coordinator killed mid-job), unless it failed. */
  async #adoptable(queue: Queue, job: DispatchJob): Promise<Job | undefined> {
    for (const attempt of [job.attempt, job.attempt - 1]) {
      if (attempt < 1) continue;
      const found = await Job.fromId(queue, `${this.#o.namespace}.${job.id}.${attempt}`);
      if (!found) continue;
      const state = await found.getState();
      if (state !== 'failed' && state !== 'unknown') return found;
    }
    return undefined;
  }

  /** A job attempt's object in the bucket: under the queue prefix and this database's namespace, like its BullMQ id. */
  #objectKey(jobId: number, attempt: number, name: string): string {
    return `${this.#o.prefix}/${this.#o.namespace}/${jobId}/a${attempt}/${name}`;
  }

  /** Fetches a result from the bucket into the coordinator's folder, checked against what the host reported, then deletes the run's objects. */
  async #collect(job: DispatchJob, attempt: number, file: string, uploaded: { sha256: string; bytes: number }): Promise<void> {
    try {
      // A run followed after a restart had its folder made by the coordinator before.
      await mkdir(dirname(file), { recursive: true });
      await this.#o.s3!.download(this.#objectKey(job.id, attempt, RESULT_NAME), file, uploaded, this.#o.maxResultBytes);
    } catch (error) {
      this.#o.logger.warn({ jobId: job.id, attempt, reason: (error as Error).message }, 'the result in the bucket was refused');
      throw new AppError(ErrorCode.WorkerCrashed, 'The result did not arrive from the worker host.', { cause: error });
    } finally {
      await this.#removeObjects(job, attempt);
    }
  }

  /** Deletes a run's clip and result from the bucket (the bucket's lifecycle rule takes what a killed coordinator left). */
  async #removeObjects(job: DispatchJob, attempt: number): Promise<void> {
    const inputFile = job.params.inputFile;
    for (const name of [RESULT_NAME, ...(typeof inputFile === 'string' ? [inputBlobName(inputFile)] : [])]) {
      await this.#o.s3!.remove(this.#objectKey(job.id, attempt, name)).catch((error: unknown) =>
        this.#o.logger.debug({ jobId: job.id, attempt, reason: (error as Error).message }, 'could not delete a blob from the bucket'),
      );
    }
  }

  async #data(job: DispatchJob, timeoutMs: number): Promise<RemoteJobData> {
    const base = this.#o.publicUrl();
    const expires = Date.now() + this.#o.blobUrlTtlMs;
    const s3 = this.#o.s3;
    const ttlSeconds = Math.min(MAX_PRESIGN_SECONDS, Math.max(1, Math.round(this.#o.blobUrlTtlMs / 1000)));
    const sign = (method: 'GET' | 'PUT', name: string, maxBytes: number) =>
      s3
        ? s3.url(method, this.#objectKey(job.id, job.attempt, name), ttlSeconds)
        : `${base}${this.#o.signer.path({ method, jobId: job.id, attempt: job.attempt, name, expires, maxBytes })}`;
    const data: RemoteJobData = {
      job: { id: job.id, kind: job.kind, params: { ...job.params }, seed: job.seed, attempt: job.attempt },
      timeoutMs,
      cancelGraceMs: this.#o.cancelGraceMs,
      upload: { url: sign('PUT', RESULT_NAME, this.#o.maxResultBytes), maxBytes: this.#o.maxResultBytes },
    };
    const inputFile = job.params.inputFile;
    if (typeof inputFile === 'string') {
      const name = inputBlobName(inputFile);
      const digest = await fileDigest(inputFile);
      if (s3) {
        try {
          await s3.upload(this.#objectKey(job.id, job.attempt, name), inputFile);
        } catch (error) {
          this.#o.logger.warn({ jobId: job.id, reason: (error as Error).message }, 'could not put the clip into the bucket');
          throw new AppError(ErrorCode.WorkerCrashed, 'The clip could not be handed to the worker hosts (the blob store did not take it).', { cause: error });
        }
      }
      data.input = { url: sign('GET', name, this.#o.maxInputBytes), name, ...digest };
      delete data.job.params.inputFile; // a path on the coordinator: the host puts its own copy there
    }
    await mkdir(join(this.#o.resultPath(job.id, job.attempt, RESULT_NAME), '..'), { recursive: true });
    return data;
  }

  #onProgress(bullJobId: string, data: RemoteProgress): void {
    const jobId = Number(bullJobId.split('.')[1]);
    const task = this.#tasks.get(jobId);
    if (!task || task.bullJob?.id !== bullJobId) return;
    if (data.type === 'running') task.options.onRunning?.(data.loadSeconds);
    else if (data.type === 'progress') task.options.onProgress(data.progress);
  }

  cancel(jobId: number, graceMs: number): boolean {
    const task = this.#tasks.get(jobId);
    if (!task) return false;
    const cancelled = new AppError(ErrorCode.Cancelled, 'The job was cancelled.');
    // Not picked up yet: take it out of BullMQ; running: its host stops it (and kills its worker after the grace period).
    void (async () => {
      try {
        if (task.bullJob && (await task.bullJob.getState()) === 'waiting') {
          await task.bullJob.remove();
          task.reject(cancelled);
          return;
        }
      } catch {
        // active in the meantime: the host is told below
      }
      await this.#redis.publish(this.#keys.cancel, JSON.stringify({ jobId, graceMs })).catch(() => undefined);
    })();
    // The host confirms by failing the job as cancelled; a host that is gone cannot, so the coordinator stops waiting.
    task.timers.push(setTimeout(() => task.reject(cancelled), graceMs + CANCEL_CONFIRM_MARGIN_MS));
    return true;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    // Hosts keep computing: the next coordinator follows those runs (see #adoptable).
    for (const task of this.#tasks.values()) task.reject(new AppError(ErrorCode.Interrupted, 'The coordinator stopped while this job ran.'));
    // BullMQ's close waits for Redis (its connection's start, its QUIT); with Redis unreachable it
    // would wait for ever and keep the process open after a SIGTERM. The connections are ours, so
    // past a short wait they are cut.
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      Promise.allSettled([...this.#events.values(), ...this.#queues.values()].map((client) => client.close())).then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS, false))),
    ]);
    clearTimeout(timer);
    if (!closed) this.#o.logger.warn({ waitedMs: CLOSE_WAIT_MS }, 'Redis did not answer while closing: its connections are cut');
    for (const connection of this.#connections) connection.disconnect();
    this.#redis.disconnect();
  }

  async #refresh(): Promise<void> {
    if (this.#closed || this.#refreshing) return;
    this.#refreshing = true;
    try {
      await this.#readAdverts();
    } finally {
      this.#refreshing = false;
    }
  }

  /**
   * Fails the runs whose BullMQ job is gone from Redis (Redis restarted without its data: killed,
   * or run without persistence). No host can complete such a run (BullMQ refuses to finish a job
   * it no longer has) and no event comes for it, so it would wait for ever; as after a host crash,
   * the job runner retries the job once, under a new BullMQ job.
   */
  async #failLostRuns(): Promise<void> {
    for (const task of this.#tasks.values()) {
      const bullJob = task.bullJob;
      if (!bullJob) continue;
      // The job's hash (`<prefix>:<queue>:<id>`) stays until a day after the run ends.
      if ((await this.#redis.exists(`${bullJob.queueQualifiedName}:${bullJob.id}`)) === 1 || this.#tasks.get(task.jobId) !== task) continue;
      this.#o.logger.warn({ jobId: task.jobId, bullJob: bullJob.id }, 'Redis lost the run of a job (it restarted without its data): the job is run again');
      task.reject(new AppError(ErrorCode.WorkerCrashed, 'The job queue server lost this job while it ran.'));
    }
  }

  async #readAdverts(): Promise<void> {
    let adverts: HostAdvert[];
    try {
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, found] = await this.#redis.scan(cursor, 'MATCH', this.#keys.hostPattern, 'COUNT', 100);
        cursor = next;
        keys.push(...found);
      } while (cursor !== '0');
      const values = keys.length > 0 ? await this.#redis.mget(...keys) : [];
      adverts = values.filter((value): value is string => value !== null).map((value) => JSON.parse(value) as HostAdvert);
      if (this.#reachable === false) this.#o.logger.info({ redis: redisLabel(this.#o.redisUrl) }, 'Redis is reachable again: dispatching');
      this.#reachable = true;
      await this.#failLostRuns();
    } catch (error) {
      if (this.#reachable !== false) {
        this.#o.logger.warn({ redis: redisLabel(this.#o.redisUrl), reason: (error as Error).message }, 'Redis is unreachable: jobs are accepted into the database and wait');
      }
      this.#reachable = false;
      adverts = [];
    }
    // A host's slots count for a kind only when it takes that kind's jobs from this coordinator's queue (the same model).
    const byKind = new Map<JobKind, number>();
    let total = 0;
    for (const advert of adverts) {
      const kinds = JOB_KINDS.filter((kind) => this.#takes(advert, kind));
      if (kinds.length > 0) total += advert.devices.length;
      for (const kind of kinds) byKind.set(kind, (byKind.get(kind) ?? 0) + advert.devices.length);
    }
    const changed = total !== this.#slots.total;
    const kindsChanged = JOB_KINDS.some((kind) => (byKind.get(kind) ?? 0) !== this.slotsFor(kind));
    this.#slots = { total, byKind };
    this.#adverts = { hosts: adverts, at: this.#reachable ? Date.now() : this.#adverts.at };
    this.#noteUnroutable(adverts);
    if (changed) {
      this.#o.logger.info({ slots: total, hosts: adverts.map((advert) => `${advert.hostname}:${advert.devices.join(',')}`) }, 'worker host slots changed');
    }
    if (changed || kindsChanged) for (const listener of this.#sizeListeners) listener(total);
  }

  /** Whether a host takes this kind's jobs of this coordinator: it advertises the kind on the queue of the coordinator's model. */
  #takes(advert: HostAdvert, kind: JobKind): boolean {
    return advert.kinds.includes(kind) && advert.queues?.[kind] === this.#queues.get(kind)!.name;
  }

  /**
   * Finds the kinds that live hosts run, but none with the coordinator's model: their jobs wait.
   * /queue says which model is missing and what the hosts have; the log says it once, until a host
   * with the model comes (or the hosts of that kind go).
   */
  #noteUnroutable(adverts: HostAdvert[]): void {
    const lines: string[] = [];
    const kinds: string[] = [];
    /** Kinds that no live host runs at all (each host started with `--kinds` of others). */
    const noHost: string[] = [];
    for (const kind of JOB_KINDS) {
      const running = adverts.filter((advert) => advert.kinds.includes(kind));
      if (running.length === 0 && adverts.length > 0) {
        noHost.push(`No worker host runs ${kind} jobs: they wait for one.`);
        kinds.push(kind);
      }
      if (running.length === 0 || running.some((advert) => this.#takes(advert, kind))) continue;
      const have = new Map<string, number>();
      for (const advert of running) {
        const what = advert.queues ? `${advert.models[kind] ? advert.models[kind] : 'the built-in set'}` : 'an older reelbot (upgrade it)';
        have.set(what, (have.get(what) ?? 0) + 1);
      }
      const others = [...have].map(([what, hosts]) => `${hosts} host${hosts === 1 ? ' has' : 's have'} ${what}`).join(', ');
      lines.push(`No worker host has ${describeModel(this.#o.models[kind])} for ${kind}; ${others}.`);
      kinds.push(kind);
    }
    const texts = [...(lines.length > 0 ? [`${lines.join(' ')} Those jobs wait for a host with it.`] : []), ...noHost];
    const unroutable = texts.length > 0 ? { text: texts.join(' '), kinds: kinds.join(',') } : undefined;
    if (unroutable && unroutable.kinds !== this.#unroutable?.kinds) this.#o.logger.warn({ kinds }, unroutable.text);
    this.#unroutable = unroutable;
  }
}

/** The clip's name on its blob URL: `input` plus the clip's extension. */
function inputBlobName(inputFile: string): string {
  return `input${/^\.[A-Za-z0-9]{1,8}$/.test(extname(inputFile)) ? extname(inputFile) : ''}`;
}

/** A random id kept in the database's settings: part of every BullMQ job id the coordinator of this database makes. */
export function dispatchNamespace(db: Db): string {
  db.prepare(`INSERT INTO settings (key, value) VALUES ('dispatch_namespace', ?) ON CONFLICT (key) DO NOTHING`).run(randomUUID().slice(0, 8));
  return (db.prepare(`SELECT value FROM settings WHERE key = 'dispatch_namespace'`).get() as { value: string }).value;
}

/** A host's failure reason (JSON with the code and the user's message), or a stalled host (BullMQ's own text). */
export function remoteError(reason: string): AppError {
  try {
    const parsed = JSON.parse(reason) as { code?: string; userMessage?: string };
    if (typeof parsed.code === 'string' && (Object.values(ErrorCode) as string[]).includes(parsed.code)) {
      return new AppError(parsed.code as ErrorCode, parsed.userMessage ?? 'The engine failed on this job.');
    }
  } catch {
    // not ours: BullMQ's
  }
  // "job stalled more than allowable limit": the host stopped renewing its lock (killed, or cut off).
  return new AppError(ErrorCode.WorkerCrashed, 'The worker host stopped while making this video.', { cause: new Error(reason) });
}
