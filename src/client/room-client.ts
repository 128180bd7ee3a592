/**
 * `RoomClient`: one room over one WebSocket, kept connected. It authenticates with the subprotocol
 * offer, reconnects with backoff, resumes with `?since=` without loss or duplicates, acknowledges
 * sends, and keeps the connection alive with pings. See `src/client/README.md`.
 *
 * This is the public face. The connection's lifecycle is in `link.ts`, what a close means in
 * `closes.ts`, the room as the frames tell it in `room-view.ts`, sends in `outbox.ts`.
 */
import { CLOSE_CODES, type PresenceState, type User } from "../protocol/index.js";
import { Emitter, type Listener } from "./emitter.js";
import { RoomClientError } from "./errors.js";
import { encodeFrame, encodeMessage } from "./frames.js";
import { Link } from "./link.js";
import { resolveOptions } from "./options.js";
import { Outbox, type SendResult } from "./outbox.js";
import { RoomView } from "./room-view.js";
import type {
  ConnectionState,
  PresenceUser,
  RoomClientEvents,
  RoomClientOptions,
  SendOptions,
  SignalOptions,
} from "./types.js";
import { randomId } from "./util.js";

/**
 * A connection to one room that stays up on its own.
 *
 * @example
 * const client = new RoomClient({
 *   url: "https://rooms.example.com",
 *   room: "lobby",
 *   token: () => fetch("/my-token").then((r) => r.text()),
 * });
 * client.on("message", (m) => console.log(m.seq, m.from.name, m.text));
 * const { seq } = await client.send("hello");
 *
 * `TData` is the type of messages' `data`; give `dataSchema` (a valibot schema) to have incoming
 * `data` checked against it (and `TData` inferred from it).
 */
export class RoomClient<TData = unknown> {
  readonly room: string;
  readonly #events = new Emitter<RoomClientEvents<TData>>();
  readonly #outbox: Outbox;
  readonly #view = new RoomView();
  readonly #link: Link<TData>;
  readonly #idPrefix = randomId();
  #idCounter = 0;

  constructor(options: RoomClientOptions<TData>) {
    const resolved = resolveOptions(options);
    this.room = resolved.room;
    this.#outbox = new Outbox({ ...resolved.outbox, onStall: () => this.#link.stall() });
    const parts = { options, resolved, events: this.#events, outbox: this.#outbox, view: this.#view };
    this.#link = new Link(parts, options.autoConnect ?? true);
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.#link.state;
  }

  /** The highest room `seq` seen (what the next connection resumes from). */
  get lastSeq(): number | undefined {
    return this.#view.lastSeq;
  }

  /** Who this connection is, from the latest `welcome`. */
  get user(): User | undefined {
    return this.#view.user;
  }

  /** Who is in the room, from `welcome` and `presence` frames, each with its presence `state` once set. */
  get users(): PresenceUser[] {
    return this.#view.users;
  }

  /**
   * Sends an ephemeral signal (a typing indicator, a cursor) to the room's other connections, or
   * only to user `to`'s. Fire and forget: never stored or acknowledged, not queued while
   * disconnected; returns whether it was written. The server drops signals past the user's
   * SIGNAL_RATE_PER_SECOND (with one `rate_limited` error event per run of drops). Throws a
   * `TypeError` for data that is not JSON.
   *
   * @example
   * input.addEventListener("input", () => client.signal({ typing: true }));
   * client.on("signal", ({ from, data }) => showTyping(from, data));
   */
  signal(data: unknown, options: SignalOptions = {}): boolean {
    const text = encodeFrame(
      { type: "signal", data, ...(options.to === undefined ? {} : { to: options.to }) },
      "signal",
    );
    return this.#link.state === "open" && this.#link.write(text);
  }

  /**
   * Sets this user's presence state (a small JSON object; the server's PRESENCE_STATE_MAX_BYTES,
   * 1 KiB by default), shown to everyone in `users` and as presence `update` events. It is per user:
   * the last state set on any of its connections wins. Sent now when open, and again after every
   * reconnect. Throws a `TypeError` for a state that is not a JSON object.
   *
   * @example
   * client.setPresence({ status: "busy" });
   */
  setPresence(state: PresenceState): void {
    // Checked with the frame's schema, which holds the state's (a JSON object, nested ≤ 32 deep).
    this.#link.presence(encodeFrame({ type: "presence", state }, "presence"));
  }

  /** Sends waiting for a connection. */
  get queued(): number {
    return this.#outbox.queued;
  }

  /** Listens to an event; returns the function that stops listening. */
  on<K extends keyof RoomClientEvents<TData>>(type: K, listener: Listener<RoomClientEvents<TData>[K]>): () => void {
    return this.#events.on(type, listener);
  }

  off<K extends keyof RoomClientEvents<TData>>(type: K, listener: Listener<RoomClientEvents<TData>[K]>): void {
    this.#events.off(type, listener);
  }

  /**
   * Connects (with `autoConnect: false`), or connects again after `close()` or after the client
   * stopped. Does nothing while the client is connecting, open or reconnecting.
   */
  connect(): void {
    this.#link.start();
  }

  /** Closes the connection for good: stops every timer and rejects every unacknowledged send. */
  close(): void {
    if (this.#link.state === "closed") return;
    this.#link.stop({ code: "closed_by_client", message: "closed by the client" }, CLOSE_CODES.normal);
  }

  /**
   * Sends a message to the room: a string as `text`, anything else as `data` (JSON). Resolves with
   * the `ack` (`seq` for a room message) once, and only once, the server stored it; rejects with a
   * `RoomClientError` carrying the message's `id`. While disconnected the send waits in a bounded
   * queue and goes out, in order, once the client is back; a room message written on a connection
   * that died is written again with the same id (the server stores an id once). It fails on its own
   * only when `sendDeadlineMs` passes (`send_timeout`; see `wasWritten`).
   */
  send(content: string | TData, options: SendOptions = {}): Promise<SendResult> {
    const id = options.id ?? `${this.#idPrefix}${(++this.#idCounter).toString(36)}`;
    if (this.#link.state === "closed") {
      return Promise.reject(new RoomClientError("closed", "the client is closed", { id, wasWritten: false }));
    }
    if (this.#outbox.has(id)) {
      return Promise.reject(
        new RoomClientError("invalid_message", `a send with id ${id} is already pending`, { id, wasWritten: false }),
      );
    }
    const frame = encodeMessage(id, content, options);
    if (frame instanceof RoomClientError) return Promise.reject(frame);
    return new Promise<SendResult>((resolve, reject) => {
      if (!this.#outbox.add({ id, frame, isDirect: options.to !== undefined, resolve, reject })) {
        const why = `${this.#outbox.maxQueue} sends are already waiting`;
        reject(new RoomClientError("queue_full", why, { id, wasWritten: false }));
      }
    });
  }
}
