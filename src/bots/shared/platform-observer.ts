/**
 * What a bot adapter tells the operator's monitoring about its platform (serve's /metrics and
 * /readyz implement it): the connection going up and down, reconnects, how long acks took, and
 * rate-limit answers. Passed in the adapter's options; optional.
 */
export interface PlatformObserver {
  /** The connection to the platform is up (true) or down (false). */
  connection(connected: boolean): void;
  /** The adapter reconnected after losing the connection. */
  reconnected(): void;
  /** An interaction or command was acknowledged this long after it was sent. */
  acked(latencyMs: number): void;
  /** The platform answered "rate limited" (HTTP 429). */
  rateLimited(): void;
}

/** A one-time sign-in link to the dashboard for an admin (`/admin dashboard`). */
export interface DashboardLinks {
  link(actor: { platform: 'discord' | 'slack'; externalId: string }): Promise<{ url: string; expiresAt: number }>;
  /** How long a link works, in minutes (for the message). */
  minutes: number;
}
