/**
 * The one HTTP server of `reelbot serve` (REELBOT_HTTP_PORT, 127.0.0.1 unless REELBOT_HTTP_HOST
 * says otherwise): parts of serve register on it as Fastify plugins (`app.register(plugin)`), the
 * blob transport among them. An unexpected error is logged and answered with a plain sentence,
 * never its message or stack.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../config.js';

export interface HttpServerOptions {
  logger: Logger;
  /** Largest request body (bytes) a route may receive unless it parses its own. */
  bodyLimit?: number;
}

/** Where the server listens, from the settings; undefined when no port is set (no server). */
export function httpAddress(config: Config): { host: string; port: number } | undefined {
  return config.http.port === undefined ? undefined : { host: config.http.host, port: config.http.port };
}

/** The base address others reach: the configured public URL, or http://host:port. */
export function publicBaseUrl(config: Config, listeningPort?: number): string {
  if (config.http.publicUrl) return config.http.publicUrl.replace(/\/+$/, '');
  const host = config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host;
  return `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${listeningPort ?? config.http.port ?? 0}`;
}

/** Builds the Fastify instance (not listening yet). */
export function buildHttpServer(options: HttpServerOptions): FastifyInstance {
  const logger = options.logger.child({ module: 'http' });
  const app = Fastify({ logger: false, bodyLimit: options.bodyLimit ?? 64 * 1024, return503OnClosing: true });
  app.setErrorHandler((error: Error & { statusCode?: number }, request, reply) => {
    const status = error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) logger.error({ err: error, method: request.method, route: request.routeOptions.url }, 'HTTP request failed');
    return reply.code(status).type('text/plain; charset=utf-8').send(status === 500 ? 'Something went wrong on the bot. The operator can see why in its log.' : 'The request was refused.');
  });
  app.setNotFoundHandler((_request, reply) => reply.code(404).type('text/plain; charset=utf-8').send('Not found.'));
  return app;
}
