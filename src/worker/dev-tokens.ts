/**
 * Dev-only token endpoint, for the demo page and local tests: `POST /dev/token` signs an HS256 JWT
 * with `JWT_SECRET`. It exists only while `DEV_TOKENS` is exactly "true" *and* `DEV_TOKENS_RUN` holds
 * the random value `npm run dev` makes for each run (scripts/lib/dev-args.mjs, which passes both only
 * while wrangler listens on loopback); otherwise it answers 404 `not_found` like any unknown route.
 * DEV_TOKENS alone (in .dev.vars, .env or a --var) does nothing: the Worker cannot tell where wrangler
 * listens, nor trust the peer address it is told, so the script that starts wrangler decides.
 *
 * @example
 * curl -sX POST http://127.0.0.1:8787/dev/token -H "Content-Type: application/json" \
 *   -d '{"sub":"alice","name":"Alice","rooms":["lobby"]}'
 * # {"token":"eyJ…","expiresAt":1795612609000}
 */
import { Hono } from "hono";
import { SignJWT } from "jose";
import * as v from "valibot";
import { loadConfig } from "../common/config";
import { HttpError } from "../common/errors";
import { MAX_NAME_LENGTH, ROLES, RoomIdSchema, UserIdSchema } from "../protocol";

export const DEV_TOKEN_PATH = "/dev/token";
export const DEV_TOKEN_TTL_DEFAULT = 3600;
export const DEV_TOKEN_TTL_MAX = 86_400;

const DevTokenRequestSchema = v.object({
  sub: UserIdSchema,
  name: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_NAME_LENGTH))),
  /** Rooms the token grants (the `rooms` claim); absent: every room. */
  rooms: v.optional(v.pipe(v.array(RoomIdSchema), v.minLength(1), v.maxLength(16))),
  role: v.optional(v.picklist(ROLES)),
  /** Lifetime in seconds. */
  ttl: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(DEV_TOKEN_TTL_MAX)), DEV_TOKEN_TTL_DEFAULT),
});
export type DevTokenRequest = v.InferInput<typeof DevTokenRequestSchema>;

export interface DevTokenResponse {
  token: string;
  /** Expiry, in ms since the epoch. */
  expiresAt: number;
}

/** What `npm run dev` puts in DEV_TOKENS_RUN: 16 random bytes in hex (scripts/lib/dev-args.mjs). */
const DEV_TOKENS_RUN_PATTERN = /^[0-9a-f]{32}$/;

/** Whether the endpoint is switched on: DEV_TOKENS exactly "true", and a run value from `npm run dev`. */
export function areDevTokensEnabled(env: object): boolean {
  const { DEV_TOKENS, DEV_TOKENS_RUN } = env as { DEV_TOKENS?: unknown; DEV_TOKENS_RUN?: unknown };
  return DEV_TOKENS === "true" && typeof DEV_TOKENS_RUN === "string" && DEV_TOKENS_RUN_PATTERN.test(DEV_TOKENS_RUN);
}

const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);
const LOOPBACK_PEERS = new Set(["127.0.0.1", "::1", "::ffff:127.0.0.1"]);

/**
 * Defence in depth only: a deployed Worker (a real host name) mints nothing even if switched on by
 * mistake. Locally both values are the caller's to choose (wrangler dev keeps a client-sent
 * CF-Connecting-IP), which is why loopback is enforced by `npm run dev`, not here.
 */
export function isLoopback(url: string, peer: string | null = null): boolean {
  return LOOPBACK_HOSTS.has(new URL(url).hostname) && (peer === null || LOOPBACK_PEERS.has(peer));
}

/** The settings the endpoint reads (the Worker's whole env reaches it; `loadConfig` reads the rest). */
export interface DevTokensBindings {
  DEV_TOKENS?: string;
  DEV_TOKENS_RUN?: string;
  JWT_SECRET?: string;
}

export const devTokens = new Hono<{ Bindings: DevTokensBindings }>();

devTokens.post(DEV_TOKEN_PATH, async (c) => {
  if (!areDevTokensEnabled(c.env) || !isLoopback(c.req.url, c.req.header("CF-Connecting-IP") ?? null)) {
    return new HttpError("not_found", "no such route").toResponse();
  }
  const loaded = loadConfig(c.env);
  if (!loaded.ok) {
    return new HttpError("server_misconfigured", `the server is misconfigured: ${loaded.error.setting}`).toResponse();
  }
  const { key, issuer, audience } = loaded.config;
  if (key.kind !== "secret") {
    return new HttpError("server_misconfigured", "DEV_TOKENS needs JWT_SECRET to sign with").toResponse();
  }
  let raw: unknown;
  try {
    raw = await c.req.json();
  } catch {
    return new HttpError("invalid_request", "the body is not valid JSON").toResponse();
  }
  const body = v.safeParse(DevTokenRequestSchema, raw);
  if (!body.success) {
    const issues = body.issues.map((i) => `${v.getDotPath(i) ?? "body"}: ${i.message}`);
    return new HttpError("invalid_request", "the token request is invalid", { issues }).toResponse();
  }
  const { sub, name, rooms, role, ttl } = body.output;
  const exp = Math.floor(Date.now() / 1000) + ttl;
  let jwt = new SignJWT({ ...(name && { name }), ...(rooms && { rooms }), ...(role && { role }) })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(exp);
  if (issuer !== undefined) jwt = jwt.setIssuer(issuer);
  if (audience !== undefined) jwt = jwt.setAudience(audience);
  const token = await jwt.sign(new TextEncoder().encode(key.secret));
  return c.json({ token, expiresAt: exp * 1000 } satisfies DevTokenResponse, 200, { "Cache-Control": "no-store" });
});
