/** Sizes of frames in UTF-8 bytes, as they go over the wire, computed no more often than needed. */

const encoder = new TextEncoder();
// biome-ignore lint/suspicious/noControlCharactersInRegex: the whole ASCII range is the point
const ASCII = /^[\x00-\x7f]*$/;

/** UTF-8 byte length of a frame. */
export function byteLength(frame: string | ArrayBuffer): number {
  if (typeof frame !== "string") return frame.byteLength;
  return ASCII.test(frame) ? frame.length : encoder.encode(frame).byteLength;
}

/** UTF-8 byte length of `s`, computed only when it could exceed `limit`. */
export function utf8Length(s: string, limit: number): number {
  if (s.length * 3 <= limit) return s.length;
  if (s.length > limit) return s.length;
  return encoder.encode(s).byteLength;
}
