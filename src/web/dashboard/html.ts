/**
 * HTML for the dashboard: a tagged template that escapes every value (only {@link raw} and nested
 * templates go in as markup), the page shell, and the formatting of times and durations.
 */

/** Markup that is already safe (built by {@link html}). */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

type Value = SafeHtml | string | number | boolean | null | undefined | readonly Value[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => ESCAPES[char]!);
}

function render(value: Value): string {
  if (value === null || value === undefined || value === false) return '';
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/** `html\`<p>${text}</p>\``: every interpolated value is escaped unless it is SafeHtml (arrays are joined). */
export function html(strings: TemplateStringsArray, ...values: Value[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new SafeHtml(out);
}

/** Markup written by this module's callers from constants only. */
export function raw(text: string): SafeHtml {
  return new SafeHtml(text);
}

/** JSON for a `<script type="application/json">` block: no `<` can end the element early. */
export function jsonBlock(value: unknown): SafeHtml {
  return new SafeHtml(JSON.stringify(value).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026'));
}

export type NavPage = 'now' | 'usage' | 'jobs' | 'audit';

const NAV: [NavPage, string, string][] = [
  ['now', '/', 'Now'],
  ['usage', '/usage', 'Usage'],
  ['jobs', '/jobs', 'Jobs'],
  ['audit', '/audit', 'Audit & quotas'],
];

export interface PageOptions {
  title: string;
  nav?: NavPage;
  /** The session's CSRF token (signed-in pages): forms carry it, and so does the sign-out button. */
  csrf?: string;
  /** Who is signed in, as "platform:id". */
  signedInAs?: string;
  /** Extra scripts from /assets (no inline scripts: the CSP forbids them). */
  scripts?: string[];
  body: SafeHtml;
}

/** A whole page: header with navigation, main content, scripts from /assets. */
export function page(options: PageOptions): string {
  const nav = options.nav
    ? html`<nav aria-label="Dashboard pages"><ul>${NAV.map(
        ([key, href, label]) => html`<li><a href="${href}"${key === options.nav ? raw(' aria-current="page"') : ''}>${label}</a></li>`,
      )}</ul></nav>`
    : '';
  const signOut =
    options.csrf && options.signedInAs
      ? html`<form class="sign-out" method="post" action="/sign-out">${csrfField(options.csrf)}<span class="who">${options.signedInAs}</span> <button type="submit">Sign out</button></form>`
      : '';
  const scripts = (options.scripts ?? []).map((name) => html`<script src="/assets/${name}" defer></script>`);
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${options.title} · reelbot</title>
<link rel="stylesheet" href="/assets/dashboard.css">
${scripts}
</head>
<body>
<a class="skip" href="#main">Skip to the content</a>
<header class="top"><span class="brand">reelbot</span>${nav}${signOut}</header>
<main id="main" tabindex="-1">
${options.body}
</main>
</body>
</html>
`.text;
}

export function csrfField(csrf: string): SafeHtml {
  return html`<input type="hidden" name="_csrf" value="${csrf}">`;
}

/** A small POST form with one button (an action). */
export function actionButton(action: string, label: string, csrf: string, options: { danger?: boolean; id?: string } = {}): SafeHtml {
  return html`<form class="inline" method="post" action="${action}">${csrfField(csrf)}<button type="submit"${options.id ? html` id="${options.id}"` : ''}${
    options.danger ? raw(' class="danger"') : ''
  }>${label}</button></form>`;
}

export function iso(time: number | null | undefined): string {
  return time === null || time === undefined ? '–' : new Date(time).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC');
}

/** A duration for people: "850 ms", "12 s", "3 min 5 s", "2 h 4 min". */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min${s % 60 ? ` ${s % 60} s` : ''}`;
  return `${Math.floor(s / 3600)} h${Math.floor((s % 3600) / 60) ? ` ${Math.floor((s % 3600) / 60)} min` : ''}`;
}

export function number(value: number, digits = 1): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Message refs and params may carry platform tokens: never render a field named like one. */
export function withoutSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutSecrets);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => [key, /token|secret|password/i.test(key) && !/expires/i.test(key) ? '[hidden]' : withoutSecrets(inner)]),
  );
}
