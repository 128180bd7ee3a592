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
 * Strikes are forgiven only once the client slows down enough for its bucket to refill to half its
 * burst (half a burst's worth of quiet: a second at the defaults): a flood that squeezes in a frame
 * at each refill keeps its strikes, since it is still sending past its limit, and so does one whose
 * frames reach a busy room in clumps; a client that backs off starts clean.
 */
export function take(bucket: TokenBucket, now: number, limits: RateLimits): TakeResult {
  refill(bucket, now, limits);
  if (bucket.tokens >= 1) {
    if (bucket.tokens >= forgiving(limits)) bucket.strikes = 0;
    bucket.tokens -= 1;
    return "ok";
  }
  bucket.strikes += 1;
  return bucket.strikes >= limits.maxStrikes ? "exhausted" : "refused";
}

/**
 * Takes one token from a connection's own bucket and one from the bucket its user shares with its
 * other connections: a user cannot multiply its rate by opening more connections. Refusals are
 * strikes on the connection, forgiven only once both buckets have refilled to half (as in `take`).
 */
export function takeShared(
  own: TokenBucket,
  shared: TokenBucket,
  now: number,
  ownLimits: RateLimits,
  sharedLimits: RateLimits,
): TakeResult {
  refill(own, now, ownLimits);
  refill(shared, now, sharedLimits);
  if (own.tokens >= 1 && shared.tokens >= 1) {
    const isSlow = own.tokens >= forgiving(ownLimits) && shared.tokens >= forgiving(sharedLimits);
    if (isSlow) own.strikes = 0;
    own.tokens -= 1;
    shared.tokens -= 1;
    return "ok";
  }
  own.strikes += 1;
  return own.strikes >= ownLimits.maxStrikes ? "exhausted" : "refused";
}

function refill(bucket: TokenBucket, now: number, limits: RateLimits): void {
  const elapsed = Math.max(0, now - bucket.updatedAt);
  bucket.tokens = Math.min(limits.burst, bucket.tokens + (elapsed * limits.perSecond) / 1000);
  bucket.updatedAt = now;
}

/** Tokens a bucket must hold again for its strikes to be forgiven. */
function forgiving(limits: RateLimits): number {
  return Math.max(Math.min(2, limits.burst), limits.burst / 2);
}
