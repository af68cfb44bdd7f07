/**
 * An online backup of the database into a new file, with `VACUUM INTO`: it reads one consistent
 * snapshot while the bot goes on writing (WAL), and the copy is compact. The copy is written beside
 * the target under a temporary name, checked, and only then linked to the target name, so the
 * target is either absent or a complete, checked copy; an existing file is never overwritten.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { Db } from './db.js';

export class BackupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackupError';
  }
}

/** Writes a checked copy of `db` to `target` (which must not exist; its folder must). Returns the copy's size. */
export function backupDatabase(db: Db, target: string): { file: string; bytes: number } {
  const file = resolve(target);
  const folder = dirname(file);
  if (existsSync(file)) throw new BackupError(`${target} already exists; the backup never overwrites a file. Choose a new name.`);
  if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new BackupError(`The folder ${folder} does not exist.`);
  const partial = join(folder, `.${basename(file)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    db.prepare('VACUUM INTO ?').run(partial);
    const copy = new Database(partial, { readonly: true, fileMustExist: true });
    try {
      const check = copy.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new BackupError(`The copy failed its check (${String(check)}); nothing was written to ${target}.`);
    } finally {
      copy.close();
    }
    try {
      // link() fails when the name was taken meanwhile: never an overwrite, never a half-written target.
      linkSync(partial, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new BackupError(`${target} already exists; the backup never overwrites a file. Choose a new name.`);
      throw error;
    }
    return { file, bytes: statSync(file).size };
  } finally {
    rmSync(partial, { force: true });
  }
}
