/** The dashboard in tests and the benchmark: serve's HTTP side on a free port, and Debian's Chromium driven by playwright-core. */
import { existsSync } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { resolveFfmpegPaths } from '../../src/media/ffmpeg-paths.js';
import type { JobService } from '../../src/jobs/job-service.js';
import type { Platform } from '../../src/jobs/types.js';
import { createLogger } from '../../src/log.js';
import type { Config } from '../../src/config.js';
import type { Db } from '../../src/store/db.js';
import type { ObservedPlatform } from '../../src/web/metrics.js';
import { ServeHttp } from '../../src/web/serve-http.js';

export const CHROMIUM = '/usr/bin/chromium';
/** Why the browser tests cannot run here, or undefined when they can. */
export const noBrowser: string | undefined = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)`;

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
}

export interface Dashboard {
  http: ServeHttp;
  baseUrl: string;
  close(): Promise<void>;
}

/** Serve's HTTP side for a job service (its config must set `http.port`, 0 for a free one). */
export async function startDashboard(options: {
  config: Config;
  db: Db;
  jobs: JobService;
  platforms?: ObservedPlatform[];
  /** Routes of other modules, registered before the server listens. */
  plugins?: FastifyPluginAsync[];
}): Promise<Dashboard> {
  const http = new ServeHttp({
    config: options.config,
    db: options.db,
    jobs: options.jobs,
    logger: createLogger('silent'),
    ffmpegPath: resolveFfmpegPaths({ ffmpegPath: '', ffprobePath: '' }).ffmpeg,
    platforms: options.platforms ?? [],
  });
  for (const plugin of options.plugins ?? []) http.register(plugin);
  const baseUrl = await http.listen();
  return { http, baseUrl, close: () => http.close() };
}

/** Opens a one-time link for the actor in `context` and presses "Sign in"; returns the page it lands on. */
export async function signIn(context: BrowserContext, dashboard: Dashboard, actor: { platform: Platform; externalId: string }): Promise<Page> {
  const page = await context.newPage();
  await page.goto((await dashboard.http.dashboardLink(actor)).url);
  await Promise.all([page.waitForURL(`${dashboard.baseUrl}/`), page.click('#sign-in')]);
  return page;
}

/** Collects the Content-Security-Policy violations a page reports. */
export function cspViolations(page: Page): string[] {
  const seen: string[] = [];
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to (load|execute|apply)/i.test(message.text())) seen.push(message.text());
  });
  return seen;
}
