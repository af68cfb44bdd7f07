/**
 * `reelbot serve`'s HTTP side, put together: the metrics (made before the job service starts, so
 * they see recovery too), the server from http-server.ts with health, metrics and the dashboard on
 * it, and the sign-in links that `/admin dashboard` hands out. Other parts of serve add their
 * routes with `register()` before `listen()`.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { JobService } from '../jobs/job-service.js';
import type { Platform } from '../jobs/types.js';
import type { Db } from '../store/db.js';
import { StoreWriter } from '../store/writer.js';
import { dashboardRoutes } from './dashboard/index.js';
import { createDashboardLink, type DashboardLink } from './dashboard/sign-in.js';
import { healthRoutes } from './health.js';
import { buildHttpServer, httpAddress, publicBaseUrl } from './http-server.js';
import { Metrics, metricsRoutes, type ObservedPlatform } from './metrics.js';

export interface ServeHttpOptions {
  config: Config;
  db: Db;
  jobs: JobService;
  logger: Logger;
  ffmpegPath: string;
  /** The app's writer queue (default: one of its own on `db`). */
  writer?: StoreWriter;
  /** The platforms serve connects to (/readyz waits for each). */
  platforms: readonly ObservedPlatform[];
}

export class ServeHttp {
  readonly metrics: Metrics;
  readonly app: FastifyInstance;
  readonly #options: ServeHttpOptions;
  readonly #writer: StoreWriter;
  #baseUrl: string | undefined;

  constructor(options: ServeHttpOptions) {
    this.#options = options;
    const { config, db, jobs, logger } = options;
    this.#writer = options.writer ?? new StoreWriter(db, { logger });
    this.metrics = new Metrics(jobs);
    for (const platform of options.platforms) this.metrics.platform(platform);
    this.app = buildHttpServer({ logger });
    this.register(healthRoutes({ db, jobs, platforms: options.platforms, connected: (platform) => this.metrics.connected(platform) }));
    this.register(metricsRoutes(this.metrics));
    this.register(dashboardRoutes({ db, writer: this.#writer, config, jobs, logger, ffmpegPath: options.ffmpegPath }));
  }

  /** Adds routes (a Fastify plugin), before `listen()`. */
  register(plugin: FastifyPluginAsync): void {
    void this.app.register(plugin);
  }

  /** Listens where the settings say; returns the base address people open. */
  async listen(): Promise<string> {
    const address = httpAddress(this.#options.config);
    if (!address) throw new Error('ServeHttp.listen() without REELBOT_HTTP_PORT');
    await this.app.listen(address);
    const bound = this.app.server.address();
    const port = bound !== null && typeof bound === 'object' ? bound.port : address.port;
    this.#baseUrl = publicBaseUrl(this.#options.config, port);
    return this.#baseUrl;
  }

  /** A one-time sign-in link for an admin (`/admin dashboard`). */
  dashboardLink(actor: { platform: Platform; externalId: string }): Promise<DashboardLink> {
    return this.#writer.write(() => createDashboardLink(this.#options.db, this.#options.config, actor, { baseUrl: this.#baseUrl }));
  }

  async close(): Promise<void> {
    this.metrics.close();
    await this.app.close();
  }
}
