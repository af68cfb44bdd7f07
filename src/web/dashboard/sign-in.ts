/**
 * Signing in to the dashboard. An admin gets a one-time link (`reelbot dashboard link`, or
 * `/admin dashboard` in Discord or Slack, ephemerally) that expires in minutes. Opening it shows a
 * "Sign in" button (so a link preview that fetches the URL does not use it up); pressing it trades
 * the link for a session: an HttpOnly, SameSite=Strict cookie. Every action form carries a CSRF
 * token derived from the session (an HMAC of its token), checked on every POST.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../config.js';
import type { Actor, Platform } from '../../jobs/types.js';
import { DashboardSignIn, type Session, type SignInActor } from '../../store/dashboard-sign-in.js';
import { isBusyError, type Db } from '../../store/db.js';
import { StoreClosedError, type StoreWriter } from '../../store/writer.js';
import { publicBaseUrl } from '../http-server.js';
import { html, page } from './html.js';

export const SESSION_COOKIE = 'reelbot_session';
/** How long a sign-in waits for another process's write lock before it is asked to try again. */
const SIGN_IN_LOCK_WAIT_MS = 5_000;

export interface DashboardLink {
  url: string;
  expiresAt: number;
}

/** A new one-time sign-in link for an admin (the caller checked that they are one). */
export function createDashboardLink(
  db: Db,
  config: Config,
  actor: { platform: Platform; externalId: string },
  options: { now?: number; baseUrl?: string } = {},
): DashboardLink {
  const now = options.now ?? Date.now();
  const expiresAt = now + config.http.dashboardLinkMinutes * 60_000;
  const token = new DashboardSignIn(db).createLink({ platform: actor.platform, actorId: actor.externalId }, now, expiresAt);
  return { url: `${options.baseUrl ?? publicBaseUrl(config)}/login?token=${token}`, expiresAt };
}

/** The CSRF token of a session: an HMAC of its cookie token, so nothing more is stored. */
export function csrfTokenOf(sessionToken: string): string {
  return createHmac('sha256', sessionToken).update('reelbot dashboard csrf').digest('base64url');
}

export function csrfMatches(sessionToken: string, given: unknown): boolean {
  if (typeof given !== 'string' || given === '') return false;
  const expected = Buffer.from(csrfTokenOf(sessionToken));
  const actual = Buffer.from(given);
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}

export interface SignedIn {
  session: Session;
  token: string;
  csrf: string;
  actor: Actor;
}

export function actorOf(session: SignInActor): Actor {
  return { platform: session.platform, externalId: session.actorId, isAdmin: true };
}

export function who(session: SignInActor): string {
  return `${session.platform}:${session.actorId}`;
}

export interface SignInOptions {
  db: Db;
  /** The app's writer queue: a sign-in's writes wait their turn and never hold the event loop on a foreign lock. */
  writer: StoreWriter;
  config: Config;
  isAdmin(actor: Actor): boolean;
  now(): number;
}

/** The sign-in side: link pages, session lookup, cookies. */
export class SignInDesk {
  readonly #store: DashboardSignIn;
  readonly #options: SignInOptions;

  constructor(options: SignInOptions) {
    this.#options = options;
    this.#store = new DashboardSignIn(options.db);
  }

  /** The signed-in admin of a request, or undefined (no cookie, an ended or expired session, no longer an admin). */
  signedIn(request: FastifyRequest): SignedIn | undefined {
    const token = request.cookies[SESSION_COOKIE];
    if (!token) return undefined;
    const session = this.#store.session(token, this.#options.now());
    if (!session) return undefined;
    const actor = actorOf(session);
    if (!this.#options.isAdmin(actor)) {
      void this.#options.writer.write(() => this.#store.endSession(token)).catch(() => undefined); // it is refused either way
      return undefined;
    }
    return { session, token, csrf: csrfTokenOf(token), actor };
  }

  /** GET /login?token=…: a page with the button that uses the link. */
  loginPage(token: string | undefined, reply: FastifyReply): FastifyReply {
    if (!token) return this.#refuse(reply, 400, 'This address needs the sign-in link’s token. Get a link with “reelbot dashboard link” or /admin dashboard.');
    return reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(
        page({
          title: 'Sign in',
          body: html`<section class="card narrow"><h1>Sign in to reelbot</h1>
<p>This one-time link signs this browser in to the bot’s dashboard. It works once, for a few minutes.</p>
<form method="post" action="/login"><input type="hidden" name="token" value="${token}"><button type="submit" id="sign-in" autofocus>Sign in</button></form></section>`,
        }),
      );
  }

  /** POST /login: uses the link and starts the session, or says why not. */
  async login(token: unknown, reply: FastifyReply): Promise<FastifyReply> {
    if (typeof token !== 'string' || token === '') return this.#refuse(reply, 400, 'The sign-in form was sent without its link token. Open the link again.');
    const now = this.#options.now();
    const used = await this.#write(() => this.#store.useLink(token, now));
    if (used === 'busy') return this.#busy(reply);
    if (!used.ok) {
      const minutes = this.#options.config.http.dashboardLinkMinutes;
      const fresh = 'Get a new one with “reelbot dashboard link” on the bot’s machine, or /admin dashboard in Discord or Slack.';
      const text =
        used.reason === 'expired'
          ? `This sign-in link has expired (links work for ${minutes} minute${minutes === 1 ? '' : 's'}). ${fresh}`
          : used.reason === 'used'
            ? `This sign-in link was already used: each link signs in once. ${fresh}`
            : `This is not a sign-in link of this bot. ${fresh}`;
      return this.#refuse(reply, 401, text);
    }
    if (!this.#options.isAdmin(actorOf(used.actor))) {
      return this.#refuse(reply, 403, `The link was made for ${who(used.actor)}, who is not an admin of this bot. Only admins can use the dashboard.`);
    }
    const hours = this.#options.config.http.dashboardSessionHours;
    const session = await this.#write(() => this.#store.createSession(used.actor, now, now + hours * 3_600_000));
    if (session === 'busy') return this.#busy(reply);
    return reply
      .setCookie(SESSION_COOKIE, session, {
        httpOnly: true,
        sameSite: 'strict',
        path: '/',
        secure: (this.#options.config.http.publicUrl ?? '').startsWith('https:'),
        maxAge: hours * 3600,
      })
      .redirect('/', 303);
  }

  async signOut(signedIn: SignedIn, reply: FastifyReply): Promise<FastifyReply> {
    if ((await this.#write(() => this.#store.endSession(signedIn.token))) === 'busy') return this.#busy(reply);
    return reply.clearCookie(SESSION_COOKIE, { path: '/' }).redirect('/signed-out', 303);
  }

  /** The page for a request without a (valid) session. */
  signInNeeded(reply: FastifyReply): FastifyReply {
    return this.#refuse(reply, 401, 'Sign in first: run “reelbot dashboard link” on the bot’s machine, or use /admin dashboard in Discord or Slack, and open the link it gives you.');
  }

  /** A write through the writer queue; 'busy' when another process held the database too long. */
  async #write<T>(write: () => T): Promise<T | 'busy'> {
    try {
      return await this.#options.writer.write(write, { deadlineMs: SIGN_IN_LOCK_WAIT_MS });
    } catch (error) {
      if (isBusyError(error) || error instanceof StoreClosedError) return 'busy';
      throw error;
    }
  }

  #busy(reply: FastifyReply): FastifyReply {
    return this.#refuse(reply, 503, 'The bot’s database is busy right now, so nothing was changed. Please try again in a moment (a link that was not used still works).');
  }

  #refuse(reply: FastifyReply, status: number, text: string): FastifyReply {
    return reply
      .code(status)
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(page({ title: status === 403 ? 'Not allowed' : status === 503 ? 'Busy' : 'Sign in', body: html`<section class="card narrow"><h1>${status === 403 ? 'Not allowed' : status === 503 ? 'Try again' : 'Not signed in'}</h1><p id="refusal">${text}</p></section>` }));
  }
}
