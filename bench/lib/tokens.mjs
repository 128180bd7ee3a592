/**
 * The bench's tokens for edge-rooms: HS256 JWTs signed with a random secret the servers are started
 * with (`JWT_SECRET`), by hand (16 000 of them with jose would take seconds), minted before anything
 * is timed. Client `i` is user `u<i>`; each token is valid for 3 hours.
 */
import { createHmac, randomBytes } from "node:crypto";

const b64 = (/** @type {string} */ s) => Buffer.from(s).toString("base64url");
const HEADER = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));

export class Tokens {
  /** The servers' `JWT_SECRET`. */
  secret = randomBytes(48).toString("hex");

  /** A token with `claims` (and `iat`, `exp`). @param {Record<string, unknown>} claims */
  sign(claims) {
    const now = Math.floor(Date.now() / 1000);
    const body = b64(JSON.stringify({ iat: now, exp: now + 3 * 3600, ...claims }));
    const sig = createHmac("sha256", this.secret).update(`${HEADER}.${body}`).digest("base64url");
    return `${HEADER}.${body}.${sig}`;
  }

  /** Tokens of clients 0 … count − 1. @param {number} count */
  clients(count) {
    return Array.from({ length: count }, (_, i) => this.sign({ sub: `u${i}`, name: `user ${i}` }));
  }
}
