/**
 * Webhook events: what a room hands to the queue and what the receiver gets, one JSON object per
 * event, `{"events":[...]}` per POST. Each event has an id that stays the same across every retry
 * and duplicate, so receivers dedupe by it.
 */
import * as v from "valibot";

/** Every event type; WEBHOOK_EVENTS picks among them (all by default). */
export const WEBHOOK_EVENT_TYPES = ["message", "join", "leave", "room_empty"] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/**
 * A queue message holds at most 128 KB; a `message` event larger than this is sent without its
 * `text` and `data`, with `truncated: true` (read it with GET /api/rooms/:room/messages).
 */
export const MAX_EVENT_BYTES = 120_000;

const UserSchema = v.object({ id: v.string(), name: v.string() });
const Base = { id: v.string(), room: v.string(), ts: v.number() };

/** The consumer checks what it takes off the queue: a malformed body is dropped, not retried. */
export const WebhookEventSchema = v.variant("type", [
  v.looseObject({
    ...Base,
    type: v.literal("message"),
    message: v.looseObject({ seq: v.number(), from: UserSchema, ts: v.number() }),
  }),
  v.looseObject({ ...Base, type: v.literal("join"), user: UserSchema, online: v.number() }),
  v.looseObject({ ...Base, type: v.literal("leave"), user: UserSchema, online: v.number() }),
  v.looseObject({ ...Base, type: v.literal("room_empty") }),
]);
export type WebhookEvent = v.InferOutput<typeof WebhookEventSchema>;

/** A message's event id: its room and seq, so a message has exactly one. */
export function messageEventId(room: string, seq: number): string {
  return `evt_${room}_${seq}`;
}

/** A random id, minted once when a presence event is produced (retries reuse it). */
export function randomEventId(): string {
  return `evt_${crypto.randomUUID().replaceAll("-", "")}`;
}
