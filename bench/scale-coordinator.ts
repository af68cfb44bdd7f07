/**
 * The coordinator of bench:scale: the job service with the BullMQ dispatch and the blob routes on
 * an HTTP port, as `reelbot serve` wires them (no platform). Imported by bench/scale.ts, and run as
 * its own process for the coordinator failover: `tsx bench/scale-coordinator.ts` with BENCH_CONFIG
 * (JSON overrides) and BENCH_SUBMIT (jobs to submit, JSON); it prints every job event as a JSON line.
 */
import type { FastifyInstance } from 'fastify';
import { loadConfig, type Config } from '../src/config.js';
import { BlobSigner } from '../src/blob/signed-urls.js';
import { remoteResultPath } from '../src/cli-serve.js';
import { BullmqDispatcher, dispatchNamespace } from '../src/jobs/dispatch/bullmq.js';
import { kindModels } from '../src/jobs/dispatch/redis-connection.js';
import type { JobRequest } from '../src/jobs/types.js';
import { createLogger } from '../src/log.js';
import { startApp, type App } from '../src/main.js';
import { JobRepo } from '../src/store/job-repo.js';
import { blobRoutes } from '../src/web/blob-routes.js';
import { buildHttpServer, httpAddress, publicBaseUrl } from '../src/web/http-server.js';

export interface Coordinator {
  app: App;
  http: FastifyInstance;
  stop(): Promise<void>;
}

export async function startCoordinator(config: Config): Promise<Coordinator> {
  const logger = createLogger(config.logLevel);
  let publicUrl = '';
  let dispatcher!: BullmqDispatcher;
  const app = startApp(config, {
    logger,
    dispatcher: (db, log) =>
      (dispatcher = new BullmqDispatcher({
        redisUrl: config.redisUrl!,
        prefix: config.scale.queuePrefix,
        namespace: dispatchNamespace(db),
        models: kindModels(config),
        publicUrl: () => publicUrl,
        signer: BlobSigner.fromDatabase(db),
        blobUrlTtlMs: config.scale.blobUrlTtlSeconds * 1000,
        maxInputBytes: config.input.maxBytes,
        maxResultBytes: config.scale.maxResultBytes,
        cancelGraceMs: config.jobs.cancelGraceMs,
        resultPath: (jobId, attempt, name) => remoteResultPath(config, jobId, attempt, name),
        logger: log,
        refreshMs: 200,
      })),
  });
  const http = buildHttpServer({ logger });
  const jobs = new JobRepo(app.db);
  void http.register(blobRoutes({ signer: BlobSigner.fromDatabase(app.db), job: (id) => jobs.get(id), resultPath: (id, attempt, name) => remoteResultPath(config, id, attempt, name), logger }));
  const address = httpAddress(config)!;
  await http.listen(address);
  const bound = http.server.address();
  publicUrl = publicBaseUrl(config, bound !== null && typeof bound === 'object' ? bound.port : address.port);
  dispatcher.startDispatching();
  return {
    app,
    http,
    async stop() {
      await app.stop();
      await http.close();
    },
  };
}

if (process.env.BENCH_CONFIG) {
  const config = loadConfig({ overrides: JSON.parse(process.env.BENCH_CONFIG) as Record<string, unknown> });
  const coordinator = await startCoordinator(config);
  coordinator.app.jobs.onEvent((event) => {
    if (event.type !== 'progress') process.stdout.write(`${JSON.stringify({ type: event.type, jobId: event.job.id, at: Date.now() })}\n`);
  });
  for (const request of JSON.parse(process.env.BENCH_SUBMIT ?? '[]') as JobRequest[]) await coordinator.app.jobs.submit(request);
  process.stdout.write(`${JSON.stringify({ type: 'ready', at: Date.now() })}\n`);
  process.on('SIGTERM', () => void coordinator.stop().then(() => process.exit(0)));
}
