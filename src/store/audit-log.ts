/** Every admin action, who did it and when. */
import type { Db } from './db.js';
import type { Platform } from '../jobs/types.js';

export interface AuditEntry {
  id: number;
  platform: Platform;
  actorId: string;
  action: string;
  target: string | null;
  details: Record<string, unknown>;
  createdAt: number;
}

export class AuditLog {
  readonly #insert;
  readonly #recent;

  constructor(db: Db) {
    this.#insert = db.prepare(`INSERT INTO admin_audit (platform, actor_id, action, target, details, created_at) VALUES (?, ?, ?, ?, ?, ?)`);
    this.#recent = db.prepare(`SELECT * FROM admin_audit ORDER BY id DESC LIMIT ?`);
  }

  record(entry: Omit<AuditEntry, 'id'>): void {
    this.#insert.run(entry.platform, entry.actorId, entry.action, entry.target, JSON.stringify(entry.details), entry.createdAt);
  }

  recent(limit = 50): AuditEntry[] {
    const rows = this.#recent.all(limit) as {
      id: number;
      platform: Platform;
      actor_id: string;
      action: string;
      target: string | null;
      details: string;
      created_at: number;
    }[];
    return rows.map((row) => ({
      id: row.id,
      platform: row.platform,
      actorId: row.actor_id,
      action: row.action,
      target: row.target,
      details: JSON.parse(row.details) as Record<string, unknown>,
      createdAt: row.created_at,
    }));
  }
}
