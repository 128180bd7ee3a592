/** Small helpers the client needs in more than one place. */
import type { WebSocketLike } from "./socket.js";

/** Closes a socket, ignoring the error of one already closing or closed. */
export function safeClose(socket: WebSocketLike, code: number, reason: string): void {
  try {
    socket.close(code, reason);
  } catch {
    // Already closing or closed.
  }
}

/** An error's message, or the thrown value as text. */
export function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** 12 random base-36 characters and a dash: unique per client, so ids never collide across tabs. */
export function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `${Array.from(bytes, (b) => (b % 36).toString(36)).join("")}-`;
}
