/**
 * Per-connection state. The durable part is the socket attachment (survives hibernation and
 * eviction); the rest is a cache rebuilt from it on wake.
 */
import * as v from "valibot";
import { ROLES } from "../protocol";
import type { Handoff } from "./handoff";
import { createBucket, type TokenBucket } from "./rate-limit";
import { AwaitingSchema, heartbeatText, newReadWindow, type ReadWindow, type SentHeartbeat } from "./reading";
import type { UserState } from "./users";

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
  /** The heartbeats the client has not echoed yet (src/room/reading.ts); absent when it is even. */
  awaiting: v.optional(AwaitingSchema),
  /** Set when the room counted the connection out, so a wake does not count it in again. */
  closing: v.optional(v.literal(true)),
  /** Bytes sent and not known read when the room closed it: still held by the runtime until the
   * client lets go, so still counted against the room's and the user's budgets after a wake. */
  queued: v.optional(v.number()),
  /** The client asked for batch frames at connect (`?batch=1`, src/room/batch-frames.ts). */
  batch: v.optional(v.literal(true)),
  /** The user's presence state when this socket last heard of it (src/room/presence-states.ts). */
  presence: v.optional(v.object({ state: v.record(v.string(), v.unknown()), at: v.number() })),
});
export type Attachment = v.InferOutput<typeof AttachmentSchema>;

export interface Connection {
  readonly ws: WebSocket;
  attachment: Attachment;
  /** Last frame received, ms; may be newer than `attachment.seenAt`. */
  lastFrameAt: number;
  bucket: TokenBucket;
  /** The user's state in this room (shared buckets, bytes queued), shared by its connections. */
  owner: UserState;
  /** Bytes sent and known read, and the heartbeats whose echo would say so (src/room/reading.ts). */
  window: ReadWindow;
  /** Set once the room has counted this connection out (our close or the peer's). */
  isGone: boolean;
  /**
   * Found closing at a wake without our own `closing` mark: the peer's close is on its way (or was
   * handled before the wake). Never counted in; its close event still owes the room a `leave`.
   */
  isDying?: boolean;
  /** Accept order in this instance of the room (src/room/connections.ts); absent when restored at a wake. */
  order?: number;
  /** An `auth` frame being verified: the connection's later frames wait for it (src/room/room.ts). */
  refreshing?: Promise<void>;
}

export function tagForUser(userId: string): string {
  return `u:${userId}`;
}

/** A connection just accepted: its attachment (saved on the socket) and its in-memory state. */
export function newConnection(
  ws: WebSocket,
  handoff: Handoff,
  burst: number,
  owner: UserState,
  now: number,
): Connection {
  const attachment: Attachment = {
    id: crypto.randomUUID(),
    room: handoff.room,
    user: handoff.user,
    role: handoff.role,
    exp: handoff.exp,
    ip: handoff.ip,
    connectedAt: now,
    seenAt: now,
    ...(handoff.batch ? { batch: true } : {}),
  };
  ws.serializeAttachment(attachment);
  return {
    ws,
    attachment,
    lastFrameAt: now,
    bucket: createBucket(burst, now),
    owner,
    window: newReadWindow(),
    isGone: false,
  };
}

/** Rebuilds a connection from its socket after a wake; `undefined` if the attachment is unusable. */
export function restoreConnection(
  ws: WebSocket,
  burst: number,
  now: number,
  ownerOf: (userId: string) => UserState,
): Connection | undefined {
  const parsed = v.safeParse(AttachmentSchema, ws.deserializeAttachment());
  if (!parsed.success) return undefined;
  const closedByUs = parsed.output.closing === true;
  const isDying = !closedByUs && ws.readyState !== WebSocket.OPEN;
  const window = newReadWindow(pendingOf(parsed.output));
  // What a closed socket still held at its close; an open one's count starts again (src/room/reading.ts).
  if (closedByUs) window.sent = parsed.output.queued ?? 0;
  return {
    ws,
    attachment: parsed.output,
    lastFrameAt: parsed.output.seenAt,
    bucket: createBucket(burst, now),
    owner: ownerOf(parsed.output.user.id),
    window,
    isGone: closedByUs || isDying,
    isDying,
  };
}

/** The newest heartbeat `attachment` awaits, as sent: its exact echo still counts after a wake. */
function pendingOf(attachment: Attachment): SentHeartbeat[] {
  const awaiting = attachment.awaiting;
  if (awaiting === undefined) return [];
  return [{ text: heartbeatText(awaiting.at, awaiting.nonce), at: awaiting.at, before: 0 }];
}

/** What every log line about a connection says. Never the token. */
export function logFieldsOf(conn: Connection): Record<string, unknown> {
  const a = conn.attachment;
  return { room: a.room, connectionId: a.id, user: a.user.id, role: a.role, ip: a.ip };
}
