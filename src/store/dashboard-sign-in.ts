/**
 * Dashboard sign-in: one-time links and browser sessions. The tokens themselves go to the
 * operator (a printed link, a cookie); only their SHA-256 hashes are stored, so a copy of the
 * database or a log of it signs no one in.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Db } from './db.js';
import type { Platform } from '../jobs/types.js';

/** Who a link or session belongs to. */
export interface SignInActor {
  platform: Platform;
  actorId: string;
}

export interface Session extends SignInActor {
  expiresAt: number;
}

/** Why a link did not sign anyone in. */
export type LinkRefusal = 'unknown' | 'expired' | 'used';

/** 32 random bytes, URL-safe: what a link or a cookie carries. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export class DashboardSignIn {
  readonly #db: Db;
  readonly #insertLink;
  readonly #link;
  readonly #useLink;
  readonly #insertSession;
  readonly #session;
  readonly #deleteSession;
  readonly #pruneLinks;
  readonly #pruneSessions;

  constructor(db: Db) {
    this.#db = db;
    this.#insertLink = db.prepare(`INSERT INTO dashboard_links (token_hash, platform, actor_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`);
    this.#link = db.prepare(`SELECT platform, actor_id AS actorId, expires_at AS expiresAt, used_at AS usedAt FROM dashboard_links WHERE token_hash = ?`);
    this.#useLink = db.prepare(`UPDATE dashboard_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL`);
    this.#insertSession = db.prepare(`INSERT INTO dashboard_sessions (token_hash, platform, actor_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`);
    this.#session = db.prepare(`SELECT platform, actor_id AS actorId, expires_at AS expiresAt FROM dashboard_sessions WHERE token_hash = ? AND expires_at > ?`);
    this.#deleteSession = db.prepare(`DELETE FROM dashboard_sessions WHERE token_hash = ?`);
    this.#pruneLinks = db.prepare(`DELETE FROM dashboard_links WHERE expires_at <= ?`);
    this.#pruneSessions = db.prepare(`DELETE FROM dashboard_sessions WHERE expires_at <= ?`);
  }

  /** A new one-time link token for the actor, valid until `expiresAt`. */
  createLink(actor: SignInActor, now: number, expiresAt: number): string {
    const token = newToken();
    this.#insertLink.run(hashToken(token), actor.platform, actor.actorId, now, expiresAt);
    return token;
  }

  /**
   * Uses a link: the first use before it expires returns its actor and marks it used (in one
   * transaction, so two browsers racing with one link cannot both get in).
   */
  useLink(token: string, now: number): { ok: true; actor: SignInActor } | { ok: false; reason: LinkRefusal } {
    const hash = hashToken(token);
    return this.#db
      .transaction(() => {
        const row = this.#link.get(hash) as (SignInActor & { expiresAt: number; usedAt: number | null }) | undefined;
        if (!row) return { ok: false as const, reason: 'unknown' as const };
        if (row.usedAt !== null) return { ok: false as const, reason: 'used' as const };
        if (row.expiresAt <= now) return { ok: false as const, reason: 'expired' as const };
        this.#useLink.run(now, hash);
        return { ok: true as const, actor: { platform: row.platform, actorId: row.actorId } };
      })
      .immediate();
  }

  /** Starts a session; returns the token for the cookie. Expired links and sessions are removed meanwhile. */
  createSession(actor: SignInActor, now: number, expiresAt: number): string {
    const token = newToken();
    this.#db
      .transaction(() => {
        this.#pruneLinks.run(now - 24 * 60 * 60 * 1000); // a used or expired link is kept a day, so a reuse is told apart from a typo
        this.#pruneSessions.run(now);
        this.#insertSession.run(hashToken(token), actor.platform, actor.actorId, now, expiresAt);
      })
      .immediate();
    return token;
  }

  /** The live session of a cookie token, or undefined. */
  session(token: string, now: number): Session | undefined {
    return this.#session.get(hashToken(token), now) as Session | undefined;
  }

  endSession(token: string): void {
    this.#deleteSession.run(hashToken(token));
  }
}
