/**
 * Accepting a connection the room admitted: the hibernatable socket, its state, the `join` for the
 * others, then the welcome and the resume replay, and the 101 that hands the client its end.
 */
import type { Config } from "../common/config";
import { describeError, log } from "../common/log";
import { CLOSE_CODES, SUBPROTOCOL, type WelcomeFrame } from "../protocol";
import { batchFrames } from "./batch-frames";
import { type Connection, logFieldsOf, newConnection, tagForUser } from "./connection";
import type { Connections } from "./connections";
import type { Handoff } from "./handoff";
import type { ReadLog, Replay } from "./history";
import type { Messages } from "./messages";
import type { PresenceFeed } from "./presence-feed";
import type { PresenceStates } from "./presence-states";
import type { Users } from "./users";

export interface RoomParts {
  connections: Connections;
  presence: PresenceFeed;
  messages: Messages;
  history: ReadLog;
  users: Users;
  states: PresenceStates;
}

export function accept(ctx: DurableObjectState, handoff: Handoff, config: Config, parts: RoomParts): Response {
  const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
  ctx.acceptWebSocket(server, [tagForUser(handoff.user.id)]);
  const now = Date.now();
  const conn = newConnection(server, handoff, config.rateLimitBurst, parts.users.get(handoff.user.id, now), now);
  parts.connections.add(conn);
  try {
    greet(conn, handoff, config, parts);
  } catch (error) {
    // Accepted but not greeted: close it and count it out rather than leave a ghost.
    log("error", "connect_failed", { ...logFieldsOf(conn), ...describeError(error) });
    parts.connections.close(conn, CLOSE_CODES.internalError, "internal error");
  }
  const headers = handoff.selectProtocol ? { "Sec-WebSocket-Protocol": SUBPROTOCOL } : undefined;
  return new Response(null, { status: 101, webSocket: client, headers });
}

/** The `join` for the others, then the welcome and the resume replay. */
function greet(conn: Connection, handoff: Handoff, config: Config, parts: RoomParts): void {
  const { connections, presence, messages, history, states } = parts;
  const wasHere = presence.has(handoff.user.id);
  presence.arrived(handoff.user, conn.ws);
  states.arrived(conn, wasHere);
  const replay = handoff.since === undefined ? undefined : messages.replay(conn, handoff.since, config);
  const welcome: WelcomeFrame = {
    type: "welcome",
    room: handoff.room,
    connectionId: conn.attachment.id,
    user: handoff.user,
    seq: history.latestSeq,
    // Above PRESENCE_ROSTER_MAX: no list (src/room/roster-mode.ts); the counts follow the welcome.
    presence: presence.isFull ? presence.roomList() : [],
    heartbeatInterval: config.heartbeatIntervalMs,
    ...(replay ? { recovered: replay.recovered } : {}),
    ...(replay && handoff.since !== undefined ? missedOf(handoff.since, history.latestSeq, replay) : {}),
    ...(conn.attachment.batch ? { batch: true } : {}),
    ...(presence.isFull ? {} : { roster: false as const }),
  };
  // Counted, but not judged: a connection is never behind on what it is greeted with.
  connections.send(conn, JSON.stringify(welcome), false);
  if (!presence.isFull) connections.send(conn, JSON.stringify(presence.occupancyNow()), false);
  // A connection that takes batch frames gets the replay in batch frames too.
  const frames = replay?.frames ?? [];
  for (const frame of conn.attachment.batch ? batchFrames(frames) : frames) connections.send(conn, frame, false);
  log("debug", "connection_open", {
    ...logFieldsOf(conn),
    since: handoff.since,
    recovered: replay?.recovered,
    replayed: replay?.frames.length,
  });
}

/**
 * The seqs after `since` a replay that did not recover everything leaves out: a replay is the newest
 * frames, so they are the first ones, up to the one before the replay's first (none for a `since`
 * ahead of the room, which has nothing to give).
 */
function missedOf(since: number, latest: number, replay: Replay): Pick<WelcomeFrame, "missed"> {
  const to = latest - replay.frames.length;
  return replay.recovered || to <= since ? {} : { missed: { from: since + 1, to } };
}
