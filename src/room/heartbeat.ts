/** What the heartbeat alarm decides for one connection. Pure, so it is tested without a clock. */
import { CLOSE_CODES } from "../protocol";

export type HeartbeatVerdict =
  | { action: "keep" }
  | { action: "close"; code: typeof CLOSE_CODES.tokenExpired | typeof CLOSE_CODES.heartbeatTimeout; reason: string };

export function judgeConnection(input: {
  now: number;
  /** Token expiry, ms. No clock tolerance: that applies only when a token is verified. */
  exp: number;
  /** Latest of: connect, last frame, last auto-answered ping. */
  lastActivity: number;
  /** When the oldest heartbeat the client has not echoed went out; `undefined` if none. */
  unechoedSince: number | undefined;
  timeoutMs: number;
}): HeartbeatVerdict {
  if (input.now >= input.exp) return { action: "close", code: CLOSE_CODES.tokenExpired, reason: "token expired" };
  if (input.now - input.lastActivity > input.timeoutMs) {
    return { action: "close", code: CLOSE_CODES.heartbeatTimeout, reason: "heartbeat timeout" };
  }
  // It may still send, but it no longer reads: what the room sends it only piles up.
  if (input.unechoedSince !== undefined && input.now - input.unechoedSince > input.timeoutMs) {
    return { action: "close", code: CLOSE_CODES.heartbeatTimeout, reason: "not reading" };
  }
  return { action: "keep" };
}
