/**
 * `GET /healthz` (the process answers) and `GET /readyz` (it can do its work: the database takes
 * writes, at least one worker slot can run a job, every configured platform is connected), for
 * load balancers and orchestrators. /readyz answers 503 with the reasons when something is not.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { JobService } from '../jobs/job-service.js';
import { writeWithoutBlocking, type Db } from '../store/db.js';
import type { ObservedPlatform } from './metrics.js';

export interface HealthOptions {
  db: Db;
  jobs: Pick<JobService, 'workers'>;
  /** The platforms this process serves (their tokens are set). */
  platforms: readonly ObservedPlatform[];
  connected(platform: ObservedPlatform): boolean;
  /** How long the write check may wait for another connection's lock. */
  writeDeadlineMs?: number;
}

const PLATFORM_NAMES: Record<ObservedPlatform, string> = { discord: 'Discord', slack: 'Slack' };

/** Why the process is not ready; empty when it is. */
export async function readinessProblems(options: HealthOptions): Promise<string[]> {
  const problems: string[] = [];
  try {
    // Taking the write lock and letting it go proves writes get through, and changes nothing.
    await writeWithoutBlocking(
      options.db,
      () => {
        options.db.exec('BEGIN IMMEDIATE');
        options.db.exec('ROLLBACK');
      },
      { deadlineMs: options.writeDeadlineMs ?? 1000 },
    );
  } catch (error) {
    if (options.db.inTransaction) options.db.exec('ROLLBACK');
    problems.push(`the database does not take writes (${error instanceof Error && 'code' in error ? String(error.code) : 'error'})`);
  }
  const workers = options.jobs.workers();
  if (!workers.some((worker) => worker.state !== 'unavailable')) {
    problems.push(`no worker can run a job: the engine could not be loaded on ${workers.map((worker) => worker.device).join(', ')} (the log says why)`);
  }
  for (const platform of options.platforms) {
    if (!options.connected(platform)) problems.push(`${PLATFORM_NAMES[platform]} is not connected`);
  }
  return problems;
}

export function healthRoutes(options: HealthOptions): FastifyPluginAsync {
  return async (app) => {
    app.get('/healthz', async (_request, reply) => reply.header('cache-control', 'no-store').send({ ok: true }));
    app.get('/readyz', async (_request, reply) => {
      const reasons = await readinessProblems(options);
      return reply
        .code(reasons.length === 0 ? 200 : 503)
        .header('cache-control', 'no-store')
        .send(reasons.length === 0 ? { ready: true } : { ready: false, reasons });
    });
  };
}
