/**
 * Direct messages (a `message` frame with `to`): sent to the recipient's connections and to the
 * sender's other connections, never stored, no seq; the sender gets an `ack` (no seq) once someone
 * got it, or `unknown_recipient` when nobody did. In a sharded room the recipient's connections may
 * be in another object (docs/scaling.md): the message goes there over RPC (`relayDirect`), and the
 * returned promise holds the sender's later answers until that object answered (src/room/messages.ts
 * calls this from `reply`).
 */
import type { AckFrame, ClientMessageFrame, MessageFrame } from "../protocol";
import { type Connection, tagForUser } from "./connection";
import type { Connections } from "./connections";

/** Sends `text` to `to`'s connections in the object it belongs to: how many got it; `undefined` when that is here. */
export type RelayDirect = (to: string, text: string) => Promise<number> | undefined;

export function sendDirect(
  connections: Connections,
  relayDirect: RelayDirect | undefined,
  conn: Connection,
  frame: ClientMessageFrame,
  to: string,
  now: number,
): Promise<void> | undefined {
  const recipients = connections.live(tagForUser(to));
  const { room, user: from } = conn.attachment;
  const out: MessageFrame = {
    type: "message",
    id: frame.id,
    room,
    from,
    to,
    text: frame.text,
    data: frame.data,
    ts: now,
  };
  const text = JSON.stringify(out);
  const elsewhere = recipients.length === 0 ? relayDirect?.(to, text) : undefined;
  if (elsewhere !== undefined) {
    return elsewhere.then(
      (delivered) => directDone(connections, conn, frame, to, text, delivered > 0),
      () => directDone(connections, conn, frame, to, text, false),
    );
  }
  connections.beforeOthers?.();
  for (const target of recipients) if (target !== conn) connections.send(target, text);
  directDone(connections, conn, frame, to, text, recipients.length > 0);
  return undefined;
}

/** The sender's other connections and its ack, or `unknown_recipient` when nobody got it. */
function directDone(
  connections: Connections,
  conn: Connection,
  frame: ClientMessageFrame,
  to: string,
  text: string,
  isDelivered: boolean,
): void {
  if (!isDelivered) {
    connections.sendError(conn, "unknown_recipient", "that user has no connection in this room", frame.id);
    return;
  }
  const recipients = new Set(connections.live(tagForUser(to)));
  for (const target of connections.live(tagForUser(conn.attachment.user.id))) {
    if (target !== conn && !recipients.has(target)) connections.send(target, text);
  }
  if (frame.id !== undefined) connections.send(conn, JSON.stringify({ type: "ack", id: frame.id } satisfies AckFrame));
}
