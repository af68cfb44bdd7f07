/**
 * Every setting of reelbot, in one zod schema.
 *
 * Settings come from an optional JSON config file (`REELBOT_CONFIG=path`, or `--config` on the CLI)
 * and from `REELBOT_*` environment variables, which win over the file. They are read once at start:
 * every invalid, unknown or missing setting is reported at once, by name, with what is expected.
 * Secret values (tokens, signing secrets) are never put into a message or a log line.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { CostSettings } from './jobs/cost-model.js';
import type { QuotaSettings } from './jobs/quota-policy.js';
import type { JobKind } from './jobs/types.js';
import type { InputLimits } from './media/input.js';

const nonNegativeInt = z.number().int().nonnegative();
const positiveInt = z.number().int().positive();
const nonNegative = z.number().nonnegative();

/** Limits of one quota tier; `null` means unlimited. */
const tierLimitsSchema = z.strictObject({
  jobsPerDay: nonNegativeInt.nullable().default(null),
  gpuSecondsPerDay: nonNegative.nullable().default(null),
  gpuSecondsPerMonth: nonNegative.nullable().default(null),
  maxPendingJobs: positiveInt.default(3),
  /** Most frames a text-to-video job may ask for. */
  maxFrames: positiveInt.nullable().default(null),
  /** Most denoising steps a job (text-to-video or edit) may ask for. */
  maxSteps: positiveInt.nullable().default(null),
  /** Seconds a user must wait between two submits; 0 = no cooldown. */
  cooldownSeconds: nonNegative.default(0),
});

/** Caps shared by everyone in one Discord guild or Slack workspace; `null` means unlimited. */
const groupLimitsSchema = z.strictObject({
  jobsPerDay: nonNegativeInt.nullable().default(null),
  gpuSecondsPerDay: nonNegative.nullable().default(null),
  gpuSecondsPerMonth: nonNegative.nullable().default(null),
});

const regexSource = z.string().refine(
  (source) => {
    try {
      new RegExp(source, 'iu');
      return true;
    } catch {
      return false;
    }
  },
  { message: 'expected a valid regular expression' },
);

/** The devices when none are set: one worker on the CPU. */
const DEFAULT_DEVICES = ['cpu'];

const DEFAULT_TIERS = {
  free: { jobsPerDay: 20, gpuSecondsPerDay: 1200, gpuSecondsPerMonth: 12000, maxPendingJobs: 3, maxFrames: 16, maxSteps: 50, cooldownSeconds: 0 },
  pro: { jobsPerDay: 200, gpuSecondsPerDay: 12000, gpuSecondsPerMonth: 120000, maxPendingJobs: 10, maxFrames: 32, maxSteps: 100, cooldownSeconds: 0 },
  admin: { jobsPerDay: null, gpuSecondsPerDay: null, gpuSecondsPerMonth: null, maxPendingJobs: 50, maxFrames: null, maxSteps: null, cooldownSeconds: 0 },
};

export const configSchema = z
  .strictObject({
    /** SQLite file; `:memory:` for a throw-away database. */
    dbPath: z.string().min(1).default('./data/reelbot.db'),
    /** Where finished videos are written, one folder per job. */
    outputDir: z.string().min(1).default('./data/outputs'),
    /**
     * One worker process per entry: `cpu`, `cuda:0`, `cuda:1`, `webgpu`…; unset = `cpu`. With
     * `redisUrl`, `serve` runs workers of its own only when this is set ({@link Config.devicesConfigured}).
     */
    devices: z
      .array(z.string().regex(/^(cpu|webgpu|cuda(:\d+)?)$/, 'expected cpu, webgpu, cuda or cuda:N'))
      .min(1)
      .optional(),
    /** Module that a worker loads to run jobs (exports `createEngine`); empty = the built-in engine. */
    engineModule: z.string().default(''),
    /** Model folder (optimum SD 1.x layout); empty = the built-in small set, made on first use in ./models/small. */
    modelDir: z.string().default(''),
    /** Instruct-edit model folder (8-channel UNet); empty = the built-in small instruct-edit set. */
    editModelDir: z.string().default(''),
    onnx: z
      .strictObject({
        /** Threads per ONNX Runtime session; 0 = the machine's cores divided by the number of devices. */
        intraOpThreads: nonNegativeInt.default(0),
        interOpThreads: positiveInt.default(1),
        /** When a GPU provider fails to load, run on the CPU instead of failing the job. */
        fallbackToCpu: z.boolean().default(true),
      })
      .prefault({}),
    /** Limits on uploaded clips (checked with ffprobe before anything decodes them). */
    input: z
      .strictObject({
        maxBytes: positiveInt.default(50 * 1024 * 1024),
        maxDurationSeconds: z.number().positive().default(30),
        maxWidth: positiveInt.default(3840),
        maxHeight: positiveInt.default(3840),
        maxFrames: positiveInt.default(240),
        /** Clips are edited at most at this frame rate (frames dropped evenly); the output keeps the original rate. */
        maxFps: z.number().positive().default(12),
      })
      .prefault({}),
    /**
     * Live previews while a job denoises: a few frames projected from the latents (no VAE call),
     * shown on the job's message at most every `intervalSeconds`, within 5 % of the job's time.
     */
    previews: z
      .strictObject({
        enabled: z.boolean().default(true),
        intervalSeconds: z.number().positive().default(3),
      })
      .prefault({}),
    /** Edit pipeline: the default number of steps (50 as the reference, or 10 as Fairy's fast preset). */
    editSteps: positiveInt.default(10),
    /** ffmpeg and ffprobe binaries; empty = the ones bundled by @ffmpeg-installer / @ffprobe-installer. */
    ffmpegPath: z.string().default(''),
    ffprobePath: z.string().default(''),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    jobs: z
      .strictObject({
        /**
         * A running job is stopped after this long (model loading is not counted) and not retried; a
         * job whose estimate is longer is refused at submit.
         */
        timeoutSeconds: positiveInt.default(900),
        /**
         * A running job that reports no progress for this long is stopped (not retried). The built-in
         * engine reports after every UNet call; one SD 1.5 call at 512² on 8 frames blocks for tens of
         * seconds on a 2-core CPU, so the default leaves several times that.
         */
        stallTimeoutSeconds: positiveInt.default(300),
        /**
         * Starting a worker's engine and loading the models a job needs may take this long (a 3.4 GB
         * SD 1.5 UNet plus its graph rewrite can take minutes on a slow disk); past it the job fails
         * (not retried). Loading is logged with its duration and is not charged to the user.
         */
        modelLoadTimeoutSeconds: positiveInt.default(600),
        /** Workers report they are alive this often… */
        heartbeatIntervalMs: positiveInt.default(1000),
        /** …and are killed when silent for this long. */
        heartbeatTimeoutMs: positiveInt.default(15000),
        /** A cancelled running job gets this long to stop before its worker is killed. */
        cancelGraceMs: nonNegativeInt.default(5000),
        /** On SIGTERM, running jobs get this long to finish; the rest stay queued. */
        shutdownGraceMs: nonNegativeInt.default(30000),
        /**
         * Cost estimates (and so ETAs) use the seconds per unit of work (frame·step) of this many recent
         * jobs of the same kind, device and model.
         */
        etaWindow: positiveInt.default(20),
        /** GPU-seconds of a job of each kind with default parameters, until recent jobs give a measured rate. */
        defaultGpuSeconds: z
          .strictObject({ text2video: z.number().positive().default(60), edit: z.number().positive().default(90) })
          .prefault({}),
      })
      .prefault({})
      .refine((jobs) => jobs.defaultGpuSeconds.text2video <= jobs.timeoutSeconds && jobs.defaultGpuSeconds.edit <= jobs.timeoutSeconds, {
        message: 'each of defaultGpuSeconds must be at most timeoutSeconds: a job estimated past the timeout is refused, so a default job would never run',
        path: ['defaultGpuSeconds'],
      }),
    prompt: z
      .strictObject({
        maxLength: positiveInt.default(500),
        /** Regular expressions (case-insensitive); a prompt matching one is refused. */
        blocklist: z.array(regexSource).default([]),
      })
      .prefault({}),
    quota: z
      .strictObject({
        defaultTier: z.string().min(1).default('free'),
        tiers: z.record(z.string().min(1), tierLimitsSchema).default(DEFAULT_TIERS),
        /** Caps per guild / workspace, for every guild… */
        group: groupLimitsSchema.prefault({}),
        /** …and for named ones (key: guild or workspace id). */
        groupOverrides: z.record(z.string().min(1), groupLimitsSchema).default({}),
        /**
         * Whether jobs may be submitted in a direct message with the bot (Discord DMs, outside any
         * guild). Off by default: no guild cap applies there and no server sees those prompts; when on,
         * the user's own tier limits still apply.
         */
        allowDirectMessages: z.boolean().default(false),
      })
      .prefault({})
      .refine((quota) => quota.defaultTier in quota.tiers, {
        message: 'defaultTier must name one of the tiers',
        path: ['defaultTier'],
      }),
    /**
     * Clips downloaded for "Edit clip…" at once: per user (a clip waiting for its instruction counts
     * until the form is sent or given up) and in total. Past either the user is refused, privately.
     */
    clipDownloads: z
      .strictObject({ perUser: positiveInt.default(2), total: positiveInt.default(8) })
      .prefault({}),
    /**
     * How long what the bot keeps on disk and in the database is kept; `serve` sweeps every
     * `sweepIntervalMinutes` (and `reelbot db prune` at once). What a queued or running job still
     * needs (its clip, the video it edits) is never removed.
     */
    retention: z
      .strictObject({
        /** A finished job's folder `<outputDir>/<jobId>` (its video): long enough for Re-roll and Edit. The job row stays. */
        outputDays: nonNegative.default(7),
        /** Clips downloaded to edit (`<outputDir>/clips/…`), counted from the download. */
        clipDays: nonNegative.default(7),
        /** Platform event ids kept to drop redelivered events (platforms redeliver within minutes). */
        processedEventDays: nonNegative.default(7),
        /**
         * Finished jobs' rows, with their quota ledger rows; `null` keeps them for ever. At least 32,
         * so this month's quota never loses a row.
         */
        jobRowDays: z.number().min(32).nullable().default(null),
        sweepIntervalMinutes: z.number().positive().default(60),
      })
      .prefault({}),
    /** Platform user ids allowed to run admin commands. */
    admins: z
      .strictObject({ discord: z.array(z.string()).default([]), slack: z.array(z.string()).default([]) })
      .prefault({}),
    discordToken: z.string().min(1).optional(),
    /** Discord's REST base (large bots route it through a proxy; tests point it at a fake). */
    discordApiUrl: z.url({ protocol: /^https?$/ }).default('https://discord.com/api'),
    slackBotToken: z.string().min(1).optional(),
    slackAppToken: z.string().min(1).optional(),
    slackSigningSecret: z.string().min(1).optional(),
    /** Slack's Web API base, passed to Bolt as `clientOptions.slackApiUrl` (GovSlack, proxies and the test fakes use another). */
    slackApiUrl: z.url({ protocol: /^https?$/ }).default('https://slack.com/api/'),
    /** `socket`: Socket Mode (needs the app token, no public URL); `http`: Events API requests checked with the signing secret. */
    slackMode: z.enum(['socket', 'http']).default('socket'),
    /** Port of the HTTP receiver in `http` mode (requests go to `/slack/events`). */
    slackPort: z.number().int().min(0).max(65535).default(3000),
    /** Slack channel ids where any thread reply to a clip is an edit, without mentioning the bot. */
    slackEditChannels: z.array(z.string().min(1)).default([]),
    /**
     * How long `serve` waits for each platform to connect before it starts serving the others; a
     * platform still connecting by then goes on trying in the background.
     */
    platformStartTimeoutMs: positiveInt.default(30_000),
    /**
     * The coordinator's instance lease in the database lasts this long and is renewed every third of
     * it; a coordinator killed on another host is taken over this long after its last renewal.
     */
    leaseTtlMs: positiveInt.default(15_000),
    /**
     * `serve`'s HTTP side (health, metrics, the dashboard, and with worker hosts their blob URLs):
     * off unless a port is set. It binds to 127.0.0.1; put it behind a reverse proxy with TLS to
     * reach it from elsewhere (see the README); worker hosts reach it at `publicUrl`.
     */
    http: z
      .strictObject({
        host: z.string().min(1).default('127.0.0.1'),
        /** 0 picks a free port (tests); unset = no HTTP server. */
        port: z.number().int().min(0).max(65535).optional(),
        /** The address operators open (the reverse proxy's https:// URL); default http://host:port. Sign-in links start with it. */
        publicUrl: z.url({ protocol: /^https?$/ }).optional(),
        /** A sign-in link from `reelbot dashboard link` or `/admin dashboard` works once, for this long. */
        dashboardLinkMinutes: positiveInt.max(60).default(10),
        /** A dashboard session lasts this long, then the operator signs in again. */
        dashboardSessionHours: positiveInt.max(24 * 30).default(12),
      })
      .prefault({}),
    /**
     * Redis for worker hosts (BullMQ): `redis://[:password@]host:port[/db]` or `rediss://` for TLS.
     * Unset: jobs run on this machine's worker processes only. A secret: it may hold the password.
     */
    redisUrl: z.string().regex(/^rediss?:\/\//, 'expected a redis:// or rediss:// URL').optional(),
    /**
     * An S3-compatible bucket for the blob transport: with it, worker hosts get presigned, expiring
     * URLs of one job's objects in the bucket (path-style, `endpoint/bucket/key`) instead of the
     * coordinator's own blob URLs. The secret key is {@link Config.s3SecretAccessKey}.
     */
    s3: z
      .strictObject({
        /** `https://s3.eu-west-1.amazonaws.com`, `http://minio.internal:9000`, `https://<account>.r2.cloudflarestorage.com`. */
        endpoint: z.url({ protocol: /^https?$/ }),
        /** S3's bucket naming rules (3–63 characters, lower case, digits, dots and hyphens). */
        bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name (3-63 characters: a-z, 0-9, dots and hyphens)'),
        region: z.string().regex(/^[a-z0-9-]+$/, 'expected a region name like us-east-1').default('us-east-1'),
        accessKeyId: z.string().min(1),
      })
      .optional(),
    /** The S3 secret access key (a secret), needed with `s3`. */
    s3SecretAccessKey: z.string().min(1).optional(),
    scale: z
      .strictObject({
        /** A worker host holds a job's lock this long and renews it every half of it; a host killed -9 loses its jobs to another host after it. */
        lockMs: positiveInt.default(30_000),
        /** How often BullMQ looks for jobs whose host stopped renewing their lock. */
        stalledIntervalMs: positiveInt.default(15_000),
        /** A blob URL works this long after it was handed out (a job's clip in, its result back). */
        blobUrlTtlSeconds: positiveInt.default(3600),
        /** Largest result a worker host may upload for one job. */
        maxResultBytes: positiveInt.default(500 * 1024 * 1024),
        /** BullMQ key prefix (several bots may share one Redis). */
        queuePrefix: z.string().min(1).regex(/^[A-Za-z0-9_-]+$/).default('reelbot'),
      })
      .prefault({}),
  })
  .superRefine((config, context) => {
    if (config.s3 && !config.s3SecretAccessKey) {
      context.addIssue({ code: 'custom', path: ['s3'], message: "the bucket needs its secret key too: set REELBOT_S3_SECRET_ACCESS_KEY (s3SecretAccessKey)" });
    }
  })
  .transform(({ devices, ...config }) => ({
    ...config,
    devices: devices ?? [...DEFAULT_DEVICES],
    /**
     * Whether `devices` was set (REELBOT_DEVICES, the config file, `--devices`) rather than left at
     * its default: a coordinator with Redis runs a worker host of its own only then.
     */
    devicesConfigured: devices !== undefined,
  }));

export type Config = z.infer<typeof configSchema>;

/**
 * The settings map onto the domain's own types (the job core does not depend on this schema): a
 * change to one side that the other does not make fails to compile here.
 */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Holds<T extends true> = T;
export type ConfigMatchesDomain = [
  Holds<Same<keyof Config['jobs']['defaultGpuSeconds'], JobKind>>,
  Holds<Same<Config['quota'], QuotaSettings>>,
  Holds<Same<Config['input'], InputLimits>>,
  Holds<Config extends CostSettings ? true : false>,
];

/** Settings whose values must never be printed or logged. */
export const SECRET_KEYS = ['discordToken', 'slackBotToken', 'slackAppToken', 'slackSigningSecret', 'redisUrl', 's3SecretAccessKey'] as const;

type EnvKind = 'string' | 'number' | 'boolean' | 'list' | 'json';
/** Environment variable → path in the config object, and how its text is read. */
export const ENV_VARS: Record<string, { path: string[]; kind: EnvKind }> = {
  REELBOT_DB_PATH: { path: ['dbPath'], kind: 'string' },
  REELBOT_OUTPUT_DIR: { path: ['outputDir'], kind: 'string' },
  REELBOT_DEVICES: { path: ['devices'], kind: 'list' },
  REELBOT_ENGINE_MODULE: { path: ['engineModule'], kind: 'string' },
  REELBOT_LOG_LEVEL: { path: ['logLevel'], kind: 'string' },
  REELBOT_MODEL_DIR: { path: ['modelDir'], kind: 'string' },
  REELBOT_EDIT_MODEL_DIR: { path: ['editModelDir'], kind: 'string' },
  REELBOT_EDIT_STEPS: { path: ['editSteps'], kind: 'number' },
  REELBOT_PREVIEWS: { path: ['previews', 'enabled'], kind: 'boolean' },
  REELBOT_PREVIEW_INTERVAL_SECONDS: { path: ['previews', 'intervalSeconds'], kind: 'number' },
  REELBOT_INPUT_MAX_BYTES: { path: ['input', 'maxBytes'], kind: 'number' },
  REELBOT_INPUT_MAX_DURATION_SECONDS: { path: ['input', 'maxDurationSeconds'], kind: 'number' },
  REELBOT_INPUT_MAX_WIDTH: { path: ['input', 'maxWidth'], kind: 'number' },
  REELBOT_INPUT_MAX_HEIGHT: { path: ['input', 'maxHeight'], kind: 'number' },
  REELBOT_INPUT_MAX_FRAMES: { path: ['input', 'maxFrames'], kind: 'number' },
  REELBOT_INPUT_MAX_FPS: { path: ['input', 'maxFps'], kind: 'number' },
  REELBOT_ONNX_INTRA_OP_THREADS: { path: ['onnx', 'intraOpThreads'], kind: 'number' },
  REELBOT_ONNX_INTER_OP_THREADS: { path: ['onnx', 'interOpThreads'], kind: 'number' },
  REELBOT_ONNX_FALLBACK_TO_CPU: { path: ['onnx', 'fallbackToCpu'], kind: 'boolean' },
  // The usual names of these two, as other ffmpeg tools read them.
  FFMPEG_PATH: { path: ['ffmpegPath'], kind: 'string' },
  FFPROBE_PATH: { path: ['ffprobePath'], kind: 'string' },
  REELBOT_JOB_TIMEOUT_SECONDS: { path: ['jobs', 'timeoutSeconds'], kind: 'number' },
  REELBOT_STALL_TIMEOUT_SECONDS: { path: ['jobs', 'stallTimeoutSeconds'], kind: 'number' },
  REELBOT_MODEL_LOAD_TIMEOUT_SECONDS: { path: ['jobs', 'modelLoadTimeoutSeconds'], kind: 'number' },
  REELBOT_HEARTBEAT_INTERVAL_MS: { path: ['jobs', 'heartbeatIntervalMs'], kind: 'number' },
  REELBOT_HEARTBEAT_TIMEOUT_MS: { path: ['jobs', 'heartbeatTimeoutMs'], kind: 'number' },
  REELBOT_CANCEL_GRACE_MS: { path: ['jobs', 'cancelGraceMs'], kind: 'number' },
  REELBOT_SHUTDOWN_GRACE_MS: { path: ['jobs', 'shutdownGraceMs'], kind: 'number' },
  REELBOT_ETA_WINDOW: { path: ['jobs', 'etaWindow'], kind: 'number' },
  REELBOT_DEFAULT_GPU_SECONDS: { path: ['jobs', 'defaultGpuSeconds'], kind: 'json' },
  REELBOT_PROMPT_MAX_LENGTH: { path: ['prompt', 'maxLength'], kind: 'number' },
  REELBOT_PROMPT_BLOCKLIST: { path: ['prompt', 'blocklist'], kind: 'json' },
  REELBOT_QUOTA_DEFAULT_TIER: { path: ['quota', 'defaultTier'], kind: 'string' },
  REELBOT_QUOTA_TIERS: { path: ['quota', 'tiers'], kind: 'json' },
  REELBOT_QUOTA_GROUP: { path: ['quota', 'group'], kind: 'json' },
  REELBOT_QUOTA_GROUP_OVERRIDES: { path: ['quota', 'groupOverrides'], kind: 'json' },
  REELBOT_ALLOW_DIRECT_MESSAGES: { path: ['quota', 'allowDirectMessages'], kind: 'boolean' },
  REELBOT_CLIP_DOWNLOADS_PER_USER: { path: ['clipDownloads', 'perUser'], kind: 'number' },
  REELBOT_CLIP_DOWNLOADS_TOTAL: { path: ['clipDownloads', 'total'], kind: 'number' },
  REELBOT_RETENTION_OUTPUT_DAYS: { path: ['retention', 'outputDays'], kind: 'number' },
  REELBOT_RETENTION_CLIP_DAYS: { path: ['retention', 'clipDays'], kind: 'number' },
  REELBOT_RETENTION_PROCESSED_EVENT_DAYS: { path: ['retention', 'processedEventDays'], kind: 'number' },
  REELBOT_RETENTION_JOB_ROW_DAYS: { path: ['retention', 'jobRowDays'], kind: 'number' },
  REELBOT_RETENTION_SWEEP_INTERVAL_MINUTES: { path: ['retention', 'sweepIntervalMinutes'], kind: 'number' },
  REELBOT_DISCORD_ADMINS: { path: ['admins', 'discord'], kind: 'list' },
  REELBOT_SLACK_ADMINS: { path: ['admins', 'slack'], kind: 'list' },
  REELBOT_DISCORD_TOKEN: { path: ['discordToken'], kind: 'string' },
  REELBOT_DISCORD_API_URL: { path: ['discordApiUrl'], kind: 'string' },
  REELBOT_SLACK_BOT_TOKEN: { path: ['slackBotToken'], kind: 'string' },
  REELBOT_SLACK_APP_TOKEN: { path: ['slackAppToken'], kind: 'string' },
  REELBOT_SLACK_SIGNING_SECRET: { path: ['slackSigningSecret'], kind: 'string' },
  REELBOT_SLACK_API_URL: { path: ['slackApiUrl'], kind: 'string' },
  REELBOT_SLACK_MODE: { path: ['slackMode'], kind: 'string' },
  REELBOT_SLACK_PORT: { path: ['slackPort'], kind: 'number' },
  REELBOT_SLACK_EDIT_CHANNELS: { path: ['slackEditChannels'], kind: 'list' },
  REELBOT_PLATFORM_START_TIMEOUT_MS: { path: ['platformStartTimeoutMs'], kind: 'number' },
  REELBOT_LEASE_TTL_MS: { path: ['leaseTtlMs'], kind: 'number' },
  REELBOT_HTTP_HOST: { path: ['http', 'host'], kind: 'string' },
  REELBOT_HTTP_PORT: { path: ['http', 'port'], kind: 'number' },
  REELBOT_HTTP_PUBLIC_URL: { path: ['http', 'publicUrl'], kind: 'string' },
  REELBOT_REDIS_URL: { path: ['redisUrl'], kind: 'string' },
  REELBOT_WORKER_LOCK_MS: { path: ['scale', 'lockMs'], kind: 'number' },
  REELBOT_STALLED_INTERVAL_MS: { path: ['scale', 'stalledIntervalMs'], kind: 'number' },
  REELBOT_BLOB_URL_TTL_SECONDS: { path: ['scale', 'blobUrlTtlSeconds'], kind: 'number' },
  REELBOT_MAX_RESULT_BYTES: { path: ['scale', 'maxResultBytes'], kind: 'number' },
  REELBOT_QUEUE_PREFIX: { path: ['scale', 'queuePrefix'], kind: 'string' },
  REELBOT_S3_ENDPOINT: { path: ['s3', 'endpoint'], kind: 'string' },
  REELBOT_S3_BUCKET: { path: ['s3', 'bucket'], kind: 'string' },
  REELBOT_S3_REGION: { path: ['s3', 'region'], kind: 'string' },
  REELBOT_S3_ACCESS_KEY_ID: { path: ['s3', 'accessKeyId'], kind: 'string' },
  REELBOT_S3_SECRET_ACCESS_KEY: { path: ['s3SecretAccessKey'], kind: 'string' },
  REELBOT_DASHBOARD_LINK_MINUTES: { path: ['http', 'dashboardLinkMinutes'], kind: 'number' },
  REELBOT_DASHBOARD_SESSION_HOURS: { path: ['http', 'dashboardSessionHours'], kind: 'number' },
};
/** Environment variables that hold secrets: never logged, never passed to worker processes. */
export const SECRET_ENV_VARS: readonly string[] = Object.keys(ENV_VARS).filter((name) => isSecretPath(ENV_VARS[name]!.path));
/** Names the environment reader knows besides the settings themselves. */
const OTHER_ENV_VARS = new Set(['REELBOT_CONFIG']);

/** All the problems found in the settings, one line each; thrown once at start. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(`Invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface LoadConfigOptions {
  env?: NodeJS.ProcessEnv;
  /** JSON config file; defaults to `env.REELBOT_CONFIG` when set. */
  file?: string;
  /** Settings given by code (tests, CLI flags); they win over the environment. */
  overrides?: Record<string, unknown>;
}

/**
 * Reads and checks every setting.
 * @throws ConfigError listing every problem at once.
 * @example
 * const config = loadConfig({ env: process.env });
 */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  const env = options.env ?? {};
  const problems: string[] = [];
  const where = new Map<string, string>(); // config path → where its value came from

  let raw: Record<string, unknown> = {};
  const file = options.file ?? env.REELBOT_CONFIG;
  if (file) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        problems.push(`config file ${file}: expected a JSON object`);
      } else {
        raw = parsed as Record<string, unknown>;
      }
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (error as Error).message;
      problems.push(`config file ${file}: ${reason}`);
    }
  }

  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || (!name.startsWith('REELBOT_') && !(name in ENV_VARS))) continue;
    const spec = ENV_VARS[name];
    if (!spec) {
      if (!OTHER_ENV_VARS.has(name)) problems.push(`${name}: unknown setting (known: ${Object.keys(ENV_VARS).join(', ')})`);
      continue;
    }
    const parsed = parseEnvValue(value, spec.kind);
    if (!parsed.ok) {
      problems.push(`${name}: ${parsed.expected}${isSecretPath(spec.path) ? '' : `, got ${JSON.stringify(value)}`}`);
      continue;
    }
    setPath(raw, spec.path, parsed.value);
    where.set(spec.path.join('.'), name);
  }
  for (const [key, value] of Object.entries(options.overrides ?? {})) raw[key] = value;

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    for (const issue of result.error.issues) {
      problems.push(describeIssue(issue, where));
    }
  }
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  return Object.freeze(result.data);
}

/** The config with every secret replaced, for `reelbot config` and start-up logs. */
export function redactConfig(config: Config): Record<string, unknown> {
  // Derived, not a setting: the printed config stays a valid config file.
  const { devicesConfigured: _derived, ...copy }: Record<string, unknown> = { ...config };
  for (const key of SECRET_KEYS) if (copy[key] !== undefined) copy[key] = '[redacted]';
  return copy;
}

function isSecretPath(path: readonly (string | number | symbol)[]): boolean {
  return path.length > 0 && (SECRET_KEYS as readonly unknown[]).includes(path[0]);
}

function describeIssue(issue: z.core.$ZodIssue, where: Map<string, string>): string {
  const path = issue.path.map(String);
  const dotted = path.join('.');
  // Name the environment variable that set this value (or its parent object), when one did.
  let source: string | undefined;
  for (let i = path.length; i > 0 && !source; i--) source = where.get(path.slice(0, i).join('.'));
  const name = source ? `${source} (${dotted || 'config'})` : dotted || 'config';
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    message = `unknown setting${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((key) => JSON.stringify(key)).join(', ')}`;
  } else if (isSecretPath(issue.path)) {
    message = issue.code === 'too_small' ? 'must not be empty' : 'expected a non-empty string';
  }
  return `${name}: ${message}`;
}

type Parsed = { ok: true; value: unknown } | { ok: false; expected: string };

function parseEnvValue(text: string, kind: EnvKind): Parsed {
  switch (kind) {
    case 'string':
      return { ok: true, value: text };
    case 'number': {
      const value = Number(text);
      return text.trim() !== '' && Number.isFinite(value) ? { ok: true, value } : { ok: false, expected: 'expected a number' };
    }
    case 'boolean': {
      const lower = text.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(lower)) return { ok: true, value: true };
      if (['0', 'false', 'no', 'off'].includes(lower)) return { ok: true, value: false };
      return { ok: false, expected: 'expected true or false' };
    }
    case 'list': {
      if (text.trim().startsWith('[')) return parseEnvValue(text, 'json');
      return { ok: true, value: text.split(',').map((item) => item.trim()).filter((item) => item !== '') };
    }
    case 'json':
      try {
        return { ok: true, value: JSON.parse(text) };
      } catch {
        return { ok: false, expected: 'expected JSON' };
      }
  }
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}
