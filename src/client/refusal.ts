/**
 * The server's reason for refusing an upgrade, where the WebSocket implementation lets the client
 * read the response. `ws` does, through its 'unexpected-response' event (with a listener there, `ws`
 * leaves the response to us and we end the attempt ourselves); browsers and Node's global WebSocket
 * do not, and there the refusal stays a bare close before `open`.
 */

/** The server's JSON error body: `{ "error": { "code", "message" } }` (src/common/errors.ts). */
export interface Refusal {
  code: string;
  message: string;
}

/** What `ws` hands to 'unexpected-response', reduced to what is read here. */
interface IncomingLike {
  statusCode?: number;
  on(event: "data", listener: (chunk: { toString(): string }) => void): unknown;
  on(event: "end" | "error" | "close", listener: () => void): unknown;
}
interface EmitterSocket {
  on(event: "unexpected-response", listener: (request: unknown, response: IncomingLike) => void): unknown;
  listenerCount(event: "unexpected-response"): number;
  terminate?: () => void;
}

/** More than an error body ever needs; the rest is not read. */
const MAX_BODY_CHARS = 4_096;
const BODY_TIMEOUT_MS = 2_000;

/**
 * On `ws`, reads a refused upgrade's status and JSON error, tells `onRefused`, then ends the attempt
 * (its `close` event follows, as without the listener). Returns whether it could listen: then a
 * close before `open` without a refusal is a network failure, not a refused upgrade.
 */
export function readRefusal(
  socket: object,
  onRefused: (status: number | undefined, refusal: Refusal | undefined) => void,
): boolean {
  const emitter = socket as Partial<EmitterSocket>;
  if (typeof emitter.on !== "function" || typeof emitter.listenerCount !== "function") return false;
  if (typeof emitter.terminate !== "function") return false;
  emitter.on("unexpected-response", (_request, response) => {
    let body = "";
    let isDone = false;
    const finish = () => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      onRefused(response.statusCode, parseRefusal(body));
      emitter.terminate?.();
    };
    const timer = setTimeout(finish, BODY_TIMEOUT_MS);
    response.on("data", (chunk) => {
      if (body.length < MAX_BODY_CHARS) body += chunk.toString();
    });
    response.on("end", finish);
    response.on("error", finish);
    response.on("close", finish);
  });
  return emitter.listenerCount("unexpected-response") > 0;
}

function parseRefusal(body: string): Refusal | undefined {
  try {
    const error = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error;
    if (typeof error?.code !== "string") return undefined;
    // A proxy's page, or anything else, is not echoed: only the short code and message.
    const message = typeof error.message === "string" ? error.message.slice(0, 200) : "";
    return { code: error.code.slice(0, 64), message };
  } catch {
    return undefined;
  }
}
