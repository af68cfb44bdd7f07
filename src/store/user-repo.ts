/** Platform users: tier, ban, admin quota overrides. */
import type { Db } from './db.js';
import type { Platform, UserRecord } from '../jobs/types.js';

interface UserRow {
  id: number;
  platform: Platform;
  external_id: string;
  display_name: string | null;
  tier: string | null;
  banned: number;
  ban_reason: string | null;
  quota_override: string | null;
  created_at: number;
}

function toRecord(row: UserRow): UserRecord {
  return {
    id: row.id,
    platform: row.platform,
    externalId: row.external_id,
    displayName: row.display_name,
    tier: row.tier,
    banned: row.banned === 1,
    banReason: row.ban_reason,
    quotaOverride: row.quota_override === null ? null : (JSON.parse(row.quota_override) as UserRecord['quotaOverride']),
    createdAt: row.created_at,
  };
}

export class UserRepo {
  readonly #upsert;
  readonly #byExternal;
  readonly #byId;
  readonly #setTier;
  readonly #setBan;
  readonly #setOverride;

  constructor(db: Db) {
    this.#upsert = db.prepare(`INSERT INTO users (platform, external_id, display_name, created_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (platform, external_id) DO UPDATE SET display_name = coalesce(excluded.display_name, display_name)
      RETURNING *`);
    this.#byExternal = db.prepare(`SELECT * FROM users WHERE platform = ? AND external_id = ?`);
    this.#byId = db.prepare(`SELECT * FROM users WHERE id = ?`);
    this.#setTier = db.prepare(`UPDATE users SET tier = ? WHERE id = ?`);
    this.#setBan = db.prepare(`UPDATE users SET banned = ?, ban_reason = ? WHERE id = ?`);
    this.#setOverride = db.prepare(`UPDATE users SET quota_override = ? WHERE id = ?`);
  }

  /** The user, created on first sight. */
  upsert(platform: Platform, externalId: string, displayName: string | null, now: number): UserRecord {
    return toRecord(this.#upsert.get(platform, externalId, displayName, now) as UserRow);
  }

  find(platform: Platform, externalId: string): UserRecord | undefined {
    const row = this.#byExternal.get(platform, externalId) as UserRow | undefined;
    return row && toRecord(row);
  }

  get(id: number): UserRecord | undefined {
    const row = this.#byId.get(id) as UserRow | undefined;
    return row && toRecord(row);
  }

  setTier(id: number, tier: string | null): void {
    this.#setTier.run(tier, id);
  }

  setBanned(id: number, banned: boolean, reason: string | null): void {
    this.#setBan.run(banned ? 1 : 0, banned ? reason : null, id);
  }

  setQuotaOverride(id: number, override: UserRecord['quotaOverride']): void {
    this.#setOverride.run(override === null ? null : JSON.stringify(override), id);
  }
}
