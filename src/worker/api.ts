/**
 * The server-side HTTP API: publish into a room, read its history, see who is there, kick a user.
 * Every route takes `Authorization: Bearer <jwt>`, verified exactly like the socket gate.
 */
import { type Context, Hono } from "hono";
import * as v from "valibot";
import { canAccessRoom, type Identity, verifyToken } from "../common/auth";
import type { Config } from "../common/config";
import { HttpError } from "../common/errors";
import { hasContent, messageContentEntries, NO_CONTENT_MESSAGE, RoomIdSchema, UserIdSchema } from "../protocol";
import { framesToJsonArray } from "../room/history";

export type ApiEnv = { Bindings: Env; Variables: { config: Config } };

export const API_PAGE_DEFAULT = 50;
export const API_PAGE_MAX = 500;

const SeqSchema = v.pipe(v.string(), v.regex(/^\d{1,15}$/, "must be a whole number (a seq)"), v.transform(Number));

/** A `limit` query parameter: 1 to `max`, `fallback` when absent. */
function pageLimit(max: number, fallback: number) {
  return v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d{1,4}$/, "must be a whole number"),
      v.transform(Number),
      v.minValue(1, "must be at least 1"),
      v.maxValue(max, `must be at most ${max}`),
    ),
    String(fallback),
  );
}

const PageQuerySchema = v.pipe(
  v.object({
    since: v.optional(SeqSchema),
    before: v.optional(SeqSchema),
    limit: pageLimit(API_PAGE_MAX, API_PAGE_DEFAULT),
  }),
  v.check((q) => q.since === undefined || q.before === undefined, "give since or before, not both"),
);

function bodySchema(maxTextLength: number) {
  return v.pipe(
    v.object(messageContentEntries(maxTextLength)),
    v.check((b) => hasContent(b), NO_CONTENT_MESSAGE),
  );
}

export function invalid(issues: readonly v.BaseIssue<unknown>[], where: string, message: string): HttpError {
  return new HttpError("invalid_request", message, {
    issues: issues.map((i) => `${v.getDotPath(i) ?? where}: ${i.message}`),
  });
}

export function roomParam(c: Context<ApiEnv>): string {
  const result = v.safeParse(RoomIdSchema, c.req.param("room"));
  if (!result.success) throw invalid(result.issues, "room", "the room id is invalid");
  return result.output;
}

/** Verifies the bearer token and that it covers `room` (and, when asked, that it is an admin's). */
export async function authorize(c: Context<ApiEnv>, room: string, role?: "admin"): Promise<Identity> {
  const header = c.req.header("Authorization");
  const token = header === undefined ? undefined : /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
  if (token === undefined) {
    throw new HttpError("missing_token", "send the token in an Authorization: Bearer header", {
      headers: { "WWW-Authenticate": "Bearer" },
    });
  }
  const identity = await verifyToken(token, c.get("config"));
  if (!canAccessRoom(identity, room)) throw new HttpError("forbidden", "the token does not grant access to this room");
  if (role === "admin" && identity.role !== "admin")
    throw new HttpError("forbidden", "this route needs the admin role");
  return identity;
}

/** Reads a JSON body of at most `maxBytes`. */
export async function readJson(c: Context<ApiEnv>, maxBytes: number): Promise<unknown> {
  const type = c.req.header("Content-Type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError("unsupported_media_type", "send the body as Content-Type: application/json");
  }
  const declared = Number(c.req.header("Content-Length") ?? "0");
  if (declared > maxBytes) throw new HttpError("payload_too_large", `the body is over ${maxBytes} bytes`);
  const body = await c.req.arrayBuffer();
  if (body.byteLength > maxBytes) throw new HttpError("payload_too_large", `the body is over ${maxBytes} bytes`);
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(body));
  } catch {
    throw new HttpError("invalid_request", "the body is not valid JSON");
  }
}

function roomStub(c: Context<ApiEnv>, room: string) {
  return c.env.ROOMS.get(c.env.ROOMS.idFromName(room));
}

export const api = new Hono<ApiEnv>();

api.post("/rooms/:room/messages", async (c) => {
  const room = roomParam(c);
  const identity = await authorize(c, room, "admin");
  const config = c.get("config");
  const raw = await readJson(c, config.maxMessageBytes);
  const body = v.safeParse(bodySchema(config.maxTextLength), raw);
  if (!body.success) throw invalid(body.issues, "body", "the message is invalid");
  const from = { id: identity.userId, name: identity.name };
  const published = await roomStub(c, room).publish(room, from, body.output);
  if (published.outcome === "conflict") {
    throw new HttpError("id_conflict", "this id was already used for a different message");
  }
  return c.json({ seq: published.seq, ts: published.ts }, published.outcome === "duplicate" ? 200 : 201);
});

api.get("/rooms/:room/messages", async (c) => {
  const room = roomParam(c);
  await authorize(c, room);
  const query = v.safeParse(PageQuerySchema, {
    since: c.req.query("since"),
    before: c.req.query("before"),
    limit: c.req.query("limit"),
  });
  if (!query.success) throw invalid(query.issues, "query", "the query is invalid");
  const { since, before, limit } = query.output;
  const page = await roomStub(c, room).readMessages(since === undefined ? { before, limit } : { since, limit });
  // The stored frames are JSON already: join them rather than parse and serialize them again.
  return c.body(`{"messages":${framesToJsonArray(page.frames)},"hasMore":${page.hasMore}}`, 200, {
    "Content-Type": "application/json",
  });
});

api.get("/rooms/:room", async (c) => {
  const room = roomParam(c);
  await authorize(c, room, "admin");
  const info = await roomStub(c, room).info();
  return c.json({ room, ...info });
});

export const ROSTER_PAGE_DEFAULT = 100;
export const ROSTER_PAGE_MAX = 1000;

const RosterQuerySchema = v.object({
  after: v.optional(UserIdSchema),
  limit: pageLimit(ROSTER_PAGE_MAX, ROSTER_PAGE_DEFAULT),
});

// The room's users, a page at a time by user id, over every object of a sharded room.
api.get("/rooms/:room/users", async (c) => {
  const room = roomParam(c);
  await authorize(c, room, "admin");
  const query = v.safeParse(RosterQuerySchema, { after: c.req.query("after"), limit: c.req.query("limit") });
  if (!query.success) throw invalid(query.issues, "query", "the query is invalid");
  const page = await roomStub(c, room).roster(query.output.after, query.output.limit);
  return c.json(page);
});

api.delete("/rooms/:room/users/:user", async (c) => {
  const room = roomParam(c);
  await authorize(c, room, "admin");
  const user = v.safeParse(UserIdSchema, c.req.param("user"));
  if (!user.success) throw invalid(user.issues, "user", "the user id is invalid");
  await roomStub(c, room).kick(user.output);
  return c.body(null, 204);
});
