/**
 * `reelbot serve`: the bot itself. Opens the database, recovers what a crash left, starts the
 * worker pool and connects the platforms whose tokens are set (Discord, Slack or both);
 * SIGTERM / SIGINT drain it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { DiscordAdapter } from './bots/discord/discord-adapter.js';
import { SlackAdapter } from './bots/slack/slack-adapter.js';
import type { Config } from './config.js';
import { untrainedWeightsNotice } from './engine/models/built-in.js';
import { RetentionSweep } from './jobs/retention.js';
import { resolveFfmpegPaths } from './media/ffmpeg-paths.js';
import { createLogger } from './log.js';
import { CoordinatorRunningError, drainOnSignals, startApp, type App } from './main.js';
import { controlSocketPath, startControlSocket } from './web/control-socket.js';
import type { Logger } from 'pino';
import { S3Bucket } from './blob/s3-bucket.js';
import { BlobSigner } from './blob/signed-urls.js';
import { BullmqDispatcher, dispatchNamespace } from './jobs/dispatch/bullmq.js';
import { kindModels, redisLabel } from './jobs/dispatch/redis-connection.js';
import { WorkerHost } from './jobs/worker/host.js';
import type { Db } from './store/db.js';
import { JobRepo } from './store/job-repo.js';
import { blobRoutes } from './web/blob-routes.js';
import { httpAddress } from './web/http-server.js';
import { ServeHttp } from './web/serve-http.js';

export interface ServeContext {
  config(): Config;
  out(line?: string): void;
  fail(message: string, exitCode: number): never;
}

/** sysexits.h EX_CONFIG: nothing to serve without a platform token. */
const EXIT_CONFIG = 78;
/** sysexits.h EX_TEMPFAIL: another coordinator holds the database; try again once it stopped. */
const EXIT_TEMPFAIL = 75;
/** How long a drain waits for the uploads and final messages of jobs that finished during the grace period. */
const FINAL_DELIVERY_TIMEOUT_MS = 30_000;
/** After a complete stop, how long the process may take to exit by itself before it is ended. */
const EXIT_AFTER_STOP_MS = 1_000;
/** How long a platform adapter gets to stop in a drain. */
const ADAPTER_STOP_TIMEOUT_MS = 3_000;

/**
 * What is missing for Slack, or undefined when its settings are complete (or absent altogether:
 * then Slack is simply not served).
 */
export function slackProblem(config: Config): string | undefined {
  const any = config.slackBotToken || config.slackAppToken || config.slackSigningSecret;
  if (!any) return undefined;
  if (!config.slackBotToken) return 'Slack needs REELBOT_SLACK_BOT_TOKEN (the xoxb- bot token).';
  if (config.slackMode === 'socket' && !config.slackAppToken) {
    return 'Slack Socket Mode needs REELBOT_SLACK_APP_TOKEN (an xapp- app-level token with connections:write), or set REELBOT_SLACK_MODE=http with REELBOT_SLACK_SIGNING_SECRET.';
  }
  if (config.slackMode === 'http' && !config.slackSigningSecret) return 'Slack HTTP mode needs REELBOT_SLACK_SIGNING_SECRET (Basic Information → Signing Secret).';
  return undefined;
}

export function registerServe(program: Command, context: ServeContext): void {
  program
    .command('serve')
    .description('run the bot: the job queue and workers, Discord when REELBOT_DISCORD_TOKEN is set, Slack when its tokens are set')
    .action(async () => {
      const config = context.config();
      const slackMissing = slackProblem(config);
      if (slackMissing !== undefined) context.fail(`${slackMissing} See docs/slack.md.`, EXIT_CONFIG);
      const withDiscord = Boolean(config.discordToken);
      const withSlack = Boolean(config.slackBotToken);
      if (!withDiscord && !withSlack) {
        context.fail(
          'Nothing to serve: set REELBOT_DISCORD_TOKEN to the bot token of your Discord application (see the README), and/or REELBOT_SLACK_BOT_TOKEN with REELBOT_SLACK_APP_TOKEN for Slack (see docs/slack.md).',
          EXIT_CONFIG,
        );
      }
      if (config.redisUrl && !config.s3 && httpAddress(config) === undefined) {
        context.fail(
          "REELBOT_REDIS_URL needs REELBOT_HTTP_PORT: worker hosts fetch clips and send results over the coordinator's HTTP port (set REELBOT_HTTP_PUBLIC_URL to the address they reach it at), or through an S3 bucket (REELBOT_S3_ENDPOINT, REELBOT_S3_BUCKET, REELBOT_S3_ACCESS_KEY_ID, REELBOT_S3_SECRET_ACCESS_KEY).",
          EXIT_CONFIG,
        );
      }
      const ffmpeg = resolveFfmpegPaths(config);
      const tempDir = await mkdtemp(join(tmpdir(), 'reelbot-uploads-'));
      const logger = createLogger(config.logLevel);
      let discord: DiscordAdapter | undefined;
      let slack: SlackAdapter | undefined;
      let app: App;
      let remote: BullmqDispatcher | undefined;
      // With Redis and REELBOT_DEVICES set, this machine's devices are a worker host like the others.
      let localHost: WorkerHost | undefined;
      let publicUrl = '';
      // The HTTP side: health, metrics, the dashboard, and the blob URLs of worker hosts.
      let http: ServeHttp | undefined;
      const dashboardLinks = (server: ServeHttp) => ({ link: server.dashboardLink.bind(server), minutes: config.http.dashboardLinkMinutes });
      try {
        app = startApp(config, {
          logger,
          role: 'serve',
          // With Redis the jobs run on worker hosts (`reelbot worker`), and no local pool runs here:
          // with REELBOT_DEVICES set, the worker host started below takes jobs like any other host.
          dispatcher: config.redisUrl ? (db, log) => (remote = remoteDispatcher(config, db, log, () => publicUrl)) : undefined,
          // The adapters and the metrics follow job events from the start, so recovery notices reach them too.
          beforeStart: ({ jobs, db, writer }) => {
            if (httpAddress(config)) {
              const platforms = [...(withDiscord ? (['discord'] as const) : []), ...(withSlack ? (['slack'] as const) : [])];
              http = new ServeHttp({ config, db, writer, jobs, logger, ffmpegPath: ffmpeg.ffmpeg, platforms });
            }
            if (withDiscord) {
              discord = new DiscordAdapter({
                token: config.discordToken!,
                apiUrl: config.discordApiUrl,
                jobs,
                logger,
                ffmpegPath: ffmpeg.ffmpeg,
                ffprobePath: ffmpeg.ffprobe,
                tempDir,
                adminIds: config.admins.discord,
                // Clips to edit outlive the process: a queued edit reads its clip after a restart.
                clipDir: join(config.outputDir, 'clips', 'discord'),
                maxClipBytes: config.input.maxBytes,
                clipDownloads: config.clipDownloads,
                ...(http ? { observer: http.metrics.platform('discord'), dashboardLinks: dashboardLinks(http) } : {}),
              });
            }
            if (withSlack) {
              slack = new SlackAdapter({
                botToken: config.slackBotToken!,
                mode: config.slackMode,
                ...(config.slackMode === 'socket' ? { appToken: config.slackAppToken! } : { signingSecret: config.slackSigningSecret!, port: config.slackPort }),
                apiUrl: config.slackApiUrl,
                jobs,
                logger,
                ffmpegPath: ffmpeg.ffmpeg,
                ffprobePath: ffmpeg.ffprobe,
                tempDir,
                inputDir: join(config.outputDir, 'clips', 'slack'),
                maxInputBytes: config.input.maxBytes,
                adminIds: config.admins.slack,
                editChannels: config.slackEditChannels,
                ...(http ? { observer: http.metrics.platform('slack'), dashboardLinks: dashboardLinks(http) } : {}),
              });
            }
          },
        });
      } catch (error) {
        await rm(tempDir, { recursive: true, force: true });
        if (error instanceof CoordinatorRunningError) context.fail(error.message, EXIT_TEMPFAIL);
        throw error;
      }
      const retention = new RetentionSweep({
        db: app.db,
        config,
        logger: logger.child({ module: 'retention' }),
        write: (write) => app.writer.write(() => app.db.transaction(write).immediate()),
      });
      // The command line beside this process goes through it (src/web/control-socket.ts): render and
      // edit submit, the operator's commands read the live queue and change what this process keeps.
      const socketPath = controlSocketPath(config.dbPath);
      const served = http;
      const control = await startControlSocket(app.jobs, socketPath, logger, {
        prune: () => retention.run(),
        ...(served ? { dashboardLink: (actor) => served.dashboardLink(actor) } : {}),
      });
      app.lease.setControlSocket(socketPath);
      if (http) {
        const signer = BlobSigner.fromDatabase(app.db);
        const jobRepo = new JobRepo(app.db);
        http.register(blobRoutes({ signer, job: (id) => jobRepo.get(id), resultPath: (id, attempt, name) => remoteResultPath(config, id, attempt, name), logger }));
        try {
          publicUrl = await http.listen();
        } catch (error) {
          await control.close();
          await app.stop();
          await rm(tempDir, { recursive: true, force: true });
          const { host, port } = httpAddress(config)!;
          const reason = (error as NodeJS.ErrnoException).code === 'EADDRINUSE' ? 'the port is in use' : (error as Error).message;
          return context.fail(`Could not serve HTTP on ${host}:${port} (REELBOT_HTTP_HOST / REELBOT_HTTP_PORT): ${reason}.`, 1);
        }
        logger.info({ url: publicUrl }, 'HTTP side listening');
      }
      // The blob URLs are served (the HTTP side, or the bucket): jobs may go to worker hosts.
      remote?.startDispatching();
      if (config.redisUrl && config.devicesConfigured) {
        // This machine's devices, on its own model folders: the host advertises on the same Redis
        // and takes its jobs through BullMQ, so the fair order and positions stay the coordinator's.
        localHost = new WorkerHost({ config, redisUrl: config.redisUrl, logger: logger.child({ module: 'local-host' }), workDir: join(tempDir, 'worker-host') });
        await localHost.start();
      } else if (config.redisUrl) {
        logger.info({ redis: redisLabel(config.redisUrl) }, 'no worker runs in this process (REELBOT_DEVICES is not set): jobs wait for worker hosts');
      }
      if (config.s3 && !config.redisUrl) {
        // Set by mistake, or REELBOT_REDIS_URL forgotten: either way the operator should hear of it.
        logger.warn('REELBOT_S3_* is set but REELBOT_REDIS_URL is not: the bucket only carries files between this coordinator and worker hosts, so it is not used; jobs run here');
      }
      // Old outputs, clips and event ids go on a timer; what a waiting job needs stays.
      retention.start();
      // A platform still connecting (its login under way) may not answer a stop: it gets a few
      // seconds, then the drain goes on without it.
      const stopAdapters = async () => {
        for (const [name, adapter] of [['Discord', discord], ['Slack', slack]] as const) {
          if (adapter && (await settlesWithin(adapter.stop().catch(() => undefined), ADAPTER_STOP_TIMEOUT_MS)) === 'timed_out') {
            logger.warn({ platform: name, timeoutMs: ADAPTER_STOP_TIMEOUT_MS }, `${name} did not stop in time: going on without it`);
          }
        }
      };
      // The drain, in order: the job service stops starting jobs and gives running ones their grace
      // period (submits are refused meanwhile); the results of jobs that finished are delivered; only
      // then do the adapters disconnect, the database close and the temp files go.
      const drain = async () => {
        await control.close();
        await retention.stop();
        await app.jobs.shutdown();
        // The running jobs had their grace period in the drain above: what still runs here stops now.
        await localHost?.stop(0);
        await http?.close();
        const deliveries = await Promise.all([discord, slack].map((adapter) => adapter?.finalDeliveriesSettled(FINAL_DELIVERY_TIMEOUT_MS)));
        if (deliveries.includes('timed_out')) logger.warn({ timeoutMs: FINAL_DELIVERY_TIMEOUT_MS }, 'final deliveries still running at shutdown: stopping anyway');
        await stopAdapters();
        await app.stop();
        await rm(tempDir, { recursive: true, force: true });
      };
      // A signal may come while the platforms are still connecting: the drain then runs at once, and
      // the start-up below only waits for it.
      let draining = false;
      const stopped = new Promise<void>((resolve) =>
        drainOnSignals(
          app,
          () => {
            // Everything is stopped and closed: a library's stray timer or socket (a reconnect
            // attempt to a platform that went away, a login still under way) must not keep the
            // process alive.
            setTimeout(() => process.exit(0), EXIT_AFTER_STOP_MS).unref();
            resolve();
          },
          async () => {
            draining = true;
            await drain();
          },
        ),
      );
      const failStart = async (platform: string, error: unknown): Promise<never> => {
        await localHost?.stop(0);
        await control.close();
        await http?.close();
        await retention.stop();
        await stopAdapters();
        await app.stop();
        await rm(tempDir, { recursive: true, force: true });
        return context.fail(`Could not connect to ${platform}: ${(error as Error).message}`, 1);
      };
      // Each platform connects on its own: one that is down or slow does not keep the others from serving.
      const platformName = (adapter: DiscordAdapter | SlackAdapter) =>
        adapter === discord ? 'Discord' : `Slack (${config.slackMode === 'socket' ? 'Socket Mode' : `HTTP on port ${slack?.port ?? config.slackPort}`})`;
      const adapters = [discord, slack].filter((adapter): adapter is DiscordAdapter | SlackAdapter => adapter !== undefined);
      const outcomes = await Promise.race([Promise.all(adapters.map((adapter) => startWithin(adapter.start(), config.platformStartTimeoutMs))), stopped.then(() => undefined)]);
      if (outcomes === undefined || draining) {
        await stopped;
        return;
      }
      for (const [index, outcome] of outcomes.entries()) {
        if (outcome.state === 'failed') await failStart(adapters[index] === discord ? 'Discord' : 'Slack', outcome.error);
      }
      for (const [index, outcome] of outcomes.entries()) {
        if (outcome.state !== 'pending') continue;
        const name = adapters[index] === discord ? 'Discord' : 'Slack';
        logger.warn({ platform: name, timeoutMs: config.platformStartTimeoutMs }, `${name} is not connected yet; still trying while the other platforms serve`);
        void outcome.started.then(
          () => {
            logger.info({ platform: name }, `${name} connected`);
            context.out(`${name} is connected now.`);
          },
          (error: unknown) => logger.error({ err: error, platform: name }, `${name} could not connect`),
        );
      }
      const ready = adapters.filter((_, index) => outcomes[index]!.state === 'ready').map(platformName);
      const waiting = adapters.filter((_, index) => outcomes[index]!.state === 'pending').map((adapter) => (adapter === discord ? 'Discord' : 'Slack'));
      const deviceList = `${config.devices.length} worker${config.devices.length === 1 ? '' : 's'}: ${config.devices.join(', ')}`;
      const workers = config.redisUrl
        ? `jobs run on worker hosts through Redis at ${redisLabel(config.redisUrl)}, ${remote?.blobs ?? `blob URLs at ${publicUrl}`}; ${
            localHost ? `this machine is one of them (${deviceList})` : 'no worker runs here (set REELBOT_DEVICES for that): jobs wait for worker hosts (reelbot worker)'
          }`
        : deviceList;
      context.out(
        ready.length > 0
          ? `reelbot is running on ${ready.join(' and ')} (${workers})${waiting.length > 0 ? `; still connecting to ${waiting.join(' and ')}` : ''}. Stop it with Ctrl-C or SIGTERM.`
          : `reelbot is still connecting to ${waiting.join(' and ')} (${workers}). Stop it with Ctrl-C or SIGTERM.`,
      );
      if (http) context.out(`Health, metrics and the dashboard: ${publicUrl} (sign in with a link from "reelbot dashboard link").`);
      const untrained = await untrainedWeightsNotice(config);
      if (untrained !== undefined) {
        logger.warn({ modelDir: config.modelDir || null, editModelDir: config.editModelDir || null }, untrained);
        context.out(untrained);
      }
      await stopped;
    });
}

/** Where a worker host's upload of a job attempt's result lands on the coordinator. */
export function remoteResultPath(config: Config, jobId: number, attempt: number, name: string): string {
  return resolve(config.outputDir, String(jobId), `a${attempt}`, name);
}

function remoteDispatcher(config: Config, db: Db, logger: Logger, publicUrl: () => string): BullmqDispatcher {
  return new BullmqDispatcher({
    redisUrl: config.redisUrl!,
    prefix: config.scale.queuePrefix,
    namespace: dispatchNamespace(db),
    models: kindModels(config),
    publicUrl,
    signer: BlobSigner.fromDatabase(db),
    ...(config.s3 ? { s3: new S3Bucket({ ...config.s3, secretAccessKey: config.s3SecretAccessKey! }) } : {}),
    blobUrlTtlMs: config.scale.blobUrlTtlSeconds * 1000,
    maxInputBytes: config.input.maxBytes,
    maxResultBytes: config.scale.maxResultBytes,
    cancelGraceMs: config.jobs.cancelGraceMs,
    resultPath: (jobId, attempt, name) => remoteResultPath(config, jobId, attempt, name),
    logger: logger.child({ module: 'dispatch' }),
  });
}

type StartOutcome = { state: 'ready' } | { state: 'failed'; error: unknown } | { state: 'pending'; started: Promise<void> };

/** How a platform's start went within `timeoutMs`: connected, refused, or still going (then `started` settles later). */
/** Whether `promise` settled within `ms`. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<'settled' | 'timed_out'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise.then(() => 'settled' as const), new Promise<'timed_out'>((resolve) => (timer = setTimeout(() => resolve('timed_out'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function startWithin(started: Promise<void>, timeoutMs: number): Promise<StartOutcome> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'pending'>((resolve) => (timer = setTimeout(() => resolve('pending'), timeoutMs)));
  try {
    const first = await Promise.race([started.then(() => 'ready' as const), timedOut]);
    return first === 'ready' ? { state: 'ready' } : { state: 'pending', started };
  } catch (error) {
    return { state: 'failed', error };
  } finally {
    clearTimeout(timer);
  }
}
