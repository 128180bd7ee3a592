/**
 * The webhook settings (README "Webhooks"): WEBHOOK_URL, WEBHOOK_SECRET, WEBHOOK_EVENTS and
 * WEBHOOK_RETRY_BASE_SECONDS, checked together. Webhooks are off without a URL.
 */
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from "./webhook-events";

export interface WebhookSettings {
  url: string;
  secret: string;
  events: ReadonlySet<WebhookEventType>;
  /** The first retry's delay; each next one doubles, up to RETRY_MAX_SECONDS. */
  retryBaseSeconds: number;
}

/** Loopback hosts may be reached over plain http: `wrangler dev` and tests post to a local receiver. */
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

export interface WebhookRaw {
  WEBHOOK_URL?: string | undefined;
  WEBHOOK_SECRET?: string | undefined;
  WEBHOOK_EVENTS?: string | undefined;
  WEBHOOK_RETRY_BASE_SECONDS: number;
}

/** Settings, `undefined` when off, or [setting, what is wrong]. */
export function parseWebhookSettings(raw: WebhookRaw): WebhookSettings | undefined | [string, string] {
  if (raw.WEBHOOK_URL === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw.WEBHOOK_URL);
  } catch {
    return ["WEBHOOK_URL", "must be a URL"];
  }
  const isLocal = url.protocol === "http:" && LOOPBACK.has(url.hostname);
  if (url.protocol !== "https:" && !isLocal)
    return ["WEBHOOK_URL", "must use https (http only to 127.0.0.1 or localhost)"];
  if (url.username !== "" || url.password !== "") return ["WEBHOOK_URL", "must not carry credentials"];
  if (raw.WEBHOOK_SECRET === undefined) return ["WEBHOOK_SECRET", "is required with WEBHOOK_URL"];
  if (new TextEncoder().encode(raw.WEBHOOK_SECRET).length < 32) return ["WEBHOOK_SECRET", "must be at least 32 bytes"];
  const names = (raw.WEBHOOK_EVENTS ?? WEBHOOK_EVENT_TYPES.join(",")).split(",").map((s) => s.trim());
  const known = new Set<string>(WEBHOOK_EVENT_TYPES);
  if (names.some((n) => !known.has(n)))
    return ["WEBHOOK_EVENTS", `must list some of ${WEBHOOK_EVENT_TYPES.join(", ")}`];
  return {
    url: url.href,
    secret: raw.WEBHOOK_SECRET,
    events: new Set(names as WebhookEventType[]),
    retryBaseSeconds: raw.WEBHOOK_RETRY_BASE_SECONDS,
  };
}
