/**
 * `Link`: the room client's connection, one attempt after another. It opens a socket with the
 * token, reads the server's frames into the room view and the outbox, keeps the link alive with
 * pings, and after a close decides (with `closes.ts`) between reconnecting and stopping.
 * `RoomClient` (room-client.ts) is the public face; this holds its lifecycle.
 */
import { CLOSE_CODES, PING_FRAME, type WelcomeFrame } from "../protocol/index.js";
import { type Attempt, detachAttempt, openAttempt } from "./attempt.js";
import { closedAfterWelcome, closedBeforeOpen, probe, resolveFetch, type Verdict } from "./closes.js";
import type { Emitter } from "./emitter.js";
import type { Stop } from "./errors.js";
import { decodeFrames } from "./frames.js";
import { Liveness } from "./liveness.js";
import { livenessTiming, type ResolvedOptions } from "./options.js";
import type { Outbox } from "./outbox.js";
import { Reconnects } from "./reconnect.js";
import { takeRoomFrame } from "./room-frames.js";
import type { RoomView } from "./room-view.js";
import { CLOSING, connectUrl, OPEN } from "./socket.js";
import type { ConnectionState, Retry, RoomClientEvents, RoomClientOptions } from "./types.js";
import { describe, safeClose } from "./util.js";

/** The close code the client uses when it abandons a connection it considers dead. */
const ABANDON_CODE = 4000;
/**
 * A socket whose closing handshake has begun gets this long for its `close` event (which carries
 * the code that decides between stopping and reconnecting) before it is counted as dead.
 */
const CLOSING_GRACE_MS = 5_000;

/** What the link shares with its client. */
export interface LinkParts<TData> {
  options: RoomClientOptions<TData>;
  resolved: ResolvedOptions;
  events: Emitter<RoomClientEvents<TData>>;
  outbox: Outbox;
  view: RoomView;
}

export class Link<TData> {
  readonly #parts: LinkParts<TData>;
  /** This user's presence state frame, as last set: sent again on every (re)connect. */
  #presenceFrame: string | undefined;
  #state: ConnectionState;
  /** Bumped whenever an attempt starts or the client stops: async continuations of older ones give up. */
  #epoch = 0;
  #current: Attempt | undefined;
  #liveness: Liveness | undefined;
  readonly #reconnects: Reconnects;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #probe: AbortController | undefined;

  constructor(parts: LinkParts<TData>, autoConnect: boolean) {
    this.#parts = parts;
    this.#reconnects = new Reconnects(
      this.#parts.resolved.backoff,
      () => {
        if (this.#state !== "closed") void this.#connect();
      },
      () => this.#state === "reconnecting",
    );
    this.#state = autoConnect ? "connecting" : "closed";
    // Not if close() came first (React strict mode mounts, unmounts and mounts again at once).
    if (autoConnect) {
      const epoch = this.#epoch;
      queueMicrotask(() => {
        if (epoch === this.#epoch) void this.#connect();
      });
    }
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Connects when closed (see `RoomClient.connect`). */
  start(): void {
    if (this.#state !== "closed") return;
    this.#reconnects.reset();
    this.#setState("connecting");
    void this.#connect();
  }

  /** Sets this user's presence state frame: sent now when open, and after every reconnect. */
  presence(frame: string): void {
    this.#presenceFrame = frame;
    if (this.#state === "open") this.write(frame);
  }

  /** Writes a frame now if the link is open; whether it was written. */
  write(frame: string): boolean {
    const socket = this.#current?.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    try {
      socket.send(frame);
      return true;
    } catch {
      return false;
    }
  }

  /** A written send got no ack in time: the link is stalled. Drop it; its sends go out again on the next. */
  stall(): void {
    if (this.#state !== "open") return;
    this.#abandon("no ack");
    this.#retry({ reason: "ack_timeout", message: `a send got no ack within ${this.#parts.outbox.ackTimeoutMs} ms` });
  }

  // -- connecting ----------------------------------------------------------------------------

  async #connect(): Promise<void> {
    const epoch = ++this.#epoch;
    const source = this.#parts.options.token;
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
    const since = this.#parts.view.lastSeq ?? this.#parts.options.since;
    const url = connectUrl(this.#parts.options.url, this.#parts.resolved.room, since);
    let attempt: Attempt;
    try {
      attempt = openAttempt(this.#parts.resolved.WebSocket, {
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
      this.stop({ code: "handshake_refused", message: `the token cannot be offered: ${describe(error)}` });
      return;
    }
    this.#current = attempt;
    const { connectTimeoutMs } = this.#parts.resolved;
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
      this.#parts.outbox.rejectNewestInFlight("message_too_big", "the server closed with 1009");
    }
    this.#parts.outbox.requeueInFlight();
    this.#follow(closedAfterWelcome(code, reason, typeof this.#parts.options.token !== "string"));
  }

  /** The socket closed before it opened: refused, or the server is not there (see `closes.ts`). */
  async #onRefused(attempt: Attempt): Promise<void> {
    const verdict = closedBeforeOpen(attempt, resolveFetch(this.#parts.options.fetch));
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
    if ("stop" in verdict) this.stop(verdict.stop);
    else this.#retry(verdict.retry, { isImmediate: verdict.isImmediate ?? false });
  }

  #retry(info: Omit<Retry, "attempt" | "delayMs">, { isImmediate = false } = {}): void {
    this.#detach();
    const delayMs = this.#reconnects.fail(isImmediate);
    if (delayMs === undefined) {
      const { reason: _reason, ...rest } = info;
      const message = `gave up after ${this.#reconnects.maxAttempts} attempts (${info.message ?? info.reason})`;
      this.stop({ ...rest, code: "retries_exhausted", message });
      return;
    }
    this.#setState("reconnecting");
    this.#parts.events.emit("retry", { attempt: this.#reconnects.attempt, delayMs, ...info });
    this.#reconnects.wait(delayMs);
  }

  /** Stops for good. `closeCode` closes a socket that is still up (the client's own `close()`). */
  stop(stop: Stop, closeCode?: number): void {
    this.#epoch++;
    const socket = this.#current?.socket;
    this.#detach();
    if (socket && closeCode !== undefined) safeClose(socket, closeCode, "closed by the client");
    this.#reconnects.cancel();
    this.#probe?.abort();
    this.#probe = undefined;
    this.#parts.outbox.rejectAll("closed", stop.message);
    this.#parts.view.clearUsers();
    this.#setState("closed", stop);
  }

  /** Forgets the current socket: its handlers and timers. The socket itself is left as it is. */
  #detach(): void {
    const attempt = this.#current;
    this.#current = undefined;
    this.#parts.view.endReplay();
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#liveness?.stop();
    this.#liveness = undefined;
    this.#parts.outbox.setWriter(undefined);
    if (attempt) detachAttempt(attempt);
  }

  /** Drops a connection considered dead without waiting for its closing handshake. */
  #abandon(reason: string): void {
    const socket = this.#current?.socket;
    this.#detach();
    this.#parts.outbox.requeueInFlight();
    if (!socket) return;
    safeClose(socket, ABANDON_CODE, reason);
    // `ws` would wait up to 30 s for the peer's close frame; a dead peer never sends one.
    (socket as { terminate?: () => void }).terminate?.();
  }

  #setState(state: ConnectionState, stop?: Stop): void {
    const previous = this.#state;
    if (previous === state) return;
    this.#state = state;
    this.#parts.events.emit("state", stop ? { state, previous, stop } : { state, previous });
  }

  // -- frames --------------------------------------------------------------------------------

  #onData(attempt: Attempt, data: unknown): void {
    if (data instanceof ArrayBuffer) {
      this.#liveness?.onFrame(false);
      const from = this.#parts.view.takeBinarySender();
      this.#parts.events.emit("binary", data);
      this.#parts.events.emit("binaryMessage", { data, from });
      return;
    }
    if (typeof data !== "string") return;
    for (const frame of decodeFrames(data)) {
      this.#liveness?.onFrame(frame.type === "pong");
      this.#parts.view.frame(frame);
      if (frame.type === "welcome") this.#onWelcome(attempt, frame);
      // Echoed, so the room can tell this client still reads (and close it if it stops). The room
      // never puts a heartbeat in a batch frame: `data` is its exact text.
      else if (frame.type === "heartbeat") this.write(data);
      // The runtime answers our ping after every frame sent before it: the replay is over.
      else if (frame.type === "pong") {
        if (this.#parts.view.isReplaying) this.#ready();
      } else if (takeRoomFrame(frame, this.#parts)) this.#ready();
    }
  }

  #onWelcome(attempt: Attempt, welcome: WelcomeFrame): void {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    const { gap, replayUntil } = this.#parts.view.welcome(welcome, attempt.since);
    this.#reconnects.reset();
    this.#setState("open");
    if (this.#presenceFrame !== undefined) this.write(this.#presenceFrame);
    this.#parts.events.emit("welcome", welcome);
    if (gap) this.#parts.events.emit("gap", gap);
    this.#startLiveness(attempt, welcome.heartbeatInterval);
    if (replayUntil !== undefined) {
      this.#parts.view.awaitReplay(replayUntil);
      this.#liveness?.ping();
    } else {
      this.#ready();
    }
  }

  /** The connection is up and caught up: sends flow. */
  #ready(): void {
    this.#parts.view.endReplay();
    this.#parts.outbox.setWriter((frame) => this.write(frame));
  }

  /** Pings every `pingIntervalMs` (default half the server's interval) and watches for pongs. */
  #startLiveness(attempt: Attempt, intervalMs: number): void {
    this.#liveness?.stop();
    this.#liveness = new Liveness({
      ...livenessTiming(this.#parts.options, intervalMs),
      closingGraceMs: CLOSING_GRACE_MS,
      ping: () => this.write(PING_FRAME),
      isClosing: () => attempt.socket.readyState >= CLOSING,
      onDead: (why) => {
        if (this.#current !== attempt) return;
        this.#abandon("heartbeat missed");
        this.#retry({ reason: "heartbeat", message: why });
      },
    });
  }
}
