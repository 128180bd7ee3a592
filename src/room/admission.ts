/**
 * What a room checks before it accepts a connection the Worker already verified: room and user
 * caps that count every socket the room still holds (a socket closed for not reading holds its
 * unread bytes until the client lets go, so it counts until then), the user's unread bytes, and the user's connect rate.
 * Each refusal is an `HttpError`, answered before the upgrade completes.
 */
import type { Config } from "../common/config";
import { HttpError } from "../common/errors";
import { tagForUser } from "./connection";
import type { Connections } from "./connections";
import type { Handoff } from "./handoff";
import type { Users } from "./users";

export function refuseConnect(
  connections: Connections,
  handoff: Handoff,
  config: Config,
  users: Users,
  now: number,
): HttpError | undefined {
  if (connections.heldCount() >= config.maxConnectionsPerRoom) {
    return new HttpError("room_full", "the room is full; retry later", { headers: { "Retry-After": "10" } });
  }
  const userId = handoff.user.id;
  if (connections.heldCount(tagForUser(userId)) >= config.maxConnectionsPerUser) {
    return new HttpError(
      "too_many_connections",
      `this user already holds ${config.maxConnectionsPerUser} connections to this room (MAX_CONNECTIONS_PER_USER)`,
      { headers: { "Retry-After": "10" } },
    );
  }
  if (users.get(userId, now).queued >= config.maxUnreadBytes) {
    return new HttpError(
      "too_many_connections",
      "this user's connections to this room hold too much unread (MAX_UNREAD_BYTES): read or close them first",
      { headers: { "Retry-After": "10" } },
    );
  }
  const retryAfter = users.takeConnect(userId, now);
  if (retryAfter !== undefined) {
    return new HttpError(
      "too_many_connects",
      `this user connects too often to this room (CONNECTS_PER_USER_PER_MINUTE=${config.connectsPerUserPerMinute})`,
      { headers: { "Retry-After": String(retryAfter) } },
    );
  }
  return undefined;
}
