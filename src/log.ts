/**
 * One pino root logger; modules take `logger.child({ module })`. Token-like fields are redacted
 * wherever they appear, so a secret that slips into a log object is still not written.
 */
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

export function createLogger(level: string, destination: pino.DestinationStream | number = 2): Logger {
  return pino(
    { level, redact: { paths: REDACT, censor: '[redacted]' }, base: { pid: process.pid } },
    typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination,
  );
}
