/**
 * The one HTTP server of `reelbot serve`: health, metrics, the dashboard and (with a worker fleet)
 * the blob transport all register on it as Fastify plugins (`app.register(plugin)`).
 *
 * It binds to 127.0.0.1 unless `REELBOT_HTTP_HOST` says otherwise, on `REELBOT_HTTP_PORT`; with no
 * port set there is no server. Every answer carries a strict Content-Security-Policy (scripts and
 * styles from the bot itself only, nothing inline) and no referrer; an unexpected error is logged
 * and answered with a plain sentence, never its message or stack.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config.js';

/** What every answer may load: its own scripts, styles, images and media; no frames, no plugins, no inline code. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "media-src 'self'",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export interface HttpServerOptions {
  logger: Logger;
  /** Largest request body (bytes) a route may receive unless it sets its own `bodyLimit`. */
  bodyLimit?: number;
  /** Trust X-Forwarded-* from a reverse proxy on this address (e.g. 127.0.0.1); off by default. */
  trustProxy?: string | boolean;
}

/** Where the server listens, from the settings; undefined when no port is set (no server). */
export function httpAddress(config: Config): { host: string; port: number } | undefined {
  return config.http.port === undefined ? undefined : { host: config.http.host, port: config.http.port };
}

/** The base address people open: the configured public URL, or http://host:port. */
export function publicBaseUrl(config: Config, listeningPort?: number): string {
  if (config.http.publicUrl) return config.http.publicUrl.replace(/\/+$/, '');
  const host = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host;
  return `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${listeningPort ?? config.http.port ?? 0}`;
}

/** Builds the Fastify instance (not listening yet): security headers, error handling, logging through pino. */
export function buildHttpServer(options: HttpServerOptions): FastifyInstance {
  const logger = options.logger.child({ module: 'http' });
  const app = Fastify({
    // Request logging would put sign-in links (their token is in the query) into the log.
    logger: false,
    bodyLimit: options.bodyLimit ?? 64 * 1024,
    trustProxy: options.trustProxy ?? false,
    return503OnClosing: true,
  });
  app.addHook('onSend', async (_request, reply) => {
    reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('x-frame-options', 'DENY');
    reply.header('cross-origin-opener-policy', 'same-origin');
  });
  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) {
      logger.error({ err: error, method: request.method, route: request.routeOptions.url }, 'HTTP request failed');
      return reply.code(500).type('text/plain; charset=utf-8').send('Something went wrong on the bot. The operator can see why in its log.');
    }
    // Fastify's own 4xx errors (a body too large, a bad content type) say what was wrong, without internals.
    return reply.code(status).type('text/plain; charset=utf-8').send(clientErrorText(status));
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).type('text/plain; charset=utf-8').send('Not found.'));
  return app;
}

function clientErrorText(status: number): string {
  switch (status) {
    case 413:
      return 'The request is too large.';
    case 415:
      return 'This kind of request body is not accepted here.';
    default:
      return 'The request could not be understood.';
  }
}
