/**
 * The consumer side of webhooks: the Worker's `queue()` handler posts each batch of room events to
 * WEBHOOK_URL as `{"events":[...]}`, signed (src/common/webhook-signature.ts). The receiver's answer
 * decides each event's fate: 2xx delivered; 408, 429, 5xx, a redirect, a timeout or a network error
 * retried with exponential backoff (the queue's max_retries, then its dead letter queue); any other
 * 4xx refused for good (acknowledged and logged: the same request would get the same answer).
 */
import * as v from "valibot";
import { loadConfig } from "../common/config";
import { describeError, log } from "../common/log";
import { WebhookEventSchema } from "../common/webhook-events";
import type { WebhookSettings } from "../common/webhook-settings";
import { SIGNATURE_HEADER, signWebhook } from "../common/webhook-signature";

/** The longest wait between two attempts (Queues allow up to 12 hours). */
export const RETRY_MAX_SECONDS = 3600;
/** A receiver that has not answered in this long is treated as down (and retried). */
export const POST_TIMEOUT_MS = 15_000;
/** While the settings are broken (a bad deploy), events wait for a fixed one. */
const MISCONFIGURED_RETRY_SECONDS = 60;

export type Verdict = "delivered" | "retry" | "refused";

/** What the receiver's status (or `undefined`: no answer) means for the events it was sent. */
export function verdictOf(status: number | undefined): Verdict {
  if (status === undefined) return "retry";
  if (status >= 200 && status < 300) return "delivered";
  if (status >= 400 && status < 500 && status !== 408 && status !== 429) return "refused";
  return "retry";
}

/** Delay before the next attempt of a message delivered `attempts` times: base, 2×, 4×… capped. */
export function retryDelaySeconds(attempts: number, baseSeconds: number): number {
  return Math.min(RETRY_MAX_SECONDS, baseSeconds * 2 ** Math.min(Math.max(attempts - 1, 0), 20));
}

/** The `queue()` handler. Never throws: every message is acknowledged or retried explicitly. */
export async function deliverWebhooks(
  batch: MessageBatch<unknown>,
  env: object,
  post: typeof fetch = fetch,
  now: () => number = Date.now,
): Promise<void> {
  const result = loadConfig(env);
  if (!result.ok) {
    log("error", "webhook_retry", { reason: "server_misconfigured", events: batch.messages.length });
    batch.retryAll({ delaySeconds: MISCONFIGURED_RETRY_SECONDS });
    return;
  }
  const settings = result.config.webhooks;
  if (settings === undefined) {
    // Produced while WEBHOOK_URL was set, consumed after it was removed: nobody to send them to.
    log("warn", "webhook_dropped", { reason: "webhooks_off", events: batch.messages.length });
    batch.ackAll();
    return;
  }
  const sendable: { message: Message<unknown>; event: string; id: string }[] = [];
  for (const message of batch.messages) {
    const id = eventIdOf(message.body);
    if (id === undefined) {
      log("error", "webhook_dropped", { reason: "malformed", message: message.id });
      message.ack();
    } else {
      sendable.push({ message, event: message.body as string, id });
    }
  }
  if (sendable.length === 0) return;
  const status = await postEvents(
    settings,
    sendable.map((s) => s.event),
    post,
    now,
  );
  const verdict = verdictOf(status);
  const ids = sendable.map((s) => s.id);
  if (verdict === "delivered") {
    for (const { message } of sendable) message.ack();
    return;
  }
  if (verdict === "refused") {
    log("error", "webhook_refused", { status, events: ids.length, ids: ids.slice(0, 20) });
    for (const { message } of sendable) message.ack();
    return;
  }
  const attempts = Math.max(...sendable.map((s) => s.message.attempts));
  log("warn", "webhook_retry", { status: status ?? "no_answer", events: ids.length, attempts });
  for (const { message } of sendable) {
    message.retry({ delaySeconds: retryDelaySeconds(message.attempts, settings.retryBaseSeconds) });
  }
}

/** The event's id when the body is an event the room produced; `undefined` otherwise. */
function eventIdOf(body: unknown): string | undefined {
  if (typeof body !== "string") return undefined;
  try {
    const parsed = v.safeParse(WebhookEventSchema, JSON.parse(body));
    return parsed.success ? parsed.output.id : undefined;
  } catch {
    return undefined;
  }
}

/** POSTs the events (their JSON text as produced); the status, or `undefined` with no answer. */
async function postEvents(
  settings: WebhookSettings,
  events: string[],
  post: typeof fetch,
  now: () => number,
): Promise<number | undefined> {
  const body = `{"events":[${events.join(",")}]}`;
  const signature = await signWebhook(settings.secret, Math.floor(now() / 1000), body);
  try {
    const response = await post(settings.url, {
      method: "POST",
      body,
      headers: {
        "Content-Type": "application/json",
        "User-Agent": "edge-rooms-webhooks/1",
        [SIGNATURE_HEADER]: signature,
      },
      // A redirect is not followed: the signed events go only where WEBHOOK_URL says.
      redirect: "manual",
      signal: AbortSignal.timeout(POST_TIMEOUT_MS),
    });
    // Read (and drop) the answer so that the connection can be reused.
    await response.arrayBuffer().catch(() => undefined);
    return response.status;
  } catch (error) {
    log("warn", "webhook_unreachable", describeError(error));
    return undefined;
  }
}
