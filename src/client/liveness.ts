/**
 * Whether an open connection is still alive. Two questions, two clocks:
 * - the link: every ping must be answered by a pong (the runtime answers `{"type":"ping"}` itself,
 *   without waking the room) within `pongTimeoutMs`. A half-open link (a NAT timeout, a proxy that
 *   stops forwarding without FIN/RST) is found this way within one ping interval plus that timeout.
 *   Any frame received meanwhile counts as an answer: a pong queued behind a long replay is late,
 *   not lost.
 * - the room: some frame other than a pong (its heartbeats at least) must come within `silentAfterMs`.
 * A socket whose closing handshake has begun is not pinged; it gets `closingGraceMs` for its close
 * event, whose code decides between stopping and reconnecting.
 */

export interface LivenessOptions {
  pingEveryMs: number;
  pongTimeoutMs: number;
  silentAfterMs: number;
  closingGraceMs: number;
  /** Writes a ping; false when the socket would not take it. */
  ping: () => boolean;
  isClosing: () => boolean;
  /** Called once, when the connection is judged dead. */
  onDead: (why: string) => void;
}

export class Liveness {
  readonly #o: LivenessOptions;
  #tickTimer: ReturnType<typeof setTimeout> | undefined;
  #pongTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the oldest unanswered ping was written. */
  #pingSentAt: number | undefined;
  #lastFrameAt = Date.now();
  #lastRoomFrameAt = Date.now();
  #closingSince: number | undefined;
  #isStopped = false;

  constructor(options: LivenessOptions) {
    this.#o = options;
    this.#tickTimer = setTimeout(this.#tick, options.pingEveryMs);
  }

  /** A frame arrived (`isPong` for the runtime's answer to a ping). */
  onFrame(isPong: boolean): void {
    this.#lastFrameAt = Date.now();
    if (!isPong) this.#lastRoomFrameAt = this.#lastFrameAt;
    else {
      this.#pingSentAt = undefined;
      clearTimeout(this.#pongTimer);
      this.#pongTimer = undefined;
    }
  }

  /** Pings now (also used to learn when a replay is over: the pong comes after it). */
  ping(): void {
    // One ping at a time: its pong answers for the link, and comes after every frame sent before it.
    if (this.#isStopped || this.#pingSentAt !== undefined || !this.#o.ping()) return;
    this.#pingSentAt = Date.now();
    this.#pongTimer = setTimeout(this.#checkPong, this.#o.pongTimeoutMs);
  }

  stop(): void {
    this.#isStopped = true;
    clearTimeout(this.#tickTimer);
    clearTimeout(this.#pongTimer);
  }

  readonly #checkPong = () => {
    this.#pongTimer = undefined;
    if (this.#isStopped || this.#pingSentAt === undefined) return;
    const waitedMs = Date.now() - Math.max(this.#pingSentAt, this.#lastFrameAt);
    if (waitedMs < this.#o.pongTimeoutMs) {
      this.#pongTimer = setTimeout(this.#checkPong, this.#o.pongTimeoutMs - waitedMs);
      return;
    }
    this.#die(`no pong within ${this.#o.pongTimeoutMs} ms of a ping`);
  };

  readonly #tick = () => {
    this.#tickTimer = undefined;
    if (this.#isStopped) return;
    const now = Date.now();
    if (this.#o.isClosing()) {
      this.#closingSince ??= now;
      if (now - this.#closingSince > this.#o.closingGraceMs) return this.#die("the close never finished");
    } else if (now - this.#lastRoomFrameAt > this.#o.silentAfterMs) {
      return this.#die(`no frame from the server for ${this.#o.silentAfterMs} ms`);
    } else {
      this.ping();
    }
    this.#tickTimer = setTimeout(this.#tick, this.#o.pingEveryMs);
  };

  #die(why: string): void {
    this.stop();
    this.#o.onDead(why);
  }
}
