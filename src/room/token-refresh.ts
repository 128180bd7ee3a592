/**
 * In-band token refresh (an `auth` frame): a long session swaps its token without reconnecting.
 * The new token must verify, name the same user and still grant the room. The answer goes out
 * through `reply`, after what the room queued before it (src/room/commit-queue.ts).
 */
import { canAccessRoom, type Identity, verifyToken } from "../common/auth";
import type { Config } from "../common/config";
import { HttpError } from "../common/errors";
import { log } from "../common/log";
import { type AuthFrame, CLOSE_CODES } from "../protocol";
import { type Connection, logFieldsOf } from "./connection";
import type { Connections } from "./connections";
import { saveAttachment } from "./socket-chores";

/** Applies the refresh; returns the connection's new expiry (ms), or nothing when refused. */
export async function refreshToken(
  conn: Connection,
  token: string,
  config: Config,
  connections: Connections,
  reply: (run: () => void) => void,
): Promise<number | undefined> {
  let identity: Identity;
  try {
    identity = await verifyToken(token, config);
  } catch (error) {
    const message =
      error instanceof HttpError && error.code === "invalid_token" ? error.message : "the token could not be verified";
    reply(() => connections.sendError(conn, "invalid_token", message));
    return undefined;
  }
  // The socket may have closed while the key set was fetched.
  if (conn.isGone) return undefined;
  const a = conn.attachment;
  if (identity.userId !== a.user.id || !canAccessRoom(identity, a.room)) {
    reply(() => {
      connections.sendError(conn, "forbidden", "the new token is for another user or does not grant this room");
      connections.close(conn, CLOSE_CODES.forbidden, "forbidden");
    });
    return undefined;
  }
  a.exp = identity.exp;
  a.role = identity.role;
  a.user = { id: a.user.id, name: identity.name };
  saveAttachment(conn); // the socket may be closing by now
  reply(() => connections.send(conn, JSON.stringify({ type: "auth", exp: identity.exp } satisfies AuthFrame)));
  log("debug", "token_refreshed", { ...logFieldsOf(conn), exp: identity.exp });
  return identity.exp;
}
