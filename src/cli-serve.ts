/**
 * `reelbot serve`: the bot itself. Opens the database, recovers what a crash left, starts the
 * worker pool and connects the platforms whose tokens are set (Discord, Slack or both);
 * SIGTERM / SIGINT drain it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { DiscordAdapter } from './bots/discord/discord-adapter.js';
import { SlackAdapter } from './bots/slack/slack-adapter.js';
import type { Config } from './config.js';
import { untrainedWeightsNotice } from './engine/models/built-in.js';
import { RetentionSweep } from './jobs/retention.js';
import { resolveFfmpegPaths } from './media/ffmpeg-paths.js';
import { createLogger } from './log.js';
import { drainOnSignals, startApp } from './main.js';

export interface ServeContext {
  config(): Config;
  out(line?: string): void;
  fail(message: string, exitCode: number): never;
}

/** sysexits.h EX_CONFIG: nothing to serve without a platform token. */
const EXIT_CONFIG = 78;
/** How long a drain waits for the uploads and final messages of jobs that finished during the grace period. */
const FINAL_DELIVERY_TIMEOUT_MS = 30_000;
/** After a complete stop, how long the process may take to exit by itself before it is ended. */
const EXIT_AFTER_STOP_MS = 1_000;

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
      const ffmpeg = resolveFfmpegPaths(config);
      const tempDir = await mkdtemp(join(tmpdir(), 'reelbot-uploads-'));
      const logger = createLogger(config.logLevel);
      let discord: DiscordAdapter | undefined;
      let slack: SlackAdapter | undefined;
      const app = startApp(config, {
        logger,
        // The adapters follow job events from the start, so recovery notices reach them too.
        beforeStart: ({ jobs }) => {
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
            });
          }
        },
      });
      // Old outputs, clips and event ids go on a timer; what a waiting job needs stays.
      const retention = new RetentionSweep({
        db: app.db,
        config,
        logger: logger.child({ module: 'retention' }),
        write: (write) => app.writer.write(() => app.db.transaction(write).immediate()),
      });
      retention.start();
      const stopAdapters = async () => {
        await discord?.stop().catch(() => undefined);
        await slack?.stop().catch(() => undefined);
      };
      // The drain, in order: the job service stops starting jobs and gives running ones their grace
      // period (submits are refused meanwhile); the results of jobs that finished are delivered; only
      // then do the adapters disconnect, the database close and the temp files go.
      const drain = async () => {
        await retention.stop();
        await app.jobs.shutdown();
        const deliveries = await Promise.all([discord, slack].map((adapter) => adapter?.finalDeliveriesSettled(FINAL_DELIVERY_TIMEOUT_MS)));
        if (deliveries.includes('timed_out')) logger.warn({ timeoutMs: FINAL_DELIVERY_TIMEOUT_MS }, 'final deliveries still running at shutdown: stopping anyway');
        await stopAdapters();
        await app.stop();
        await rm(tempDir, { recursive: true, force: true });
      };
      const stopped = new Promise<void>((resolve) => drainOnSignals(app, resolve, drain));
      const failStart = async (platform: string, error: unknown): Promise<never> => {
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
      const outcomes = await Promise.all(adapters.map((adapter) => startWithin(adapter.start(), config.platformStartTimeoutMs)));
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
      const workers = `${config.devices.length} worker${config.devices.length === 1 ? '' : 's'}: ${config.devices.join(', ')}`;
      context.out(
        ready.length > 0
          ? `reelbot is running on ${ready.join(' and ')} (${workers})${waiting.length > 0 ? `; still connecting to ${waiting.join(' and ')}` : ''}. Stop it with Ctrl-C or SIGTERM.`
          : `reelbot is still connecting to ${waiting.join(' and ')} (${workers}). Stop it with Ctrl-C or SIGTERM.`,
      );
      const untrained = await untrainedWeightsNotice(config);
      if (untrained !== undefined) {
        logger.warn({ modelDir: config.modelDir || null, editModelDir: config.editModelDir || null }, untrained);
        context.out(untrained);
      }
      await stopped;
      // Everything is stopped and closed: a library's stray timer or socket (a reconnect attempt
      // to a platform that went away) must not keep the process alive.
      setTimeout(() => process.exit(0), EXIT_AFTER_STOP_MS).unref();
    });
}

type StartOutcome = { state: 'ready' } | { state: 'failed'; error: unknown } | { state: 'pending'; started: Promise<void> };

/** How a platform's start went within `timeoutMs`: connected, refused, or still going (then `started` settles later). */
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
