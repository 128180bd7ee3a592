/**
 * Wire protocol v1: the frames both sides exchange, as valibot schemas, and the close codes.
 *
 * This module imports only valibot so that the Worker and the browser client share one source of
 * truth for the wire format. Server-to-client schemas exist for the client (types and validation);
 * the server builds those frames as typed objects and never re-validates its own output.
 */
import * as v from "valibot";

/** The subprotocol a client offers (with `bearer.<jwt>`) and the server selects. */
export const SUBPROTOCOL = "rooms.v1";
/** Prefix of the subprotocol entry that carries the token in browsers. */
export const BEARER_PROTOCOL_PREFIX = "bearer.";

/** The exact text the runtime answers without waking the room, and its answer. */
export const PING_FRAME = '{"type":"ping"}';
export const PONG_FRAME = '{"type":"pong"}';

/** Room ids: letters, digits, `_` and `-`, 1 to 64 characters. */
export const ROOM_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
export const RoomIdSchema = v.pipe(v.string(), v.regex(ROOM_ID_PATTERN, "room must match ^[A-Za-z0-9_-]{1,64}$"));

/** What a token's `role` claim may say: `readonly` may not send; `admin` may use the HTTP API. */
export const ROLES = ["member", "readonly", "admin"] as const;
export type Role = (typeof ROLES)[number];

/** Client message ids, echoed in `ack`. */
export const MAX_CLIENT_ID_LENGTH = 64;
/** User ids (the token's `sub`). */
export const MAX_USER_ID_LENGTH = 128;
/**
 * User ids in UTF-8 bytes: the room tags each socket `u:<id>`, and the runtime refuses a tag over
 * 256 bytes (measured in workerd), so an id may take 254. 128 emoji are 128 characters but 512 bytes.
 */
export const MAX_USER_ID_BYTES = 254;
/** A user id: 1–128 characters and at most 254 UTF-8 bytes. */
export const UserIdSchema = v.pipe(
  v.string(),
  v.minLength(1, "must not be empty"),
  v.maxLength(MAX_USER_ID_LENGTH, `must be at most ${MAX_USER_ID_LENGTH} characters`),
  v.maxBytes(MAX_USER_ID_BYTES, `must be at most ${MAX_USER_ID_BYTES} UTF-8 bytes`),
);
/** Display names (the token's `name`). */
export const MAX_NAME_LENGTH = 64;
/** `data` may nest at most this deep; deeper payloads are refused as `invalid_message`. */
export const MAX_DATA_DEPTH = 32;
/** History pages over the socket hold 1..100 messages, 50 by default. */
export const HISTORY_PAGE_DEFAULT = 50;
export const HISTORY_PAGE_MAX = 100;
/** Longest `nonce` accepted in an echoed heartbeat (the server's are 16 characters). */
export const MAX_NONCE_LENGTH = 32;
/** Longest token accepted in an `auth` frame. */
export const MAX_TOKEN_LENGTH = 16_384;

/** Close codes the server uses. 1000/1009/1011 are standard; 4xxx mirror the HTTP meaning. */
export const CLOSE_CODES = {
  normal: 1000,
  messageTooBig: 1009,
  internalError: 1011,
  tokenExpired: 4401,
  /** Kicked by an admin, or a refreshed token that no longer grants the room. */
  forbidden: 4403,
  heartbeatTimeout: 4408,
  rateLimited: 4429,
  /** The room moved this connection to another of its objects: reconnect at once and resume. */
  moved: 4307,
} as const satisfies Record<string, number>;
export type CloseCode = (typeof CLOSE_CODES)[keyof typeof CLOSE_CODES];

/**
 * Presence `update` frames go out at most once per user per this many ms, carrying the latest state:
 * a user changing its state 60 times a second costs the room about 10 frames a second.
 */
export const PRESENCE_UPDATE_INTERVAL_MS = 100;

/** Codes of `error` frames. None of them closes the socket by itself. */
export const FRAME_ERROR_CODES = [
  "invalid_json",
  "invalid_message",
  "forbidden",
  "unknown_recipient",
  "rate_limited",
  "invalid_token",
  /** A `history` request while the user's connections have too much unread. */
  "over_budget",
  /** A message id its sender already used for a message with different content; carries the id. */
  "id_conflict",
  /** The message's batch could not be stored (a storage failure): nothing was sent; send it again. */
  "store_failed",
] as const;
export type FrameErrorCode = (typeof FRAME_ERROR_CODES)[number];

// ---------------------------------------------------------------------------------------------
// Client to server

const ClientIdSchema = v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_CLIENT_ID_LENGTH));

/** Depth of a parsed JSON value, counted without recursion so hostile nesting cannot overflow. */
export function jsonDepth(value: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (node === null || typeof node !== "object") continue;
    if (depth > max) max = depth;
    if (max > MAX_DATA_DEPTH) return max;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return max;
}

/** The content fields of a message, shared by the socket frame and the HTTP API's body. */
export function messageContentEntries(maxTextLength: number) {
  return {
    text: v.optional(v.pipe(v.string(), v.maxLength(maxTextLength, `text is longer than ${maxTextLength} characters`))),
    data: v.optional(
      v.pipe(
        v.unknown(),
        v.check((d) => jsonDepth(d) <= MAX_DATA_DEPTH, `data nests deeper than ${MAX_DATA_DEPTH} levels`),
      ),
    ),
    id: v.optional(ClientIdSchema),
  };
}

/** Any JSON value nested at most MAX_DATA_DEPTH deep. */
const JsonDataSchema = v.pipe(
  v.unknown(),
  v.check((d) => jsonDepth(d) <= MAX_DATA_DEPTH, `data nests deeper than ${MAX_DATA_DEPTH} levels`),
);

/** A presence state: a JSON object (not an array, not null), nested at most MAX_DATA_DEPTH deep. */
export const PresenceStateSchema = v.pipe(
  // Not v.record: it would take an array and return an object of its indexes.
  v.custom<Record<string, unknown>>(
    (s) => typeof s === "object" && s !== null && !Array.isArray(s),
    "state must be a JSON object",
  ),
  v.check((s) => jsonDepth(s) <= MAX_DATA_DEPTH, `state nests deeper than ${MAX_DATA_DEPTH} levels`),
);
export type PresenceState = v.InferOutput<typeof PresenceStateSchema>;

/** A message needs `text` or `data`. */
export const hasContent = (m: { text?: string; data?: unknown }) => m.text !== undefined || m.data !== undefined;
export const NO_CONTENT_MESSAGE = "a message needs text or data";

/** Builds the schema of a client frame for a room whose `text` limit is `maxTextLength`. */
export function clientFrameSchema(maxTextLength: number) {
  return v.variant("type", [
    v.pipe(
      v.object({
        type: v.literal("message"),
        ...messageContentEntries(maxTextLength),
        to: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_USER_ID_LENGTH))),
      }),
      v.check((m) => hasContent(m), NO_CONTENT_MESSAGE),
    ),
    v.object({ type: v.literal("ping") }),
    // An echo of a `heartbeat` frame. Only a byte-for-byte echo of the newest one sent to this
    // connection proves that the client reads (src/room/reading.ts); anything else is just a frame.
    v.object({
      type: v.literal("heartbeat"),
      timestamp: v.number(),
      nonce: v.optional(v.pipe(v.string(), v.maxLength(MAX_NONCE_LENGTH))),
    }),
    v.object({
      type: v.literal("auth"),
      token: v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_TOKEN_LENGTH)),
    }),
    // Ephemeral: relayed at once, never stored, no seq (src/room/signals.ts).
    v.pipe(
      v.object({
        type: v.literal("signal"),
        data: JsonDataSchema,
        to: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_USER_ID_LENGTH))),
      }),
      v.check((s) => s.data !== undefined, "a signal needs data"),
    ),
    // The sender's user's presence state (src/room/presence-states.ts).
    v.object({ type: v.literal("presence"), state: PresenceStateSchema }),
    v.object({
      type: v.literal("history"),
      before: v.optional(v.pipe(v.number(), v.safeInteger(), v.minValue(1))),
      limit: v.optional(
        v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(HISTORY_PAGE_MAX)),
        HISTORY_PAGE_DEFAULT,
      ),
    }),
  ]);
}
export type ClientFrame = v.InferOutput<ReturnType<typeof clientFrameSchema>>;
export type ClientMessageFrame = Extract<ClientFrame, { type: "message" }>;
export type ClientSignalFrame = Extract<ClientFrame, { type: "signal" }>;
export type ClientPresenceFrame = Extract<ClientFrame, { type: "presence" }>;

const isOptionalString = (x: unknown, min: number, max: number) =>
  x === undefined || (typeof x === "string" && x.length >= min && x.length <= max);

/**
 * The hot path's shortcut: a `message` frame that `clientFrameSchema` would accept as it is, checked
 * by hand, or `undefined` to let the schema decide (and word the error). It accepts only what the
 * schema accepts, and returns what the schema would; a property test holds the two together.
 */
export function quickMessageFrame(raw: unknown, maxTextLength: number): ClientMessageFrame | undefined {
  if (typeof raw !== "object" || raw === null) return undefined;
  const { type, text, data, id, to } = raw as Record<string, unknown>;
  if (type !== "message" || (text === undefined && data === undefined)) return undefined;
  if (!isOptionalString(text, 0, maxTextLength) || !isOptionalString(id, 1, MAX_CLIENT_ID_LENGTH)) return undefined;
  if (!isOptionalString(to, 1, MAX_USER_ID_LENGTH)) return undefined;
  if (data !== undefined && jsonDepth(data) > MAX_DATA_DEPTH) return undefined;
  const frame: ClientMessageFrame = { type: "message" };
  if (text !== undefined) frame.text = text as string;
  if (data !== undefined) frame.data = data;
  if (id !== undefined) frame.id = id as string;
  if (to !== undefined) frame.to = to as string;
  return frame;
}

// ---------------------------------------------------------------------------------------------
// Server to client

export const UserSchema = v.object({ id: v.string(), name: v.string() });
export type User = v.InferOutput<typeof UserSchema>;

export const PresenceEntrySchema = v.object({
  id: v.string(),
  name: v.string(),
  connections: v.number(),
  /** The user's presence state, once it set one. */
  state: v.optional(v.record(v.string(), v.unknown())),
});
export type PresenceEntry = v.InferOutput<typeof PresenceEntrySchema>;

export const WelcomeFrameSchema = v.object({
  type: v.literal("welcome"),
  room: v.string(),
  connectionId: v.string(),
  user: UserSchema,
  seq: v.number(),
  presence: v.array(PresenceEntrySchema),
  heartbeatInterval: v.number(),
  recovered: v.optional(v.boolean()),
  /**
   * With `recovered: false`: the seqs after `since` that the replay does not carry (gone from
   * history, or past the replay budget); the replay, if any, is `to + 1` … `seq`.
   */
  missed: v.optional(v.object({ from: v.number(), to: v.number() })),
  /** The connection asked for batch frames (`?batch=1`): it may get JSON arrays of frames. */
  batch: v.optional(v.literal(true)),
});

export const MessageFrameSchema = v.object({
  type: v.literal("message"),
  /** Absent on direct messages, which take no room sequence number. */
  seq: v.optional(v.number()),
  id: v.optional(v.string()),
  room: v.string(),
  from: UserSchema,
  /** Present on direct messages: the recipient's user id. */
  to: v.optional(v.string()),
  text: v.optional(v.string()),
  data: v.optional(v.unknown()),
  ts: v.number(),
});

export const AckFrameSchema = v.object({ type: v.literal("ack"), id: v.string(), seq: v.optional(v.number()) });

/**
 * `join` and `leave` since v1; `update` (with `state`) was added later: a client that knows only the
 * first two fails this schema on an `update` and skips the frame, as it skips every unknown frame.
 */
export const PresenceFrameSchema = v.object({
  type: v.literal("presence"),
  event: v.picklist(["join", "leave", "update"]),
  user: UserSchema,
  online: v.number(),
  /** On `update`: the user's latest state. */
  state: v.optional(v.record(v.string(), v.unknown())),
});

/** An ephemeral signal relayed from `from` (to the room, or to the user `to`). Never stored. */
export const SignalFrameSchema = v.object({
  type: v.literal("signal"),
  from: UserSchema,
  data: v.unknown(),
  to: v.optional(v.string()),
});

/** Sent at every alarm and whenever much is unread; echo it back byte for byte. */
export const HeartbeatFrameSchema = v.object({
  type: v.literal("heartbeat"),
  timestamp: v.number(),
  /** Random per connection and per heartbeat: an echo cannot be guessed, only read. Optional for the
   * client's sake: it echoes the text whatever it holds, also against a server that sends none. */
  nonce: v.optional(v.string()),
});

export const PongFrameSchema = v.object({ type: v.literal("pong") });

/** Answer to a successful in-band token refresh: the connection's new expiry (ms). */
export const AuthFrameSchema = v.object({ type: v.literal("auth"), exp: v.number() });

/** A page of stored messages, in seq order. */
export const HistoryFrameSchema = v.object({
  type: v.literal("history"),
  messages: v.array(MessageFrameSchema),
  hasMore: v.boolean(),
});

/**
 * Sent to each recipient immediately before every relayed binary frame (on the same socket, so in
 * order): who sent the binary frame that follows.
 */
export const BinaryFrameSchema = v.object({ type: v.literal("binary"), from: UserSchema });

export const ErrorFrameSchema = v.object({
  type: v.literal("error"),
  code: v.picklist(FRAME_ERROR_CODES),
  message: v.string(),
  id: v.optional(v.string()),
});

export const ServerFrameSchema = v.variant("type", [
  WelcomeFrameSchema,
  MessageFrameSchema,
  AckFrameSchema,
  PresenceFrameSchema,
  HeartbeatFrameSchema,
  PongFrameSchema,
  AuthFrameSchema,
  HistoryFrameSchema,
  BinaryFrameSchema,
  SignalFrameSchema,
  ErrorFrameSchema,
]);

export type WelcomeFrame = v.InferOutput<typeof WelcomeFrameSchema>;
export type MessageFrame = v.InferOutput<typeof MessageFrameSchema>;
export type AckFrame = v.InferOutput<typeof AckFrameSchema>;
export type PresenceFrame = v.InferOutput<typeof PresenceFrameSchema>;
export type HeartbeatFrame = v.InferOutput<typeof HeartbeatFrameSchema>;
export type ErrorFrame = v.InferOutput<typeof ErrorFrameSchema>;
export type AuthFrame = v.InferOutput<typeof AuthFrameSchema>;
export type HistoryFrame = v.InferOutput<typeof HistoryFrameSchema>;
export type BinaryFrame = v.InferOutput<typeof BinaryFrameSchema>;
export type SignalFrame = v.InferOutput<typeof SignalFrameSchema>;
export type ServerFrame = v.InferOutput<typeof ServerFrameSchema>;
