/**
 * serve's HTTP server: /healthz, /readyz and its reasons (a locked database, no worker that can
 * run a job, a platform not connected), the security headers, plugins registered by other
 * modules, errors that never show their message, and dashboard pages that need a session.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { FastifyPluginAsync } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { CONTENT_SECURITY_POLICY } from '../../src/web/http-server.js';
import { startDashboard, type Dashboard } from '../helpers/dashboard.js';
import { alice, isType, removeDir, startService, tempDir, video, type Harness } from '../helpers/harness.js';

let dir: string;
let harness: Harness;
let dashboard: Dashboard | undefined;

afterEach(async () => {
  await dashboard?.close();
  dashboard = undefined;
  await harness.close();
  removeDir(dir);
});

async function start(overrides: Record<string, unknown> = {}, plugins: FastifyPluginAsync[] = []): Promise<Dashboard> {
  dir = tempDir();
  harness = startService(dir, { http: { port: 0 }, ...overrides });
  dashboard = await startDashboard({ config: harness.config, db: harness.db, jobs: harness.service, platforms: ['discord'], plugins });
  return dashboard;
}

describe('health', () => {
  it('/healthz answers; /readyz is 503 with the reasons until every configured platform is connected', async () => {
    const { http } = await start();
    const health = await http.app.inject({ url: '/healthz' });
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ ok: true });
    const notReady = await http.app.inject({ url: '/readyz' });
    expect(notReady.statusCode).toBe(503);
    expect(notReady.json()).toEqual({ ready: false, reasons: ['Discord is not connected'] });
    http.metrics.platform('discord').connection(true);
    const ready = await http.app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ ready: true });
  });

  it('/readyz says when the database does not take writes (another connection holds the write lock)', async () => {
    const { http } = await start();
    http.metrics.platform('discord').connection(true);
    const other = new Database(join(dir, 'reelbot.db'));
    try {
      other.exec('BEGIN IMMEDIATE');
      const locked = await http.app.inject({ url: '/readyz' });
      expect(locked.statusCode).toBe(503);
      expect(locked.json().reasons).toEqual(['the database does not take writes (SQLITE_BUSY)']);
      other.exec('ROLLBACK');
      expect((await http.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    } finally {
      other.close();
    }
  });

  it('/readyz says when no worker can run a job (the engine could not be loaded)', async () => {
    const { http } = await start({ engineModule: join(tempDir(), 'no-such-engine.ts') });
    http.metrics.platform('discord').connection(true);
    const { job } = await harness.service.submit(video(alice));
    await harness.waitFor(isType('failed', job.id));
    const answer = await http.app.inject({ url: '/readyz' });
    expect(answer.statusCode).toBe(503);
    expect(answer.json().reasons).toEqual(['no worker can run a job: the engine could not be loaded on cpu (the log says why)']);
  });
});

describe('the HTTP server', () => {
  it('sends a strict CSP and no referrer on every answer; takes plugins; never shows an error’s message', async () => {
    const { http } = await start({}, [
      async (app) => {
        app.get('/plugin/hello', async () => ({ hello: 'from a plugin' }));
        app.get('/plugin/broken', async () => {
          throw new Error('database password is hunter2');
        });
      },
    ]);
    const hello = await http.app.inject({ url: '/plugin/hello' });
    expect(hello.json()).toEqual({ hello: 'from a plugin' });
    expect(hello.headers['content-security-policy']).toBe(CONTENT_SECURITY_POLICY);
    expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'");
    expect(CONTENT_SECURITY_POLICY).not.toContain('unsafe-inline');
    expect(hello.headers['referrer-policy']).toBe('no-referrer');
    const broken = await http.app.inject({ url: '/plugin/broken' });
    expect(broken.statusCode).toBe(500);
    expect(broken.body).not.toContain('hunter2');
    expect(broken.body).toContain('log');
  });

  it('dashboard pages and actions need a session; sign-in pages and assets do not', async () => {
    const { http } = await start();
    for (const url of ['/', '/usage', '/jobs', '/jobs/1', '/jobs/1/video.mp4', '/audit', '/live']) {
      const answer = await http.app.inject({ url });
      expect(answer.statusCode, url).toBe(401);
      expect(answer.body).toContain('reelbot dashboard link');
    }
    const cancel = await http.app.inject({ method: 'POST', url: '/jobs/1/cancel', payload: '_csrf=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(cancel.statusCode).toBe(401);
    expect((await http.app.inject({ url: '/assets/chart.umd.min.js' })).statusCode).toBe(200);
    expect((await http.app.inject({ url: '/login?token=abc' })).statusCode).toBe(200);
  });
});
