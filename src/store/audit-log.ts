/** Every admin action: who did it, where (platform, guild/workspace, channel), what, and when. */
import type { Db } from './db.js';
import type { Platform } from '../jobs/types.js';

export interface AuditEntry {
  id: number;
  platform: Platform;
  actorId: string;
  /** The Discord guild or Slack workspace the command ran in; null for the CLI, a DM, or rows older than migration 005. */
  groupId: string | null;
  channelId: string | null;
  action: string;
  target: string | null;
  details: Record<string, unknown>;
  createdAt: number;
}

export interface AuditQuery {
  /** Only entries at or after this time (ms since the epoch). */
  since?: number;
  /** Only entries older than this id (the next page after a page that ended with it). */
  beforeId?: number;
  /** Entries to skip (page N of size L: offset (N - 1)·L). */
  offset?: number;
  limit: number;
}

interface AuditRow {
  id: number;
  platform: Platform;
  actor_id: string;
  group_id: string | null;
  channel_id: string | null;
  action: string;
  target: string | null;
  details: string;
  created_at: number;
}

export class AuditLog {
  readonly #insert;
  readonly #page;

  constructor(db: Db) {
    this.#insert = db.prepare(`INSERT INTO admin_audit (platform, actor_id, group_id, channel_id, action, target, details, created_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
    this.#page = db.prepare(`SELECT * FROM admin_audit WHERE created_at >= ? AND id < ? ORDER BY id DESC LIMIT ? OFFSET ?`);
  }

  record(entry: Omit<AuditEntry, 'id'>): void {
    this.#insert.run(entry.platform, entry.actorId, entry.groupId, entry.channelId, entry.action, entry.target, JSON.stringify(entry.details), entry.createdAt);
  }

  /** Entries newest first. */
  list(query: AuditQuery): AuditEntry[] {
    const rows = this.#page.all(query.since ?? 0, query.beforeId ?? Number.MAX_SAFE_INTEGER, query.limit, query.offset ?? 0) as AuditRow[];
    return rows.map((row) => ({
      id: row.id,
      platform: row.platform,
      actorId: row.actor_id,
      groupId: row.group_id,
      channelId: row.channel_id,
      action: row.action,
      target: row.target,
      details: JSON.parse(row.details) as Record<string, unknown>,
      createdAt: row.created_at,
    }));
  }
}
