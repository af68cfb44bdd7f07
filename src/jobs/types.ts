/**
 * Plain data shared by the job core and its adapters. No platform types (Discord interactions,
 * Slack blocks) and no engine types beyond the engine contract appear here.
 */
import type { ErrorCode } from '../errors.js';

/** What a job does: make a video from a prompt, or edit a clip by an instruction. */
export const JOB_KINDS = ['text2video', 'edit'] as const;
export type JobKind = (typeof JOB_KINDS)[number];
/**
 * Job parameters only the operator may set (`reelbot render|edit --draws / --dump-latents`): they
 * name files on the worker's machine. JobService.submit refuses them from any platform but the CLI.
 */
export const OPERATOR_ONLY_PARAMS = ['draws', 'dumpLatents'] as const;
export type Platform = 'discord' | 'slack' | 'cli';
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const FINISHED_STATES: readonly JobState[] = ['succeeded', 'failed', 'cancelled'];

export interface UserRecord {
  id: number;
  platform: Platform;
  externalId: string;
  displayName: string | null;
  /** NULL in the database means the configured default tier; resolved here. */
  tier: string | null;
  banned: boolean;
  banReason: string | null;
  quotaOverride: Partial<Record<'jobsPerDay' | 'gpuSecondsPerDay' | 'gpuSecondsPerMonth' | 'maxPendingJobs', number | null>> | null;
  createdAt: number;
}

export interface JobRecord {
  id: number;
  kind: JobKind;
  params: Record<string, unknown>;
  state: JobState;
  userId: number;
  /** The owner's id on their platform. */
  userExternalId: string;
  platform: Platform;
  groupId: string | null;
  channelId: string | null;
  messageRefs: Record<string, unknown>;
  seed: number;
  priority: number;
  device: string | null;
  attempts: number;
  estimatedGpuSeconds: number;
  gpuSeconds: number | null;
  result: unknown;
  errorCode: string | null;
  error: string | null;
  queuedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  cancelRequestedAt: number | null;
  /** The coordinator instance that started its current attempt (its lease keeps recovery elsewhere off it). */
  ownerInstance: string | null;
  /** When its stored output was deleted (the Delete button); null while it is kept. */
  outputDeletedAt?: number | null;
  /** When the adapter's final message for the finished job went out (null: not yet, or not finished). */
  deliveredAt: number | null;
}

/** Who asks: the platform user, and whether the adapter verified them as an admin. */
export interface Actor {
  platform: Platform;
  externalId: string;
  displayName?: string;
  isAdmin?: boolean;
  /** Where the actor asked from (recorded with an admin action): Discord guild or Slack workspace, and channel. */
  groupId?: string;
  channelId?: string;
}

/** What a bot adapter submits. */
export interface JobRequest {
  actor: Actor;
  kind: JobKind;
  /** Engine parameters; `prompt` (text2video) or `instruction` (edit) is checked by the prompt policy. */
  params: Record<string, unknown>;
  seed?: number;
  /** Discord guild or Slack workspace. */
  groupId?: string;
  /**
   * Submitted in a direct message with the bot, outside any guild (a Discord DM): refused unless
   * `quota.allowDirectMessages`; no group cap applies, the user's own limits do.
   */
  directMessage?: boolean;
  channelId?: string;
  messageRefs?: Record<string, unknown>;
  /** The platform's interaction / event id: a redelivered event never makes a second job. */
  eventId?: string;
  /** Admin jobs jump the line (only honoured for admins). */
  priority?: 'normal' | 'high';
}

export interface Usage {
  jobs: number;
  gpuSeconds: number;
}

/** What the user has left; `null` means unlimited. */
export interface QuotaLeft {
  tier: string;
  jobsToday: number | null;
  gpuSecondsToday: number | null;
  gpuSecondsThisMonth: number | null;
  pendingSlots: number;
}

export interface SubmitResult {
  job: JobRecord;
  /** True when the event id was seen before: `job` is the job it made then. */
  duplicate: boolean;
  /** 1 = next to start; 0 = already running or finished. */
  position: number;
  etaMs: number;
  quotaLeft: QuotaLeft;
}

/**
 * A live preview of a running job: a small PNG (a few frames side by side, projected from the
 * latents without a VAE call). Sent with some progress events; never stored.
 */
export interface JobPreview {
  /** PNG bytes, base64. */
  png: string;
  width: number;
  height: number;
  /** The frames shown, left to right. */
  frames: number[];
  /** The denoising step (UNet call) it shows. */
  step: number;
}

export interface JobProgress {
  step: number;
  total: number;
  /** Stage of the work ("loading", "denoising", "encoding"…). */
  stage?: string;
  /** What the frames look like now (only while denoising, at most every few seconds; off when the operator turned previews off). */
  preview?: JobPreview;
}

/** The typed event stream that bot adapters follow. */
export type JobEvent =
  | { type: 'queued'; job: JobRecord; position: number; etaMs: number }
  | { type: 'started'; job: JobRecord; device: string; attempt: number }
  | { type: 'progress'; job: JobRecord; progress: JobProgress }
  | { type: 'succeeded'; job: JobRecord; result: unknown; gpuSeconds: number }
  | { type: 'failed'; job: JobRecord; code: ErrorCode; message: string; refunded: boolean }
  | { type: 'cancelled'; job: JobRecord; refunded: boolean };
