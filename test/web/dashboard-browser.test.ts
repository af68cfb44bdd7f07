/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core): a real job service
 * with worker processes running the MP4 test engine, the Discord adapter on the fake Discord, and
 * serve's HTTP side on a free port of 127.0.0.1.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { main } from '../../src/cli.js';
import type { DiscordAdapter } from '../../src/bots/discord/discord-adapter.js';
import { Settings } from '../../src/store/settings.js';
import { JobRepo } from '../../src/store/job-repo.js';
import { FakeDiscord, snowflake } from '../fakes/fake-discord.js';
import { MP4_ENGINE, isOriginalEdit, newAdapter } from '../bots/discord/setup.js';
import { previewColour } from '../fakes/mp4-engine.js';
import { cspViolations, launchChromium, noBrowser, signIn, startDashboard, type Dashboard } from '../helpers/dashboard.js';
import { isType, removeDir, startService, tempDir, type Harness } from '../helpers/harness.js';
import { DAY_MS, seedJobs } from '../helpers/seed-jobs.js';

const admin = { id: snowflake(), username: 'ops' };
const alice = { id: snowflake(), username: 'alice' };
const adminActor = { platform: 'discord' as const, externalId: admin.id };

/** The text of the first element matching `selector`, or '' while there is none. */
async function textOf(page: Page, selector: string): Promise<string> {
  const found = page.locator(selector).first();
  return (await found.count()) === 0 ? '' : ((await found.textContent()) ?? '');
}

if (noBrowser) console.warn(`dashboard browser tests skipped: ${noBrowser}`);

describe.skipIf(noBrowser !== undefined)('the dashboard in Chromium', () => {
  let browser: Browser;
  let dir: string;
  let harness: Harness;
  let fake: FakeDiscord;
  let adapter: DiscordAdapter | undefined;
  let dashboard: Dashboard;
  let context: BrowserContext;

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
  });

  beforeEach(async () => {
    dir = tempDir();
    harness = startService(dir, { engineModule: MP4_ENGINE, admins: { discord: [admin.id] }, http: { port: 0 } });
    fake = await FakeDiscord.start();
    dashboard = await startDashboard({ config: harness.config, db: harness.db, jobs: harness.service });
    context = await browser.newContext();
  });

  afterEach(async () => {
    await context?.close();
    await dashboard?.close();
    await adapter?.stop();
    adapter = undefined;
    await fake.close();
    await harness.close();
    removeDir(dir);
  });

  async function startDiscord(): Promise<void> {
    adapter = newAdapter(fake, harness.service, dir, { adminIds: [admin.id] });
    await adapter.start();
  }

  it('signs in with a one-time link into an HttpOnly, SameSite=Strict session; the link does not work twice', async () => {
    const link = await dashboard.http.dashboardLink(adminActor);
    const page = await context.newPage();
    const violations = cspViolations(page);
    await page.goto(link.url);
    await Promise.all([page.waitForURL(`${dashboard.baseUrl}/`), page.click('#sign-in')]);
    await expect.poll(() => textOf(page, 'h1'), { timeout: 10_000 }).toBe('Now');
    const [cookie] = await context.cookies();
    expect(cookie).toMatchObject({ name: 'reelbot_session', httpOnly: true, sameSite: 'Strict' });
    // Nothing on the pages breaks the Content-Security-Policy (no inline script or style).
    for (const path of ['/usage', '/jobs', '/audit', '/']) await page.goto(`${dashboard.baseUrl}${path}`);
    expect(violations).toEqual([]);

    const other = await browser.newContext();
    try {
      const again = await other.newPage();
      await again.goto(link.url);
      await again.click('#sign-in');
      await expect.poll(() => textOf(again, '#refusal'), { timeout: 10_000 }).toMatch('already used');
      expect(await other.cookies()).toEqual([]);
      await again.goto(`${dashboard.baseUrl}/`);
      await expect.poll(() => textOf(again, '#refusal'), { timeout: 10_000 }).toMatch('Sign in first');
    } finally {
      await other.close();
    }
  });

  it('refuses an expired link and a link made for someone who is not an admin', async () => {
    const { createDashboardLink } = await import('../../src/web/dashboard/sign-in.js');
    const expired = createDashboardLink(harness.db, harness.config, adminActor, { now: Date.now() - 11 * 60_000, baseUrl: dashboard.baseUrl });
    const page = await context.newPage();
    await page.goto(expired.url);
    const answer = page.waitForResponse((response) => response.url().endsWith('/login') && response.request().method() === 'POST');
    await page.click('#sign-in');
    expect((await answer).status()).toBe(401);
    await expect.poll(() => textOf(page, '#refusal'), { timeout: 10_000 }).toMatch('has expired');

    const notAdmin = await dashboard.http.dashboardLink({ platform: 'discord', externalId: alice.id });
    await page.goto(notAdmin.url);
    const refused = page.waitForResponse((response) => response.url().endsWith('/login') && response.request().method() === 'POST');
    await page.click('#sign-in');
    expect((await refused).status()).toBe(403);
    await expect.poll(() => textOf(page, '#refusal'), { timeout: 10_000 }).toMatch('not an admin');
    expect(await context.cookies()).toEqual([]);
  });

  it('refuses an action without its CSRF token (nothing changes) and does it with the token', async () => {
    const page = await signIn(context, dashboard, adminActor);
    const settings = new Settings(harness.db);
    const status = async (body: Record<string, string>) =>
      page.evaluate(async (fields) => (await fetch('/queue/pause', { method: 'POST', body: new URLSearchParams(fields) })).status, body);
    expect(await status({})).toBe(403);
    expect(await status({ _csrf: 'forged' })).toBe(403);
    expect(settings.queuePaused()).toBe(false);
    // The page's own button carries the token.
    await page.click('#queue-toggle');
    await expect.poll(() => textOf(page, '#queue-state'), { timeout: 10_000 }).toMatch('Queue paused');
    expect(settings.queuePaused()).toBe(true);
  });

  it('shows a running job’s progress change without a reload', async () => {
    await startDiscord();
    const page = await signIn(context, dashboard, adminActor);
    await page.evaluate('window.notReloaded = true');
    await page.waitForFunction("document.body.dataset.live === 'connected'");
    const interaction = fake.slashCommand(alice, { prompt: 'a slow corgi' });
    fake.sendInteraction(interaction);
    const { job } = await harness.waitFor(isType('started'));
    const bar = page.locator(`#progress-${job.id}`);
    await bar.waitFor({ state: 'visible', timeout: 10_000 });
    // The worker process boots first (seconds on a busy machine); then each of 6 steps takes 300 ms.
    await harness.waitFor(isType('progress', job.id), 30_000);
    await expect.poll(() => bar.evaluate((element) => (element as unknown as { value: number }).value), { timeout: 10_000 }).toBeGreaterThanOrEqual(1);
    const seen = await bar.evaluate((element) => (element as unknown as { value: number }).value);
    await expect.poll(() => bar.evaluate((element) => (element as unknown as { value: number }).value), { timeout: 10_000 }).toBeGreaterThan(seen);
    await expect.poll(() => textOf(page, `#progress-text-${job.id}`), { timeout: 10_000 }).toMatch(/step \d of 6/);
    expect(await page.evaluate('window.notReloaded')).toBe(true);
    // When it finishes, the live section drops it by itself.
    await harness.waitFor(isType('succeeded', job.id));
    await page.locator(`#running-${job.id}`).waitFor({ state: 'detached', timeout: 10_000 });
  });

  it('shows a running job’s newest live preview without a reload (its bytes and pixels), only to a signed-in admin, and drops it when the job ends', async () => {
    const page = await signIn(context, dashboard, adminActor);
    const violations = cspViolations(page);
    await page.evaluate('window.notReloaded = true');
    await page.waitForFunction("document.body.dataset.live === 'connected'");
    const { job } = await harness.service.submit({ actor: { platform: 'discord', externalId: alice.id }, kind: 'text2video', params: { prompt: 'a slow preview corgi' } });
    // The worker process boots first (seconds on a busy machine); then each of 6 steps takes 300 ms and carries a preview.
    await harness.waitFor((event) => event.type === 'progress' && event.job.id === job.id && event.progress.preview !== undefined, 30_000);
    const image = page.locator(`#preview-${job.id}`);
    await image.waitFor({ state: 'attached', timeout: 10_000 });
    // What the page shows: the image's URL, its size, and the colour of its last pixel (drawn on a canvas).
    const shown = async () =>
      (await page.evaluate(`(async () => {
        const img = document.getElementById('preview-${job.id}');
        const src = img.src;
        await img.decode();
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth;
        canvas.height = img.naturalHeight;
        const drawing = canvas.getContext('2d');
        drawing.drawImage(img, 0, 0);
        const pixel = Array.from(drawing.getImageData(img.naturalWidth - 1, img.naturalHeight - 1, 1, 1).data.slice(0, 3));
        return { src, width: img.naturalWidth, height: img.naturalHeight, pixel };
      })()`)) as { src: string; width: number; height: number; pixel: number[] };
    const first = await shown();
    const firstStep = Number(new URL(first.src).searchParams.get('step'));
    expect(first).toMatchObject({ width: 16, height: 8, pixel: previewColour(firstStep) });
    // A newer preview replaces it in place, still without a reload.
    await expect.poll(async () => Number(new URL((await shown()).src).searchParams.get('step')), { timeout: 10_000 }).toBeGreaterThan(firstStep);
    const later = await shown();
    expect(later.pixel).toEqual(previewColour(Number(new URL(later.src).searchParams.get('step'))));
    expect(await page.evaluate('window.notReloaded')).toBe(true);
    // A page opened mid-job has the newest preview in its first rendering.
    const opened = await context.newPage();
    await opened.goto(`${dashboard.baseUrl}/`);
    expect(await opened.locator(`#preview-${job.id}`).getAttribute('src')).toMatch(new RegExp(`^/jobs/${job.id}/preview\\.png\\?step=\\d+$`));
    await opened.close();

    // The URL serves the newest preview's PNG, byte for byte, to the signed-in admin only.
    const served = await page.evaluate(async (url) => {
      const response = await fetch(url);
      return { status: response.status, type: response.headers.get('content-type'), base64: btoa(String.fromCharCode(...new Uint8Array(await response.arrayBuffer()))) };
    }, later.src);
    expect(served).toMatchObject({ status: 200, type: 'image/png' });
    const previews = harness.events.flatMap((event) => (event.type === 'progress' && event.job.id === job.id && event.progress.preview ? [event.progress.preview] : []));
    const match = previews.find((preview) => preview.png === served.base64);
    expect(match, 'the served PNG is one the engine sent').toBeDefined();
    expect(match!.step).toBeGreaterThanOrEqual(Number(new URL(later.src).searchParams.get('step')));
    const stranger = await browser.newContext();
    try {
      const refused = await stranger.request.get(later.src, { maxRedirects: 0 });
      expect(refused.status()).toBe(401);
      expect(refused.headers()['content-type']).not.toMatch('image/png');
    } finally {
      await stranger.close();
    }

    // When the job ends the image goes with its card, and the URL has nothing to serve.
    await harness.waitFor(isType('succeeded', job.id));
    await page.locator(`#running-${job.id}`).waitFor({ state: 'detached', timeout: 10_000 });
    expect(await page.locator('img.preview').count()).toBe(0);
    expect(await page.evaluate(async (url) => (await fetch(url)).status, later.src)).toBe(404);
    expect(violations).toEqual([]);
  });

  it('draws the usage chart from the seeded days, with the figures of reelbot usage', async () => {
    const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
    const at = (daysAgo: number) => today - daysAgo * DAY_MS + 3_600_000;
    seedJobs(harness.db, [
      { user: 'u1', kind: 'text2video', state: 'succeeded', queuedAt: at(3), seconds: 30 },
      { user: 'u1', kind: 'text2video', state: 'succeeded', queuedAt: at(3), seconds: 40 },
      { user: 'u2', kind: 'edit', state: 'succeeded', queuedAt: at(3), seconds: 50, groupId: 'G2' },
      { user: 'u2', kind: 'text2video', state: 'failed', queuedAt: at(1), seconds: 5 },
      { user: 'u3', kind: 'edit', state: 'succeeded', queuedAt: at(0), seconds: 20, groupId: 'G2' },
      { user: 'u3', kind: 'text2video', state: 'succeeded', queuedAt: at(40), seconds: 99 }, // outside the 30 days
    ]);
    const page = await signIn(context, dashboard, adminActor);
    await page.goto(`${dashboard.baseUrl}/usage?days=30`);
    await page.waitForFunction("document.body.dataset.charts === 'drawn'");
    // What Chart.js holds for the two per-day charts.
    const drawn = (await page.evaluate(`(() => {
      const jobs = Chart.getChart('jobs-per-day').data;
      const gpu = Chart.getChart('gpu-per-day').data;
      return { labels: jobs.labels, t2v: jobs.datasets[0].data, edit: jobs.datasets[1].data, gpuT2v: gpu.datasets[0].data, gpuEdit: gpu.datasets[1].data };
    })()`)) as { labels: string[]; t2v: number[]; edit: number[]; gpuT2v: number[]; gpuEdit: number[] };
    const day = (daysAgo: number) => new Date(today - daysAgo * DAY_MS).toISOString().slice(0, 10);
    expect(drawn.labels).toHaveLength(30);
    expect(drawn.labels.at(-1)).toBe(day(0));
    const value = (series: number[], daysAgo: number) => series[drawn.labels.indexOf(day(daysAgo))];
    expect(value(drawn.t2v, 3)).toBe(2);
    expect(value(drawn.edit, 3)).toBe(1);
    expect(value(drawn.gpuT2v, 3)).toBe(70);
    expect(value(drawn.gpuEdit, 3)).toBe(50);
    expect(value(drawn.t2v, 1)).toBe(0); // failed: refunded
    expect(value(drawn.edit, 0)).toBe(1);
    expect(drawn.t2v.reduce((a, b) => a + b, 0) + drawn.edit.reduce((a, b) => a + b, 0)).toBe(4);
    await expect.poll(() => textOf(page, '#failure-rate'), { timeout: 10_000 }).toBe('20.0 %');

    // The same figures as `reelbot usage` for the same period.
    let printed = '';
    const code = await main(['node', 'reelbot', 'usage', '--since', day(29), '--until', day(0), '--json'], {
      env: { REELBOT_DB_PATH: harness.config.dbPath },
      stdout: { write: (text: string) => (printed += text) },
      stderr: { write: () => true },
    });
    expect(code).toBe(0);
    const cli = JSON.parse(printed) as { total: { jobs: number; gpuSeconds: number }; byGroup: { groupId: string; gpuSeconds: number }[] };
    await expect.poll(() => textOf(page, '#total-jobs'), { timeout: 10_000 }).toBe(String(cli.total.jobs));
    await expect.poll(() => textOf(page, '#total-gpu'), { timeout: 10_000 }).toBe(cli.total.gpuSeconds.toFixed(1));
    const groups = await page.locator('#per-group tbody tr td:first-child').allTextContents();
    expect(groups).toEqual(cli.byGroup.map((row) => row.groupId));
    const groupGpu = await page.locator('#per-group tbody tr td:last-child').allTextContents();
    expect(groupGpu).toEqual(cli.byGroup.map((row) => row.gpuSeconds.toFixed(1)));
  });

  it('opens a finished job from the gallery and plays its video inline', async () => {
    await startDiscord();
    const interaction = fake.slashCommand(alice, { prompt: 'a corgi on a skateboard' });
    fake.sendInteraction(interaction);
    const { job } = await harness.waitFor(isType('succeeded'));
    const page = await signIn(context, dashboard, adminActor);
    await page.goto(`${dashboard.baseUrl}/jobs?q=skateboard`);
    await expect.poll(() => textOf(page, '#gallery-count'), { timeout: 10_000 }).toMatch('1 job');
    const thumb = await page.evaluate(async (id) => {
      const response = await fetch(`/jobs/${id}/thumb.jpg`);
      return { status: response.status, type: response.headers.get('content-type'), size: (await response.arrayBuffer()).byteLength };
    }, job.id);
    expect(thumb).toMatchObject({ status: 200, type: 'image/jpeg' });
    expect(thumb.size).toBeGreaterThan(200);
    // The thumbnail plays the video in place.
    await page.click(`#thumb-${job.id}`);
    const inline = page.locator(`#video-${job.id}`);
    await expect.poll(() => inline.evaluate((element) => (element as unknown as { currentTime: number }).currentTime), { timeout: 10_000 }).toBeGreaterThan(0);
    expect(await inline.evaluate((element) => (element as unknown as { videoWidth: number }).videoWidth)).toBe(64);
    // The job's page: its ledger rows, and its video again.
    await page.click(`a[href="/jobs/${job.id}"]`);
    await expect.poll(() => textOf(page, 'h1'), { timeout: 10_000 }).toBe(`Job #${job.id}`);
    expect(await page.locator('#ledger tbody tr').count()).toBe(2); // reserve, settle
    const video = page.locator(`#video-${job.id}`);
    await video.evaluate((element) => (element as unknown as { play(): Promise<void> }).play());
    await expect.poll(() => video.evaluate((element) => (element as unknown as { currentTime: number }).currentTime), { timeout: 10_000 }).toBeGreaterThan(0);
  });

  it('is usable on a phone (no page wider than the screen) and with a keyboard (skip link, Tab to a control, Enter)', async () => {
    seedJobs(harness.db, [{ user: 'u1', kind: 'text2video', state: 'succeeded', queuedAt: Date.now() - 3_600_000, seconds: 30, prompt: 'a very long prompt '.repeat(20) }]);
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    try {
      const page = await signIn(phone, dashboard, adminActor);
      for (const path of ['/', '/usage', '/jobs', '/jobs/1', '/audit']) {
        await page.goto(`${dashboard.baseUrl}${path}`);
        expect(await page.evaluate('document.documentElement.scrollWidth'), path).toBeLessThanOrEqual(390);
      }
      await page.goto(`${dashboard.baseUrl}/`);
      await page.keyboard.press('Tab');
      expect(await page.evaluate('document.activeElement.textContent')).toBe('Skip to the content');
      let focused = '';
      for (let presses = 0; presses < 15 && focused !== 'queue-toggle'; presses++) {
        await page.keyboard.press('Tab');
        focused = (await page.evaluate('document.activeElement.id')) as string;
      }
      expect(focused).toBe('queue-toggle');
      await page.keyboard.press('Enter');
      await expect.poll(() => textOf(page, '#queue-state'), { timeout: 10_000 }).toMatch('Queue paused');
      expect(new Settings(harness.db).queuePaused()).toBe(true);
    } finally {
      await phone.close();
    }
  });

  it('re-runs a finished job with the same parameters and seed, and bans its owner, from the job’s page; both in the audit log', async () => {
    const first = await harness.service.submit({ actor: { platform: 'discord', externalId: alice.id }, kind: 'text2video', params: { prompt: 'a corgi on a bike' }, seed: 1234 });
    await harness.waitFor(isType('succeeded', first.job.id));
    const page = await signIn(context, dashboard, adminActor);
    await page.goto(`${dashboard.baseUrl}/jobs/${first.job.id}`);
    await page.click('#rerun');
    await expect.poll(() => textOf(page, '#notice'), { timeout: 10_000 }).toMatch('re-run');
    const rerunId = Number(/Job #(\d+)/.exec(await textOf(page, 'h1'))?.[1]);
    expect(rerunId).toBeGreaterThan(first.job.id);
    const rerun = new JobRepo(harness.db).get(rerunId)!;
    expect(rerun).toMatchObject({ kind: 'text2video', params: { prompt: 'a corgi on a bike' }, seed: 1234, platform: 'discord', userExternalId: admin.id });

    await page.goto(`${dashboard.baseUrl}/jobs/${first.job.id}`);
    await page.fill('input[name="reason"]', 'spam');
    await page.click('#ban');
    await expect.poll(() => textOf(page, '#notice'), { timeout: 10_000 }).toMatch('banned');
    expect(harness.db.prepare('SELECT banned, ban_reason FROM users WHERE external_id = ?').get(alice.id)).toEqual({ banned: 1, ban_reason: 'spam' });
    const audit = harness.db.prepare(`SELECT actor_id, action, target FROM admin_audit ORDER BY id`).all();
    expect(audit).toEqual([
      { actor_id: admin.id, action: 'job.rerun', target: `job:${first.job.id}` },
      { actor_id: admin.id, action: 'user.ban', target: `discord:${alice.id}` },
    ]);
  });

  it('cancels a running job from its page: cancelled in the database, the user told on Discord, written to the audit log', async () => {
    await startDiscord();
    const interaction = fake.slashCommand(alice, { prompt: 'a slow corgi' });
    fake.sendInteraction(interaction);
    const { job } = await harness.waitFor(isType('started'));
    const page = await signIn(context, dashboard, adminActor);
    await page.goto(`${dashboard.baseUrl}/jobs/${job.id}`);
    await page.click('#cancel');
    await page.locator('#notice').waitFor({ state: 'visible' });
    await harness.waitFor(isType('cancelled', job.id));
    expect(new JobRepo(harness.db).get(job.id)!.state).toBe('cancelled');
    const told = await fake.waitForRequest((r) => isOriginalEdit(interaction.token)(r) && /cancel/i.test(String((r.body as { content?: string }).content)));
    expect(String((told.body as { content?: string }).content)).toContain(`#${job.id}`);
    const audit = harness.db.prepare(`SELECT platform, actor_id, action, target, json_extract(details, '$.jobId') AS jobId FROM admin_audit WHERE action = 'job.cancel'`).all();
    expect(audit).toEqual([{ platform: 'discord', actor_id: admin.id, action: 'job.cancel', target: `discord:${alice.id}`, jobId: job.id }]);
    await page.goto(`${dashboard.baseUrl}/audit`);
    await expect.poll(() => textOf(page, '#audit'), { timeout: 10_000 }).toMatch('job.cancel');
  });
});
