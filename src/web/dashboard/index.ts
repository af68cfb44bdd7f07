/**
 * The operator's dashboard, a Fastify plugin for `reelbot serve`'s HTTP server. Admins only:
 * every page but sign-in needs a session (sign-in.ts), every POST its CSRF token. Pages are
 * rendered on the server; the scripts (live updates, Chart.js) come from /assets, never inline.
 *
 * Routes: `/` now · `/live` its event stream · `/usage` · `/jobs` gallery · `/jobs/:id` one job,
 * its `video.mp4`, `thumb.jpg` and, while it runs, `preview.png` (its newest live preview) · `/audit` audit log and quota settings · POST actions:
 * `/jobs/:id/cancel`, `/jobs/:id/rerun`, `/users/:id/ban`, `/users/:id/unban`, `/queue/pause`,
 * `/queue/resume`, `/sign-out`.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import cookie from '@fastify/cookie';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import { UserError } from '../../errors.js';
import type { JobService } from '../../jobs/job-service.js';
import type { Db } from '../../store/db.js';
import type { StoreWriter } from '../../store/writer.js';
import { JobGallery } from '../../store/job-search.js';
import { JobRepo } from '../../store/job-repo.js';
import { QuotaLedger } from '../../store/quota-ledger.js';
import { UsageSeries } from '../../store/usage-series.js';
import { UserRepo } from '../../store/user-repo.js';
import { AUDIT_SHOWN, renderAudit } from './audit-page.js';
import { html, page, type NavPage, type SafeHtml } from './html.js';
import { GALLERY_PAGE_SIZE, galleryQuery, noticeText, renderGallery, renderJob } from './jobs-pages.js';
import { LiveFeed } from './live.js';
import { JobMedia } from './media.js';
import { nowView, renderNowSection } from './now-page.js';
import { csrfMatches, SignInDesk, who, type SignedIn } from './sign-in.js';
import { renderUsage, usagePeriod, usageView } from './usage-page.js';

export interface DashboardOptions {
  db: Db;
  writer: StoreWriter;
  config: Config;
  jobs: JobService;
  logger: Logger;
  ffmpegPath: string;
  now?: () => number;
}

const ASSET_DIR = join(dirname(fileURLToPath(import.meta.url)), 'assets');
const CHART_JS = join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js');

/** The static files, read once: name → [content type, body]. */
function loadAssets(): Map<string, [string, Buffer]> {
  return new Map<string, [string, Buffer]>([
    ['dashboard.css', ['text/css; charset=utf-8', readFileSync(join(ASSET_DIR, 'dashboard.css'))]],
    ['live.js', ['text/javascript; charset=utf-8', readFileSync(join(ASSET_DIR, 'live.js'))]],
    ['usage-charts.js', ['text/javascript; charset=utf-8', readFileSync(join(ASSET_DIR, 'usage-charts.js'))]],
    ['gallery.js', ['text/javascript; charset=utf-8', readFileSync(join(ASSET_DIR, 'gallery.js'))]],
    ['chart.umd.min.js', ['text/javascript; charset=utf-8', readFileSync(CHART_JS)]],
  ]);
}

declare module 'fastify' {
  interface FastifyRequest {
    signedIn?: SignedIn;
  }
}

/** Paths anyone may open: sign-in and the static files. */
const PUBLIC = /^\/(login|signed-out|assets\/[a-z0-9.-]+)(\?|$)/;

export function dashboardRoutes(options: DashboardOptions): FastifyPluginAsync {
  return async (app) => {
    const { db, config, jobs } = options;
    const now = options.now ?? Date.now;
    const logger = options.logger.child({ module: 'dashboard' });
    const assets = loadAssets();
    const desk = new SignInDesk({ db, writer: options.writer, config, isAdmin: (actor) => jobs.isAdmin(actor), now });
    const users = new UserRepo(db);
    const jobRepo = new JobRepo(db);
    const ledger = new QuotaLedger(db);
    const gallery = new JobGallery(db);
    const series = new UsageSeries(db);
    const media = new JobMedia({ outputDir: config.outputDir, ffmpegPath: options.ffmpegPath });
    const live = new LiveFeed(jobs);
    app.addHook('preClose', async () => live.close());

    await app.register(cookie);
    // Forms post application/x-www-form-urlencoded; URLSearchParams reads it.
    app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });

    app.addHook('preHandler', async (request, reply) => {
      if (PUBLIC.test(request.url)) return;
      const signedIn = desk.signedIn(request);
      if (!signedIn) return desk.signInNeeded(reply);
      if (request.method === 'POST' && !csrfMatches(signedIn.token, (request.body as Record<string, unknown> | undefined)?._csrf)) {
        return sendPage(reply.code(403), 'Not allowed', undefined, signedIn, html`<h1>Not allowed</h1><p id="refusal">This form was sent without its security token (or with an old one), so nothing was done. Go back, reload the page and try again.</p>`);
      }
      request.signedIn = signedIn;
    });

    // --- sign-in and assets --------------------------------------------------------------------
    app.get('/login', async (request, reply) => desk.loginPage((request.query as { token?: string }).token, reply));
    app.post('/login', async (request, reply) => desk.login((request.body as { token?: unknown } | undefined)?.token, reply));
    app.get('/signed-out', async (_request, reply) =>
      sendPage(reply, 'Signed out', undefined, undefined, html`<section class="card narrow"><h1>Signed out</h1><p>Get a new link with “reelbot dashboard link” or /admin dashboard to sign in again.</p></section>`),
    );
    app.post('/sign-out', async (request, reply) => desk.signOut(request.signedIn!, reply));
    app.get('/assets/:name', async (request, reply) => {
      const asset = assets.get((request.params as { name: string }).name);
      if (!asset) return reply.code(404).type('text/plain; charset=utf-8').send('Not found.');
      return reply.type(asset[0]).header('cache-control', 'private, max-age=3600').send(asset[1]);
    });

    // --- pages ---------------------------------------------------------------------------------
    const renderNow = (signedIn: SignedIn) => renderNowSection(nowView(jobs, users, config, live, now()), signedIn.csrf);
    app.get('/', async (request, reply) => sendPage(reply, 'Now', 'now', request.signedIn, renderNow(request.signedIn!), ['live.js']));
    app.get('/live', async (request, reply) => {
      const signedIn = request.signedIn!;
      live.attach(reply, () => renderNow(signedIn).text);
    });
    app.get('/usage', async (request, reply) => {
      const chosen = usagePeriod(request.query as Record<string, unknown>, now());
      if ('problem' in chosen) return badRequest(reply, request.signedIn!, 'usage', chosen.problem);
      const view = usageView(jobs, series, request.signedIn!.actor, chosen.period);
      return sendPage(reply, 'Usage', 'usage', request.signedIn, renderUsage(view), ['chart.umd.min.js', 'usage-charts.js']);
    });
    app.get('/jobs', async (request, reply) => {
      const parsed = galleryQuery(request.query as Record<string, unknown>);
      if ('problem' in parsed) return badRequest(reply, request.signedIn!, 'jobs', parsed.problem);
      const result = gallery.search({ ...parsed.query, pageSize: GALLERY_PAGE_SIZE });
      return sendPage(reply, 'Jobs', 'jobs', request.signedIn, renderGallery(parsed.query, result), ['gallery.js']);
    });
    app.get('/jobs/:id', async (request, reply) => {
      const job = jobFrom(request);
      if (!job) return notFound(reply, request.signedIn!);
      const status = jobs.status(job.id);
      const view = {
        job,
        owner: users.get(job.userId),
        ledger: ledger.forJob(job.id),
        position: status?.position,
        etaMs: status?.etaMs,
        notice: noticeText((request.query as { done?: unknown }).done),
      };
      return sendPage(reply, `Job #${job.id}`, 'jobs', request.signedIn, renderJob(view, request.signedIn!.csrf));
    });
    app.get('/jobs/:id/video.mp4', async (request, reply) => {
      const job = jobFrom(request);
      return job ? media.sendVideo(job, request, reply) : reply.code(404).type('text/plain; charset=utf-8').send('No such job.');
    });
    app.get('/jobs/:id/thumb.jpg', async (request, reply) => {
      const job = jobFrom(request);
      return job ? media.sendThumbnail(job, reply) : reply.code(404).type('text/plain; charset=utf-8').send('No such job.');
    });
    app.get('/jobs/:id/preview.png', async (request, reply) => {
      const id = Number((request.params as { id: string }).id);
      const preview = Number.isSafeInteger(id) ? live.previews.get(id) : undefined;
      if (!preview) return reply.code(404).type('text/plain; charset=utf-8').send('No live preview for this job (it is not running, or has none yet).');
      return reply.type('image/png').header('cache-control', 'no-store').send(preview.png);
    });
    app.get('/audit', async (request, reply) => sendPage(reply, 'Audit & quotas', 'audit', request.signedIn, renderAudit(jobs.auditLog(request.signedIn!.actor, { limit: AUDIT_SHOWN }), config)));

    // --- actions (each is in the audit log) ----------------------------------------------------
    app.post('/jobs/:id/cancel', async (request, reply) =>
      act(request, reply, async (signedIn) => {
        const job = jobFrom(request);
        if (!job) return notFound(reply, signedIn);
        // The job service audits an admin's cancel of someone else's job.
        const { outcome } = await jobs.cancel(signedIn.actor, job.id);
        return reply.redirect(`/jobs/${job.id}?done=${outcome}`, 303);
      }),
    );
    app.post('/jobs/:id/rerun', async (request, reply) =>
      act(request, reply, async (signedIn) => {
        const job = jobFrom(request);
        if (!job) return notFound(reply, signedIn);
        const submitted = await jobs.rerun(signedIn.actor, job.id);
        return reply.redirect(`/jobs/${submitted.job.id}?done=rerun`, 303);
      }),
    );
    for (const [path, banned] of [
      ['/users/:id/ban', true],
      ['/users/:id/unban', false],
    ] as const) {
      app.post(path, async (request, reply) =>
        act(request, reply, async (signedIn) => {
          const user = users.get(Number((request.params as { id: string }).id));
          if (!user) return notFound(reply, signedIn);
          const reason = String((request.body as { reason?: unknown }).reason ?? '').trim().slice(0, 200);
          await jobs.setBanned(signedIn.actor, { platform: user.platform, externalId: user.externalId }, banned, reason || undefined);
          const jobId = String((request.body as { job?: unknown }).job ?? '');
          return reply.redirect(`${/^\d{1,15}$/.test(jobId) ? `/jobs/${jobId}` : '/jobs'}?done=${banned ? 'banned' : 'unbanned'}`, 303);
        }),
      );
    }
    for (const [path, pause] of [
      ['/queue/pause', true],
      ['/queue/resume', false],
    ] as const) {
      app.post(path, async (request, reply) =>
        act(request, reply, async (signedIn) => {
          if (pause) await jobs.pauseQueue(signedIn.actor);
          else await jobs.resumeQueue(signedIn.actor);
          return reply.redirect('/', 303);
        }),
      );
    }

    // --- helpers -------------------------------------------------------------------------------
    function jobFrom(request: FastifyRequest) {
      const id = Number((request.params as { id: string }).id);
      return Number.isSafeInteger(id) && id > 0 ? jobRepo.get(id) : undefined;
    }

    /** Runs an action; a refusal of the job service (a finished job, a quota) is shown with its message. */
    async function act(request: FastifyRequest, reply: FastifyReply, action: (signedIn: SignedIn) => Promise<FastifyReply> | FastifyReply): Promise<FastifyReply> {
      const signedIn = request.signedIn!;
      try {
        return await action(signedIn);
      } catch (error) {
        if (!(error instanceof UserError)) throw error;
        logger.info({ code: error.code, route: request.routeOptions.url, actor: who(signedIn.session) }, 'dashboard action refused');
        return sendPage(reply.code(409), 'Not done', undefined, signedIn, html`<h1>Not done</h1><p id="refusal">${error.userMessage}</p><p><a href="/">Back to the dashboard</a></p>`);
      }
    }

    function badRequest(reply: FastifyReply, signedIn: SignedIn, nav: NavPage, problem: string): FastifyReply {
      return sendPage(reply.code(400), 'Bad request', nav, signedIn, html`<h1>That did not work</h1><p id="refusal">${problem}</p>`);
    }

    function notFound(reply: FastifyReply, signedIn: SignedIn): FastifyReply {
      return sendPage(reply.code(404), 'Not found', undefined, signedIn, html`<h1>Not found</h1><p id="refusal">There is no such job or user.</p>`);
    }
  };
}

function sendPage(reply: FastifyReply, title: string, nav: NavPage | undefined, signedIn: SignedIn | undefined, body: SafeHtml, scripts: string[] = []): FastifyReply {
  return reply
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(page({ title, nav: signedIn ? (nav ?? 'now') : undefined, csrf: signedIn?.csrf, signedInAs: signedIn ? who(signedIn.session) : undefined, scripts, body }));
}
