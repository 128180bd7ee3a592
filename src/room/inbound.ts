/**
 * What a connection sends, taken in: the frame's size, the token's expiry, the rate limits (signals
 * and presence states apart, src/room/ephemeral.ts), then the frame decoded and handed to the part
 * that owns it. Answers go out after what was queued before them (`Messages.reply`), so a
 * connection's answers come in the order of its frames.
 */
import type { Config } from "../common/config";
import { type BinaryFrame, CLOSE_CODES, type clientFrameSchema, PONG_FRAME } from "../protocol";
import type { Alarms } from "./alarms";
import { utf8Length } from "./bytes";
import type { Connection } from "./connection";
import type { Connections } from "./connections";
import { type Ephemeral, type EphemeralFrame, isEphemeralType } from "./ephemeral";
import { decodeFrame, parseFrameJson } from "./frame-decoding";
import type { Messages } from "./messages";
import { type RateLimits, takeShared } from "./rate-limit";
import type { Sharding } from "./room-sharding";
import { clientIdOf, saveAttachment } from "./socket-chores";
import { refreshToken } from "./token-refresh";

export interface InboundParts {
  connections: Connections;
  messages: Messages;
  ephemeral: Ephemeral;
  sharding: Sharding;
  alarms: Alarms;
  frameSchema: ReturnType<typeof clientFrameSchema>;
  /** Each connection's bucket, and the one each user shares over all its connections. */
  limits: RateLimits;
  userLimits: RateLimits;
}

/** How many of the largest frames a connection may have waiting behind a token refresh. */
export const HELD_MESSAGE_FACTOR = 4;

export class Inbound {
  readonly #p: InboundParts;

  constructor(parts: InboundParts) {
    this.#p = parts;
  }

  /**
   * Takes one frame in its turn. Answers go in the order of the frames: after an `auth` frame, the
   * next wait for its answer (a frame that came before the peer closed is still taken, as it would
   * have been at once). What waits is bounded per user, over all its connections, since verifying
   * can take seconds (a cold JWKS fetch): at most the user's rate burst of frames and
   * {@link HELD_MESSAGE_FACTOR} × MAX_MESSAGE_BYTES, else 4429.
   */
  async take(conn: Connection, message: string | ArrayBuffer, config: Config): Promise<void> {
    const size = typeof message === "string" ? utf8Length(message, config.maxMessageBytes) : message.byteLength;
    if (conn.refreshing !== undefined) {
      const held = conn.owner.held;
      if (
        held.frames + 1 > config.userRateLimitBurst ||
        held.bytes + size > HELD_MESSAGE_FACTOR * config.maxMessageBytes
      ) {
        this.#p.connections.close(conn, CLOSE_CODES.rateLimited, "too many frames during a token refresh");
        return;
      }
      held.frames += 1;
      held.bytes += size;
      try {
        while (conn.refreshing !== undefined) await conn.refreshing;
      } finally {
        held.frames -= 1;
        held.bytes -= size;
      }
      if (conn.isGone) return;
    }
    await this.onFrame(conn, message, size, config);
  }

  /** Takes one frame from `conn` (`size` bytes, capped): checks its size, expiry and rate, decodes it, and acts on it. */
  onFrame(conn: Connection, message: string | ArrayBuffer, size: number, config: Config): void | Promise<void> {
    const connections = this.#p.connections;
    const now = Date.now();
    if (size > config.maxMessageBytes) {
      connections.close(conn, CLOSE_CODES.messageTooBig, `frame over ${config.maxMessageBytes} bytes`);
      return;
    }
    conn.lastFrameAt = now;
    if (connections.takeEcho(conn, message)) {
      // Proof that the client read everything sent before that heartbeat. Once per heartbeat, so it
      // is exempt from the rate limit: a burst cannot make a reading client look like one that stopped.
      this.#saveSeenAt(conn);
      return;
    }
    if (now - conn.attachment.seenAt >= config.heartbeatIntervalMs / 2) this.#saveSeenAt(conn);
    if (now >= conn.attachment.exp) {
      connections.close(conn, CLOSE_CODES.tokenExpired, "token expired");
      return;
    }

    // Parsed once, first, so that the frame's type picks its bounds: signals and presence states have
    // their own (src/room/ephemeral.ts) and never take tokens from the message buckets. One larger
    // than any valid one could be takes the message buckets like any other frame, then the cap answers it.
    const raw = typeof message === "string" ? parseFrameJson(message) : undefined;
    if (typeof message === "string" && size <= this.#p.ephemeral.maxBytes && isEphemeralType(raw)) {
      const decoded = decodeFrame(raw, config.maxTextLength, this.#p.frameSchema);
      if (!("error" in decoded)) this.#p.ephemeral.onFrame(conn, decoded.frame as EphemeralFrame, message, now);
      // A refused one is answered within the signal bucket: a flood of them gets no error per frame.
      else if (this.#p.ephemeral.signals.take(conn, now)) {
        this.#sendError(conn, decoded.error.code, decoded.error.message, decoded.error.id);
      }
      return;
    }

    const taken = takeShared(conn.bucket, conn.owner.messages, now, this.#p.limits, this.#p.userLimits);
    if (taken === "exhausted") {
      connections.close(conn, CLOSE_CODES.rateLimited, "rate limit exceeded");
      return;
    }
    if (taken === "refused") {
      // The id lets the client fail (or retry) that very send at once instead of at its ack timeout.
      this.#sendError(conn, "rate_limited", "too many frames; slow down", clientIdOf(raw));
      return;
    }

    if (typeof message !== "string") {
      if (conn.attachment.role === "readonly") {
        this.#sendError(conn, "forbidden", "this connection is read-only");
      } else {
        // Attributed by a text frame right before it: receivers can tell who sent it.
        const from = JSON.stringify({ type: "binary", from: conn.attachment.user } satisfies BinaryFrame);
        connections.broadcast(message, conn.ws, from);
        this.#p.sharding.relay.out({ frame: from, bytes: message }); // to the room's other objects, if any
      }
      return;
    }
    const decoded = decodeFrame(raw, config.maxTextLength, this.#p.frameSchema);
    if ("error" in decoded) {
      this.#sendError(conn, decoded.error.code, decoded.error.message, decoded.error.id);
      return;
    }
    const frame = decoded.frame;
    switch (frame.type) {
      case "ping":
        this.#send(conn, PONG_FRAME);
        return;
      case "heartbeat":
        // An echo of an older heartbeat, or a guess: activity, but no proof of reading.
        return;
      case "auth": {
        // Verifying may wait (a key set fetch): the connection's next frames wait for its answer.
        const done: Promise<void> = this.#refreshToken(conn, frame.token, config).finally(() => {
          if (conn.refreshing === done) conn.refreshing = undefined;
        });
        conn.refreshing = done;
        return done;
      }
      case "history": {
        const shard = this.#p.sharding.shard;
        if (shard)
          return this.#p.messages.sendHistoryFrom(conn, frame.before, frame.limit, config, (q, max) =>
            shard.readPage(q, max),
          );
        this.#p.messages.sendHistory(conn, frame.before, frame.limit, config);
        return;
      }
      case "message":
        this.#p.messages.onMessage(conn, frame, now);
        return;
      case "signal":
      case "presence":
        // Larger than any valid one would be parsed first: the cap answers it.
        this.#p.ephemeral.onFrame(conn, frame, message, now);
        return;
    }
  }

  async #refreshToken(conn: Connection, token: string, config: Config): Promise<void> {
    const exp = await refreshToken(conn, token, config, this.#p.connections, (run) =>
      this.#p.messages.reply(run, conn),
    );
    // A sooner expiry moves the alarm; a later one leaves it, and its wake plans again.
    if (exp !== undefined) await this.#p.alarms.ensureBy(exp, config);
  }

  #saveSeenAt(conn: Connection): void {
    conn.attachment.seenAt = conn.lastFrameAt;
    saveAttachment(conn);
  }

  #send(conn: Connection, frame: string): void {
    this.#p.messages.reply(() => this.#p.connections.send(conn, frame), conn);
  }

  #sendError(conn: Connection, code: Parameters<Connections["sendError"]>[1], message: string, id?: string): void {
    this.#p.messages.reply(() => this.#p.connections.sendError(conn, code, message, id), conn);
  }
}
