/**
 * Redis connections for BullMQ, from REELBOT_REDIS_URL: `redis://` or `rediss://` (TLS), with a
 * user and password when the URL has them. The URL is a secret: only {@link redisLabel} (host and
 * port) is ever logged or shown.
 */
import { basename, resolve } from 'node:path';
import type { ConnectionOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { JobKind } from '../types.js';

/** Connection options for BullMQ (workers need maxRetriesPerRequest null: their blocking calls wait out a Redis restart). */
export function redisOptions(url: string): RedisOptions {
  const parsed = new URL(url);
  return {
    host: parsed.hostname,
    port: parsed.port ? Number(parsed.port) : 6379,
    username: parsed.username ? decodeURIComponent(parsed.username) : undefined,
    password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
    db: parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : 0,
    tls: parsed.protocol === 'rediss:' ? { servername: parsed.hostname } : undefined,
    maxRetriesPerRequest: null,
    // Reconnect for ever, at most every 2 s: a Redis restart must not end the coordinator or a worker host.
    retryStrategy: (times) => Math.min(times * 200, 2000),
  };
}

/** The same options as BullMQ's type (its RedisOptions is a structural copy of ioredis's). */
export function bullConnection(url: string): ConnectionOptions {
  return redisOptions(url) as ConnectionOptions;
}

/** A plain client (not BullMQ's); `overrides` for one that must not wait out a Redis restart (a command timeout). */
export function connectRedis(url: string, overrides: RedisOptions = {}): Redis {
  return new Redis({ ...redisOptions(url), ...overrides });
}

/** Where Redis is, without the password: for logs and messages. */
export function redisLabel(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.hostname}:${parsed.port || '6379'}`;
}

/**
 * The name a model goes by between the coordinator and the worker hosts: its folder's name ('' for
 * the built-in set). The coordinator only needs the name: its folder need not exist there.
 */
export function modelName(dir: string): string {
  return dir ? basename(resolve(dir)) : '';
}

/** The model of each job kind: REELBOT_MODEL_DIR's name for text2video, REELBOT_EDIT_MODEL_DIR's for edit. */
export function kindModels(settings: { modelDir: string; editModelDir: string }): Record<JobKind, string> {
  return { text2video: modelName(settings.modelDir), edit: modelName(settings.editModelDir) };
}

/** A model as /queue and the logs name it. */
export function describeModel(model: string): string {
  return model ? `the model ${model}` : 'the built-in model set';
}

/**
 * A model name as part of a BullMQ queue name: letters, digits, `.`, `_` and `-` as they are,
 * every other byte as `%XX` (BullMQ refuses `:`), and the built-in set as `[built-in]`, which no
 * folder name encodes to.
 */
function queueModelPart(model: string): string {
  if (!model) return '[built-in]';
  return [...Buffer.from(model, 'utf8')]
    .map((byte) => (/^[A-Za-z0-9._-]$/.test(String.fromCharCode(byte)) ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
}

/** Keys and names shared by the coordinator and the worker hosts. */
export function scaleKeys(prefix: string) {
  return {
    prefix,
    /**
     * One BullMQ queue per job kind and model (`jobs-text2video@sd15`, `jobs-edit@[built-in]`): a
     * host listens only on the queues of the kinds and models it advertises, so a job goes only to a
     * host that makes the same pictures.
     */
    queue: (kind: string, model: string) => `jobs-${kind}@${queueModelPart(model)}`,
    /** A worker host's advertisement (JSON, expiring). */
    host: (hostId: string) => `${prefix}:hosts:${hostId}`,
    hostPattern: `${prefix}:hosts:*`,
    /** Pub/sub channel of cancels. */
    cancel: `${prefix}:cancel`,
  };
}

/** What a worker host advertises. */
export interface HostAdvert {
  hostId: string;
  hostname: string;
  devices: string[];
  kinds: string[];
  /** Model folder names per kind ('' = the built-in set). */
  models: Record<string, string>;
  /**
   * The queue it takes each advertised kind's jobs from ({@link scaleKeys} `queue`). A host of a
   * reelbot from before queues per model has none: it listens on `jobs-<kind>`, where no job goes.
   */
  queues?: Record<string, string>;
}

/** What a BullMQ job carries to a worker host. */
export interface RemoteJobData {
  job: { id: number; kind: string; params: Record<string, unknown>; seed: number; attempt: number };
  timeoutMs: number;
  cancelGraceMs: number;
  /** The clip to download, with its sha256 and size (edits). */
  input?: { url: string; name: string; sha256: string; bytes: number };
  /** Where the result file goes. */
  upload: { url: string; maxBytes: number };
}

/** What a worker host returns. */
export interface RemoteJobResult {
  result: Record<string, unknown>;
  gpuSeconds: number;
  loadSeconds: number;
  device: string;
  attempt: number;
  uploaded: { sha256: string; bytes: number } | null;
}

/** Progress a worker host reports (job.updateProgress). */
export type RemoteProgress =
  | { type: 'running'; loadSeconds: number; device: string }
  | { type: 'progress'; progress: { step: number; total: number; stage?: string } };
