/**
 * JWT verification (jose) and the claims the service understands (valibot).
 *
 * Each key type has its own algorithm allow-list, so `alg: none` and HS/RS confusion cannot happen:
 * a secret only ever verifies HS*, a public key or a JWKS only the asymmetric algorithms.
 */
import * as jose from "jose";
import * as v from "valibot";
import { MAX_NAME_LENGTH, ROLES, type Role, RoomIdSchema, UserIdSchema } from "../protocol";
import type { Config, KeySource } from "./config";
import { HttpError } from "./errors";

const HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"];
const ASYMMETRIC_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "EdDSA",
  "Ed25519",
];
/** Algorithms tried, in order, to import a PEM public key; the one that fits is then the only one allowed. */
const PEM_ALGORITHMS = ["RS256", "ES256", "ES384", "Ed25519"];

/** An entry of the `rooms` claim: a room id, or a prefix ending in `*`. */
const RoomPatternSchema = v.union([
  RoomIdSchema,
  v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{0,63}\*$/, "a room pattern is a room id prefix followed by *")),
]);

export const ClaimsSchema = v.object({
  sub: UserIdSchema,
  exp: v.pipe(v.number(), v.integer()),
  name: v.optional(v.pipe(v.string(), v.maxLength(MAX_NAME_LENGTH))),
  rooms: v.optional(v.pipe(v.array(RoomPatternSchema), v.maxLength(256))),
  role: v.optional(v.picklist(ROLES), "member"),
});
export type Claims = v.InferOutput<typeof ClaimsSchema>;

/** Who a verified token says the caller is. */
export interface Identity {
  userId: string;
  name: string;
  role: Role;
  /** Token expiry, in ms since the epoch. */
  exp: number;
  /** `undefined` means every room. */
  rooms: readonly string[] | undefined;
}

/** Whether a `rooms` claim covers `room`. No claim covers every room. */
export function canAccessRoom(identity: Pick<Identity, "rooms">, room: string): boolean {
  if (identity.rooms === undefined) return true;
  return identity.rooms.some((p) => (p.endsWith("*") ? room.startsWith(p.slice(0, -1)) : p === room));
}

type Verifier = { key: jose.CryptoKey | Uint8Array | jose.JWTVerifyGetKey; algorithms: string[] };

// Keys are imported once per isolate: importing a PEM or creating a JWKS cache per request would be
// slow, and a per-isolate JWKS cache is what lets key rotation work without hammering the issuer.
const verifiers = new Map<string, Promise<Verifier>>();

async function makeVerifier(source: KeySource): Promise<Verifier> {
  switch (source.kind) {
    case "secret":
      return { key: hmacKeys(new TextEncoder().encode(source.secret)), algorithms: HMAC_ALGORITHMS };
    case "jwks":
      return { key: jose.createRemoteJWKSet(new URL(source.url)), algorithms: ASYMMETRIC_ALGORITHMS };
    case "public_key":
      for (const alg of PEM_ALGORITHMS) {
        try {
          const key = await jose.importSPKI(source.pem, alg);
          return { key, algorithms: alg === "Ed25519" ? ["Ed25519", "EdDSA"] : [alg] };
        } catch {
          // Not this key type; try the next.
        }
      }
      throw new HttpError("server_misconfigured", "JWT_PUBLIC_KEY is not an RSA, P-256, P-384 or Ed25519 public key");
  }
}

/**
 * The secret as one imported HMAC key per algorithm, chosen by the token's (already allow-listed)
 * `alg`: handing jose the raw bytes would import the key again on every verification.
 */
function hmacKeys(secret: Uint8Array): jose.JWTVerifyGetKey {
  const keys = new Map<string, Promise<CryptoKey>>();
  return ({ alg }) => {
    let key = keys.get(alg);
    if (key === undefined) {
      const hash = `SHA-${alg.slice(2)}`;
      key = crypto.subtle.importKey("raw", secret, { name: "HMAC", hash }, false, ["verify"]);
      keys.set(alg, key);
    }
    return key;
  };
}

/** Which key source a verifier (or a cached verification) belongs to. */
function sourceId(source: KeySource): string {
  if (source.kind === "secret") return `secret:${source.secret}`;
  return source.kind === "jwks" ? `jwks:${source.url}` : `pem:${source.pem}`;
}

function verifierFor(source: KeySource): Promise<Verifier> {
  const id = sourceId(source);
  let verifier = verifiers.get(id);
  if (verifier === undefined) {
    verifier = makeVerifier(source);
    // A failed import is not cached, so fixing the setting takes effect without a restart.
    verifier.catch(() => verifiers.delete(id));
    verifiers.set(id, verifier);
  }
  return verifier;
}

const INVALID_TOKEN_HEADERS = { "WWW-Authenticate": 'Bearer error="invalid_token"' };

/**
 * Verifies `token` and returns the identity it carries.
 * Throws `HttpError` `invalid_token` (401) for any token problem, `auth_unavailable` (503) when the
 * key set cannot be fetched, and `server_misconfigured` when the configured key is unusable.
 */
export async function verifyToken(token: string, config: Config): Promise<Identity> {
  // Keyed by everything a verification depends on: the key source and the required iss and aud.
  const cacheKey = `${sourceId(config.key)}\u0000${config.issuer ?? ""}\u0000${config.audience ?? ""}\u0000${token}`;
  const hit = verified.get(cacheKey);
  if (hit !== undefined) {
    // Expiry is checked again on every hit, with the tolerance a verification allows.
    if (Date.now() < hit.exp + config.clockToleranceSeconds * 1000) return hit;
    verified.delete(cacheKey);
  }
  const identity = await verifyUncached(token, config);
  if (verified.size >= VERIFIED_MAX) {
    const oldest = verified.keys().next().value;
    if (oldest !== undefined) verified.delete(oldest);
  }
  verified.set(cacheKey, identity);
  return identity;
}

/**
 * Tokens verified by this isolate: the exact token to the identity it carries, so a client that
 * reconnects (or many that share an isolate) costs one signature check per token, not per connect.
 * Bounded, oldest out first; failures are never cached; a hit's expiry is checked again.
 */
const VERIFIED_MAX = 1024;
const verified = new Map<string, Identity>();

async function verifyUncached(token: string, config: Config): Promise<Identity> {
  const { key, algorithms } = await verifierFor(config.key);
  let payload: jose.JWTPayload;
  try {
    const options: jose.JWTVerifyOptions = {
      algorithms,
      clockTolerance: config.clockToleranceSeconds,
      requiredClaims: ["exp", "sub"],
      issuer: config.issuer,
      audience: config.audience,
    };
    // jose types a key and a key-set function through separate overloads.
    payload = (await jose.jwtVerify(token, key as jose.JWTVerifyGetKey, options)).payload;
  } catch (error) {
    if (config.key.kind === "jwks" && isKeySetUnavailable(error)) {
      // The key set could not be fetched or read: not the caller's fault, and worth a retry.
      throw new HttpError("auth_unavailable", "the token could not be verified right now; retry later", {
        headers: { "Retry-After": "5" },
        cause: error,
      });
    }
    if (!(error instanceof jose.errors.JOSEError)) throw error;
    throw new HttpError("invalid_token", describeJoseError(error), { headers: INVALID_TOKEN_HEADERS, cause: error });
  }
  const claims = v.safeParse(ClaimsSchema, payload);
  if (!claims.success) {
    const issue = claims.issues[0];
    throw new HttpError("invalid_token", `the token's ${v.getDotPath(issue) ?? "claims"} claim is invalid`, {
      headers: INVALID_TOKEN_HEADERS,
    });
  }
  const c = claims.output;
  return { userId: c.sub, name: c.name ?? c.sub, role: c.role, exp: c.exp * 1000, rooms: c.rooms };
}

/**
 * Whether a JWKS verification failed because the key set could not be had (timeout, a non-200
 * answer, unreadable JSON, a network error) rather than because of the token.
 */
function isKeySetUnavailable(error: unknown): boolean {
  if (!(error instanceof jose.errors.JOSEError)) return true;
  return (
    error instanceof jose.errors.JWKSTimeout ||
    error instanceof jose.errors.JWKSInvalid ||
    error.code === "ERR_JOSE_GENERIC"
  );
}

/** Checks that the configured key can be used (imports a PEM once); throws `server_misconfigured`. */
export async function checkKey(config: Config): Promise<void> {
  await verifierFor(config.key);
}

/** A short, key-free description of why jose refused a token. */
function describeJoseError(error: jose.errors.JOSEError): string {
  switch (error.code) {
    case "ERR_JWT_EXPIRED":
      return "the token has expired";
    case "ERR_JWT_CLAIM_VALIDATION_FAILED":
      return `the token's ${(error as jose.errors.JWTClaimValidationFailed).claim} claim is invalid`;
    case "ERR_JOSE_ALG_NOT_ALLOWED":
      return "the token's algorithm is not allowed";
    case "ERR_JWS_SIGNATURE_VERIFICATION_FAILED":
      return "the token's signature does not verify";
    case "ERR_JWKS_NO_MATCHING_KEY":
      return "no key matches the token";
    default:
      return "the token is malformed";
  }
}

/** Where a request's token was found; `protocol` means the server must select `rooms.v1`. */
export interface FoundToken {
  token: string;
  source: "header" | "protocol" | "query";
}

/**
 * Finds the token: `Authorization: Bearer`, then the `bearer.<jwt>` subprotocol offer, then the
 * `token` query parameter (when allowed). The first found wins.
 */
export function findToken(
  request: Request,
  offeredProtocols: readonly string[],
  queryToken: string | undefined,
  config: Config,
): FoundToken | undefined {
  const authorization = request.headers.get("Authorization");
  if (authorization !== null) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (match?.[1]) return { token: match[1], source: "header" };
  }
  const offered = offeredProtocols.find((p) => p.startsWith("bearer."));
  if (offered !== undefined && offered.length > "bearer.".length) {
    return { token: offered.slice("bearer.".length), source: "protocol" };
  }
  if (queryToken !== undefined && queryToken !== "" && config.allowQueryToken) {
    return { token: queryToken, source: "query" };
  }
  return undefined;
}
