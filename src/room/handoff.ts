/**
 * How the Worker hands a verified connection to its room object. The Worker builds the request to
 * the object from scratch (never forwarding the client's headers), so a client cannot forge the
 * identity header; the object still validates it, since it is its only input.
 */
import * as v from "valibot";
import { ROLES, RoomIdSchema } from "../protocol";

export const HANDOFF_HEADER = "X-Edge-Rooms-Handoff";

export const HandoffSchema = v.object({
  room: RoomIdSchema,
  user: v.object({ id: v.string(), name: v.string() }),
  role: v.picklist(ROLES),
  /** Token expiry, ms since the epoch. */
  exp: v.number(),
  ip: v.nullable(v.string()),
  since: v.optional(v.number()),
  /** Whether the client asked for batch frames (`?batch=1`). */
  batch: v.optional(v.boolean()),
  /** Whether the client offered `rooms.v1`, which the answer must then select. */
  selectProtocol: v.boolean(),
});
export type Handoff = v.InferOutput<typeof HandoffSchema>;

/**
 * The header value: JSON with every non-ASCII character written as a `\u` escape. Header values are
 * bytes; workerd passes raw UTF-8 through with a warning, and other runtimes refuse it. `JSON.parse`
 * reads the escapes back to the same strings.
 */
export function encodeHandoff(handoff: Handoff): string {
  return JSON.stringify(handoff).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
