/**
 * The per-IP connect limit: Cloudflare's rate-limiting binding `CONNECT_LIMITER` (`[[ratelimits]]` in
 * wrangler.toml), asked by the gate before any room object is touched.
 *
 * The key is `CF-Connecting-IP`, which Cloudflare sets on every request in production (and wrangler
 * dev sets to the peer's address). A request without it still counts, under one shared key, so that
 * leaving the header out is never a way around the limit.
 */
import { HttpError } from "../common/errors";
import { log } from "../common/log";

/** The window of the binding in wrangler.toml, in seconds: a refused client may retry after it. */
export const CONNECT_LIMIT_PERIOD_SECONDS = 60;
const NO_IP_KEY = "no-ip";

let warnedMissing = false;

/**
 * Throws `too_many_requests` (429, Retry-After) when `ip` is over the limit. Without the binding
 * (removed from wrangler.toml) it admits, and logs once per isolate that the limit is off.
 */
export async function checkConnectLimit(limiter: RateLimit | undefined, ip: string | null): Promise<void> {
  if (limiter === undefined) {
    if (!warnedMissing) {
      warnedMissing = true;
      log("warn", "connect_limit_off", { reason: "no CONNECT_LIMITER binding" });
    }
    return;
  }
  const { success } = await limiter.limit({ key: ip ?? NO_IP_KEY });
  if (!success) {
    throw new HttpError("too_many_requests", "too many connects from this address; retry later", {
      headers: { "Retry-After": String(CONNECT_LIMIT_PERIOD_SECONDS) },
    });
  }
}
