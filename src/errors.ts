/**
 * Errors with meaning. Every expected failure has a stable `code` (for logs, tests and
 * localisation) and a `userMessage` written for the person who typed the command; a stack trace
 * never reaches a user. Foreign throws are wrapped once by {@link asAppError}.
 */

export const ErrorCode = {
  // Refusals of a request (shown to the user as written).
  PromptEmpty: 'prompt_empty',
  PromptTooLong: 'prompt_too_long',
  PromptBlocked: 'prompt_blocked',
  UserBanned: 'user_banned',
  QuotaJobsPerDay: 'quota_jobs_per_day',
  QuotaGpuPerDay: 'quota_gpu_per_day',
  QuotaGpuPerMonth: 'quota_gpu_per_month',
  QuotaPending: 'quota_pending',
  /** More frames or steps than the user's tier allows. */
  QuotaWorkTooLarge: 'quota_work_too_large',
  /** A submit sooner than the tier's cooldown after the previous one. */
  QuotaCooldown: 'quota_cooldown',
  /** The job's estimate is longer than `jobs.timeoutSeconds`: it would be stopped before it finished. */
  JobTooLong: 'job_too_long',
  /** A job from a direct message while `quota.allowDirectMessages` is off. */
  DirectMessagesOff: 'direct_messages_off',
  /** Too many clip downloads at once, for the user or in total. */
  DownloadsBusy: 'downloads_busy',
  GroupQuotaJobsPerDay: 'group_quota_jobs_per_day',
  GroupQuotaGpuPerDay: 'group_quota_gpu_per_day',
  GroupQuotaGpuPerMonth: 'group_quota_gpu_per_month',
  QueuePaused: 'queue_paused',
  /** Another process held the database's write lock for too long. */
  DatabaseBusy: 'database_busy',
  ShuttingDown: 'shutting_down',
  InvalidRequest: 'invalid_request',
  JobNotFound: 'job_not_found',
  NotJobOwner: 'not_job_owner',
  JobAlreadyFinished: 'job_already_finished',
  NotAdmin: 'not_admin',
  // Refusals of an uploaded clip (src/media/input.ts).
  InputEmpty: 'input_empty',
  InputFileTooLarge: 'input_file_too_large',
  InputNotVideo: 'input_not_video',
  InputPlaylist: 'input_playlist',
  InputUnsupportedFormat: 'input_unsupported_format',
  InputCorrupt: 'input_corrupt',
  InputNoVideoStream: 'input_no_video_stream',
  InputMultipleVideoStreams: 'input_multiple_video_streams',
  InputUnsupportedCodec: 'input_unsupported_codec',
  InputDimensionsTooLarge: 'input_dimensions_too_large',
  InputTooLong: 'input_too_long',
  InputTooManyFrames: 'input_too_many_frames',
  InputTimedOut: 'input_timed_out',
  /** A picture to animate that is not a PNG, JPEG or WebP (an SVG, a web page, a video…). */
  InputNotImage: 'input_not_image',
  /** A clip link that is not on the platform's own file hosts (or not https). */
  InputHostNotAllowed: 'input_host_not_allowed',
  /** The platform would not hand over the clip (403, a login page, a dropped connection…). */
  InputDownloadFailed: 'input_download_failed',
  // Outcomes of a run.
  WorkerCrashed: 'worker_crashed',
  /** The worker process stopped sending heartbeats. */
  WorkerHung: 'worker_hung',
  /** The engine reported no progress for `jobs.stallTimeoutSeconds` while running a job. */
  EngineStalled: 'engine_stalled',
  /** The engine and the job's models were not ready within `jobs.modelLoadTimeoutSeconds`. */
  ModelLoadTimedOut: 'model_load_timed_out',
  JobTimedOut: 'job_timed_out',
  Cancelled: 'cancelled',
  EngineFailed: 'engine_failed',
  EngineUnavailable: 'engine_unavailable',
  Interrupted: 'interrupted',
  /** A finished video that no re-encode could fit into the platform's upload limit. */
  OutputTooLarge: 'output_too_large',
  Unknown: 'unknown',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class AppError extends Error {
  readonly code: ErrorCode;
  /** Safe to show to the user as it is. */
  readonly userMessage: string;
  /** Extra facts for the adapters (remaining quota, queue positions…). */
  readonly context: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, userMessage: string, options: { cause?: unknown; context?: Record<string, unknown> } = {}) {
    super(userMessage, { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.userMessage = userMessage;
    this.context = options.context ?? {};
  }
}

/** A request refused because of what the user asked for or who they are; logged at info. */
export class UserError extends AppError {}

/** Wraps anything thrown into an AppError without losing the original as `cause`. */
export function asAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  return new AppError(ErrorCode.Unknown, 'Something went wrong on our side.', { cause: error });
}
