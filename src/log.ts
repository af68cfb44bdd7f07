/**
 * One pino root logger; modules take `logger.child({ module })`.
 *
 * Nothing secret or bulky reaches a log line, whatever a caller hands in:
 * - errors are written as a short allow-list (type, message, code, status, method, a masked URL,
 *   the stack, and the same for their `cause`), never their enumerable extras: discord.js'
 *   `DiscordAPIError` carries the interaction or webhook token in `url` and the uploaded file's
 *   bytes in `requestBody`; @slack/web-api's `WebAPIRequestError` carries the axios error, with the
 *   bot token in its request headers, as `original` and `cause`;
 * - every string is masked: Slack tokens, Discord bot tokens, the token part of Discord
 *   interaction/webhook URLs and Slack response URLs, `Bot …`/`Bearer …` credentials, and the
 *   values of secret-looking environment variables;
 * - byte buffers become `[N bytes]`;
 * - token-like keys are redacted wherever they appear.
 *
 * A key appears once per line: a child's `module` nests under its parent's (`jobs.pool`), any
 * other key a child binds again replaces the parent's, and a field a log call passes that the
 * logger already binds is written once (the call's value when it differs). pino itself would
 * write both (`"module":"jobs","module":"pool"`), and a JSON parser keeps only the last.
 */
import { isDeepStrictEqual } from 'node:util';
import { pino, type Logger } from 'pino';

export type { Logger };

const REDACT = [
  'discordToken',
  'slackBotToken',
  'slackAppToken',
  'slackSigningSecret',
  'token',
  'authorization',
  '*.discordToken',
  '*.slackBotToken',
  '*.slackAppToken',
  '*.slackSigningSecret',
  '*.token',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
];

const MASK = '***';

/** Secret shapes, each with what replaces a match. */
const SECRET_PATTERNS: readonly [RegExp, string][] = [
  // Slack bot, user and app-level tokens.
  [/\bxox[a-z]-[A-Za-z0-9-]+/g, `xox-${MASK}`],
  [/\bxapp-[A-Za-z0-9-]+/g, `xapp-${MASK}`],
  // Discord bot tokens: three base64url parts.
  [/\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}/g, MASK],
  // Interaction and webhook tokens in Discord API paths: /interactions/<id>/<token>, /webhooks/<app>/<token>.
  [/(\/(?:interactions|webhooks)\/\d+\/)[^/?#\s"']+/g, `$1${MASK}`],
  // Slack response_url and incoming webhooks.
  [/(hooks\.slack\.com\/(?:actions|commands|services|triggers)\/)[^\s"'<>]+/g, `$1${MASK}`],
  // HTTP credentials.
  [/\b(Bot|Bearer|Basic) [A-Za-z0-9._~+/=-]{8,}/g, `$1 ${MASK}`],
];

/** Environment variables whose values are secrets (their values are masked wherever they appear). */
const SECRET_ENV = /(TOKEN|SECRET|PASSWORD|SIGNING|API_KEY)/i;

/** Error fields worth a log line; everything else an error carries (bodies, headers, configs) is dropped. */
const ERROR_FIELDS = ['code', 'status', 'statusCode', 'method', 'errno', 'syscall'] as const;

const MAX_DEPTH = 5;
const MAX_ARRAY_ITEMS = 50;

/** Masks every known secret shape, and the given literal secrets, in a string. */
export function maskSecrets(text: string, secrets: readonly string[] = []): string {
  let masked = text;
  for (const secret of secrets) if (masked.includes(secret)) masked = masked.split(secret).join(MASK);
  for (const [pattern, replacement] of SECRET_PATTERNS) masked = masked.replace(pattern, replacement);
  return masked;
}

/** The secret values in an environment (of variables named like tokens and secrets). */
export function secretsFromEnv(env: NodeJS.ProcessEnv): string[] {
  return Object.entries(env)
    .filter(([name, value]) => SECRET_ENV.test(name) && typeof value === 'string' && value.length >= 8)
    .map(([, value]) => value!);
}

/** An error as a log line may show it: the allow-listed fields, masked, with its causes. */
export function serializeError(error: unknown, secrets: readonly string[] = [], depth = 0): Record<string, unknown> {
  if (typeof error !== 'object' || error === null) return { message: maskSecrets(String(error), secrets) };
  const source = error as Record<string, unknown> & { name?: unknown; message?: unknown; stack?: unknown; url?: unknown; cause?: unknown; data?: unknown };
  const out: Record<string, unknown> = {
    type: typeof source.name === 'string' ? source.name : (error.constructor?.name ?? 'Error'),
    message: maskSecrets(typeof source.message === 'string' ? source.message : String(error), secrets),
  };
  for (const field of ERROR_FIELDS) {
    const value = source[field];
    if (typeof value === 'string' || typeof value === 'number') out[field] = typeof value === 'string' ? maskSecrets(value, secrets) : value;
  }
  if (typeof source.url === 'string') out.url = maskSecrets(source.url, secrets);
  // Slack's platform errors: the API's own error code is the useful part of `data`.
  const slackError = (source.data as { error?: unknown } | undefined)?.error;
  if (typeof slackError === 'string') out.slackError = slackError;
  if (typeof source.stack === 'string') out.stack = maskSecrets(source.stack, secrets);
  if (source.cause !== undefined && depth < 3) out.cause = serializeError(source.cause, secrets, depth + 1);
  return out;
}

function isErrorLike(value: object): boolean {
  return value instanceof Error || (typeof (value as { message?: unknown }).message === 'string' && typeof (value as { stack?: unknown }).stack === 'string');
}

/** A copy of a log object with errors serialized, strings masked and buffers summarised. */
export function scrubLogObject(value: unknown, secrets: readonly string[] = [], depth = 0): unknown {
  if (typeof value === 'string') return maskSecrets(value, secrets);
  if (typeof value !== 'object' || value === null) return value;
  if (ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  if (value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  if (isErrorLike(value)) return serializeError(value, secrets);
  if (depth >= MAX_DEPTH) return '[…]';
  if (Array.isArray(value)) {
    const items = value.slice(0, MAX_ARRAY_ITEMS).map((item) => scrubLogObject(item, secrets, depth + 1));
    if (value.length > MAX_ARRAY_ITEMS) items.push(`[${value.length - MAX_ARRAY_ITEMS} more]`);
    return items;
  }
  if (value instanceof Map) return scrubLogObject(Object.fromEntries(value), secrets, depth);
  if (value instanceof Set) return scrubLogObject([...value], secrets, depth);
  if (value instanceof Date) return value.toISOString();
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) out[key] = scrubLogObject(item, secrets, depth + 1);
  return out;
}

export interface LoggerOptions {
  /** Literal secrets to mask (default: the values of secret-looking variables of process.env). */
  secrets?: readonly string[];
}

export function createLogger(level: string, destination: pino.DestinationStream | number = 2, options: LoggerOptions = {}): Logger {
  const secrets = options.secrets ?? secretsFromEnv(process.env);
  const root = pino(
    {
      level,
      redact: { paths: REDACT, censor: '[redacted]' },
      base: { pid: process.pid },
      formatters: { log: (object) => scrubLogObject(object, secrets) as Record<string, unknown> },
      // The formatter above has already serialized errors; pino's own serializer would copy every field back.
      serializers: { err: (value: unknown) => value },
      // The message string too: `logger.error(err)` takes the error's message as the line's msg.
      hooks: {
        logMethod(args, method, levelValue) {
          const [first, ...rest] = args as unknown[];
          // An error logged on its own: pino would take its raw message as the line's msg.
          const leading: unknown[] =
            typeof first === 'object' && first !== null && isErrorLike(first) && typeof rest[0] !== 'string'
              ? [{ err: first }, (first as Error).message]
              : [first];
          const masked = [...leading, ...rest].map((arg) => (typeof arg === 'string' ? maskSecrets(arg, secrets) : arg));
          const fields = masked[0];
          if (typeof fields === 'object' && fields !== null && !isErrorLike(fields)) {
            const { kept, rebound } = splitBoundFields(fields as Record<string, unknown>, this.bindings());
            masked[0] = kept;
            if (rebound !== undefined) {
              // The call names a bound key with another value: the line goes out with that value bound instead.
              const logger = withBindings({ ...this.bindings(), ...rebound }, this.level);
              const label = logger.levels.labels[levelValue] as pino.Level;
              (logger[label] as (...parts: unknown[]) => void)(...masked);
              return;
            }
          }
          method.apply(this, masked as Parameters<typeof method>);
        },
      },
    },
    typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination,
  );
  const rootChild = root.child.bind(root);
  /** A logger with exactly these bindings (made from the root, so that no key is bound twice). */
  const withBindings = (bindings: pino.Bindings, childLevel: string): Logger => {
    const logger = rootChild(bindings, { level: childLevel });
    logger.child = ((next: pino.Bindings, childOptions?: pino.ChildLoggerOptions) =>
      withBindings(mergeBindings(logger.bindings(), next), childOptions?.level ?? logger.level)) as unknown as Logger['child'];
    return logger;
  };
  root.child = ((next: pino.Bindings, childOptions?: pino.ChildLoggerOptions) => withBindings(mergeBindings({}, next), childOptions?.level ?? root.level)) as unknown as Logger['child'];
  return root;
}

/** A child's bindings over its parent's: `module` nests (`jobs` + `pool` = `jobs.pool`), other keys replace. */
function mergeBindings(parent: pino.Bindings, next: pino.Bindings): pino.Bindings {
  const merged = { ...parent, ...next };
  if (typeof parent.module === 'string' && typeof next.module === 'string' && next.module !== parent.module) merged.module = `${parent.module}.${next.module}`;
  return merged;
}

/** A log call's fields without those the logger binds to the same value; `rebound`: those it binds to another. */
function splitBoundFields(fields: Record<string, unknown>, bindings: pino.Bindings): { kept: Record<string, unknown>; rebound?: Record<string, unknown> } {
  const kept: Record<string, unknown> = {};
  let rebound: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(fields)) {
    if (!(key in bindings)) kept[key] = value;
    else if (!isDeepStrictEqual(bindings[key], value)) (rebound ??= {})[key] = value;
  }
  return rebound === undefined ? { kept } : { kept, rebound };
}
