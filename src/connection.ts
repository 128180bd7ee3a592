/**
 * Per-connection state. The durable part is the socket attachment (survives hibernation and
 * eviction); the rest is a cache rebuilt from it on wake.
 */
import * as v from "valibot";
import { ROLES } from "./protocol";
import { createBucket, type TokenBucket } from "./rate-limit";

/** What a socket's attachment holds: small (well under the 16 KiB limit), and never the token. */
export const AttachmentSchema = v.object({
  /** Server-chosen connection id. */
  id: v.string(),
  room: v.string(),
  user: v.object({ id: v.string(), name: v.string() }),
  role: v.picklist(ROLES),
  /** Token expiry, ms since the epoch. */
  exp: v.number(),
  ip: v.nullable(v.string()),
  connectedAt: v.number(),
  /** Last frame received, ms; written at most once per heartbeat interval (not per frame). */
  seenAt: v.number(),
  /**
   * When the client last echoed a `heartbeat` frame, ms. Set only for clients that echo them: those
   * are closed with 4408 when they stop, which is how a client that stopped reading is found.
   */
  readAt: v.optional(v.number()),
  /** Set when the room counted the connection out, so a wake does not count it in again. */
  closing: v.optional(v.literal(true)),
});
export type Attachment = v.InferOutput<typeof AttachmentSchema>;

export interface Connection {
  readonly ws: WebSocket;
  attachment: Attachment;
  /** Last frame received, ms; may be newer than `attachment.seenAt`. */
  lastFrameAt: number;
  bucket: TokenBucket;
  /** Set once the room has counted this connection out (our close or the peer's). */
  isGone: boolean;
  /**
   * Found closing at a wake without our own `closing` mark: the peer's close is on its way (or was
   * handled before the wake). Never counted in; its close event still owes the room a `leave`.
   */
  isDying?: boolean;
}

export function tagForUser(userId: string): string {
  return `u:${userId}`;
}

/** Rebuilds a connection from its socket after a wake; `undefined` if the attachment is unusable. */
export function restoreConnection(ws: WebSocket, burst: number, now: number): Connection | undefined {
  const parsed = v.safeParse(AttachmentSchema, ws.deserializeAttachment());
  if (!parsed.success) return undefined;
  const closedByUs = parsed.output.closing === true;
  const isDying = !closedByUs && ws.readyState !== WebSocket.OPEN;
  return {
    ws,
    attachment: parsed.output,
    lastFrameAt: parsed.output.seenAt,
    bucket: createBucket(burst, now),
    isGone: closedByUs || isDying,
    isDying,
  };
}
