/**
 * Who a broadcast goes to: every counted-in connection, and the same split by whether it takes
 * batch frames (src/room/batch-frames.ts). Built once and kept until a connection comes or goes.
 */
import type { Connection } from "./connection";

export interface BroadcastLists {
  all: Connection[];
  /** Connections that did not ask for batch frames (v1): one frame per message. */
  plain: Connection[];
  /** Connections that asked for batch frames (`?batch=1`). */
  batch: Connection[];
}

export function broadcastListsOf(conns: Iterable<Connection>): BroadcastLists {
  const lists: BroadcastLists = { all: [], plain: [], batch: [] };
  for (const conn of conns) {
    if (conn.isGone) continue;
    lists.all.push(conn);
    (conn.attachment.batch ? lists.batch : lists.plain).push(conn);
  }
  return lists;
}
