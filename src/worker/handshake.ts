/**
 * The client half of a WebSocket opening handshake (RFC 6455 §4.1), checked by the gate so that a
 * plain HTTP request that merely says `Upgrade: websocket` never reaches a room.
 *
 * `Connection: upgrade` is not required: wrangler dev passes it through, but it is a hop-by-hop
 * header that a proxy in front of the Worker may rewrite, and the key and version already prove a
 * real client.
 */

/** base64 of exactly 16 bytes: 22 characters of the alphabet and `==`. */
const KEY_PATTERN = /^[A-Za-z0-9+/]{21}[AQgw]==$/;

/** What is wrong with the handshake headers, one issue per header; empty when it is a real one. */
export function handshakeIssues(headers: Headers): string[] {
  const issues: string[] = [];
  const key = headers.get("Sec-WebSocket-Key")?.trim();
  if (key === undefined || !KEY_PATTERN.test(key)) {
    issues.push("Sec-WebSocket-Key: must be the base64 of 16 random bytes");
  }
  if (headers.get("Sec-WebSocket-Version")?.trim() !== "13") {
    issues.push("Sec-WebSocket-Version: must be 13");
  }
  return issues;
}
