/**
 * The room's frames, as the client takes them in: messages, acks, errors, presence and signals go
 * to the room view, the outbox and the app's events. The connection's own frames (welcome,
 * heartbeat, pong) are the link's (link.ts).
 */
import type { ServerFrame } from "../protocol/index.js";
import { RoomClientError } from "./errors.js";
import { checkData } from "./frames.js";
import type { LinkParts } from "./link.js";

/** Takes in one room frame; `true` when it was the last message of a resume replay. */
export function takeRoomFrame<TData>(frame: ServerFrame, { options, events, outbox, view }: LinkParts<TData>): boolean {
  switch (frame.type) {
    case "message": {
      if (!view.message(frame)) return false;
      // Our own message came back (live, or in a replay after a drop): that settles its send.
      if (frame.id !== undefined && view.isOwn(frame)) outbox.settle(frame.id, frame.seq, true);
      const checked = checkData(frame, options.dataSchema);
      if (checked instanceof RoomClientError) events.emit("error", checked);
      else events.emit("message", checked);
      return view.hasCaughtUp;
    }
    case "ack":
      outbox.settle(frame.id, frame.seq);
      return false;
    case "error":
      if (frame.id === undefined || !outbox.fail(frame.id, frame)) {
        events.emit("error", new RoomClientError(frame.code, frame.message, { frame }));
      }
      return false;
    case "presence":
      view.presence(frame);
      events.emit("presence", frame);
      return false;
    case "roster":
      view.roster(frame.presence);
      events.emit("roster", frame);
      return false;
    case "occupancy":
      events.emit("occupancy", frame);
      return false;
    case "signal":
      events.emit("signal", {
        from: frame.from,
        data: frame.data,
        ...(frame.to === undefined ? {} : { to: frame.to }),
      });
      return false;
    default:
      return false;
  }
}
