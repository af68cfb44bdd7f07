/** The "Audit & quotas" page: the latest admin actions, and the effective quota settings (read-only). */
import type { Config } from '../../config.js';
import type { AuditEntry } from '../../store/audit-log.js';
import { html, iso, number, withoutSecrets, type SafeHtml } from './html.js';

export const AUDIT_SHOWN = 200;

const limit = (value: number | null, unit = '') => (value === null ? 'unlimited' : `${number(value, 0)}${unit}`);

export function renderAudit(entries: AuditEntry[], config: Config): SafeHtml {
  const { quota } = config;
  const tiers = Object.entries(quota.tiers);
  const groups = Object.entries(quota.groupOverrides);
  return html`<h1>Audit log</h1>
<p class="muted">Admin actions from every platform, the command line and this dashboard, newest first (the latest ${AUDIT_SHOWN}).</p>
${entries.length === 0
  ? html`<p class="empty">No admin action yet.</p>`
  : html`<div class="scroll"><table id="audit"><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">Target</th><th scope="col">Details</th></tr></thead><tbody>${entries.map(
      (entry) => html`<tr><td>${iso(entry.createdAt)}</td><td>${entry.platform}:${entry.actorId}</td><td><code>${entry.action}</code></td><td>${entry.target ?? '–'}</td><td><code>${JSON.stringify(withoutSecrets(entry.details))}</code></td></tr>`,
    )}</tbody></table></div>`}
<h2>Quota settings</h2>
<p class="muted">In effect now (from the environment and the config file; change them there and restart). New users get the tier <strong>${quota.defaultTier}</strong>; jobs in direct messages are ${
    quota.allowDirectMessages ? 'allowed' : 'refused'
  }; a job may run ${config.jobs.timeoutSeconds} s.</p>
<div class="scroll"><table id="tiers"><thead><tr><th scope="col">Tier</th><th scope="col" class="num">Jobs/day</th><th scope="col" class="num">GPU-s/day</th><th scope="col" class="num">GPU-s/month</th><th scope="col" class="num">Waiting at once</th><th scope="col" class="num">Max frames</th><th scope="col" class="num">Max steps</th><th scope="col" class="num">Cooldown</th></tr></thead><tbody>${tiers.map(
    ([name, tier]) => html`<tr><th scope="row">${name}</th><td class="num">${limit(tier.jobsPerDay)}</td><td class="num">${limit(tier.gpuSecondsPerDay)}</td><td class="num">${limit(tier.gpuSecondsPerMonth)}</td><td class="num">${tier.maxPendingJobs}</td><td class="num">${limit(tier.maxFrames)}</td><td class="num">${limit(tier.maxSteps)}</td><td class="num">${tier.cooldownSeconds} s</td></tr>`,
  )}</tbody></table></div>
<h3>Per guild/workspace</h3>
<div class="scroll"><table id="group-caps"><thead><tr><th scope="col">Guild/workspace</th><th scope="col" class="num">Jobs/day</th><th scope="col" class="num">GPU-s/day</th><th scope="col" class="num">GPU-s/month</th></tr></thead><tbody>
<tr><th scope="row">every one</th><td class="num">${limit(quota.group.jobsPerDay)}</td><td class="num">${limit(quota.group.gpuSecondsPerDay)}</td><td class="num">${limit(quota.group.gpuSecondsPerMonth)}</td></tr>
${groups.map(
  ([id, caps]) => html`<tr><th scope="row">${id}</th><td class="num">${limit(caps.jobsPerDay)}</td><td class="num">${limit(caps.gpuSecondsPerDay)}</td><td class="num">${limit(caps.gpuSecondsPerMonth)}</td></tr>`,
)}</tbody></table></div>`;
}
