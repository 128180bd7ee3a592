/**
 * Frames in and out: the message frame a send writes, checked before it is queued; the server frames
 * read off the socket; and incoming `data` checked against the caller's `dataSchema`.
 */
import * as v from "valibot";
import { clientFrameSchema, type MessageFrame, type ServerFrame, ServerFrameSchema } from "../protocol/index.js";
import { RoomClientError } from "./errors.js";
import type { RoomMessage, SendOptions } from "./types.js";

/** Validates outgoing frames; the text limit is the server's to enforce. */
const OUTGOING_SCHEMA = clientFrameSchema(Number.MAX_SAFE_INTEGER);

/** The JSON of a client frame that passes the schema, or why it cannot be sent. */
function stringify(frame: unknown): string | { why: string } {
  const checked = v.safeParse(OUTGOING_SCHEMA, frame);
  if (!checked.success) return { why: checked.issues[0].message };
  try {
    return JSON.stringify(frame);
  } catch {
    return { why: "data is not JSON" }; // a cycle, a BigInt
  }
}

/**
 * The JSON of a message frame: a string as `text`, anything else as `data`. An `invalid_message`
 * error when the frame is not valid or `data` is not JSON.
 */
export function encodeMessage(id: string, content: unknown, options: SendOptions): string | RoomClientError {
  const frame = stringify({
    type: "message",
    id,
    ...(typeof content === "string" ? { text: content } : { data: content }),
    ...(options.to === undefined ? {} : { to: options.to }),
  });
  return typeof frame === "string"
    ? frame
    : new RoomClientError("invalid_message", frame.why, { id, wasWritten: false });
}

/** A client frame (a signal, a presence state) as text, or a `TypeError` saying why it cannot be sent. */
export function encodeFrame(frame: unknown, what: string): string {
  const text = stringify(frame);
  if (typeof text !== "string") throw new TypeError(`${what}: ${text.why}`);
  return text;
}

/**
 * The frames of a text frame from the server: one, or those of a batch frame (a JSON array of frames,
 * sent since the client asks with `batch=1`), in order. Text that is not JSON, and frames this version
 * does not know, give none: a newer server can add some.
 */
export function decodeFrames(data: string): ServerFrame[] {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return [];
  }
  return [json].flat().flatMap((f) => {
    const parsed = v.safeParse(ServerFrameSchema, f);
    return parsed.success ? [parsed.output] : [];
  });
}

/** The message with its `data` checked against the schema, or the error that says why it failed. */
export function checkData<TData>(
  message: MessageFrame,
  schema: v.GenericSchema<unknown, TData> | undefined,
): RoomMessage<TData> | RoomClientError {
  if (schema === undefined || message.data === undefined) return message as RoomMessage<TData>;
  const result = v.safeParse(schema, message.data);
  if (result.success) return { ...message, data: result.output };
  const where = message.seq === undefined ? `message ${message.id ?? ""}` : `message seq ${message.seq}`;
  return new RoomClientError("invalid_data", `${where}: data ${result.issues[0].message}`, {
    ...(message.id === undefined ? {} : { id: message.id }),
    cause: { message, issues: result.issues },
  });
}
