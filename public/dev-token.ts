/** Tokens for the demo from the Worker's dev-only endpoint (`POST /dev/token`, on when DEV_TOKENS=true). */

export class DevTokenError extends Error {
  override readonly name = "DevTokenError";
}

/** A user id from a display name: lowercase letters, digits, `-` and `_`. */
export function userIdFor(name: string): string {
  const id = name
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 64);
  return id || `guest-${Math.random().toString(36).slice(2, 8)}`;
}

/** Asks the dev endpoint for a token that grants `room` only. `ttl` in seconds. */
export async function fetchDevToken(sub: string, name: string, room: string, ttl?: number): Promise<string> {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub, name, rooms: [room], ...(ttl === undefined ? {} : { ttl }) }),
    cache: "no-store",
  });
  if (response.status === 404) {
    throw new DevTokenError("The dev token endpoint is off: run the Worker with DEV_TOKENS=true (npm run dev).");
  }
  if (!response.ok) throw new DevTokenError(`The dev token endpoint answered HTTP ${response.status}.`);
  const body = (await response.json()) as { token?: unknown };
  if (typeof body.token !== "string") throw new DevTokenError("The dev token endpoint sent no token.");
  return body.token;
}
