/**
 * A token bucket per connection, kept in memory only: writing it to the socket attachment on every
 * frame would cost more than it protects. A room hibernates only after seconds without frames, by
 * which time every bucket has refilled anyway; an eviction under load (rare: a deploy, a runtime
 * restart) starts the room's buckets full and forgets strikes.
 */
export interface TokenBucket {
  tokens: number;
  updatedAt: number;
  /** Refused frames since the client last slowed down. */
  strikes: number;
}

export function createBucket(burst: number, now: number): TokenBucket {
  return { tokens: burst, updatedAt: now, strikes: 0 };
}

export type TakeResult = "ok" | "refused" | "exhausted";

export interface RateLimits {
  perSecond: number;
  burst: number;
  maxStrikes: number;
}

/**
 * Takes one token. `refused` when the bucket is empty; `exhausted` when that makes `maxStrikes`
 * refusals (the caller then closes the connection).
 *
 * Strikes are forgiven only once the client slows down enough for its bucket to hold two tokens:
 * a flood that squeezes in a frame at each refill keeps its strikes, since it is still sending
 * past its limit; a client that backs off starts clean.
 */
export function take(bucket: TokenBucket, now: number, limits: RateLimits): TakeResult {
  const elapsed = Math.max(0, now - bucket.updatedAt);
  bucket.tokens = Math.min(limits.burst, bucket.tokens + (elapsed * limits.perSecond) / 1000);
  bucket.updatedAt = now;
  if (bucket.tokens >= 1) {
    if (bucket.tokens >= Math.min(2, limits.burst)) bucket.strikes = 0;
    bucket.tokens -= 1;
    return "ok";
  }
  bucket.strikes += 1;
  return bucket.strikes >= limits.maxStrikes ? "exhausted" : "refused";
}
