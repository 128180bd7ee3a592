/**
 * A token bucket per connection. Kept in memory only: a room hibernates only after seconds without
 * frames, by which time every bucket has refilled, so a wake that starts it full changes nothing.
 */
export interface TokenBucket {
  tokens: number;
  updatedAt: number;
  /** Refused frames in a row. */
  strikes: number;
}

export function createBucket(burst: number, now: number): TokenBucket {
  return { tokens: burst, updatedAt: now, strikes: 0 };
}

export type TakeResult = "ok" | "refused" | "exhausted";

/**
 * Takes one token. `refused` when the bucket is empty; `exhausted` when that makes `maxStrikes`
 * refusals in a row (the caller then closes the connection).
 */
export function take(
  bucket: TokenBucket,
  now: number,
  limits: { perSecond: number; burst: number; maxStrikes: number },
): TakeResult {
  const elapsed = Math.max(0, now - bucket.updatedAt);
  bucket.tokens = Math.min(limits.burst, bucket.tokens + (elapsed * limits.perSecond) / 1000);
  bucket.updatedAt = now;
  if (bucket.tokens >= 1) {
    bucket.tokens -= 1;
    bucket.strikes = 0;
    return "ok";
  }
  bucket.strikes += 1;
  return bucket.strikes >= limits.maxStrikes ? "exhausted" : "refused";
}
