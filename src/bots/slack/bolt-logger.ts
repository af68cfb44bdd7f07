/** Bolt's and the Web API client's logging, into the adapter's pino logger. */
import { LogLevel, type Logger as BoltLogger } from '@slack/bolt';
import type { Logger } from '../../log.js';

/** Bolt's logger on pino, with anything token-shaped scrubbed from the text. */
export function boltLogger(logger: Logger): BoltLogger {
  const child = logger.child({ module: 'bolt' });
  const scrub = (parts: unknown[]) => parts.map((part) => (typeof part === 'string' ? part : part instanceof Error ? part.message : safeJson(part))).join(' ').replace(/\bx(?:ox[a-z]|app)-[A-Za-z0-9-]+/g, '[redacted]');
  let level = LogLevel.INFO;
  return {
    debug: (...msg: unknown[]) => child.debug(scrub(msg)),
    info: (...msg: unknown[]) => child.info(scrub(msg)),
    warn: (...msg: unknown[]) => child.warn(scrub(msg)),
    error: (...msg: unknown[]) => child.error(scrub(msg)),
    setLevel: (next: LogLevel) => {
      level = next;
    },
    getLevel: () => level,
    setName: () => undefined,
  };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}
