/**
 * `RoomClient`: one room over one WebSocket, kept connected. It authenticates with the subprotocol
 * offer, reconnects with backoff, resumes with `?since=` without loss or duplicates, acknowledges
 * sends, and keeps the connection alive with pings. See `src/client/README.md`.
 *
 * This class orchestrates: the connection's lifecycle and the dispatch of frames. What a close means
 * is in `closes.ts`, the room as the frames tell it in `room-view.ts`, sends in `outbox.ts`.
 */
import { CLOSE_CODES, PING_FRAME, type PresenceState, type User, type WelcomeFrame } from "../protocol/index.js";
import { type Attempt, detachAttempt, openAttempt } from "./attempt.js";
import { closedAfterWelcome, closedBeforeOpen, probe, resolveFetch, type Verdict } from "./closes.js";
import { Emitter, type Listener } from "./emitter.js";
import { RoomClientError, type Stop } from "./errors.js";
import { checkData, decodeFrame, encodeFrame, encodeMessage } from "./frames.js";
import { Liveness } from "./liveness.js";
import { livenessTiming, type ResolvedOptions, resolveOptions } from "./options.js";
import { Outbox, type SendResult } from "./outbox.js";
import { Reconnects } from "./reconnect.js";
import { RoomView } from "./room-view.js";
import { CLOSING, connectUrl, OPEN } from "./socket.js";
import type {
  ConnectionState,
  PresenceUser,
  Retry,
  RoomClientEvents,
  RoomClientOptions,
  SendOptions,
  SignalOptions,
} from "./types.js";
import { describe, randomId, safeClose } from "./util.js";

/** The close code the client uses when it abandons a connection it considers dead. */
const ABANDON_CODE = 4000;
/**
 * A socket whose closing handshake has begun gets this long for its `close` event (which carries
 * the code that decides between stopping and reconnecting) before it is counted as dead.
 */
const CLOSING_GRACE_MS = 5_000;

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
  readonly #options: RoomClientOptions<TData>;
  readonly #resolved: ResolvedOptions;
  readonly #events = new Emitter<RoomClientEvents<TData>>();
  readonly #outbox: Outbox;
  readonly #view = new RoomView();
  /** This user's presence state frame, as last set: sent again on every (re)connect. */
  #presenceFrame: string | undefined;
  readonly #idPrefix = randomId();
  #idCounter = 0;

  #state: ConnectionState = "connecting";
  /** Bumped whenever an attempt starts or the client stops: async continuations of older ones give up. */
  #epoch = 0;
  #current: Attempt | undefined;
  #liveness: Liveness | undefined;
  readonly #reconnects: Reconnects;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #probe: AbortController | undefined;

  constructor(options: RoomClientOptions<TData>) {
    this.#resolved = resolveOptions(options);
    this.room = this.#resolved.room;
    this.#options = options;
    this.#outbox = new Outbox({ ...this.#resolved.outbox, onStall: () => this.#onStall() });
    this.#reconnects = new Reconnects(
      this.#resolved.backoff,
      () => {
        if (this.#state !== "closed") void this.#connect();
      },
      () => this.#state === "reconnecting",
    );
    // Not if close() came first (React strict mode mounts, unmounts and mounts again at once).
    if (options.autoConnect ?? true) {
      const epoch = this.#epoch;
      queueMicrotask(() => {
        if (epoch === this.#epoch) void this.#connect();
      });
    } else this.#state = "closed";
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.#state;
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
    return this.#state === "open" && this.#write(text);
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
    this.#presenceFrame = encodeFrame({ type: "presence", state }, "presence");
    if (this.#state === "open") this.#write(this.#presenceFrame);
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
    if (this.#state !== "closed") return;
    this.#reconnects.reset();
    this.#setState("connecting");
    void this.#connect();
  }

  /** Closes the connection for good: stops every timer and rejects every unacknowledged send. */
  close(): void {
    if (this.#state === "closed") return;
    this.#stop({ code: "closed_by_client", message: "closed by the client" }, CLOSE_CODES.normal);
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
    if (this.#state === "closed") {
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

  // -- connecting ----------------------------------------------------------------------------

  async #connect(): Promise<void> {
    const epoch = ++this.#epoch;
    const source = this.#options.token;
    let token: unknown;
    try {
      token = typeof source === "string" ? source : await source();
    } catch (error) {
      if (epoch === this.#epoch) this.#retry({ reason: "token_error", message: describe(error) });
      return;
    }
    if (epoch !== this.#epoch) return;
    if (typeof token !== "string" || token.length === 0) {
      this.#retry({ reason: "token_error", message: "the token function returned no token" });
      return;
    }
    const since = this.#view.lastSeq ?? this.#options.since;
    const url = connectUrl(this.#options.url, this.room, since);
    let attempt: Attempt;
    try {
      attempt = openAttempt(this.#resolved.WebSocket, {
        url,
        token,
        since,
        isTokenFresh: typeof source !== "string",
        onClose: (code, reason) => {
          if (this.#current === attempt) this.#onClose(attempt, code, reason);
        },
        onData: (data) => {
          if (this.#current === attempt) this.#onData(attempt, data);
        },
      });
    } catch (error) {
      // Browsers throw when the token is not a valid subprotocol value: no retry can fix that.
      this.#stop({ code: "handshake_refused", message: `the token cannot be offered: ${describe(error)}` });
      return;
    }
    this.#current = attempt;
    const { connectTimeoutMs } = this.#resolved;
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = undefined;
      if (this.#current !== attempt) return;
      this.#abandon("handshake timeout");
      this.#retry({ reason: "timeout", message: `no welcome within ${connectTimeoutMs} ms` });
    }, connectTimeoutMs);
  }

  #onClose(attempt: Attempt, code: number, reason: string): void {
    const wasWelcomed = this.#state === "open";
    this.#detach();
    if (!wasWelcomed) {
      if (!attempt.isOpen) {
        void this.#onRefused(attempt);
        return;
      }
      this.#retry({ reason: "dropped", closeCode: code, message: reason });
      return;
    }
    if (code === CLOSE_CODES.messageTooBig) {
      this.#outbox.rejectNewestInFlight("message_too_big", "the server closed with 1009");
    }
    this.#outbox.requeueInFlight();
    this.#follow(closedAfterWelcome(code, reason, typeof this.#options.token !== "string"));
  }

  /** The socket closed before it opened: refused, or the server is not there (see `closes.ts`). */
  async #onRefused(attempt: Attempt): Promise<void> {
    const verdict = closedBeforeOpen(attempt, resolveFetch(this.#options.fetch));
    if (!("probe" in verdict)) {
      this.#follow(verdict);
      return;
    }
    const epoch = this.#epoch;
    const controller = new AbortController();
    this.#probe = controller;
    const answer = await probe(attempt, verdict.probe, controller);
    if (this.#probe === controller) this.#probe = undefined;
    if (epoch !== this.#epoch || this.#state === "closed") return;
    this.#follow(answer);
  }

  #follow(verdict: Verdict): void {
    if ("stop" in verdict) this.#stop(verdict.stop);
    else this.#retry(verdict.retry, { isImmediate: verdict.isImmediate ?? false });
  }

  #retry(info: Omit<Retry, "attempt" | "delayMs">, { isImmediate = false } = {}): void {
    this.#detach();
    const delayMs = this.#reconnects.fail(isImmediate);
    if (delayMs === undefined) {
      const { reason: _reason, ...rest } = info;
      const message = `gave up after ${this.#reconnects.maxAttempts} attempts (${info.message ?? info.reason})`;
      this.#stop({ ...rest, code: "retries_exhausted", message });
      return;
    }
    this.#setState("reconnecting");
    this.#events.emit("retry", { attempt: this.#reconnects.attempt, delayMs, ...info });
    this.#reconnects.wait(delayMs);
  }

  /** Stops for good. `closeCode` closes a socket that is still up (the client's own `close()`). */
  #stop(stop: Stop, closeCode?: number): void {
    this.#epoch++;
    const socket = this.#current?.socket;
    this.#detach();
    if (socket && closeCode !== undefined) safeClose(socket, closeCode, "closed by the client");
    this.#reconnects.cancel();
    this.#probe?.abort();
    this.#probe = undefined;
    this.#outbox.rejectAll("closed", stop.message);
    this.#view.clearUsers();
    this.#setState("closed", stop);
  }

  /** Forgets the current socket: its handlers and timers. The socket itself is left as it is. */
  #detach(): void {
    const attempt = this.#current;
    this.#current = undefined;
    this.#view.endReplay();
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#liveness?.stop();
    this.#liveness = undefined;
    this.#outbox.setWriter(undefined);
    if (attempt) detachAttempt(attempt);
  }

  /** Drops a connection considered dead without waiting for its closing handshake. */
  #abandon(reason: string): void {
    const socket = this.#current?.socket;
    this.#detach();
    this.#outbox.requeueInFlight();
    if (!socket) return;
    safeClose(socket, ABANDON_CODE, reason);
    // `ws` would wait up to 30 s for the peer's close frame; a dead peer never sends one.
    (socket as { terminate?: () => void }).terminate?.();
  }

  /** A written send got no ack in time: the link is stalled. Drop it; its sends go out again on the next. */
  #onStall(): void {
    if (this.#state !== "open") return;
    this.#abandon("no ack");
    this.#retry({ reason: "ack_timeout", message: `a send got no ack within ${this.#outbox.ackTimeoutMs} ms` });
  }

  #setState(state: ConnectionState, stop?: Stop): void {
    const previous = this.#state;
    if (previous === state) return;
    this.#state = state;
    this.#events.emit("state", stop ? { state, previous, stop } : { state, previous });
  }

  // -- frames --------------------------------------------------------------------------------

  #onData(attempt: Attempt, data: unknown): void {
    if (data instanceof ArrayBuffer) {
      this.#liveness?.onFrame(false);
      const from = this.#view.takeBinarySender();
      this.#events.emit("binary", data);
      this.#events.emit("binaryMessage", { data, from });
      return;
    }
    if (typeof data !== "string") return;
    const frame = decodeFrame(data);
    if (frame === undefined) return;
    this.#liveness?.onFrame(frame.type === "pong");
    this.#view.frame(frame);
    switch (frame.type) {
      case "welcome":
        this.#onWelcome(attempt, frame);
        return;
      case "message": {
        if (!this.#view.message(frame)) return;
        // Our own message came back (live, or in a replay after a drop): that settles its send.
        if (frame.id !== undefined && this.#view.isOwn(frame)) this.#outbox.settle(frame.id, frame.seq, true);
        const checked = checkData(frame, this.#options.dataSchema);
        if (checked instanceof RoomClientError) this.#events.emit("error", checked);
        else this.#events.emit("message", checked);
        if (this.#view.hasCaughtUp) this.#ready();
        return;
      }
      case "ack":
        this.#outbox.settle(frame.id, frame.seq);
        return;
      case "error":
        if (frame.id === undefined || !this.#outbox.fail(frame.id, frame)) {
          this.#events.emit("error", new RoomClientError(frame.code, frame.message, { frame }));
        }
        return;
      case "presence":
        this.#view.presence(frame);
        this.#events.emit("presence", frame);
        return;
      case "signal":
        this.#events.emit("signal", {
          from: frame.from,
          data: frame.data,
          ...(frame.to === undefined ? {} : { to: frame.to }),
        });
        return;
      case "heartbeat":
        // Echoed, so the room can tell this client still reads (and close it if it stops).
        this.#write(data);
        return;
      case "pong":
        // The runtime answers our ping after every frame sent before it: the replay is over.
        if (this.#view.isReplaying) this.#ready();
        return;
      default:
        return;
    }
  }

  #onWelcome(attempt: Attempt, welcome: WelcomeFrame): void {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    const { gap, replayUntil } = this.#view.welcome(welcome, attempt.since);
    this.#reconnects.reset();
    this.#setState("open");
    if (this.#presenceFrame !== undefined) this.#write(this.#presenceFrame);
    this.#events.emit("welcome", welcome);
    if (gap) this.#events.emit("gap", gap);
    this.#startLiveness(attempt, welcome.heartbeatInterval);
    if (replayUntil !== undefined) {
      this.#view.awaitReplay(replayUntil);
      this.#liveness?.ping();
    } else {
      this.#ready();
    }
  }

  /** The connection is up and caught up: sends flow. */
  #ready(): void {
    this.#view.endReplay();
    this.#outbox.setWriter((frame) => this.#write(frame));
  }

  #write(frame: string): boolean {
    const socket = this.#current?.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    try {
      socket.send(frame);
      return true;
    } catch {
      return false;
    }
  }

  /** Pings every `pingIntervalMs` (default half the server's interval) and watches for pongs. */
  #startLiveness(attempt: Attempt, intervalMs: number): void {
    this.#liveness?.stop();
    this.#liveness = new Liveness({
      ...livenessTiming(this.#options, intervalMs),
      closingGraceMs: CLOSING_GRACE_MS,
      ping: () => this.#write(PING_FRAME),
      isClosing: () => attempt.socket.readyState >= CLOSING,
      onDead: (why) => {
        if (this.#current !== attempt) return;
        this.#abandon("heartbeat missed");
        this.#retry({ reason: "heartbeat", message: why });
      },
    });
  }
}
