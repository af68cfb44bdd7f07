/**
 * The Prometheus metrics of `reelbot serve`, and the one owner of their prom-client Registry.
 *
 * Job counters and histograms follow the job service's events (so they count what this process
 * did since it started, as Prometheus counters do); queue depth and worker state are read when
 * scraped; platform connection, reconnects, ack latency and rate-limit hits come from the bot
 * adapters through {@link PlatformObserver}, a small object passed in their options.
 */
import type { FastifyPluginAsync } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { JobService } from '../jobs/job-service.js';
import type { JobEvent } from '../jobs/types.js';
import type { PlatformObserver } from '../bots/shared/platform-observer.js';

export type { PlatformObserver };

export type ObservedPlatform = 'discord' | 'slack';

/** The part of the job service the metrics read. */
export type MetricsSource = Pick<JobService, 'onEvent' | 'onRefusal' | 'queue' | 'workers'>;

const WORKER_STATES = ['idle', 'starting', 'ready', 'busy', 'unavailable'] as const;

export class Metrics {
  readonly registry = new Registry();
  readonly #connected = new Map<ObservedPlatform, boolean>();
  readonly #jobs;
  readonly #waitSeconds;
  readonly #durationSeconds;
  readonly #gpuSeconds;
  readonly #failures;
  readonly #refusals;
  readonly #reconnects;
  readonly #ackSeconds;
  readonly #rateLimits;
  readonly #unsubscribe: (() => void)[] = [];

  constructor(source: MetricsSource) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'reelbot_process_' });
    this.#jobs = new Counter({ name: 'reelbot_jobs_total', help: 'Jobs finished, by kind and outcome (succeeded, failed, cancelled).', labelNames: ['kind', 'outcome'], registers });
    this.#waitSeconds = new Histogram({
      name: 'reelbot_queue_wait_seconds',
      help: 'Time from submit to the first start of a job.',
      labelNames: ['kind'],
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    this.#durationSeconds = new Histogram({
      name: 'reelbot_job_duration_seconds',
      help: 'Time from start to finish of a succeeded job, by kind and device.',
      labelNames: ['kind', 'device'],
      buckets: [1, 5, 10, 30, 60, 120, 300, 600, 900, 1800],
      registers,
    });
    this.#gpuSeconds = new Counter({ name: 'reelbot_gpu_seconds_total', help: 'GPU-seconds charged (the engine run time of jobs), by kind and device.', labelNames: ['kind', 'device'], registers });
    this.#failures = new Counter({ name: 'reelbot_job_failures_total', help: 'Failed jobs, by error code.', labelNames: ['code'], registers });
    this.#refusals = new Counter({ name: 'reelbot_submit_refusals_total', help: 'Submits refused (quota, cooldown, ban, prompt policy…), by error code.', labelNames: ['code'], registers });
    this.#reconnects = new Counter({ name: 'reelbot_platform_reconnects_total', help: 'Reconnections to a chat platform after the connection was lost.', labelNames: ['platform'], registers });
    this.#ackSeconds = new Histogram({
      name: 'reelbot_ack_latency_seconds',
      help: 'Time from an interaction or command arriving to its acknowledgement.',
      labelNames: ['platform'],
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5],
      registers,
    });
    this.#rateLimits = new Counter({ name: 'reelbot_rate_limit_hits_total', help: 'Rate-limit answers from a chat platform.', labelNames: ['platform'], registers });
    const connected = this.#connected;
    new Gauge({
      name: 'reelbot_platform_connected',
      help: '1 while the connection to a chat platform is up.',
      labelNames: ['platform'],
      registers,
      collect() {
        for (const [platform, up] of connected) this.set({ platform }, up ? 1 : 0);
      },
    });
    new Gauge({
      name: 'reelbot_queue_depth',
      help: 'Jobs waiting to start, and jobs running.',
      labelNames: ['state'],
      registers,
      collect() {
        const { running, waiting } = source.queue();
        this.set({ state: 'waiting' }, waiting.length);
        this.set({ state: 'running' }, running.length);
      },
    });
    new Gauge({
      name: 'reelbot_queue_paused',
      help: '1 while an admin has paused the queue.',
      registers,
      collect() {
        this.set(source.queue().paused ? 1 : 0);
      },
    });
    new Gauge({
      name: 'reelbot_worker_state',
      help: '1 for the state each worker slot is in.',
      labelNames: ['device', 'slot', 'state'],
      registers,
      collect() {
        for (const [slot, worker] of source.workers().entries()) {
          for (const state of WORKER_STATES) this.set({ device: worker.device, slot: String(slot), state }, worker.state === state ? 1 : 0);
        }
      },
    });
    new Counter({
      name: 'reelbot_worker_restarts_total',
      help: 'Worker processes started on a slot after its first (a crash, hang or kill replaced the previous one).',
      labelNames: ['device', 'slot'],
      registers,
      collect() {
        this.reset();
        for (const [slot, worker] of source.workers().entries()) this.inc({ device: worker.device, slot: String(slot) }, worker.restarts);
      },
    });
    this.#unsubscribe.push(source.onEvent((event) => this.#onJobEvent(event)));
    this.#unsubscribe.push(source.onRefusal(({ code }) => this.#refusals.inc({ code })));
  }

  /** The observer to pass to a platform adapter. */
  platform(platform: ObservedPlatform): PlatformObserver {
    if (!this.#connected.has(platform)) this.#connected.set(platform, false);
    return {
      connection: (connected) => void this.#connected.set(platform, connected),
      reconnected: () => this.#reconnects.inc({ platform }),
      acked: (latencyMs) => this.#ackSeconds.observe({ platform }, Math.max(0, latencyMs) / 1000),
      rateLimited: () => this.#rateLimits.inc({ platform }),
    };
  }

  /** Whether the platform's adapter last reported its connection up (false when it never did). */
  connected(platform: ObservedPlatform): boolean {
    return this.#connected.get(platform) ?? false;
  }

  /** The metrics in Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  close(): void {
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
  }

  #onJobEvent(event: JobEvent): void {
    const { job } = event;
    switch (event.type) {
      case 'started':
        if (event.attempt === 1 && job.startedAt !== null) this.#waitSeconds.observe({ kind: job.kind }, Math.max(0, job.startedAt - job.queuedAt) / 1000);
        return;
      case 'succeeded':
        this.#jobs.inc({ kind: job.kind, outcome: 'succeeded' });
        this.#gpuSeconds.inc({ kind: job.kind, device: job.device ?? 'none' }, event.gpuSeconds);
        if (job.startedAt !== null && job.finishedAt !== null) {
          this.#durationSeconds.observe({ kind: job.kind, device: job.device ?? 'none' }, Math.max(0, job.finishedAt - job.startedAt) / 1000);
        }
        return;
      case 'failed':
        this.#jobs.inc({ kind: job.kind, outcome: 'failed' });
        this.#failures.inc({ code: event.code });
        // A timeout that the job's own settings caused is charged: its GPU-seconds count.
        if (job.gpuSeconds !== null) this.#gpuSeconds.inc({ kind: job.kind, device: job.device ?? 'none' }, job.gpuSeconds);
        return;
      case 'cancelled':
        this.#jobs.inc({ kind: job.kind, outcome: 'cancelled' });
        return;
      default:
        return;
    }
  }
}

/** `GET /metrics`: Prometheus text format. */
export function metricsRoutes(metrics: Metrics): FastifyPluginAsync {
  return async (app) => {
    app.get('/metrics', async (_request, reply) => {
      const text = await metrics.text();
      return reply.type(metrics.registry.contentType).header('cache-control', 'no-store').send(text);
    });
  };
}
