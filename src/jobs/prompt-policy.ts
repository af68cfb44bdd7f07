/** The prompt rules every platform shares: not empty, not too long, not on the blocklist. */
import { ErrorCode, UserError } from '../errors.js';

export interface PromptPolicy {
  maxLength: number;
  blocklist: readonly RegExp[];
}

/** Compiles the configured blocklist (case-insensitive, Unicode). */
export function createPromptPolicy(config: { maxLength: number; blocklist: readonly string[] }): PromptPolicy {
  return { maxLength: config.maxLength, blocklist: config.blocklist.map((source) => new RegExp(source, 'iu')) };
}

/** The user-typed text fields of a job's parameters that the policy checks. */
export const TEXT_FIELDS = ['prompt', 'negativePrompt', 'instruction'] as const;

/**
 * Checks one text the user typed. Returns the refusal, or null when it may run.
 * @example checkText('a corgi surfing', 'prompt', policy) // null
 */
export function checkText(text: string, field: string, policy: PromptPolicy): UserError | null {
  const trimmed = text.trim();
  if (trimmed === '' && field !== 'negativePrompt') {
    return new UserError(ErrorCode.PromptEmpty, `The ${describe(field)} is empty. Describe what you want to see.`);
  }
  const length = [...trimmed].length;
  if (length > policy.maxLength) {
    return new UserError(
      ErrorCode.PromptTooLong,
      `The ${describe(field)} is ${length} characters long; the limit on this server is ${policy.maxLength}. Shorten it and try again.`,
      { context: { length, maxLength: policy.maxLength } },
    );
  }
  if (policy.blocklist.some((pattern) => pattern.test(trimmed))) {
    return new UserError(ErrorCode.PromptBlocked, `This ${describe(field)} contains words that are not allowed on this server.`);
  }
  return null;
}

/** Checks every text field present in a job's parameters. */
export function checkParams(params: Record<string, unknown>, policy: PromptPolicy): UserError | null {
  for (const field of TEXT_FIELDS) {
    const value = params[field];
    if (value === undefined) continue;
    if (typeof value !== 'string') return new UserError(ErrorCode.InvalidRequest, `The ${describe(field)} must be text.`);
    const refusal = checkText(value, field, policy);
    if (refusal) return refusal;
  }
  return null;
}

function describe(field: string): string {
  return field === 'negativePrompt' ? 'negative prompt' : field;
}
