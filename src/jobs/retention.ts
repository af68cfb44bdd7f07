/**
 * Keeps disk and database bounded (settings: `retention` in src/config.ts). One sweep:
 * - removes the folder `<outputDir>/<jobId>` of jobs finished more than `outputDays` ago and marks
 *   the row (`files_removed_at`); the row itself stays for history, stats and quota;
 * - removes downloaded clips (`<outputDir>/clips/<platform>/…`) older than `clipDays`;
 * - forgets platform event ids older than `processedEventDays`;
 * - with `jobRowDays` set, deletes finished jobs older than that with their ledger rows.
 * Whatever a queued or running job still needs (the clip or earlier video it edits, its own
 * folder) is skipped, whatever its age. `serve` runs it periodically; `reelbot db prune` at once.
 */
import { readdir, rm, stat } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import type { Logger } from 'pino';
import type { Db } from '../store/db.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Where adapters keep downloaded clips, under the output folder. */
export const CLIPS_FOLDER = 'clips';

export interface SweepReport {
  /** Jobs whose output folder was removed. */
  outputJobIds: number[];
  /** Clip files removed (absolute paths). */
  clips: string[];
  /** Bytes freed on disk by both. */
  bytes: number;
  processedEvents: number;
  jobRows: number;
  /** Files kept past their time because a queued or running job needs them. */
  keptForWaitingJobs: number;
}

/** Runs one synchronous write transaction; in `serve` the writer queue's, elsewhere a direct one. */
export type RunWrite = <T>(write: () => T) => Promise<T>;

/** The settings a sweep reads (the config's `outputDir` and `retention`, checked at start). */
export interface RetentionSettings {
  outputDir: string;
  retention: {
    outputDays: number;
    clipDays: number;
    processedEventDays: number;
    /** `null`: job rows are kept for ever. */
    jobRowDays: number | null;
    sweepIntervalMinutes: number;
  };
}

export interface RetentionOptions {
  db: Db;
  config: RetentionSettings;
  logger: Logger;
  /** Default: runs the write at once, in an IMMEDIATE transaction. */
  write?: RunWrite;
  now?: () => number;
}

export class RetentionSweep {
  readonly #db: Db;
  readonly #config: RetentionOptions['config'];
  readonly #logger: Logger;
  readonly #write: RunWrite;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<SweepReport> | undefined;

  constructor(options: RetentionOptions) {
    this.#db = options.db;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#write = options.write ?? (async (write) => options.db.transaction(write).immediate());
  }

  /** Sweeps now and then every `retention.sweepIntervalMinutes`, logging what went; {@link stop} ends it. */
  start(): void {
    if (this.#timer !== undefined) return;
    const tick = () => {
      void this.run().then(
        (report) => {
          if (report.outputJobIds.length + report.clips.length + report.processedEvents + report.jobRows > 0) this.#logger.info(summary(report), 'retention sweep');
        },
        (error: unknown) => this.#logger.warn({ err: error }, 'retention sweep failed; the next one tries again'),
      );
    };
    this.#timer = setInterval(tick, this.#config.retention.sweepIntervalMinutes * 60_000);
    this.#timer.unref();
    tick();
  }

  /** Stops the periodic sweep and waits for one in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running?.catch(() => undefined);
  }

  /** One sweep (a second call while one runs shares it). */
  run(): Promise<SweepReport> {
    this.#running ??= this.#sweep().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #sweep(): Promise<SweepReport> {
    const { retention } = this.#config;
    const now = this.#now();
    const outputDir = resolve(this.#config.outputDir);
    const needed = this.#neededByWaitingJobs(outputDir);
    const isNeeded = (path: string) => [...needed].some((file) => file === path || file.startsWith(path + sep));
    const report: SweepReport = { outputJobIds: [], clips: [], bytes: 0, processedEvents: 0, jobRows: 0, keptForWaitingJobs: 0 };

    const expired = this.#db
      .prepare(`SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') AND files_removed_at IS NULL AND finished_at < ? ORDER BY id`)
      .pluck()
      .all(now - retention.outputDays * DAY_MS) as number[];
    const gone: number[] = [];
    for (const id of expired) {
      const folder = join(outputDir, String(id));
      if (isNeeded(folder)) {
        report.keptForWaitingJobs++;
        continue;
      }
      const bytes = await sizeOf(folder);
      try {
        await rm(folder, { recursive: true, force: true });
      } catch (error) {
        this.#logger.warn({ err: error, jobId: id }, 'could not remove a job folder');
        continue;
      }
      gone.push(id);
      if (bytes > 0) report.outputJobIds.push(id);
      report.bytes += bytes;
    }

    const clipCutoff = now - retention.clipDays * DAY_MS;
    const clipsRoot = join(outputDir, CLIPS_FOLDER);
    for (const platform of await readdir(clipsRoot).catch(() => [] as string[])) {
      const folder = join(clipsRoot, platform);
      for (const name of await readdir(folder).catch(() => [] as string[])) {
        const file = join(folder, name);
        const info = await stat(file).catch(() => undefined);
        if (info === undefined || !info.isFile() || info.mtimeMs >= clipCutoff) continue;
        if (isNeeded(file)) {
          report.keptForWaitingJobs++;
          continue;
        }
        await rm(file, { force: true }).then(
          () => {
            report.clips.push(file);
            report.bytes += info.size;
          },
          (error: unknown) => this.#logger.warn({ err: error }, 'could not remove a downloaded clip'),
        );
      }
    }

    const rows = await this.#write(() => {
      const mark = this.#db.prepare(`UPDATE jobs SET files_removed_at = ? WHERE id = ?`);
      for (const id of gone) mark.run(now, id);
      const processedEvents = this.#db.prepare(`DELETE FROM processed_events WHERE created_at < ?`).run(now - retention.processedEventDays * DAY_MS).changes;
      let jobRows = 0;
      if (retention.jobRowDays !== null) {
        const before = now - retention.jobRowDays * DAY_MS;
        const old = `SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled') AND finished_at < @before`;
        this.#db.prepare(`DELETE FROM processed_events WHERE job_id IN (${old})`).run({ before });
        this.#db.prepare(`DELETE FROM quota_ledger WHERE job_id IN (${old})`).run({ before });
        jobRows = this.#db.prepare(`DELETE FROM jobs WHERE id IN (${old})`).run({ before }).changes;
      }
      return { processedEvents: report.processedEvents + processedEvents, jobRows };
    });
    report.processedEvents = rows.processedEvents;
    report.jobRows = rows.jobRows;
    return report;
  }

  /** Files that queued and running jobs read or write: the clip or video they edit, their own folder. */
  #neededByWaitingJobs(outputDir: string): Set<string> {
    const rows = this.#db.prepare(`SELECT id, params FROM jobs WHERE state IN ('queued', 'running')`).all() as { id: number; params: string }[];
    const needed = new Set<string>();
    for (const row of rows) {
      needed.add(join(outputDir, String(row.id)));
      const input = (JSON.parse(row.params) as { inputFile?: unknown }).inputFile;
      if (typeof input === 'string') needed.add(resolve(input));
    }
    return needed;
  }
}

/** Bytes of the files under a path (0 when it is not there). */
async function sizeOf(path: string): Promise<number> {
  const info = await stat(path).catch(() => undefined);
  if (info === undefined) return 0;
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const name of await readdir(path).catch(() => [] as string[])) total += await sizeOf(join(path, name));
  return total;
}

/** The report as log fields. */
export function summary(report: SweepReport): Record<string, unknown> {
  return {
    outputFolders: report.outputJobIds.length,
    clips: report.clips.length,
    bytes: report.bytes,
    processedEvents: report.processedEvents,
    jobRows: report.jobRows,
    keptForWaitingJobs: report.keptForWaitingJobs,
  };
}
