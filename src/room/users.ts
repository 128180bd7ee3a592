/**
 * Per-user state in one room, so that no limit can be multiplied by opening more connections: one
 * message bucket and one signal bucket shared by all of a user's connections, a connect rate, a replay allowance in bytes
 * per minute, and the bytes queued to all of the user's sockets (closing ones included, since the
 * runtime holds their unread bytes until the client lets go of the TCP connection).
 *
 * Kept in memory: a room hibernates only after seconds without any event, by which time every
 * bucket has refilled; a churning or flooding user keeps the object awake, and so its state.
 */
import { createBucket, type RateLimits, type TakeResult, type TokenBucket, take } from "./rate-limit";

export interface UserLimits {
  messages: RateLimits;
  /** The user's signal bucket, apart from the message one (src/room/signals.ts). */
  signals: RateLimits;
  connectsPerMinute: number;
  replayBytesPerMinute: number;
}

export interface UserState {
  messages: TokenBucket;
  signals: TokenBucket;
  connects: { tokens: number; updatedAt: number };
  replay: { bytes: number; updatedAt: number };
  /** Bytes sent to this user's sockets and not yet known read, closing sockets included. */
  queued: number;
  /** Frames (and their bytes) waiting behind a token refresh on any of its sockets (src/room/inbound.ts). */
  held: { frames: number; bytes: number };
  /** Last time anything asked for this user's state: idle users are forgotten (`prune`). */
  touchedAt: number;
}

const MINUTE_MS = 60_000;

/** Refills a per-minute allowance of `capacity` and returns what is in it now. */
function refill(allowance: { tokens?: number; bytes?: number; updatedAt: number }, capacity: number, now: number) {
  const elapsed = Math.max(0, now - allowance.updatedAt);
  allowance.updatedAt = now;
  return (elapsed * capacity) / MINUTE_MS;
}

export class Users {
  readonly #byId = new Map<string, UserState>();
  readonly #limits: UserLimits;

  constructor(limits: UserLimits) {
    this.#limits = limits;
  }

  get(userId: string, now = Date.now()): UserState {
    let state = this.#byId.get(userId);
    if (state === undefined) {
      const { messages, signals, connectsPerMinute, replayBytesPerMinute } = this.#limits;
      state = {
        messages: createBucket(messages.burst, now),
        signals: createBucket(signals.burst, now),
        connects: { tokens: connectsPerMinute, updatedAt: now },
        replay: { bytes: replayBytesPerMinute, updatedAt: now },
        queued: 0,
        held: { frames: 0, bytes: 0 },
        touchedAt: now,
      };
      this.#byId.set(userId, state);
    }
    state.touchedAt = now;
    return state;
  }

  /**
   * Forgets users with no socket left whose state has been idle for a minute: by then every
   * allowance has refilled, so forgetting them changes nothing but the memory they took.
   */
  prune(now: number, hasSockets: (userId: string) => boolean): void {
    for (const [userId, state] of this.#byId) {
      if (now - state.touchedAt > MINUTE_MS && state.queued === 0 && state.held.frames === 0 && !hasSockets(userId))
        this.#byId.delete(userId);
    }
  }

  /** Takes one token of the user's shared message bucket. */
  takeMessage(userId: string, now: number): TakeResult {
    return take(this.get(userId, now).messages, now, this.#limits.messages);
  }

  /**
   * Takes one connect: `undefined` when allowed, else the seconds until the next one is (for a
   * `Retry-After`). The allowance holds a minute's worth, refilled continuously.
   */
  takeConnect(userId: string, now: number): number | undefined {
    const connects = this.get(userId, now).connects;
    const capacity = this.#limits.connectsPerMinute;
    connects.tokens = Math.min(capacity, connects.tokens + refill(connects, capacity, now));
    if (connects.tokens >= 1) {
      connects.tokens -= 1;
      return undefined;
    }
    return Math.max(1, Math.ceil(((1 - connects.tokens) * MINUTE_MS) / capacity / 1000));
  }

  /** Replay bytes the user may be sent now (what is left of its per-minute allowance). */
  replayAllowance(userId: string, now: number): number {
    const replay = this.get(userId, now).replay;
    const capacity = this.#limits.replayBytesPerMinute;
    replay.bytes = Math.min(capacity, replay.bytes + refill(replay, capacity, now));
    return replay.bytes;
  }

  spendReplay(userId: string, bytes: number): void {
    const replay = this.get(userId).replay;
    replay.bytes = Math.max(0, replay.bytes - bytes);
  }

  queued(userId: string): number {
    return this.#byId.get(userId)?.queued ?? 0;
  }
}
