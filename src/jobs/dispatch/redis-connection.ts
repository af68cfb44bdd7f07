/**
 * Redis connections for BullMQ, from REELBOT_REDIS_URL: `redis://` or `rediss://` (TLS), with a
 * user and password when the URL has them. The URL is a secret: only {@link redisLabel} (host and
 * port) is ever logged or shown.
 */
import type { ConnectionOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';

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

/** Keys and names shared by the coordinator and the worker hosts. */
export function scaleKeys(prefix: string) {
  return {
    prefix,
    /** One BullMQ queue per job kind: a host only listens on the kinds it can run. */
    queue: (kind: string) => `jobs-${kind}`,
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
