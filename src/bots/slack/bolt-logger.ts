/** Bolt's and the Web API client's logging, into the adapter's pino logger. */
import { LogLevel, type Logger as BoltLogger } from '@slack/bolt';
import type { Logger } from '../../log.js';

/** Bolt's logger on pino, with anything token-shaped scrubbed from the text. */
export function boltLogger(logger: Logger): BoltLogger {
  const child = logger.child({ module: 'bolt' });
  const scrub = (parts: unknown[]) => parts.map((part) => (typeof part === 'string' ? part : part instanceof Error ? part.message : safeJson(part))).join(' ').replace(/\bx(?:ox[a-z]|app)-[A-Za-z0-9-]+/g, '[redacted]');
  // Bolt logs every envelope at debug: the text is made only when pino would write it (serialising
  // envelopes for pino to drop was a visible share of a burst's CPU profile, and its garbage more).
  const at = (pinoLevel: 'debug' | 'info' | 'warn' | 'error') => (...msg: unknown[]) => {
    if (child.isLevelEnabled(pinoLevel)) child[pinoLevel](scrub(msg));
  };
  let level = LogLevel.INFO;
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
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
