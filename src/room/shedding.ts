/**
 * Which slow readers a room closes when the bytes it has queued pass a budget (the room's, or one
 * user's). Pure, so it is tested without sockets.
 *
 * Only a reader whose oldest heartbeat has waited longer than a grace for its echo can be shed
 * (SHED_GRACE_MS for a room over its budget; a user over its own gets the burst grace of
 * src/room/reading.ts, as one connection over its budget does): one that keeps up echoes within a round trip, so it is never closed. Among those, the one
 * with the most unread goes first, until what can still grow fits the budget. Closing a socket does
 * not free what the runtime already holds for it (that goes when the client lets go of the
 * connection), but it stops it growing: so the bytes of the readers closed count as settled.
 */

/** A reader must be this late with a heartbeat's echo before an over-budget room may close it. */
export const SHED_GRACE_MS = 3000;

export interface Reader {
  /** Bytes sent and not known read. */
  unread: number;
  /** When its oldest unechoed heartbeat went out; `undefined` when none is awaited. */
  awaitingSince: number | undefined;
}

/** The readers to close, slowest first, for `total` queued bytes to stop growing past `budget`. */
export function pickShed<R extends Reader>(
  readers: Iterable<R>,
  total: number,
  budget: number,
  now: number,
  graceMs = SHED_GRACE_MS,
): R[] {
  if (total <= budget) return [];
  const late = [...readers].filter((r) => r.awaitingSince !== undefined && now - r.awaitingSince > graceMs);
  late.sort((a, b) => b.unread - a.unread);
  const shed: R[] = [];
  let growing = total;
  for (const reader of late) {
    if (growing <= budget) break;
    shed.push(reader);
    growing -= reader.unread;
  }
  return shed;
}
