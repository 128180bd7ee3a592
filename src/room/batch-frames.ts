/**
 * Batch frames: several server frames in one WebSocket text frame, for the connections that asked
 * for it at connect (`?batch=1`). Under fan-out most of a room's CPU is the kernel's, one socket
 * write per delivery; a frame that carries a run of messages costs one write for all of them.
 *
 * A batch frame is a JSON array of ordinary v1 frames, `[{"type":"message",…},{…}]`, built by joining
 * the frames as they were serialized (nothing is parsed or serialized again). A run is cut into
 * frames of at most BATCH_FRAME_MAX_FRAMES frames and BATCH_FRAME_MAX_BYTES bytes (a frame larger
 * than that goes alone); a piece of one frame goes as that plain frame.
 */
import { byteLength } from "./bytes";

/** At most this many frames in one batch frame (Cloudflare suggests 10–100 messages per frame). */
export const BATCH_FRAME_MAX_FRAMES = 100;
/** At most this many bytes of frames in one batch frame (the brackets and commas come on top). */
export const BATCH_FRAME_MAX_BYTES = 64 * 1024;

/** A run of serialized frames as the fewest text frames within the bounds, in order. */
export function batchFrames(frames: readonly string[]): string[] {
  const out: string[] = [];
  let piece: string[] = [];
  let bytes = 0;
  const cut = () => {
    if (piece.length === 1) out.push(piece[0] as string);
    else if (piece.length > 1) out.push(`[${piece.join(",")}]`);
    piece = [];
    bytes = 0;
  };
  for (const frame of frames) {
    const size = byteLength(frame);
    if (piece.length >= BATCH_FRAME_MAX_FRAMES || (piece.length > 0 && bytes + size > BATCH_FRAME_MAX_BYTES)) cut();
    piece.push(frame);
    bytes += size;
  }
  cut();
  return out;
}
