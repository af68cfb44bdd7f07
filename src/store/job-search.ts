/** The dashboard's job gallery: jobs newest first, filtered by text, state and kind, one page at a time. */
import type { Db } from './db.js';
import { JobRepo } from './job-repo.js';
import type { JobKind, JobRecord, JobState } from '../jobs/types.js';

export interface JobSearch {
  /** A job id ("42" or "#42"), part of a prompt or instruction, or part of a user's id or name. */
  text?: string;
  state?: JobState;
  kind?: JobKind;
  /** 1-based. */
  page: number;
  pageSize: number;
}

export interface JobSearchResult {
  jobs: JobRecord[];
  total: number;
}

const WHERE = `FROM jobs JOIN users ON users.id = jobs.user_id
  WHERE (@state IS NULL OR jobs.state = @state) AND (@kind IS NULL OR jobs.kind = @kind)
    AND (@like IS NULL OR jobs.id = @id OR users.external_id LIKE @like ESCAPE '\\' OR users.display_name LIKE @like ESCAPE '\\'
      OR coalesce(json_extract(jobs.params, '$.prompt'), json_extract(jobs.params, '$.instruction'), '') LIKE @like ESCAPE '\\')`;

export class JobGallery {
  readonly #jobs: JobRepo;
  readonly #ids;
  readonly #count;

  constructor(db: Db) {
    this.#jobs = new JobRepo(db);
    this.#ids = db.prepare(`SELECT jobs.id ${WHERE} ORDER BY jobs.id DESC LIMIT @limit OFFSET @offset`).pluck();
    this.#count = db.prepare(`SELECT count(*) ${WHERE}`).pluck();
  }

  search(search: JobSearch): JobSearchResult {
    const text = search.text?.trim() || undefined;
    const idText = text?.replace(/^#/, '');
    const args = {
      state: search.state ?? null,
      kind: search.kind ?? null,
      like: text === undefined ? null : `%${text.replace(/[\\%_]/g, (char) => `\\${char}`)}%`,
      id: idText !== undefined && /^\d{1,15}$/.test(idText) ? Number(idText) : -1,
    };
    const page = Math.max(1, Math.floor(search.page));
    const ids = this.#ids.all({ ...args, limit: search.pageSize, offset: (page - 1) * search.pageSize }) as number[];
    return { jobs: ids.map((id) => this.#jobs.get(id)!).filter(Boolean), total: this.#count.get(args) as number };
  }
}
