/**
 * Blob URLs: how a job's clip reaches the worker host that holds it, and how its result comes back,
 * over the coordinator's HTTP port (never through Redis, never a shared folder). Each URL names one
 * job attempt and one file, expires, caps the size, and carries an HMAC-SHA256 signature with a key
 * that only the coordinator has (kept in its database, so URLs outlive a restart).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Db } from '../store/db.js';

export type BlobMethod = 'GET' | 'PUT';

export interface BlobGrant {
  method: BlobMethod;
  jobId: number;
  attempt: number;
  /** A plain file name (no folders): `input.mp4`, `result.mp4`. */
  name: string;
  /** Unix ms. */
  expires: number;
  maxBytes: number;
}

/** File names a blob URL may carry. */
export const BLOB_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;

export class BlobSigner {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  /** The signing key kept in the database's settings (made on first use). */
  static fromDatabase(db: Db): BlobSigner {
    const row = db.prepare(`SELECT value FROM settings WHERE key = 'blob_signing_key'`).get() as { value: string } | undefined;
    if (row) return new BlobSigner(Buffer.from(row.value, 'base64'));
    const key = randomBytes(32);
    db.prepare(`INSERT INTO settings (key, value) VALUES ('blob_signing_key', ?) ON CONFLICT (key) DO NOTHING`).run(key.toString('base64'));
    const stored = db.prepare(`SELECT value FROM settings WHERE key = 'blob_signing_key'`).get() as { value: string };
    return new BlobSigner(Buffer.from(stored.value, 'base64'));
  }

  /** The path and query of a signed URL (append it to the coordinator's public base URL). */
  path(grant: BlobGrant): string {
    if (!BLOB_NAME.test(grant.name)) throw new Error(`not a blob name: ${grant.name}`);
    const query = new URLSearchParams({ exp: String(grant.expires), max: String(grant.maxBytes), sig: this.#sign(grant) });
    return `/blobs/${grant.jobId}/${grant.attempt}/${grant.name}?${query}`;
  }

  /** The grant a request carries, or why it is refused. */
  verify(method: BlobMethod, jobId: string, attempt: string, name: string, query: Record<string, unknown>, now: number): BlobGrant | { refused: string } {
    if (!/^\d+$/.test(jobId) || !/^\d+$/.test(attempt) || !BLOB_NAME.test(name)) return { refused: 'not a blob URL' };
    const expires = Number(query.exp);
    const maxBytes = Number(query.max);
    if (!Number.isSafeInteger(expires) || !Number.isSafeInteger(maxBytes) || typeof query.sig !== 'string') return { refused: 'not a signed URL' };
    const grant: BlobGrant = { method, jobId: Number(jobId), attempt: Number(attempt), name, expires, maxBytes };
    const expected = Buffer.from(this.#sign(grant));
    const given = Buffer.from(query.sig);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { refused: 'bad signature' };
    if (expires <= now) return { refused: 'expired' };
    return grant;
  }

  #sign(grant: BlobGrant): string {
    return createHmac('sha256', this.#key)
      .update([grant.method, grant.jobId, grant.attempt, grant.name, grant.expires, grant.maxBytes].join('\n'))
      .digest('base64url');
  }
}

/** A file's sha256 (hex) and size, streamed. */
export async function fileDigest(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}
