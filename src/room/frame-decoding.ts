/**
 * A text frame from a client, decoded: JSON, then the frame schema (with the hot path's checked
 * shortcut for `message` frames first). A frame that fails says why, with the client's `id` when
 * it carried a usable one, so the client can fail that very send.
 */
import * as v from "valibot";
import { type ClientFrame, type clientFrameSchema, type FrameErrorCode, quickMessageFrame } from "../protocol";
import { clientIdOf } from "./socket-chores";

export type Decoded = { frame: ClientFrame } | { error: { code: FrameErrorCode; message: string; id?: string } };

/** What `parseFrameJson` returns for a frame that is not JSON. */
export const INVALID_JSON = Symbol("invalid JSON");

/** The frame's JSON, or INVALID_JSON. */
export function parseFrameJson(message: string): unknown {
  try {
    return JSON.parse(message);
  } catch {
    return INVALID_JSON;
  }
}

/** Decodes what `parseFrameJson` returned (the room parses a frame before it picks its limits). */
export function decodeFrame(
  raw: unknown,
  maxTextLength: number,
  schema: ReturnType<typeof clientFrameSchema>,
): Decoded {
  if (raw === INVALID_JSON) return { error: { code: "invalid_json", message: "the frame is not valid JSON" } };
  const quick = quickMessageFrame(raw, maxTextLength);
  if (quick !== undefined) return { frame: quick };
  const parsed = v.safeParse(schema, raw);
  if (parsed.success) return { frame: parsed.output };
  const issue = parsed.issues[0];
  const path = v.getDotPath(issue);
  const text = `${path ? `${path}: ` : ""}${issue.message}`.slice(0, 200);
  return { error: { code: "invalid_message", message: text, id: clientIdOf(raw) } };
}
