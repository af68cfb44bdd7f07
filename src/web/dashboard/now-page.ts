/**
 * The "Now" page: running jobs with live progress, the waiting line in fair order with positions
 * and ETAs, the worker slots, and whether the queue is paused. The live part is one section that
 * the server renders both for the page and for the Server-Sent Events refreshes (live.ts).
 */
import type { Config } from '../../config.js';
import type { JobService } from '../../jobs/job-service.js';
import type { JobProgress, JobRecord } from '../../jobs/types.js';
import type { WorkerSnapshot } from '../../jobs/dispatch/port.js';
import type { UserRepo } from '../../store/user-repo.js';
import { actionButton, duration, html, type SafeHtml } from './html.js';
import type { LivePreview } from './live.js';

export interface NowRow {
  job: JobRecord;
  who: string;
  position: number;
  etaMs: number;
  progress?: JobProgress;
  /** Its newest live preview (running jobs only). */
  preview?: Pick<LivePreview, 'step' | 'width' | 'height'>;
}

export interface NowView {
  paused: boolean;
  running: NowRow[];
  waiting: NowRow[];
  workers: WorkerSnapshot[];
  models: { text2video: string; edit: string };
  at: number;
}

/** How many waiting jobs the page lists (the count says how many more wait). */
const WAITING_SHOWN = 50;

export function nowView(
  jobs: JobService,
  users: UserRepo,
  config: Config,
  live: { progress: ReadonlyMap<number, JobProgress>; previews: ReadonlyMap<number, LivePreview> },
  at: number,
): NowView {
  const queue = jobs.queue();
  const names = new Map<number, string>();
  const whoOf = (job: JobRecord) => {
    let name = names.get(job.userId);
    if (name === undefined) {
      const display = users.get(job.userId)?.displayName;
      name = `${job.platform}:${job.userExternalId}${display ? ` (${display})` : ''}`;
      names.set(job.userId, name);
    }
    return name;
  };
  return {
    paused: queue.paused,
    running: queue.running.map((entry) => ({ ...entry, who: whoOf(entry.job), progress: live.progress.get(entry.job.id), preview: live.previews.get(entry.job.id) })),
    waiting: queue.waiting.map((entry) => ({ ...entry, who: whoOf(entry.job) })),
    workers: jobs.workers(),
    models: { text2video: config.modelDir || 'built-in small set', edit: config.editModelDir || 'built-in small instruct-edit set' },
    at,
  };
}

/** What a job was asked to make, in one line. */
export function jobText(job: JobRecord): string {
  const text = String(job.params.prompt ?? job.params.instruction ?? '');
  return text.length > 140 ? `${text.slice(0, 139)}…` : text;
}

export function progressText(progress: JobProgress | undefined, etaMs: number): string {
  const eta = etaMs > 0 ? ` · about ${duration(etaMs)} left` : '';
  if (!progress) return `starting${eta}`;
  return `step ${progress.step} of ${progress.total}${progress.stage ? ` · ${progress.stage}` : ''}${eta}`;
}

/** Where the page loads a running job's preview from (the step in the URL keeps an older one out of the browser's cache). */
export function previewUrl(jobId: number, step: number): string {
  return `/jobs/${jobId}/preview.png?step=${step}`;
}

export function previewAlt(jobId: number, step: number): string {
  return `Live preview of job ${jobId} at step ${step}`;
}

export function renderNowSection(view: NowView, csrf: string): SafeHtml {
  const running =
    view.running.length === 0
      ? html`<p class="empty">Nothing is running.</p>`
      : html`<ul class="running">${view.running.map(
          (row) => html`<li class="card" id="running-${row.job.id}">
<div class="row-head"><a href="/jobs/${row.job.id}">Job #${row.job.id}</a> <span class="tag">${row.job.kind}</span> <span class="muted">on ${row.job.device ?? '–'} · ${row.who}</span></div>
<p class="prompt">${jobText(row.job)}</p>
${row.preview ? html`<img class="preview" id="preview-${row.job.id}" src="${previewUrl(row.job.id, row.preview.step)}" width="${row.preview.width}" height="${row.preview.height}" alt="${previewAlt(row.job.id, row.preview.step)}">` : ''}
<progress id="progress-${row.job.id}" max="${row.progress?.total ?? 1}" value="${row.progress?.step ?? 0}" aria-label="Progress of job ${row.job.id}"></progress>
<p class="muted" id="progress-text-${row.job.id}" aria-live="polite">${progressText(row.progress, row.etaMs)}${row.job.cancelRequestedAt === null ? '' : ' · cancelling'}</p>
${row.job.cancelRequestedAt === null ? actionButton(`/jobs/${row.job.id}/cancel`, 'Cancel', csrf, { danger: true, id: `cancel-${row.job.id}` }) : ''}
</li>`,
        )}</ul>`;
  const waiting =
    view.waiting.length === 0
      ? html`<p class="empty">No job is waiting.</p>`
      : html`<div class="scroll"><table><thead><tr><th scope="col">Pos.</th><th scope="col">Job</th><th scope="col">Who</th><th scope="col">Kind</th><th scope="col">Prompt</th><th scope="col">Result in about</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead><tbody>${view.waiting
          .slice(0, WAITING_SHOWN)
          .map(
            (row) => html`<tr><td class="num">${row.position}</td><td><a href="/jobs/${row.job.id}">#${row.job.id}</a>${row.job.priority > 0 ? html` <span class="tag">high</span>` : ''}</td><td>${row.who}</td><td>${row.job.kind}</td><td class="prompt">${jobText(row.job)}</td><td>${duration(row.etaMs)}</td><td>${actionButton(`/jobs/${row.job.id}/cancel`, 'Cancel', csrf, { id: `cancel-${row.job.id}` })}</td></tr>`,
          )}</tbody></table></div>${view.waiting.length > WAITING_SHOWN ? html`<p class="muted">…and ${view.waiting.length - WAITING_SHOWN} more.</p>` : ''}`;
  const workers = html`<div class="scroll"><table><thead><tr><th scope="col">Slot</th><th scope="col">Device</th><th scope="col">Models</th><th scope="col">State</th><th scope="col">Job</th><th scope="col">Last heartbeat</th><th scope="col">Restarts</th></tr></thead><tbody>${view.workers.map(
    (worker, slot) => html`<tr><td class="num">${slot}</td><td>${worker.device}</td><td>${view.models.text2video}; edits: ${view.models.edit}</td><td><span class="state state-${worker.state}">${worker.state}</span></td><td>${
      worker.jobId === null ? '–' : html`<a href="/jobs/${worker.jobId}">#${worker.jobId}</a>`
    }</td><td>${worker.lastHeartbeatAt === null ? 'none yet' : `${duration(Math.max(0, view.at - worker.lastHeartbeatAt))} ago`}</td><td class="num">${worker.restarts}</td></tr>`,
  )}</tbody></table></div>
<p class="muted">An idle slot has no process: one starts with its next job.</p>`;
  return html`<section id="now-live" aria-labelledby="now-title">
<div class="title-row"><h1 id="now-title">Now</h1>
<p class="queue-state ${view.paused ? 'paused' : 'active'}" id="queue-state">${view.paused ? 'Queue paused: running jobs finish, waiting jobs do not start.' : 'Queue active'}</p>
${view.paused ? actionButton('/queue/resume', 'Resume the queue', csrf, { id: 'queue-toggle' }) : actionButton('/queue/pause', 'Pause the queue', csrf, { id: 'queue-toggle' })}</div>
<h2>Running (${view.running.length})</h2>
${running}
<h2>Waiting (${view.waiting.length}), in the order they will start</h2>
${waiting}
<h2>Workers (${view.workers.length})</h2>
${workers}
</section>`;
}
