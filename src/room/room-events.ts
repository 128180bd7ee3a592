/**
 * The producer side of webhooks: the room's events, handed to the webhook queue (WEBHOOK_QUEUE)
 * without waiting for it. A message's event is produced once its commit is durable; `join` and
 * `leave` when the room announces them, and `room_empty` with the leave of the last user. Each is
 * built once, as JSON text, with its id: a retry or a duplicate delivery carries the same bytes.
 * Off (nothing built, nothing sent) without WEBHOOK_URL or without the queue binding.
 */
import { describeError, log } from "../common/log";
import {
  MAX_EVENT_BYTES,
  messageEventId,
  randomEventId,
  type WebhookEvent,
  type WebhookEventType,
} from "../common/webhook-events";
import type { WebhookSettings } from "../common/webhook-settings";
import type { User } from "../protocol";
import { byteLength } from "./bytes";
import type { StoredMessage } from "./history";

/** Queues take at most 100 messages and 256 KB in one `sendBatch`. */
const SEND_MAX_MESSAGES = 100;
const SEND_MAX_BYTES = 200_000;

export class RoomEvents {
  readonly #events: ReadonlySet<WebhookEventType>;
  readonly #queue: Queue | undefined;
  readonly #room: string;

  constructor(settings: WebhookSettings | undefined, queue: Queue | undefined, room: string) {
    this.#queue = settings === undefined ? undefined : queue;
    this.#events = settings?.events ?? new Set();
    this.#room = room;
  }

  /** Whether `type` events are sent. */
  wants(type: WebhookEventType): boolean {
    return this.#queue !== undefined && this.#events.has(type);
  }

  /** Messages of one commit, now durable: their events, in one send. */
  committed(messages: readonly StoredMessage[]): void {
    if (!this.wants("message") || messages.length === 0) return;
    this.#send(messages.map((m) => messageEvent(this.#room, m)));
  }

  /**
   * The room announced a presence event (`online`: users present after it). `isRoomWide` is false
   * for a shard of a sharded room (docs/scaling.md): its count is its own, so it never says `room_empty`.
   */
  announced(event: string, user: User, online: number, now: number, isRoomWide = true): void {
    if (event !== "join" && event !== "leave") return;
    const events: string[] = [];
    if (this.wants(event)) events.push(presenceEvent(event, this.#room, user, online, now));
    if (event === "leave" && online === 0 && isRoomWide && this.wants("room_empty")) {
      const empty: WebhookEvent = { id: randomEventId(), type: "room_empty", room: this.#room, ts: now };
      events.push(JSON.stringify(empty));
    }
    if (events.length > 0) this.#send(events);
  }

  #send(events: string[]): void {
    const queue = this.#queue;
    if (queue === undefined) return;
    for (const chunk of chunks(events)) {
      const batch = chunk.map((body) => ({ body, contentType: "text" as const }));
      // Not awaited: a slow or failing queue never holds a broadcast or an ack.
      queue.sendBatch(batch).catch((error: unknown) => {
        log("error", "webhook_enqueue_failed", { room: this.#room, events: chunk.length, ...describeError(error) });
      });
    }
  }
}

/** `{"id","type":"message","room","ts","message":<the message frame members got>}`. */
export function messageEvent(room: string, stored: StoredMessage): string {
  const head = `{"id":${JSON.stringify(messageEventId(room, stored.seq))},"type":"message","room":${JSON.stringify(room)},"ts":${stored.ts}`;
  const event = `${head},"message":${stored.frame}}`;
  if (byteLength(event) <= MAX_EVENT_BYTES) return event;
  // Too big for one queue message: the receiver reads the full message from the HTTP API.
  const { text: _text, data: _data, ...rest } = JSON.parse(stored.frame) as Record<string, unknown>;
  return `${head},"message":${JSON.stringify({ ...rest, truncated: true })}}`;
}

export function presenceEvent(type: "join" | "leave", room: string, user: User, online: number, now: number): string {
  const event: WebhookEvent = { id: randomEventId(), type, room, ts: now, user, online };
  return JSON.stringify(event);
}

function* chunks(events: string[]): Generator<string[]> {
  let chunk: string[] = [];
  let bytes = 0;
  for (const event of events) {
    const size = byteLength(event);
    if (chunk.length > 0 && (chunk.length >= SEND_MAX_MESSAGES || bytes + size > SEND_MAX_BYTES)) {
      yield chunk;
      chunk = [];
      bytes = 0;
    }
    chunk.push(event);
    bytes += size;
  }
  if (chunk.length > 0) yield chunk;
}
