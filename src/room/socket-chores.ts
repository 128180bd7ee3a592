/**
 * Small socket chores of the room, kept out of its class: guarded sends and closes, the attachment's
 * counted-out mark, and the client's id read from a frame that failed validation.
 */

import { MAX_CLIENT_ID_LENGTH } from "../protocol";
import type { Connection } from "./connection";

/** Marks a connection counted out in its attachment, so a wake that still lists the socket skips it. */
export function markClosing(conn: Connection): void {
  if (conn.attachment.closing) return;
  conn.attachment.closing = true;
  const unread = conn.window.sent - conn.window.read;
  if (unread > 0) conn.attachment.queued = unread;
  saveAttachment(conn);
}

/** Writes a connection's attachment, unless its socket is closed for good (a wake will not list it). */
export function saveAttachment(conn: Connection): void {
  try {
    conn.ws.serializeAttachment(conn.attachment);
  } catch {
    // Closed: nothing left to survive a wake.
  }
}

export function trySend(ws: WebSocket, frame: string | ArrayBuffer): void {
  try {
    ws.send(frame);
  } catch {
    // The peer went away between the check and the send; its close event will count it out.
  }
}

export function safeClose(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 123));
  } catch {
    // Already closing or closed.
  }
}

/** Codes that may be received but never sent in a close frame. */
export function isReservedCloseCode(code: number): boolean {
  return code === 1005 || code === 1006 || code === 1015;
}

/** The client's message id, when a frame that failed validation still carried a usable one. */
export function clientIdOf(raw: unknown): string | undefined {
  if (typeof raw !== "object" || raw === null || !Object.hasOwn(raw, "id")) return undefined;
  const id = (raw as { id: unknown }).id;
  return typeof id === "string" && id.length > 0 && id.length <= MAX_CLIENT_ID_LENGTH ? id : undefined;
}
