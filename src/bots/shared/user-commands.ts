/**
 * What both platforms answer to a member's own commands: `history`, `cancel` (a job by number,
 * or the caller's most recent active one, also from a Cancel button), and the rule that turns
 * any command's failure into a text for the user.
 */
import { stat } from 'node:fs/promises';
import { UserError } from '../../errors.js';
import type { JobService } from '../../jobs/job-service.js';
import type { Actor, JobRecord } from '../../jobs/types.js';
import type { Logger } from '../../log.js';
import { GENERIC_FAILURE_TEXT, historyText, refusalText, type Format } from './texts.js';

/** Jobs per history page. */
export const HISTORY_PAGE_SIZE = 10;

/** What `cancel` says when the caller has nothing to cancel. */
export const NOTHING_TO_CANCEL_TEXT = 'You have no queued or running job to cancel.';

/** Job states a cancel without a job number looks for. */
const ACTIVE_STATES: readonly JobRecord['state'][] = ['queued', 'running'];

/** One page of the actor's history, saying whether there is a next one. */
export function historyAnswer(format: Format, jobs: Pick<JobService, 'history'>, actor: Actor, page: number): string {
  const list = jobs.history(actor, page, HISTORY_PAGE_SIZE);
  const hasMore = list.length === HISTORY_PAGE_SIZE && jobs.history(actor, page + 1, HISTORY_PAGE_SIZE).length > 0;
  return historyText(format, { jobs: list, page, hasMore });
}

/**
 * The thumbnails of a history page's results that are still kept (succeeded, not deleted, the file
 * there), newest first: what `/history` shows beside its text.
 */
export async function historyThumbnails(jobs: Pick<JobService, 'history'>, actor: Actor, page: number): Promise<{ jobId: number; file: string }[]> {
  const thumbnails: { jobId: number; file: string }[] = [];
  for (const job of jobs.history(actor, page, HISTORY_PAGE_SIZE)) {
    if (job.state !== 'succeeded' || job.outputDeletedAt != null) continue;
    const file = (job.result as { thumbnail?: unknown } | null)?.thumbnail;
    if (typeof file !== 'string') continue;
    const kept = await stat(file).then((info) => info.isFile(), () => false);
    if (kept) thumbnails.push({ jobId: job.id, file });
  }
  return thumbnails;
}

/** Cancels a job (by default the actor's most recent queued or running one) and says what happened. */
export async function cancelAnswer(jobs: Pick<JobService, 'cancel' | 'history'>, actor: Actor, jobId?: number): Promise<string> {
  const id = jobId ?? latestActiveJob(jobs, actor);
  if (id === undefined) return NOTHING_TO_CANCEL_TEXT;
  const { job, outcome } = await jobs.cancel(actor, id);
  return outcome === 'cancelled' ? `Job #${job.id} is cancelled.` : `Cancelling job #${job.id}…`;
}

/** The id of the actor's most recent queued or running job (history is newest first). */
export function latestActiveJob(jobs: Pick<JobService, 'history'>, actor: Actor): number | undefined {
  const pageSize = 50;
  for (let page = 1; ; page++) {
    const list = jobs.history(actor, page, pageSize);
    const active = list.find((job) => ACTIVE_STATES.includes(job.state));
    if (active !== undefined) return active.id;
    if (list.length < pageSize) return undefined;
  }
}

/**
 * Runs a command's handler: a UserError becomes its message; anything else is logged (with
 * `context`) and answered with a short generic text, so no exception reaches the user.
 */
export async function answerSafely(handler: () => Promise<string> | string, logger: Logger, context: Record<string, unknown>): Promise<string> {
  try {
    return await handler();
  } catch (error) {
    if (error instanceof UserError) return refusalText(error);
    logger.error({ err: error, ...context }, 'command failed');
    return GENERIC_FAILURE_TEXT;
  }
}
