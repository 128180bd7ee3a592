/**
 * Webhook signatures, in the manner of Stripe's: `Edge-Rooms-Signature: t=<unix seconds>,v1=<hex>`,
 * where v1 is HMAC-SHA256 with WEBHOOK_SECRET over `${t}.${body}`. Signing the timestamp with the
 * body lets a receiver refuse old requests (replays) as well as forged ones. WebCrypto only, so the
 * same code runs in the Worker, in Node and in browsers-side tooling.
 */

/** The header that carries the signature. */
export const SIGNATURE_HEADER = "Edge-Rooms-Signature";
/** How old a signed request a receiver should still accept, by default (as Stripe's libraries). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

const encoder = new TextEncoder();
/** Imported keys by secret: importing costs more than signing a small body. */
const keys = new Map<string, Promise<CryptoKey>>();

function keyFor(secret: string): Promise<CryptoKey> {
  let key = keys.get(secret);
  if (key === undefined) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
      "verify",
    ]);
    keys.set(secret, key);
  }
  return key;
}

function toHex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array | undefined {
  if (!/^(?:[0-9a-f]{2})+$/.test(hex)) return undefined;
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/**
 * The value of the signature header for `body` sent at `timestamp` (unix seconds).
 * @example
 * headers.set(SIGNATURE_HEADER, await signWebhook(secret, Math.floor(Date.now() / 1000), body));
 */
export async function signWebhook(secret: string, timestamp: number, body: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", await keyFor(secret), encoder.encode(`${timestamp}.${body}`));
  return `t=${timestamp},v1=${toHex(mac)}`;
}

/**
 * Whether `header` is a valid signature of `body` with `secret`, made within `toleranceSeconds` of
 * `now` (unix seconds). Any `v1` entry may match (several are sent while a secret is rotated).
 * The comparison is `crypto.subtle.verify`'s, which takes the same time whatever bytes differ.
 */
export async function verifyWebhook(
  secret: string,
  header: string | null,
  body: string,
  now = Math.floor(Date.now() / 1000),
  toleranceSeconds = DEFAULT_TOLERANCE_SECONDS,
): Promise<boolean> {
  if (header === null) return false;
  const parts = header.split(",").map((p) => p.trim().split("=", 2) as [string, string | undefined]);
  const t = parts.find(([k]) => k === "t")?.[1];
  if (t === undefined || !/^\d{1,12}$/.test(t)) return false;
  const timestamp = Number(t);
  if (Math.abs(now - timestamp) > toleranceSeconds) return false;
  const key = await keyFor(secret);
  const signed = encoder.encode(`${timestamp}.${body}`);
  for (const [k, value] of parts) {
    const mac = k === "v1" && value !== undefined ? fromHex(value) : undefined;
    if (mac !== undefined && mac.length === 32 && (await crypto.subtle.verify("HMAC", key, mac, signed))) return true;
  }
  return false;
}
