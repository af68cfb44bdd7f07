/**
 * `npm run bench:dashboard`: how fast the dashboard's pages show their content with 10,000 jobs in
 * the database, measured in Debian's Chromium (playwright-core). The jobs (finished ones over the
 * last 60 days, with their ledger rows, from 300 users in 12 guilds) are written straight into a
 * fresh database; `reelbot serve`'s HTTP side serves it on 127.0.0.1.
 *
 * Each page is loaded once to warm up, then 7 times; the median of the navigation's
 * DOMContentLoaded end is printed (the pages are rendered on the server, and the usage page's
 * charts are drawn by deferred scripts, which run before DOMContentLoaded). Target: < 500 ms each.
 *
 * Prints one JSON line:
 * {"bench":"dashboard","jobs_in_db":10000,"overview_ms":…,"usage_30d_ms":…,"gallery_page_ms":…}
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { JobService } from '../src/jobs/job-service.js';
import type { JobKind } from '../src/jobs/types.js';
import { createLogger } from '../src/log.js';
import { openDatabase } from '../src/store/db.js';
import { testConfig } from '../test/helpers/harness.js';
import { launchChromium, noBrowser, signIn, startDashboard } from '../test/helpers/dashboard.js';
import { DAY_MS, seedJobs, type SeedJob } from '../test/helpers/seed-jobs.js';

const JOBS = 10_000;
const RUNS = 7;

if (noBrowser) {
  console.error(`bench:dashboard needs Chromium: ${noBrowser}`);
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'reelbot-bench-dashboard-'));
const config = testConfig(dir, { http: { port: 0 }, admins: { discord: ['bench-admin'] } });
const db = openDatabase(config.dbPath);
const now = Date.now();
// A fixed pseudo-random sequence, so every run seeds the same jobs.
let state = 42;
const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const jobs: SeedJob[] = [];
for (let i = 0; i < JOBS; i++) {
  const roll = random();
  jobs.push({
    user: `u${Math.floor(random() * 300)}`,
    kind: (random() < 0.7 ? 'text2video' : 'edit') as JobKind,
    state: roll < 0.9 ? 'succeeded' : roll < 0.97 ? 'failed' : 'cancelled',
    queuedAt: now - Math.floor(random() * 60 * DAY_MS),
    seconds: 5 + Math.floor(random() * 120),
    groupId: `G${Math.floor(random() * 12)}`,
    prompt: `a corgi number ${i} surfing at sunset`,
  });
}
jobs.sort((a, b) => a.queuedAt - b.queuedAt);
seedJobs(db, jobs);
const jobsInDb = db.prepare('SELECT count(*) FROM jobs').pluck().get() as number;

const service = new JobService({ config, db, logger: createLogger('silent') });
service.start();
const dashboard = await startDashboard({ config, db, jobs: service });
const browser = await launchChromium();

async function timeToContent(page: Page, path: string, ready: string): Promise<number> {
  const times: number[] = [];
  for (let run = 0; run <= RUNS; run++) {
    await page.goto(`${dashboard.baseUrl}${path}`, { waitUntil: 'load' });
    await page.waitForSelector(ready, { state: 'attached' });
    const ms = (await page.evaluate(`performance.getEntriesByType("navigation")[0].domContentLoadedEventEnd`)) as number;
    if (run > 0) times.push(ms); // the first load warms up
  }
  times.sort((a, b) => a - b);
  return Math.round(times[Math.floor(times.length / 2)]!);
}

try {
  const context = await browser.newContext();
  const page = await signIn(context, dashboard, { platform: 'discord', externalId: 'bench-admin' });
  const overview = await timeToContent(page, '/', '#now-live');
  const usage = await timeToContent(page, '/usage?days=30', 'body[data-charts="drawn"]');
  const gallery = await timeToContent(page, '/jobs?page=3', 'ul.gallery > li:nth-child(24)');
  console.log(JSON.stringify({ bench: 'dashboard', jobs_in_db: jobsInDb, overview_ms: overview, usage_30d_ms: usage, gallery_page_ms: gallery }));
} finally {
  await browser.close();
  await dashboard.close();
  await service.shutdown(0);
  db.close();
  rmSync(dir, { recursive: true, force: true });
}
