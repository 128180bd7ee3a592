/**
 * The upgrade gate: everything decided before a room object is touched, in the documented order.
 * Each refusal is an `HttpError`; the app maps it to a response in one place.
 */
import * as v from "valibot";
import { canAccessRoom, findToken, verifyToken } from "../common/auth";
import type { Config } from "../common/config";
import { HttpError } from "../common/errors";
import { BEARER_PROTOCOL_PREFIX, RoomIdSchema, SUBPROTOCOL } from "../protocol";
import type { Handoff } from "../room/handoff";
import { checkConnectLimit } from "./connect-limit";
import { handshakeIssues } from "./handshake";
import { isOriginAllowed } from "./origins";

const ConnectQuerySchema = v.object({
  since: v.optional(
    v.pipe(v.string(), v.regex(/^\d{1,15}$/, "since must be a whole number (a seq)"), v.transform(Number)),
  ),
  token: v.optional(v.string()),
  /** `1` asks for batch frames (src/room/batch-frames.ts); `0`, like leaving it out, does not. */
  batch: v.optional(
    v.pipe(
      v.picklist(["0", "1"], "batch must be 1 (or 0)"),
      v.transform((b) => b === "1"),
    ),
  ),
});

function issuesOf(issues: readonly v.BaseIssue<unknown>[], where: string): string[] {
  return issues.map((i) => `${v.getDotPath(i) ?? where}: ${i.message}`);
}

/** Parses a `Sec-WebSocket-Protocol` header into its offered entries. */
export function offeredProtocols(request: Request): string[] {
  const header = request.headers.get("Sec-WebSocket-Protocol");
  if (header === null) return [];
  return header
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
}

/**
 * Runs the gate's steps and returns what the room object needs to accept the connection.
 * `limiter` is the `CONNECT_LIMITER` binding (absent: no per-IP limit).
 */
export async function admit(
  request: Request,
  room: string,
  config: Config,
  limiter: RateLimit | undefined,
): Promise<Handoff> {
  // 1. Only WebSocket upgrades, and only real handshakes: a plain request that says
  // `Upgrade: websocket` would otherwise be accepted by the room as a connection that never was.
  if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
    throw new HttpError("upgrade_required", "this endpoint only accepts WebSocket upgrades", {
      headers: { Upgrade: "websocket" },
    });
  }
  const handshake = handshakeIssues(request.headers);
  if (handshake.length > 0) {
    throw new HttpError("invalid_request", "this is not a WebSocket handshake", { issues: handshake });
  }

  // 2. The per-IP connect limit, before any work on the token or the room.
  const ip = request.headers.get("CF-Connecting-IP");
  await checkConnectLimit(limiter, ip);

  // 3. Room id, query and subprotocol offer.
  const url = new URL(request.url);
  const roomResult = v.safeParse(RoomIdSchema, room);
  const query = v.safeParse(ConnectQuerySchema, {
    since: url.searchParams.get("since") ?? undefined,
    token: url.searchParams.get("token") ?? undefined,
    batch: url.searchParams.get("batch") ?? undefined,
  });
  const protocols = offeredProtocols(request);
  const issues = [
    ...(roomResult.success ? [] : issuesOf(roomResult.issues, "room")),
    ...(query.success ? [] : issuesOf(query.issues, "query")),
  ];
  if (protocols.length > 0 && !protocols.includes(SUBPROTOCOL)) {
    issues.push(`Sec-WebSocket-Protocol: offer ${SUBPROTOCOL} (with ${BEARER_PROTOCOL_PREFIX}<token>)`);
  }
  if (issues.length > 0 || !query.success) {
    throw new HttpError("invalid_request", "the room id or query is invalid", { issues });
  }

  // 4. Origin, when the browser says one and an allow-list is set.
  const origin = request.headers.get("Origin");
  if (origin !== null && config.allowedOrigins !== undefined && !isOriginAllowed(config.allowedOrigins, origin)) {
    throw new HttpError("origin_not_allowed", "this origin may not connect");
  }

  // 5. A token that verifies.
  const found = findToken(request, protocols, query.output.token, config);
  if (found === undefined) {
    const where = config.allowQueryToken
      ? "an Authorization header, a bearer.<token> subprotocol or a token query parameter"
      : "an Authorization header or a bearer.<token> subprotocol";
    throw new HttpError("missing_token", `a token is required: send it in ${where}`, {
      headers: { "WWW-Authenticate": "Bearer" },
    });
  }
  const identity = await verifyToken(found.token, config);

  // 6. The token's rooms claim must cover this room.
  if (!canAccessRoom(identity, room)) {
    throw new HttpError("forbidden", "the token does not grant access to this room");
  }

  return {
    room,
    user: { id: identity.userId, name: identity.name },
    role: identity.role,
    exp: identity.exp,
    ip,
    since: query.output.since,
    ...(query.output.batch ? { batch: true } : {}),
    selectProtocol: protocols.length > 0,
  };
}
