/**
 * A worker host (`reelbot worker`): one slot per device, each running the same worker process and
 * engine as `serve` does locally (the WorkerPool), on this host's own model folders. It advertises
 * its slots, the job kinds it runs and its models in Redis, takes jobs from the BullMQ queue of each
 * kind and model (so only jobs for the models it has), gets the clip of an edit over its signed URL
 * (sha256 and size checked), runs the job, and uploads the result to the coordinator (retrying
 * while the coordinator restarts). Cancels arrive over Redis
 * pub/sub and stop the job within the cancel grace period.
 *
 * The engine runs in the pool's child processes, so this process's event loop (BullMQ's lock
 * renewal, the advertisement, cancels) is never blocked by it.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { fileDigest } from '../../blob/signed-urls.js';
import { AppError, asAppError, ErrorCode } from '../../errors.js';
import { WorkerPool } from '../dispatch/local-pool.js';
import { bullConnection, connectRedis, kindModels, redisLabel, scaleKeys, type HostAdvert, type RemoteJobData, type RemoteJobResult, type RemoteProgress } from '../dispatch/redis-connection.js';
import { workerPoolOptions } from '../dispatch/worker-settings.js';
import { JOB_KINDS, type JobKind } from '../types.js';

/** How often the host renews its advertisement; it expires after three beats. */
const ADVERT_INTERVAL_MS = 1000;
/** How long an upload is retried (the coordinator restarting) before the job fails. */
const UPLOAD_RETRY_MS = 120_000;

export interface WorkerHostOptions {
  config: Config;
  redisUrl: string;
  logger: Logger;
  kinds?: readonly JobKind[];
  /**
   * Where a job's clip and output are made while it runs (a folder per job and attempt, removed
   * after); default the config's outputDir. A host inside `serve` uses its own folder: the
   * coordinator's result of the same job and attempt lands under outputDir.
   */
  workDir?: string;
}

export class WorkerHost {
  readonly hostId = `${hostname()}-${randomUUID().slice(0, 8)}`;
  readonly #o: WorkerHostOptions;
  readonly #keys;
  readonly #pool: WorkerPool;
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #workers: Worker[] = [];
  readonly #kinds: readonly JobKind[];
  /** The name of this host's model of each kind (its folders' names). */
  readonly #models: Record<JobKind, string>;
  #advertTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** The Redis error logged last: while Redis is away every connection fails each reconnect the same way, which is one line, not several a second. */
  #lastRedisError: string | undefined;

  constructor(options: WorkerHostOptions) {
    this.#o = options;
    const { config } = options;
    this.#keys = scaleKeys(config.scale.queuePrefix);
    this.#kinds = options.kinds ?? JOB_KINDS;
    this.#models = kindModels(config);
    this.#pool = new WorkerPool(workerPoolOptions(config, options.logger));
    this.#redis = connectRedis(options.redisUrl);
    this.#subscriber = connectRedis(options.redisUrl);
    for (const client of [this.#redis, this.#subscriber]) client.on('error', () => undefined);
  }

  async start(): Promise<void> {
    const { config, logger } = this.#o;
    await this.#subscriber.subscribe(this.#keys.cancel);
    this.#subscriber.on('message', (_channel: string, message: string) => {
      try {
        const { jobId, graceMs } = JSON.parse(message) as { jobId: number; graceMs: number };
        if (this.#pool.cancel(jobId, graceMs)) logger.info({ jobId }, 'job cancelled by the coordinator');
      } catch {
        // not a cancel of ours
      }
    });
    const connection = bullConnection(this.#o.redisUrl);
    for (const kind of this.#kinds) {
      const worker = new Worker(this.#keys.queue(kind, this.#models[kind]), (job: Job) => this.#process(job), {
        connection,
        prefix: config.scale.queuePrefix,
        concurrency: config.devices.length,
        lockDuration: config.scale.lockMs,
        stalledInterval: config.scale.stalledIntervalMs,
        // A run whose host stopped renewing its lock fails as stalled; the coordinator retries it once.
        maxStalledCount: 0,
      });
      worker.on('error', (error) => {
        if (error.message === this.#lastRedisError) return;
        this.#lastRedisError = error.message;
        logger.warn({ reason: error.message }, 'worker host: Redis error');
      });
      this.#workers.push(worker);
    }
    this.#redis.on('ready', () => {
      if (this.#lastRedisError === undefined) return;
      this.#lastRedisError = undefined;
      logger.info({ redis: redisLabel(this.#o.redisUrl) }, 'worker host: Redis is reachable again');
    });
    await this.#advertise();
    this.#advertTimer = setInterval(() => void this.#advertise(), ADVERT_INTERVAL_MS);
    logger.info({ hostId: this.hostId, devices: config.devices, kinds: this.#kinds, models: this.#models, redis: redisLabel(this.#o.redisUrl) }, 'worker host started');
  }

  /** Stops taking jobs, waits for the running ones up to `graceMs`, then stops the workers. */
  async stop(graceMs = this.#o.config.jobs.shutdownGraceMs): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#advertTimer);
    await this.#redis.del(this.#keys.host(this.hostId)).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled(this.#workers.map((worker) => worker.close())), new Promise((done) => (timer = setTimeout(done, graceMs)))]);
    clearTimeout(timer);
    await this.#pool.close();
    await Promise.allSettled(this.#workers.map((worker) => worker.close(true)));
    this.#subscriber.disconnect();
    this.#redis.disconnect();
  }

  async #advertise(): Promise<void> {
    const { config } = this.#o;
    const advert: HostAdvert = {
      hostId: this.hostId,
      hostname: hostname(),
      devices: [...config.devices],
      kinds: [...this.#kinds],
      models: { ...this.#models },
      queues: Object.fromEntries(this.#kinds.map((kind) => [kind, this.#keys.queue(kind, this.#models[kind])])),
    };
    await this.#redis.set(this.#keys.host(this.hostId), JSON.stringify(advert), 'PX', ADVERT_INTERVAL_MS * 3).catch(() => undefined);
  }

  async #process(bullJob: Job): Promise<RemoteJobResult> {
    const data = bullJob.data as RemoteJobData;
    const { id, kind, params, seed, attempt } = data.job;
    const workDir = resolve(this.#o.workDir ?? this.#o.config.outputDir, String(id), `a${attempt}`);
    try {
      // Every slot of this host may be busy with the other kind's queue: wait for one (the coordinator hands out no more jobs than slots).
      while (this.#pool.nextIdleDevice() === undefined) await sleep(50);
      this.#o.logger.info({ jobId: id, attempt, kind, model: this.#models[kind as JobKind] }, 'running a job for the coordinator');
      const jobParams = { ...params };
      if (data.input) jobParams.inputFile = await download(data.input, join(workDir, data.input.name), this.#o.config.input.maxBytes);
      const outcome = await this.#pool.run(
        { id, kind: kind as JobKind, params: jobParams, seed, outputDir: join(workDir, 'out'), attempt },
        {
          timeoutMs: data.timeoutMs,
          onProgress: (progress) => void bullJob.updateProgress({ type: 'progress', progress } satisfies RemoteProgress).catch(() => undefined),
          onRunning: (loadSeconds) => void bullJob.updateProgress({ type: 'running', loadSeconds, device: this.#o.config.devices[0]! } satisfies RemoteProgress).catch(() => undefined),
        },
      );
      const file = typeof outcome.result.file === 'string' ? outcome.result.file : undefined;
      const uploaded = file ? await upload(file, data.upload.url, this.#o.logger) : null;
      const { file: _local, ...result } = outcome.result;
      return { result, gpuSeconds: outcome.gpuSeconds, loadSeconds: outcome.loadSeconds, device: `${hostname()}/${outcome.device}`, attempt, uploaded };
    } catch (thrown) {
      const error = asAppError(thrown);
      if (error.code === ErrorCode.Unknown) this.#o.logger.error({ jobId: id, err: thrown }, 'job failed on this host');
      // The coordinator reads the code and the user's message; the cause stays in this host's log.
      throw new Error(JSON.stringify({ code: error.code, userMessage: error.userMessage }));
    } finally {
      await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}

/** Downloads a job's clip to `path`, refusing more than its declared size (and `maxBytes`), and checks its sha256. */
async function download(input: NonNullable<RemoteJobData['input']>, path: string, maxBytes: number): Promise<string> {
  if (input.bytes > maxBytes) throw new AppError(ErrorCode.InvalidRequest, 'The clip is larger than this worker host accepts.');
  const response = await fetch(input.url);
  if (!response.ok || !response.body) throw new AppError(ErrorCode.WorkerCrashed, `The clip could not be fetched from the coordinator (HTTP ${response.status}).`);
  await mkdir(join(path, '..'), { recursive: true });
  const hash = createHash('sha256');
  let bytes = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (bytes > input.bytes) return callback(new Error('more bytes than declared'));
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  await pipeline(Readable.fromWeb(response.body as import('node:stream/web').ReadableStream), check, createWriteStream(path));
  if (bytes !== input.bytes || hash.digest('hex') !== input.sha256) {
    await rm(path, { force: true });
    throw new AppError(ErrorCode.WorkerCrashed, 'The clip arrived damaged (its sha256 or size did not match).');
  }
  return path;
}

/** Uploads a result with its sha256 and size; retried while the coordinator is unreachable or restarting. */
async function upload(file: string, url: string, logger: Logger): Promise<{ sha256: string; bytes: number }> {
  const digest = await fileDigest(file);
  const deadline = Date.now() + UPLOAD_RETRY_MS;
  for (let pause = 200; ; pause = Math.min(pause * 2, 2000)) {
    let status: number | undefined;
    try {
      const response = await fetch(url, {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(digest.bytes), 'x-reelbot-sha256': digest.sha256 },
        body: Readable.toWeb(createReadStream(file)) as never,
        duplex: 'half',
      } as RequestInit);
      status = response.status;
      await response.arrayBuffer();
      if (response.ok) return digest;
    } catch {
      // the coordinator is down or restarting: try again
    }
    // 4xx other than a restart's 503: the URL expired, or the job is no longer running there.
    if ((status !== undefined && status < 500 && status !== 409) || Date.now() > deadline) {
      throw new AppError(ErrorCode.WorkerCrashed, `The result could not be delivered to the coordinator${status ? ` (HTTP ${status})` : ''}.`);
    }
    logger.debug({ status, pause }, 'result upload failed; retrying');
    await sleep(pause);
  }
}

