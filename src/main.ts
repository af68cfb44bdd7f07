/**
 * The composition root: the one place that opens the database, builds the job service and wires
 * process signals. Bot adapters are attached here as they land.
 */
import type { Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import type { Dispatcher } from './jobs/dispatch/port.js';
import { JobService } from './jobs/job-service.js';
import { openDatabase, type Db } from './store/db.js';
import { describeHolder, InstanceLease, type InstanceRole, type LeaseHolder } from './store/instance-lease.js';
import { StoreWriter } from './store/writer.js';

export interface App {
  config: Config;
  db: Db;
  logger: Logger;
  jobs: JobService;
  /** The coordinator lease this process holds on the database. */
  lease: InstanceLease;
  /** The one queue every write of the running app goes through (see src/store/writer.ts). */
  writer: StoreWriter;
  /** Drains the job service (see JobService.shutdown) and closes the database. */
  stop(): Promise<void>;
}

/** Another process is the coordinator of this database: it holds the instance lease. */
export class CoordinatorRunningError extends Error {
  readonly holder: LeaseHolder;
  constructor(holder: LeaseHolder, dbPath: string) {
    super(
      `Another ${describeHolder(holder)} is the coordinator of the database ${dbPath}. Only one process runs the jobs of a database: ` +
        'stop that one first (SIGTERM drains it; a rolling deploy stops the old serve, then starts the new one), or set REELBOT_DB_PATH to another database.',
    );
    this.name = 'CoordinatorRunningError';
    this.holder = holder;
  }
}

/**
 * Opens the database (migrating it), takes the coordinator lease, recovers what a crash left behind
 * and starts running jobs. Throws {@link CoordinatorRunningError} when another live process holds
 * the lease (nothing is recovered or run then).
 */
export function startApp(
  config: Config,
  options: { logger?: Logger; role?: InstanceRole; beforeStart?(app: App): void; dispatcher?(db: Db, logger: Logger): Dispatcher } = {},
): App {
  const logger = options.logger ?? createLogger(config.logLevel);
  const db = openDatabase(config.dbPath);
  const lease = new InstanceLease(db, { ttlMs: config.leaseTtlMs });
  const taken = lease.acquire(options.role ?? 'serve');
  if (!taken.acquired) {
    db.close();
    throw new CoordinatorRunningError(taken.holder, config.dbPath);
  }
  const writer = new StoreWriter(db, { logger });
  const jobs = new JobService({ config, db, logger, writer, lease, dispatcher: options.dispatcher?.(db, logger) });
  let stopping: Promise<void> | undefined;
  const app: App = {
    config,
    db,
    logger,
    jobs,
    lease,
    writer,
    stop: () =>
      (stopping ??= jobs.shutdown().finally(() => {
        lease.release();
        db.close();
        logger.info('stopped');
      })),
  };
  // Adapters subscribe to job events before recovery emits the notices of jobs it fails or cancels.
  options.beforeStart?.(app);
  jobs.start();
  return app;
}

/**
 * SIGTERM / SIGINT drain the app: no new starts, running jobs get their grace period, the rest
 * stay queued for the next start. A second signal exits at once (jobs are recovered at start).
 *
 * `drain` is the whole stop sequence (default: {@link App.stop}); a process with platform
 * adapters passes its own, in the order: job service drained, final deliveries sent, adapters
 * stopped, database closed, temp files removed. `onStopped` runs after it (default: exit 0).
 */
export function drainOnSignals(app: App, onStopped: () => void = () => process.exit(0), drain: () => Promise<void> = () => app.stop()): void {
  let received = false;
  const handler = (signal: NodeJS.Signals) => {
    if (received) {
      app.logger.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    received = true;
    app.logger.info({ signal, graceMs: app.config.jobs.shutdownGraceMs }, 'draining');
    void drain().then(onStopped, (error: unknown) => {
      app.logger.error({ err: error }, 'error while stopping');
      process.exit(1);
    });
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
