/** Reconnect delays: exponential growth up to a cap, with part of each delay random (jitter). */

export interface BackoffOptions {
  /** Ceiling of the first retry's delay, in ms. Default 500. */
  initialDelayMs: number;
  /** No delay is longer than this, in ms. Default 30 000. */
  maxDelayMs: number;
  /** Growth of the ceiling per attempt. Default 2. */
  factor: number;
  /**
   * The random share of each delay, 0 to 1. Default 0.5: attempt n waits between half of its ceiling
   * and its ceiling, so clients dropped together do not come back together.
   */
  jitter: number;
  /** Failed attempts in a row before the client gives up and closes. Default `Infinity`. */
  maxAttempts: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = {
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: Number.POSITIVE_INFINITY,
};

/** Fills in defaults and checks the values; a bad value is a programmer mistake (`TypeError`). */
export function resolveBackoff(options: Partial<BackoffOptions> = {}): BackoffOptions {
  const o = { ...DEFAULT_BACKOFF, ...options };
  const bad = (name: string, why: string) => new TypeError(`reconnect.${name} ${why}`);
  if (!(o.initialDelayMs >= 0)) throw bad("initialDelayMs", "must be ≥ 0");
  if (!(o.maxDelayMs >= o.initialDelayMs)) throw bad("maxDelayMs", "must be ≥ initialDelayMs");
  if (!(o.factor >= 1)) throw bad("factor", "must be ≥ 1");
  if (!(o.jitter >= 0 && o.jitter <= 1)) throw bad("jitter", "must be between 0 and 1");
  if (!(o.maxAttempts >= 0)) throw bad("maxAttempts", "must be ≥ 0");
  return o;
}

/** The longest delay of attempt `attempt` (1 for the first retry). */
export function backoffCeiling(attempt: number, o: BackoffOptions): number {
  return Math.min(o.maxDelayMs, o.initialDelayMs * o.factor ** Math.max(0, attempt - 1));
}

/**
 * The delay before attempt `attempt`: in `[ceiling × (1 − jitter), ceiling]`.
 *
 * @example backoffDelay(3, resolveBackoff()) // between 1000 and 2000 ms
 */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = backoffCeiling(attempt, o);
  return Math.round(ceiling * (1 - o.jitter * random()));
}
