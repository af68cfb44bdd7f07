/**
 * The `reelbot` command line: database migrations, the queue, one job, usage reports and the
 * effective config. It is a separate process from the bot and never starts a job service or a
 * worker beside it: with `reelbot serve` running, the queue, jobs, usage and every change it keeps
 * in memory (cancel, pause, the retention sweep) go through its control socket (cli-operator.ts);
 * without it they use the database file. The audit log, `db status` and `db backup` read the file
 * in both cases (WAL lets them while the bot runs): the bot keeps nothing of theirs in memory.
 *
 * Exit codes: 0 ok; 1 failure (unknown job, migration problem, unexpected error); 2 bad usage
 * (unknown command or option, bad argument); 78 invalid configuration (EX_CONFIG).
 */
import { existsSync, readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { registerDashboard } from './cli-dashboard.js';
import { cancelInFile, operatorName, readRoute, setPausedInFile, writeFile, writeRoute } from './cli-operator.js';
import { registerDiscord } from './cli-discord.js';
import { registerModels } from './cli-models.js';
import { registerServe } from './cli-serve.js';
import { registerEdit, registerRender } from './cli-video.js';
import { registerWorker } from './cli-worker.js';
import { ConfigError, loadConfig, redactConfig, type Config } from './config.js';
import { AppError } from './errors.js';
import { FairQueue } from './jobs/fair-queue.js';
import { jobDetail, usageOverview, type JobDetail, type UsageOverview, type UsageQuery } from './jobs/operator-reports.js';
import { RetentionSweep, type SweepReport } from './jobs/retention.js';
import type { JobRecord, Platform, Usage, UserRecord } from './jobs/types.js';
import { createLogger, maskSecrets } from './log.js';
import { formatBytes } from './media/format-bytes.js';
import { AuditLog } from './store/audit-log.js';
import { backupDatabase, BackupError } from './store/backup.js';
import { describeHolder, liveCoordinator } from './store/instance-lease.js';
import { openDatabase, type Db } from './store/db.js';
import { JobRepo } from './store/job-repo.js';
import { migrate, migrationStatus, MigrationError, readMigrations, type MigrationStatus } from './store/migrate.js';
import { QuotaLedger, type LedgerEntry, type UsageFilter } from './store/quota-ledger.js';
import { Settings } from './store/settings.js';
import { UserRepo } from './store/user-repo.js';

/** Where the CLI writes; anything with a `write(text)` (process streams, or a test's buffer). */
export interface Sink {
  write(text: string): unknown;
  /** Set on a terminal: progress bars are drawn only there. */
  isTTY?: boolean;
}

export interface CliOptions {
  stdout?: Sink;
  stderr?: Sink;
  /** Settings come from here (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Clock for the default `usage --since` (tests). */
  now?: () => number;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
/** sysexits.h EX_CONFIG. */
export const EXIT_CONFIG = 78;

/** An expected failure: its message is printed as it is, without a stack trace. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT_FAILURE) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

const PLATFORMS: readonly Platform[] = ['discord', 'slack', 'cli'];

/**
 * Runs one command line and returns its exit code. `argv` is like `process.argv`: the first two
 * entries (node and the script) are skipped.
 * @example process.exitCode = await main(process.argv);
 */
export async function main(argv: string[], options: CliOptions = {}): Promise<number> {
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const env = options.env ?? process.env;
  const now = options.now ?? Date.now;
  const out = (line = ''): void => void stdout.write(`${line}\n`);

  let exitCode = EXIT_OK;
  const program = new Command('reelbot');
  program
    .description('reelbot: make and edit videos with diffusion models, and operate the bot (database, queue, jobs, usage, settings, models).')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .option('--config <file>', 'JSON config file (REELBOT_* environment variables win over it)')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => void stdout.write(text),
      writeErr: (text) => void stderr.write(text),
      outputError: (text, write) => write(text),
    })
    .addHelpText(
      'after',
      '\nSettings come from REELBOT_* environment variables and the optional --config file.\n' +
        'Exit codes: 0 ok, 1 failure, 2 bad usage, 78 invalid configuration.',
    );

  const config = (): Config => loadConfig({ env, file: program.opts<{ config?: string }>().config });

  // reelbot db …
  const db = program.command('db').description('database migrations, backup and retention');
  db.command('migrate')
    .description('apply pending migrations')
    .action(() => {
      const settings = config();
      const holder = liveCoordinator(settings.dbPath, settings.leaseTtlMs);
      const handle = openDatabase(settings.dbPath, { migrate: false });
      try {
        const names = new Map(readMigrations().map((file) => [file.version, migrationName(file)]));
        const pending = migrationStatus(handle).filter((entry) => entry.state === 'pending');
        if (holder && pending.length > 0) {
          // Its statements were prepared against the schema it started with: changing it beneath it could break it.
          throw new CliError(
            `${describeHolder(holder)} runs on ${settings.dbPath}, so its schema is not changed beneath it. Stop it first (SIGTERM drains it): ` +
              `"reelbot serve" applies the ${pending.length} pending migration${pending.length === 1 ? '' : 's'} (${pending.map(migrationName).join(', ')}) when it starts, or run "reelbot db migrate" then.`,
          );
        }
        const applied = migrate(handle);
        if (applied.length === 0) {
          out(`Database ${settings.dbPath} is up to date.`);
        } else {
          out(`Applied ${applied.length} migration${applied.length === 1 ? '' : 's'} to ${settings.dbPath}:`);
          for (const version of applied) out(`  ${names.get(version) ?? pad3(version)}`);
        }
      } finally {
        handle.close();
      }
    });
  db.command('status')
    .description('list every migration and its state (applied, pending, edited, missing); exit 1 if one is edited or missing')
    .action(() => {
      const settings = config();
      const exists = settings.dbPath === ':memory:' || existsSync(settings.dbPath);
      // A database that does not exist yet is not created by a status check: every migration is pending.
      const handle = openDatabase(exists ? settings.dbPath : ':memory:', { migrate: false });
      let status: MigrationStatus[];
      try {
        status = migrationStatus(handle);
      } finally {
        handle.close();
      }
      out(`Database: ${settings.dbPath}${exists ? '' : ' (does not exist yet)'}`);
      out(
        table(
          ['MIGRATION', 'STATE', 'APPLIED AT'],
          status.map((entry) => [migrationName(entry), entry.state, iso(entry.appliedAt)]),
        ),
      );
      const pending = status.filter((entry) => entry.state === 'pending');
      const broken = status.filter((entry) => entry.state === 'edited' || entry.state === 'missing');
      if (pending.length > 0) out(`${pending.length} pending: run "reelbot db migrate" (the bot also applies them when it starts).`);
      if (broken.length > 0) {
        const lines = broken.map((entry) =>
          entry.state === 'edited'
            ? `${migrationName(entry)}.sql was edited after it was applied`
            : `${migrationName(entry)}.sql was applied but its file is gone`,
        );
        stderr.write(
          `reelbot: ${lines.join('; ')}. Applied migrations are append-only: restore the original file and put the change in a new migration.\n`,
        );
        exitCode = EXIT_FAILURE;
      } else if (pending.length === 0) {
        out('Up to date.');
      }
    });

  db.command('backup')
    .description('copy the database into a new FILE, online (VACUUM INTO) while the bot runs; never overwrites a file')
    .argument('<file>', 'the new file (its folder must exist)')
    .action((file: string) => {
      withDatabase(config(), (handle) => {
        try {
          const copy = backupDatabase(handle, file);
          out(`Backed up to ${copy.file} (${formatBytes(copy.bytes)}).`);
        } catch (error) {
          if (error instanceof BackupError) throw new CliError(error.message);
          throw error;
        }
      });
    });
  db.command('prune')
    .description('run the retention sweep now (old outputs, clips, event ids; see the retention settings) and print what it removed')
    .action(async () => {
      const settings = config();
      // The running bot sweeps through its own writer, and knows the files its running jobs use.
      const coordinator = writeRoute(settings, fail);
      let report: SweepReport;
      if (coordinator) {
        report = await fromCoordinator(coordinator.client.prune(operatorName()));
      } else {
        const handle = openExisting(settings);
        try {
          const write = <T>(change: () => T): Promise<T> => Promise.resolve(writeFile(handle, settings, change, fail));
          report = await new RetentionSweep({ db: handle, config: settings, logger: createLogger('silent'), write }).run();
        } finally {
          handle.close();
        }
      }
      const ids = report.outputJobIds.map((id) => `#${id}`);
      out(
        `Removed the output folders of ${report.outputJobIds.length} job${report.outputJobIds.length === 1 ? '' : 's'}` +
          `${ids.length === 0 ? '' : ` (${ids.slice(0, 20).join(', ')}${ids.length > 20 ? ', …' : ''})`}` +
          ` and ${report.clips.length} downloaded clip${report.clips.length === 1 ? '' : 's'}: ${formatBytes(report.bytes)} freed.`,
      );
      out(`Forgot ${report.processedEvents} processed event id${report.processedEvents === 1 ? '' : 's'}; deleted ${report.jobRows} old job row${report.jobRows === 1 ? '' : 's'}.`);
      if (report.keptForWaitingJobs > 0) out(`Kept ${report.keptForWaitingJobs} old file${report.keptForWaitingJobs === 1 ? '' : 's'} that a queued or running job needs.`);
      if (coordinator) out(`(swept by the running ${describeHolder(coordinator.holder)})`);
    });

  // reelbot audit
  program
    .command('audit')
    .description('the admin audit log, newest first: who did what, where and when')
    .option('--limit <n>', 'how many entries (default 50)', parseLimit)
    .option('--since <date>', 'only entries from this UTC date (YYYY-MM-DD) or ISO timestamp', parseTime)
    .option('--json', 'print one JSON object per line')
    .action((flags: { limit?: number; since?: TimeArg; json?: boolean }) => {
      withDatabase(config(), (handle) => {
        const entries = new AuditLog(handle).list({ limit: flags.limit ?? 50, ...(flags.since === undefined ? {} : { since: flags.since.time }) });
        if (flags.json) {
          for (const entry of entries) out(JSON.stringify({ ...entry, createdAt: iso(entry.createdAt) }));
          return;
        }
        if (entries.length === 0) {
          out(flags.since === undefined ? 'The audit log is empty.' : `No admin actions since ${iso(flags.since.time)}.`);
          return;
        }
        out(
          table(
            ['ID', 'TIME', 'BY', 'WHERE', 'ACTION', 'TARGET', 'DETAILS'],
            entries.map((entry) => [
              String(entry.id),
              iso(entry.createdAt),
              `${entry.platform}:${entry.actorId}`,
              [entry.groupId, entry.channelId].filter((part) => part !== null).join('/') || '-',
              entry.action,
              entry.target ?? '-',
              Object.keys(entry.details).length === 0 ? '' : JSON.stringify(entry.details),
            ]),
            { right: [0] },
          ),
        );
      });
    });

  // reelbot queue
  const queueCommand = program
    .command('queue')
    .description("what is running and what waits, in the order it will start (the running bot's live view, with ETAs)")
    .action(async () => {
      const settings = config();
      const route = readRoute(settings);
      if (route.via === 'coordinator') {
        const view = await fromCoordinator(route.client.queue(operatorName()));
        out(`Live view of the running ${describeHolder(route.holder)}.`);
        printQueue(out, view);
        return;
      }
      withDatabase(settings, (handle) => {
        out(`${route.note} No ETAs: they come from the running bot.`);
        printQueue(out, queueFromFile(handle));
      });
    });
  queueCommand
    .command('pause')
    .description('stop starting jobs (running ones finish); kept across restarts; audited')
    .action(() => setQueuePaused(true));
  queueCommand
    .command('resume')
    .description('start jobs again after a pause; audited')
    .action(() => setQueuePaused(false));

  /** `reelbot queue pause|resume`: through the running coordinator (it stops or starts its queue at once), or in the file. */
  const setQueuePaused = async (paused: boolean): Promise<void> => {
    const settings = config();
    const coordinator = writeRoute(settings, fail);
    const done = paused ? 'Queue paused: running jobs finish; waiting jobs do not start until "reelbot queue resume".' : 'Queue resumed: waiting jobs start again.';
    if (coordinator) {
      await fromCoordinator(paused ? coordinator.client.pauseQueue(operatorName()) : coordinator.client.resumeQueue(operatorName()));
      out(`${done} (through the running ${describeHolder(coordinator.holder)})`);
      return;
    }
    withDatabase(settings, (handle) => writeFile(handle, settings, () => setPausedInFile(handle, operatorName(), paused, now()), fail));
    out(`${done} (in ${settings.dbPath}: the bot is not running; it starts ${paused ? 'paused' : 'unpaused'})`);
  };

  // reelbot jobs …
  const jobsCommand = program.command('jobs').description('look at jobs, or cancel one');
  jobsCommand
    .command('show')
    .description('every field of one job, and its quota ledger rows')
    .argument('<id>', 'job id (a whole number)', parseJobId)
    .option('--json', 'print one JSON object')
    .action(async (id: number, flags: { json?: boolean }) => {
      const settings = config();
      const route = readRoute(settings);
      const detail =
        route.via === 'coordinator'
          ? await fromCoordinator(route.client.job(operatorName(), id))
          : withDatabase(settings, (handle) => jobDetail({ jobs: new JobRepo(handle), ledger: new QuotaLedger(handle) }, id));
      if (!detail) throw new CliError(`No job #${id}.`);
      printJob(out, detail, flags.json === true);
    });
  jobsCommand
    .command('cancel')
    .description("cancel a job, anyone's: a queued one is removed and refunded, a running one is stopped (audited when it is someone else's)")
    .argument('<id>', 'job id (a whole number)', parseJobId)
    .action(async (id: number) => {
      const settings = config();
      const coordinator = writeRoute(settings, fail);
      if (coordinator) {
        const { outcome, job } = await fromCoordinator(coordinator.client.cancel(operatorName(), id));
        const through = `(through the running ${describeHolder(coordinator.holder)})`;
        out(
          outcome === 'cancelled'
            ? `Cancelled job #${job.id} of ${owner(job)}; its quota was refunded. ${through}`
            : `Job #${job.id} of ${owner(job)} is running: it was told to stop, and is killed if it has not within ${settings.jobs.cancelGraceMs} ms. ${through}`,
        );
        return;
      }
      const job = withDatabase(settings, (handle) => writeFile(handle, settings, () => cancelInFile(handle, operatorName(), id, now(), fail), fail));
      out(`Cancelled job #${job.id} of ${owner(job)}; its quota was refunded. (in ${settings.dbPath}: the bot is not running; it tells the user when it starts)`);
    });

  // reelbot usage
  program
    .command('usage')
    .description('GPU usage: total, top users and usage per guild/workspace')
    .option('--user <user>', 'only this user: platform:externalId (discord:1234, slack:U0123) or an internal user id', parseUserRef)
    .option('--guild <id>', 'only this Discord guild or Slack workspace')
    .option('--since <date>', 'from this UTC date (YYYY-MM-DD) or ISO timestamp (default: start of this UTC month)', parseTime)
    .option('--until <date>', 'up to and including this UTC date, or up to (not including) this ISO timestamp', parseTime)
    .option('--limit <n>', 'how many top users and guilds to list (default 10)', parseLimit)
    .option('--json', 'print one JSON object')
    .addHelpText('after', '\nTimestamps without an offset are read as UTC. Usage counts each job in the period it was submitted in.')
    .action(async (flags: { user?: UserRef; guild?: string; since?: TimeArg; until?: TimeArg; limit?: number; json?: boolean }) => {
      const since = flags.since?.time ?? startOfUtcMonth(now());
      // A date given for --until means the whole of that day.
      const until = flags.until === undefined ? undefined : flags.until.time + (flags.until.dateOnly ? DAY_MS : 0);
      if (until !== undefined && until <= since) {
        throw new CliError(`--until (${iso(until)}) must be after --since (${iso(since)}).`, EXIT_USAGE);
      }
      const query: UsageQuery = {
        since,
        limit: flags.limit ?? 10,
        ...(until === undefined ? {} : { until }),
        ...(flags.guild === undefined ? {} : { groupId: flags.guild }),
        ...(flags.user === undefined ? {} : { user: 'id' in flags.user ? { id: flags.user.id } : { platform: flags.user.platform, externalId: flags.user.externalId } }),
      };
      const settings = config();
      const route = readRoute(settings);
      const overview =
        route.via === 'coordinator'
          ? await fromCoordinator(route.client.usage(operatorName(), query))
          : withDatabase(settings, (handle) => usageOverview({ users: new UserRepo(handle), ledger: new QuotaLedger(handle) }, query));
      if (flags.user && !overview.user) throw new CliError(`No user ${flags.user.text} in the database (it has never submitted a job).`);
      printUsage(out, overview, { since, until, guild: flags.guild, json: flags.json === true });
    });

  // reelbot config
  program
    .command('config')
    .description('print the effective settings, secrets redacted')
    .action(() => {
      out(JSON.stringify(redactConfig(config()), null, 2));
    });

  registerModels(program, {
    out,
    config,
    fail: (message, code) => {
      throw new CliError(message, code);
    },
  });
  const videoContext = {
    config: (overrides?: Record<string, unknown>) => loadConfig({ env, file: program.opts<{ config?: string }>().config, overrides }),
    out,
    stderr,
    fail: (message: string, code: number): never => {
      throw new CliError(message, code);
    },
    now,
  };
  registerServe(program, videoContext);
  registerWorker(program, videoContext);
  registerDashboard(program, {
    config,
    out,
    fail: videoContext.fail,
    withDatabase,
    now,
  });
  registerDiscord(program, videoContext);
  registerRender(program, videoContext);
  registerEdit(program, videoContext);

  // Every command points to its own help after a usage error.
  forEachCommand(program, (command, path) => command.showHelpAfterError(`Run "${path} --help" for usage.`));

  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help, --version and `help` exit 0; commander has already printed everything else.
      return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (error instanceof ConfigError) {
      stderr.write(`reelbot: ${error.message}\n`);
      return EXIT_CONFIG;
    }
    if (error instanceof MigrationError || error instanceof CliError) {
      stderr.write(`reelbot: ${error.message}\n`);
      return error instanceof CliError ? error.exitCode : EXIT_FAILURE;
    }
    const message = error instanceof Error ? error.message : String(error);
    stderr.write(`reelbot: unexpected error: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
    return EXIT_FAILURE;
  }
}

// --- database -------------------------------------------------------------------------------

/** Opens an existing, migrated database without changing its schema, runs `use`, closes it. */
function withDatabase<T>(config: Config, use: (db: Db) => T): T {
  const db = openExisting(config);
  try {
    return use(db);
  } finally {
    db.close();
  }
}

/** Opens the bot's existing database file, refusing a missing one or one with pending migrations. */
function openExisting(config: Config): Db {
  if (config.dbPath === ':memory:') {
    throw new CliError('dbPath is ":memory:": the command line reads the bot\'s database file, so set REELBOT_DB_PATH to it.');
  }
  if (!existsSync(config.dbPath)) {
    throw new CliError(`No database at ${config.dbPath}. Start the bot once, or run "reelbot db migrate" to create it.`);
  }
  const db = openDatabase(config.dbPath, { migrate: false });
  try {
    const pending = migrationStatus(db).filter((entry) => entry.state === 'pending');
    if (pending.length > 0) {
      throw new CliError(
        `The database at ${config.dbPath} has ${pending.length} pending migration${pending.length === 1 ? '' : 's'} ` +
          `(${pending.map(migrationName).join(', ')}). Run "reelbot db migrate" first.`,
      );
    }
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/** A queue as the command line prints it: the coordinator's live view (with ETAs), or one read from the file. */
interface QueueListing {
  paused: boolean;
  notice?: string;
  running: { job: JobRecord; position: number; etaMs?: number }[];
  waiting: { job: JobRecord; position: number; etaMs?: number }[];
}

/** The queue read from the database file: the job service's fair order, rebuilt from the rows. */
function queueFromFile(db: Db): QueueListing {
  const jobs = new JobRepo(db);
  const queued = jobs.listByState('queued'); // id order, as the service enqueues them on start
  const byId = new Map(queued.map((job) => [String(job.id), job]));
  const fair = new FairQueue();
  fair.seedLastServed(jobs.lastEndedByUser());
  const noop = async (): Promise<void> => {};
  for (const job of queued) {
    fair.enqueue(noop, { id: String(job.id), userId: job.userId, priority: job.priority, arrivedAt: job.queuedAt, cost: job.estimatedGpuSeconds * 1000 });
  }
  return {
    paused: new Settings(db).queuePaused(),
    running: jobs.listByState('running').map((job) => ({ job, position: 0 })),
    waiting: fair.order().map((entry, index) => ({ job: byId.get(entry.id)!, position: index + 1 })),
  };
}

/** What the running coordinator answered, or the command line's error: its refusal as it is, or that it could not be reached. */
async function fromCoordinator<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    if (error instanceof AppError) throw new CliError(error.userMessage);
    throw error;
  }
}

function fail(message: string): never {
  throw new CliError(message);
}

// --- arguments ------------------------------------------------------------------------------

type UserRef = ({ id: number } | { platform: Platform; externalId: string }) & { text: string };
interface TimeArg {
  time: number;
  dateOnly: boolean;
}

const DAY_MS = 24 * 60 * 60 * 1000;

function parseJobId(value: string): number {
  const id = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(id) || id < 1) {
    throw new InvalidArgumentError('A job id is a whole number, such as 42.');
  }
  return id;
}

function parseLimit(value: string): number {
  const limit = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(limit) || limit < 1) {
    throw new InvalidArgumentError('Expected a whole number of at least 1.');
  }
  return limit;
}

function parseUserRef(value: string): UserRef {
  const text = value.trim();
  if (/^\d+$/.test(text) && Number.isSafeInteger(Number(text))) return { id: Number(text), text: `#${text}` };
  const colon = text.indexOf(':');
  const platform = text.slice(0, colon) as Platform;
  const externalId = text.slice(colon + 1);
  if (colon <= 0 || !PLATFORMS.includes(platform) || externalId === '') {
    throw new InvalidArgumentError(`Expected platform:externalId (platform one of ${PLATFORMS.join(', ')}; e.g. discord:1234) or an internal user id.`);
  }
  return { platform, externalId, text };
}

/** YYYY-MM-DD (midnight UTC) or an ISO timestamp (UTC when it has no offset). */
function parseTime(value: string): TimeArg {
  const expected = 'Expected a date (YYYY-MM-DD) or an ISO timestamp (e.g. 2024-06-01T12:00:00Z).';
  const match = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i.exec(value.trim());
  if (!match) throw new InvalidArgumentError(expected);
  const [, y, m, d, hh, mm, ss, zone] = match;
  const year = Number(y);
  const month = Number(m);
  const day = Number(d);
  const midnight = Date.UTC(year, month - 1, day);
  const check = new Date(midnight);
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) {
    throw new InvalidArgumentError(`${value} is not a real date. ${expected}`);
  }
  if (hh === undefined) return { time: midnight, dateOnly: true };
  if (Number(hh) > 23 || Number(mm) > 59 || Number(ss ?? 0) > 59) {
    throw new InvalidArgumentError(`${value} is not a real time of day. ${expected}`);
  }
  const text = value.trim();
  const time = Date.parse(zone === undefined ? `${text}Z` : text);
  if (!Number.isFinite(time)) throw new InvalidArgumentError(expected);
  return { time, dateOnly: false };
}

function startOfUtcMonth(now: number): number {
  const date = new Date(now);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1);
}

// --- formatting -----------------------------------------------------------------------------

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function pad3(version: number): string {
  return String(version).padStart(3, '0');
}

function migrationName(entry: { version: number; name: string }): string {
  return `${pad3(entry.version)}_${entry.name}`;
}

function iso(time: number | null | undefined): string {
  return time === null || time === undefined ? '-' : new Date(time).toISOString();
}

function round(value: number, digits = 3): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

function seconds(value: number): string {
  return round(value, 1).toFixed(1);
}

function signed(value: number, digits = 0): string {
  const text = digits > 0 ? round(value, digits).toFixed(digits) : String(value);
  return value > 0 ? `+${text}` : text;
}

function usage(row: Usage): Usage {
  return { jobs: row.jobs, gpuSeconds: round(row.gpuSeconds) };
}

function userRef(user: { platform: Platform; externalId: string }): string {
  return `${user.platform}:${user.externalId}`;
}

function owner(job: JobRecord): string {
  return `${job.platform}:${job.userExternalId}`;
}

function jobFields(job: JobRecord): [string, string][] {
  return [
    ['state', job.state],
    ['kind', job.kind],
    ['owner', `${owner(job)} (user #${job.userId})`],
    ['group', job.groupId ?? '-'],
    ['channel', job.channelId ?? '-'],
    ['priority', job.priority > 0 ? `high (${job.priority})` : 'normal'],
    ['seed', String(job.seed)],
    ['device', job.device ?? '-'],
    ['attempts', String(job.attempts)],
    ['queued at', iso(job.queuedAt)],
    ['started at', iso(job.startedAt)],
    ['finished at', iso(job.finishedAt)],
    ['cancel requested', iso(job.cancelRequestedAt)],
    ['estimated GPU s', seconds(job.estimatedGpuSeconds)],
    ['GPU seconds', job.gpuSeconds === null ? '-' : seconds(job.gpuSeconds)],
    ['error', job.error === null && job.errorCode === null ? '-' : `${job.errorCode ?? 'error'}: ${job.error ?? ''}`.trim()],
    ['params', JSON.stringify(job.params)],
    ['result', job.result === null ? '-' : JSON.stringify(job.result)],
    ['message refs', JSON.stringify(redactTokens(job.messageRefs))],
  ];
}

/** Platform message refs may hold short-lived interaction tokens: never print them. */
/** Message refs as an operator may see them: token fields redacted, and tokens inside URLs (Slack's response_url) masked. */
function redactTokens(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactTokens);
  if (typeof value === 'string') return maskSecrets(value);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [key, /token|secret/i.test(key) && !/expires/i.test(key) ? '[redacted]' : redactTokens(inner)]),
  );
}

function jobJson(job: JobRecord): Record<string, unknown> {
  return {
    ...job,
    messageRefs: redactTokens(job.messageRefs),
    owner: owner(job),
    queuedAt: iso(job.queuedAt),
    startedAt: job.startedAt === null ? null : iso(job.startedAt),
    finishedAt: job.finishedAt === null ? null : iso(job.finishedAt),
    cancelRequestedAt: job.cancelRequestedAt === null ? null : iso(job.cancelRequestedAt),
  };
}

function ledgerJson(row: LedgerEntry): Record<string, unknown> {
  return {
    id: row.id,
    entry: row.entry,
    jobs: row.jobs,
    gpuSeconds: round(row.gpuSeconds),
    userId: row.userId,
    groupId: row.groupId,
    chargedAt: iso(row.chargedAt),
    createdAt: iso(row.createdAt),
  };
}

function printQueue(out: (line?: string) => void, queue: QueueListing): void {
  out(queue.paused ? 'Queue: paused (running jobs finish; waiting jobs do not start until it is resumed)' : 'Queue: active');
  if (queue.notice) out(`Notice: ${queue.notice}`);
  out();
  if (queue.running.length === 0) {
    out('Running: none');
  } else {
    out(`Running (${queue.running.length}):`);
    out(
      indent(
        table(
          ['JOB', 'USER', 'KIND', 'DEVICE', 'STARTED', 'ATTEMPT', 'EST. GPU S', 'ETA'],
          queue.running.map(({ job, etaMs }) => [
            `#${job.id}`,
            owner(job),
            job.kind,
            job.device ?? '-',
            // The coordinator has taken a job from the fair queue that is not on a worker yet: it waits for a slot.
            (job.startedAt === null ? 'waiting for a worker' : iso(job.startedAt)) + (job.cancelRequestedAt === null ? '' : ' (cancelling)'),
            String(job.attempts),
            seconds(job.estimatedGpuSeconds),
            eta(etaMs),
          ]),
          { right: [5, 6] },
        ),
      ),
    );
  }
  out();
  if (queue.waiting.length === 0) {
    out('Waiting: none');
  } else {
    out(`Waiting (${queue.waiting.length}), in the order they will start:`);
    out(
      indent(
        table(
          ['POS', 'JOB', 'USER', 'KIND', 'PRIORITY', 'GROUP', 'QUEUED', 'EST. GPU S', 'ETA'],
          queue.waiting.map(({ job, position, etaMs }) => [
            String(position),
            `#${job.id}`,
            owner(job),
            job.kind,
            job.priority > 0 ? 'high' : 'normal',
            job.groupId ?? '-',
            iso(job.queuedAt),
            seconds(job.estimatedGpuSeconds),
            eta(etaMs),
          ]),
          { right: [0, 7] },
        ),
      ),
    );
  }
}

function printJob(out: (line?: string) => void, { job, ledger }: JobDetail, json: boolean): void {
  if (json) {
    out(JSON.stringify({ job: jobJson(job), ledger: ledger.map(ledgerJson) }, null, 2));
    return;
  }
  out(`Job #${job.id}`);
  out(indent(keyValues(jobFields(job))));
  out();
  if (ledger.length === 0) {
    out('Quota ledger: no rows');
    return;
  }
  out(`Quota ledger (${ledger.length} row${ledger.length === 1 ? '' : 's'}):`);
  out(
    indent(
      table(
        ['ENTRY', 'JOBS', 'GPU SECONDS', 'GROUP', 'CHARGED AT', 'CREATED AT'],
        ledger.map((row) => [row.entry, signed(row.jobs), signed(row.gpuSeconds, 1), row.groupId ?? '-', iso(row.chargedAt), iso(row.createdAt)]),
        { right: [1, 2] },
      ),
    ),
  );
  const net = ledger.reduce((sum, row) => ({ jobs: sum.jobs + row.jobs, gpu: sum.gpu + row.gpuSeconds }), { jobs: 0, gpu: 0 });
  out(`  net: ${signed(net.jobs)} job${Math.abs(net.jobs) === 1 ? '' : 's'}, ${seconds(net.gpu)} GPU-seconds`);
}

function printUsage(out: (line?: string) => void, report: UsageOverview, period: { since: number; until?: number; guild?: string; json: boolean }): void {
  const { since, until, guild } = period;
  const { user, topUsers } = report;
  const total = usage(report.total);
  const byGroup = report.byGroup.map((row) => ({ groupId: row.groupId, ...usage(row) }));
  if (period.json) {
    out(
      JSON.stringify({
        since: iso(since),
        until: until === undefined ? null : iso(until),
        user: user ? userRef(user) : null,
        guild: guild ?? null,
        total,
        topUsers: topUsers.map((row) => ({
          userId: row.userId,
          user: row.user ? userRef(row.user) : null,
          displayName: row.user?.displayName ?? null,
          ...usage(row),
        })),
        byGroup,
      }),
    );
    return;
  }
  out(`Usage from ${iso(since)} ${until === undefined ? 'until now' : `up to ${iso(until)} (exclusive)`}`);
  const filters = [user ? `user ${userRef(user)}` : '', guild ? `guild/workspace ${guild}` : ''].filter(Boolean);
  if (filters.length > 0) out(`Only ${filters.join(', ')}`);
  out(`Total: ${total.jobs} job${total.jobs === 1 ? '' : 's'}, ${seconds(total.gpuSeconds)} GPU-seconds`);
  out();
  if (topUsers.length === 0) {
    out('Top users: none');
  } else {
    out('Top users:');
    out(
      indent(
        table(
          ['USER', 'NAME', 'JOBS', 'GPU SECONDS'],
          topUsers.map((row) => [row.user ? userRef(row.user) : `#${row.userId}`, row.user?.displayName ?? '-', String(row.jobs), seconds(row.gpuSeconds)]),
          { right: [2, 3] },
        ),
      ),
    );
  }
  out();
  if (byGroup.length === 0) {
    out('Per guild/workspace: none');
  } else {
    out('Per guild/workspace:');
    out(
      indent(
        table(
          ['GUILD/WORKSPACE', 'JOBS', 'GPU SECONDS'],
          byGroup.map((row) => [row.groupId ?? '(none: direct messages)', String(row.jobs), seconds(row.gpuSeconds)]),
          { right: [1, 2] },
        ),
      ),
    );
  }
}

/** "in 42 s", "in 3 min 5 s"; "-" when unknown (read from the file: nothing runs the queue). */
function eta(ms: number | undefined): string {
  if (ms === undefined) return '-';
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h > 0) return `in ${h} h ${m} min`;
  return m > 0 ? `in ${m} min ${sec} s` : `in ${sec} s`;
}

/** Columns padded to their widest cell, two spaces apart; `right` lists right-aligned columns. */
function table(headers: string[], rows: string[][], options: { right?: number[] } = {}): string {
  const right = new Set(options.right ?? []);
  const cells = [headers, ...rows].map((row) => row.map(oneLine));
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((cell, column) => (right.has(column) ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function keyValues(pairs: [string, string][]): string {
  const width = Math.max(...pairs.map(([key]) => key.length));
  return pairs.map(([key, value]) => `${key.padEnd(width)}  ${oneLine(value)}`.trimEnd()).join('\n');
}

function indent(text: string, prefix = '  '): string {
  return text
    .split('\n')
    .map((line) => (line === '' ? line : prefix + line))
    .join('\n');
}

/** Keeps user-provided text (prompts, errors) from breaking the layout. */
function oneLine(text: string): string {
  return text.replace(/[\r\n\t]+/g, ' ');
}

function forEachCommand(command: Command, visit: (command: Command, path: string) => void, parentPath = ''): void {
  const path = parentPath ? `${parentPath} ${command.name()}` : command.name();
  visit(command, path);
  for (const sub of command.commands) forEachCommand(sub, visit, path);
}
