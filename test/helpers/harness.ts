/** A job service on a real SQLite file in a temp dir, with real worker processes running the fake engine. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger, type Logger } from '../../src/log.js';
import { openDatabase, type Db } from '../../src/store/db.js';
import { JobService } from '../../src/jobs/job-service.js';
import type { Actor, JobEvent, JobRequest } from '../../src/jobs/types.js';

export const FAKE_ENGINE = fileURLToPath(new URL('../fakes/fake-engine.ts', import.meta.url));

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'reelbot-test-'));
}

/** Test settings: fast heartbeats and grace periods, the fake engine, everything under `dir`. */
export function testConfig(dir: string, overrides: Record<string, unknown> = {}): Config {
  return loadConfig({
    overrides: {
      dbPath: join(dir, 'reelbot.db'),
      outputDir: join(dir, 'outputs'),
      engineModule: FAKE_ENGINE,
      logLevel: 'silent',
      jobs: { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 3000, cancelGraceMs: 500, shutdownGraceMs: 2000, timeoutSeconds: 120 },
      ...overrides,
    },
  });
}

export interface Harness {
  dir: string;
  config: Config;
  db: Db;
  service: JobService;
  events: JobEvent[];
  /** Resolves with the first event (already seen or future) that matches. */
  waitFor(predicate: (event: JobEvent) => boolean, timeoutMs?: number): Promise<JobEvent>;
  /** Stops workers and closes the database (the temp dir stays for a restart). */
  close(): Promise<void>;
}

export function startService(dir: string, overrides: Record<string, unknown> = {}, options: { now?: () => number; logger?: Logger } = {}): Harness {
  const config = testConfig(dir, overrides);
  const db = openDatabase(config.dbPath);
  const service = new JobService({ config, db, logger: options.logger ?? createLogger('silent'), now: options.now });
  const events: JobEvent[] = [];
  const waiters = new Set<() => void>();
  service.onEvent((event) => {
    events.push(event);
    for (const wake of waiters) wake();
  });
  service.start();
  return {
    dir,
    config,
    db,
    service,
    events,
    waitFor(predicate, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = events.find(predicate);
          if (!found) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out waiting for an event; seen: ${events.map((e) => `${e.type}#${e.job.id}`).join(' ')}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    async close() {
      await service.shutdown(0);
      db.close();
    },
  };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

export const alice: Actor = { platform: 'discord', externalId: 'alice' };
export const bob: Actor = { platform: 'discord', externalId: 'bob' };
export const admin: Actor = { platform: 'discord', externalId: 'admin-1' };

export function video(actor: Actor, params: Record<string, unknown> = {}, extra: Partial<JobRequest> = {}): JobRequest {
  return { actor, kind: 'text2video', params: { prompt: 'a corgi surfing', ...params }, ...extra };
}

export const isType =
  <T extends JobEvent['type']>(type: T, jobId?: number) =>
  (event: JobEvent): event is Extract<JobEvent, { type: T }> =>
    event.type === type && (jobId === undefined || event.job.id === jobId);
