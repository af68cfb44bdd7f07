/**
 * The "Jobs" pages: a searchable, paged gallery whose cards play each result inline, and one job's
 * page with its parameters, timings, quota ledger rows and error, and the admin actions (cancel,
 * re-run, ban or unban its owner), each of which is written to the audit log.
 */
import { FINISHED_STATES, JOB_KINDS, type JobKind, type JobRecord, type JobState, type UserRecord } from '../../jobs/types.js';
import type { JobSearchResult } from '../../store/job-search.js';
import type { LedgerEntry } from '../../store/quota-ledger.js';
import { actionButton, csrfField, duration, html, iso, number, withoutSecrets, type SafeHtml } from './html.js';
import { jobText } from './now-page.js';

export const GALLERY_PAGE_SIZE = 24;
const STATES: readonly JobState[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

export interface GalleryQuery {
  text?: string;
  state?: JobState;
  kind?: JobKind;
  page: number;
}

/** The gallery's query string read back, or the reason it cannot be. */
export function galleryQuery(query: Record<string, unknown>): { query: GalleryQuery } | { problem: string } {
  const text = typeof query.q === 'string' ? query.q.slice(0, 200) : undefined;
  const state = query.state === undefined || query.state === '' ? undefined : query.state;
  const kind = query.kind === undefined || query.kind === '' ? undefined : query.kind;
  if (state !== undefined && !STATES.includes(state as JobState)) return { problem: `A state is one of ${STATES.join(', ')}.` };
  if (kind !== undefined && !JOB_KINDS.includes(kind as JobKind)) return { problem: `A kind is one of ${JOB_KINDS.join(', ')}.` };
  const page = query.page === undefined || query.page === '' ? 1 : Number(query.page);
  if (!Number.isSafeInteger(page) || page < 1) return { problem: 'A page is a whole number from 1.' };
  return { query: { text, state: state as JobState | undefined, kind: kind as JobKind | undefined, page } };
}

/** Whether a job has a video file to show (the dashboard's media routes check the file itself). */
export function hasVideo(job: JobRecord): boolean {
  return job.state === 'succeeded' && typeof (job.result as { file?: unknown } | null)?.file === 'string' && /\.mp4$/i.test((job.result as { file: string }).file);
}

/** The job's video player (its page), or what stands in for it. */
function videoOf(job: JobRecord): SafeHtml {
  if (!hasVideo(job)) return html`<div class="no-video">${job.state === 'succeeded' ? 'no video file' : job.state}</div>`;
  return html`<video controls preload="metadata" playsinline muted poster="/jobs/${job.id}/thumb.jpg" src="/jobs/${job.id}/video.mp4" id="video-${job.id}" aria-label="Video of job ${job.id}"></video>`;
}

/**
 * A gallery card's thumbnail: a link to the job whose click (or Enter) plays the video in its place
 * (gallery.js); without scripts it opens the job's page. An image per card keeps a page of 24
 * light: no media player is made until one is asked for.
 */
function thumbnailOf(job: JobRecord): SafeHtml {
  if (!hasVideo(job)) return html`<div class="no-video">${job.state === 'succeeded' ? 'no video file' : job.state}</div>`;
  return html`<a class="thumb" href="/jobs/${job.id}" data-video="/jobs/${job.id}/video.mp4" id="thumb-${job.id}" aria-label="Play the video of job ${job.id}"><img src="/jobs/${job.id}/thumb.jpg" alt="" width="320" height="320" loading="lazy"><span class="play" aria-hidden="true">▶</span></a>`;
}

export function renderGallery(query: GalleryQuery, result: JobSearchResult): SafeHtml {
  const pages = Math.max(1, Math.ceil(result.total / GALLERY_PAGE_SIZE));
  const link = (page: number) => {
    const params = new URLSearchParams();
    if (query.text) params.set('q', query.text);
    if (query.state) params.set('state', query.state);
    if (query.kind) params.set('kind', query.kind);
    params.set('page', String(page));
    return `/jobs?${params.toString()}`;
  };
  const option = (value: string, selected: string | undefined, label = value) =>
    value === (selected ?? '') ? html`<option value="${value}" selected>${label}</option>` : html`<option value="${value}">${label}</option>`;
  return html`<h1>Jobs</h1>
<form method="get" action="/jobs" class="search" role="search">
<label>Search <input type="search" name="q" value="${query.text ?? ''}" placeholder="prompt, user or #id"></label>
<label>State <select name="state">${option('', query.state, 'any')}${STATES.map((state) => option(state, query.state))}</select></label>
<label>Kind <select name="kind">${option('', query.kind, 'any')}${JOB_KINDS.map((kind) => option(kind, query.kind))}</select></label>
<button type="submit">Search</button></form>
<p class="muted" id="gallery-count">${result.total} job${result.total === 1 ? '' : 's'}${result.total > 0 ? `, page ${query.page} of ${pages}` : ''}</p>
${result.jobs.length === 0
  ? html`<p class="empty">No job matches.</p>`
  : html`<ul class="gallery">${result.jobs.map(
      (job) => html`<li class="card">${thumbnailOf(job)}
<div class="row-head"><a href="/jobs/${job.id}">Job #${job.id}</a> <span class="state state-${job.state}">${job.state}</span> <span class="tag">${job.kind}</span></div>
<p class="prompt">${jobText(job)}</p><p class="muted">${job.platform}:${job.userExternalId} · ${iso(job.queuedAt)}</p></li>`,
    )}</ul>`}
<nav aria-label="Pages" class="pager">${query.page > 1 ? html`<a href="${link(query.page - 1)}" rel="prev">← Newer</a>` : ''}${
    query.page < pages ? html`<a href="${link(query.page + 1)}" rel="next">Older →</a>` : ''
  }</nav>`;
}

export interface JobPageView {
  job: JobRecord;
  owner: UserRecord | undefined;
  ledger: LedgerEntry[];
  /** Position and ETA while it waits or runs. */
  position?: number;
  etaMs?: number;
  notice?: string;
}

const NOTICES: Record<string, string> = {
  cancelled: 'The job was cancelled and its owner told.',
  cancelling: 'The job was asked to stop; it is cancelled within the cancel grace period and its owner told.',
  banned: 'The owner is banned: their waiting jobs are cancelled and refunded.',
  unbanned: 'The ban was lifted.',
  rerun: 'This is the re-run: same kind, parameters and seed.',
};

export function noticeText(code: unknown): string | undefined {
  return typeof code === 'string' ? NOTICES[code] : undefined;
}

export function renderJob(view: JobPageView, csrf: string): SafeHtml {
  const { job, owner, ledger } = view;
  const finished = FINISHED_STATES.includes(job.state);
  const params = withoutSecrets(job.params) as Record<string, unknown>;
  const net = ledger.reduce((sum, row) => ({ jobs: sum.jobs + row.jobs, gpu: sum.gpu + row.gpuSeconds }), { jobs: 0, gpu: 0 });
  const ownerText = `${job.platform}:${job.userExternalId}${owner?.displayName ? ` (${owner.displayName})` : ''}`;
  return html`${view.notice ? html`<p class="notice" role="status" id="notice">${view.notice}</p>` : ''}
<div class="title-row"><h1>Job #${job.id}</h1> <span class="state state-${job.state}" id="job-state">${job.state}</span> <span class="tag">${job.kind}</span></div>
<p class="prompt">${jobText(job)}</p>
<div class="job-layout"><div>${videoOf(job)}</div>
<div class="actions" aria-label="Actions">
${finished ? '' : actionButton(`/jobs/${job.id}/cancel`, job.cancelRequestedAt === null ? 'Cancel this job' : 'Cancel again (it is stopping)', csrf, { danger: true, id: 'cancel' })}
${finished ? actionButton(`/jobs/${job.id}/rerun`, 'Re-run (same parameters and seed)', csrf, { id: 'rerun' }) : ''}
${owner?.banned
  ? html`<p>Owner banned${owner.banReason ? `: ${owner.banReason}` : ''}.</p><form method="post" action="/users/${owner.id}/unban" class="inline">${csrfField(csrf)}<input type="hidden" name="job" value="${job.id}"><button type="submit" id="unban">Lift the ban</button></form>`
  : owner
    ? html`<form method="post" action="/users/${owner.id}/ban" class="ban">${csrfField(csrf)}<input type="hidden" name="job" value="${job.id}"><label>Reason <input name="reason" maxlength="200" placeholder="optional"></label> <button type="submit" class="danger" id="ban">Ban ${ownerText}</button></form>`
    : ''}
</div></div>
<h2>Details</h2>
<dl class="fields">
<dt>Owner</dt><dd>${ownerText}${owner?.tier ? ` · tier ${owner.tier}` : ''}</dd>
<dt>Guild/workspace</dt><dd>${job.groupId ?? '–'}</dd>
<dt>Channel</dt><dd>${job.channelId ?? '–'}</dd>
<dt>Priority</dt><dd>${job.priority > 0 ? 'high' : 'normal'}</dd>
<dt>Seed</dt><dd>${job.seed}</dd>
<dt>Device</dt><dd>${job.device ?? '–'}</dd>
<dt>Attempts</dt><dd>${job.attempts}</dd>
${view.position !== undefined && !finished ? html`<dt>Queue</dt><dd>${view.position === 0 ? 'running' : `position ${view.position}`}${view.etaMs ? ` · result in about ${duration(view.etaMs)}` : ''}</dd>` : ''}
</dl>
<h2>Timings</h2>
<dl class="fields">
<dt>Submitted</dt><dd>${iso(job.queuedAt)}</dd>
<dt>Started</dt><dd>${iso(job.startedAt)}</dd>
<dt>Finished</dt><dd>${iso(job.finishedAt)}</dd>
<dt>Waited</dt><dd>${job.startedAt === null ? '–' : duration(job.startedAt - job.queuedAt)}</dd>
<dt>Ran</dt><dd>${job.startedAt === null || job.finishedAt === null ? '–' : duration(job.finishedAt - job.startedAt)}</dd>
<dt>Estimated GPU-seconds</dt><dd>${number(job.estimatedGpuSeconds)}</dd>
<dt>GPU-seconds</dt><dd>${job.gpuSeconds === null ? '–' : number(job.gpuSeconds)}</dd>
${job.cancelRequestedAt === null ? '' : html`<dt>Cancel asked</dt><dd>${iso(job.cancelRequestedAt)}</dd>`}
</dl>
${job.error || job.errorCode ? html`<h2>Error</h2><p class="error" id="job-error"><code>${job.errorCode ?? 'error'}</code> ${job.error ?? ''}</p>` : ''}
<h2>Parameters</h2>
<dl class="fields">${Object.entries(params).map(([key, value]) => html`<dt>${key}</dt><dd><code>${typeof value === 'string' ? value : JSON.stringify(value)}</code></dd>`)}</dl>
<h2>Quota ledger</h2>
${ledger.length === 0
  ? html`<p class="empty">No rows.</p>`
  : html`<div class="scroll"><table id="ledger"><thead><tr><th scope="col">Entry</th><th scope="col" class="num">Jobs</th><th scope="col" class="num">GPU-seconds</th><th scope="col">Charged to</th><th scope="col">Written</th></tr></thead><tbody>${ledger.map(
      (row) => html`<tr><td>${row.entry}</td><td class="num">${signed(row.jobs, 0)}</td><td class="num">${signed(row.gpuSeconds, 1)}</td><td>${iso(row.chargedAt)}</td><td>${iso(row.createdAt)}</td></tr>`,
    )}</tbody><tfoot><tr><th scope="row">net</th><td class="num">${signed(net.jobs, 0)}</td><td class="num">${signed(net.gpu, 1)}</td><td></td><td></td></tr></tfoot></table></div>`}`;
}

function signed(value: number, digits: number): string {
  const text = digits === 0 ? String(value) : number(value, digits);
  return value > 0 ? `+${text}` : text;
}
