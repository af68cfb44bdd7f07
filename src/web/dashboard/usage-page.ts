/**
 * The "Usage" page: jobs and GPU-seconds per day for a chosen period, by kind, by guild/workspace
 * and for the top users; the failure rate and p50/p95 duration. Totals, top users and groups come
 * from the job service's usage report, which sums the same ledger rows as `reelbot usage` with the
 * same period rules (`--since` a date, `--until` a date included). The charts are drawn by
 * Chart.js, served from the bot itself; every chart has its numbers in a table next to it.
 */
import type { Actor } from '../../jobs/types.js';
import type { JobService, UsageReport } from '../../jobs/job-service.js';
import type { JobKind } from '../../jobs/types.js';
import { DAY_MS, type DailyUsage, type PeriodStats, type UsageSeries } from '../../store/usage-series.js';
import { duration, html, jsonBlock, number, type SafeHtml } from './html.js';

export const PERIOD_DAYS = [7, 30, 90] as const;

export interface UsagePeriod {
  since: number;
  /** Exclusive. */
  until: number;
  /** Set when the period is "the last N days" (today included). */
  days?: number;
}

/** The period from the query: `days=7|30|90` (default 30), or `since`/`until` dates (until included). Undefined = bad input, with the reason. */
export function usagePeriod(query: Record<string, unknown>, now: number): { period: UsagePeriod } | { problem: string } {
  const tomorrow = Math.floor(now / DAY_MS) * DAY_MS + DAY_MS;
  if (query.since !== undefined || query.until !== undefined) {
    const since = utcDate(query.since);
    const until = query.until === undefined || query.until === '' ? tomorrow - DAY_MS : utcDate(query.until);
    if (since === undefined || until === undefined) return { problem: 'Dates are written YYYY-MM-DD (UTC), for example 2024-06-01.' };
    if (until < since) return { problem: 'The period’s last day must not be before its first.' };
    if ((until - since) / DAY_MS > 366) return { problem: 'A period is at most 366 days long.' };
    return { period: { since, until: until + DAY_MS } };
  }
  const days = query.days === undefined ? 30 : Number(query.days);
  if (!(PERIOD_DAYS as readonly number[]).includes(days)) return { problem: `Choose a period of ${PERIOD_DAYS.join(', ')} days, or give dates.` };
  return { period: { since: tomorrow - days * DAY_MS, until: tomorrow, days } };
}

function utcDate(value: unknown): number | undefined {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(value)) return undefined;
  const time = Date.parse(`${value}T00:00:00Z`);
  return Number.isFinite(time) && new Date(time).toISOString().startsWith(value) ? time : undefined;
}

export interface UsageView {
  period: UsagePeriod;
  report: UsageReport;
  daily: DailyUsage[];
  stats: PeriodStats;
}

export function usageView(jobs: JobService, series: UsageSeries, actor: Actor, period: UsagePeriod): UsageView {
  return {
    period,
    report: jobs.usageReport(actor, { since: period.since, until: period.until }, 10),
    daily: series.daily(period.since, period.until),
    stats: series.stats(period.since, period.until),
  };
}

const day = (time: number) => new Date(time).toISOString().slice(0, 10);
const userLabel = (row: UsageReport['topUsers'][number]) =>
  row.user ? `${row.user.platform}:${row.user.externalId}${row.user.displayName ? ` (${row.user.displayName})` : ''}` : 'unknown user';
const groupLabel = (groupId: string | null) => groupId ?? '(none: direct messages and CLI)';

/** The numbers the charts draw (also the tables' numbers). */
export function chartData(view: UsageView): Record<string, unknown> {
  const days: string[] = [];
  for (let time = view.period.since; time < view.period.until; time += DAY_MS) days.push(day(time));
  const kinds: JobKind[] = ['text2video', 'edit'];
  const perDay = (kind: string, field: 'jobs' | 'gpuSeconds') =>
    days.map((label) => {
      const row = view.daily.find((entry) => entry.kind === kind && day(entry.day) === label);
      return row ? round(row[field]) : 0;
    });
  return {
    days,
    jobs: Object.fromEntries(kinds.map((kind) => [kind, perDay(kind, 'jobs')])),
    gpuSeconds: Object.fromEntries(kinds.map((kind) => [kind, perDay(kind, 'gpuSeconds')])),
    groups: { labels: view.report.byGroup.map((row) => groupLabel(row.groupId)), gpuSeconds: view.report.byGroup.map((row) => round(row.gpuSeconds)) },
    users: { labels: view.report.topUsers.map(userLabel), gpuSeconds: view.report.topUsers.map((row) => round(row.gpuSeconds)) },
  };
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

export function renderUsage(view: UsageView): SafeHtml {
  const { period, report, stats } = view;
  const choices = PERIOD_DAYS.map((days) =>
    days === period.days ? html`<li><a href="/usage?days=${days}" aria-current="true">${days} days</a></li>` : html`<li><a href="/usage?days=${days}">${days} days</a></li>`,
  );
  const data = chartData(view);
  const days = data.days as string[];
  const jobs = data.jobs as Record<string, number[]>;
  const gpu = data.gpuSeconds as Record<string, number[]>;
  const perDayRows = days
    .map((label, index) => ({ label, t: jobs.text2video![index]!, e: jobs.edit![index]!, gt: gpu.text2video![index]!, ge: gpu.edit![index]! }))
    .filter((row) => row.t + row.e !== 0 || row.gt + row.ge !== 0);
  return html`<h1>Usage</h1>
<nav aria-label="Period" class="period"><ul>${choices}</ul>
<form method="get" action="/usage" class="dates"><label>From <input type="date" name="since" value="${day(period.since)}" required></label>
<label>to <input type="date" name="until" value="${day(period.until - DAY_MS)}"></label> <button type="submit">Show</button></form></nav>
<p class="muted" id="period">${day(period.since)} to ${day(period.until - DAY_MS)} (UTC), counted by submit day, as <code>reelbot usage --since ${day(period.since)} --until ${day(period.until - DAY_MS)}</code> counts them.</p>
<div class="figures">
<div class="figure"><span class="value" id="total-jobs">${report.total.jobs}</span><span class="label">jobs charged</span></div>
<div class="figure"><span class="value" id="total-gpu">${number(report.total.gpuSeconds)}</span><span class="label">GPU-seconds</span></div>
<div class="figure"><span class="value" id="failure-rate">${number(stats.failureRate * 100)} %</span><span class="label">failure rate (${stats.failed} of ${stats.succeeded + stats.failed})</span></div>
<div class="figure"><span class="value" id="p50">${stats.p50Seconds === null ? '–' : duration(stats.p50Seconds * 1000)}</span><span class="label">p50 duration</span></div>
<div class="figure"><span class="value" id="p95">${stats.p95Seconds === null ? '–' : duration(stats.p95Seconds * 1000)}</span><span class="label">p95 duration</span></div>
</div>
<script type="application/json" id="usage-data">${jsonBlock(data)}</script>
<section class="charts">
<figure class="chart"><figcaption>Jobs per day, by kind</figcaption><div class="canvas-box"><canvas id="jobs-per-day" role="img" aria-label="Bar chart of jobs per day by kind; the numbers are in the table below"></canvas></div></figure>
<figure class="chart"><figcaption>GPU-seconds per day, by kind</figcaption><div class="canvas-box"><canvas id="gpu-per-day" role="img" aria-label="Bar chart of GPU-seconds per day by kind; the numbers are in the table below"></canvas></div></figure>
<figure class="chart"><figcaption>GPU-seconds by guild/workspace</figcaption><div class="canvas-box"><canvas id="gpu-by-group" role="img" aria-label="Bar chart of GPU-seconds by guild or workspace; the numbers are in the table below"></canvas></div></figure>
<figure class="chart"><figcaption>GPU-seconds of the top users</figcaption><div class="canvas-box"><canvas id="gpu-by-user" role="img" aria-label="Bar chart of GPU-seconds of the top users; the numbers are in the table below"></canvas></div></figure>
</section>
<h2>Per day</h2>
${perDayRows.length === 0
  ? html`<p class="empty">No jobs in this period.</p>`
  : html`<div class="scroll"><table id="per-day"><thead><tr><th scope="col">Day</th><th scope="col" class="num">Text-to-video jobs</th><th scope="col" class="num">Edit jobs</th><th scope="col" class="num">Text-to-video GPU-s</th><th scope="col" class="num">Edit GPU-s</th></tr></thead><tbody>${perDayRows.map(
      (row) => html`<tr><td>${row.label}</td><td class="num">${row.t}</td><td class="num">${row.e}</td><td class="num">${number(row.gt)}</td><td class="num">${number(row.ge)}</td></tr>`,
    )}</tbody></table></div>`}
<h2>Per guild/workspace</h2>
${report.byGroup.length === 0
  ? html`<p class="empty">None.</p>`
  : html`<div class="scroll"><table id="per-group"><thead><tr><th scope="col">Guild/workspace</th><th scope="col" class="num">Jobs</th><th scope="col" class="num">GPU-seconds</th></tr></thead><tbody>${report.byGroup.map(
      (row) => html`<tr><td>${groupLabel(row.groupId)}</td><td class="num">${row.jobs}</td><td class="num">${number(row.gpuSeconds)}</td></tr>`,
    )}</tbody></table></div>`}
<h2>Top users</h2>
${report.topUsers.length === 0
  ? html`<p class="empty">None.</p>`
  : html`<div class="scroll"><table id="top-users"><thead><tr><th scope="col">User</th><th scope="col" class="num">Jobs</th><th scope="col" class="num">GPU-seconds</th></tr></thead><tbody>${report.topUsers.map(
      (row) => html`<tr><td>${userLabel(row)}</td><td class="num">${row.jobs}</td><td class="num">${number(row.gpuSeconds)}</td></tr>`,
    )}</tbody></table></div>`}
`;
}
