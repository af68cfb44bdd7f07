/**
 * `reelbot worker`: a worker host. `REELBOT_REDIS_URL=… reelbot worker [--devices cuda:0,cuda:1]`
 * takes jobs from the coordinator (`reelbot serve` with the same Redis) and runs them here, one
 * slot per device, on this host's own model folders (REELBOT_MODEL_DIR, REELBOT_EDIT_MODEL_DIR):
 * it gets only the jobs of coordinators configured with the same model names.
 * SIGTERM stops taking jobs and gives the running ones the shutdown grace period.
 */
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type { Config } from './config.js';
import { describeModel, kindModels, redisLabel } from './jobs/dispatch/redis-connection.js';
import { WorkerHost } from './jobs/worker/host.js';
import { JOB_KINDS, type JobKind } from './jobs/types.js';
import { createLogger } from './log.js';

export interface WorkerContext {
  config(overrides?: Record<string, unknown>): Config;
  out(line?: string): void;
  fail(message: string, exitCode: number): never;
}

/** sysexits.h EX_CONFIG. */
const EXIT_CONFIG = 78;

function list(value: string): string[] {
  const items = value.split(',').map((item) => item.trim()).filter(Boolean);
  if (items.length === 0) throw new InvalidArgumentError('Expected a comma-separated list.');
  return items;
}

export function registerWorker(program: Command, context: WorkerContext): void {
  program
    .command('worker')
    .description('run a worker host: take jobs from the coordinator through REELBOT_REDIS_URL and run them on this machine')
    .option('--devices <list>', 'one slot per device: cpu, cuda:0,cuda:1… (default: REELBOT_DEVICES, or cpu)', list)
    .option('--kinds <list>', `job kinds this host runs (default: ${JOB_KINDS.join(',')})`, list)
    .action(async (flags: { devices?: string[]; kinds?: string[] }) => {
      const config = context.config(flags.devices ? { devices: flags.devices } : {});
      if (!config.redisUrl) context.fail('reelbot worker needs REELBOT_REDIS_URL: the Redis that the coordinator (reelbot serve) uses.', EXIT_CONFIG);
      const kinds = flags.kinds ?? [...JOB_KINDS];
      const unknown = kinds.filter((kind) => !(JOB_KINDS as readonly string[]).includes(kind));
      if (unknown.length > 0) context.fail(`--kinds: unknown kind ${unknown.join(', ')}; the kinds are ${JOB_KINDS.join(', ')}.`, 2);
      const logger = createLogger(config.logLevel);
      const host = new WorkerHost({ config, redisUrl: config.redisUrl, logger, kinds: kinds as JobKind[] });
      await host.start();
      const models = kindModels(config);
      const taking = kinds.map((kind) => `${kind} (${describeModel(models[kind as JobKind])})`).join(' and ');
      context.out(`reelbot worker host ${host.hostId} is taking ${taking} jobs on ${config.devices.join(', ')} from Redis at ${redisLabel(config.redisUrl)}. Stop it with Ctrl-C or SIGTERM.`);
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (signal: NodeJS.Signals) => {
          if (stopping) process.exit(1);
          stopping = true;
          logger.info({ signal }, 'worker host draining');
          void host.stop().then(resolve, resolve);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
      setTimeout(() => process.exit(0), 1000).unref();
    });
}
