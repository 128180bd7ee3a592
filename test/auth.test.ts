import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import { canAccessRoom, verifyToken } from "../src/common/auth";
import { type Config, parseConfig } from "../src/common/config";
import { HttpError } from "../src/common/errors";
import { errorOf, mintToken, signRaw, TEST_JWT_SECRET, uniqueRoom, upgrade } from "./helpers";

function config(env: Record<string, string>): Config {
  const result = parseConfig(env);
  if (!result.ok) throw result.error;
  return result.config;
}

const secretConfig = config({ JWT_SECRET: TEST_JWT_SECRET });

/** The code `verifyToken` refuses `token` with, or "ok". */
async function verdict(token: string, cfg: Config = secretConfig): Promise<string> {
  try {
    await verifyToken(token, cfg);
    return "ok";
  } catch (error) {
    if (error instanceof HttpError) return error.code;
    throw error;
  }
}

const now = () => Math.floor(Date.now() / 1000);

describe("token verification", () => {
  it("accepts a good HS256/384/512 token and reads sub, name, role, rooms and exp", async () => {
    for (const alg of ["HS256", "HS384", "HS512"] as const) {
      const token = await mintToken({ alg, sub: "u1", name: "Una", role: "admin", rooms: ["a", "b-*"] });
      const identity = await verifyToken(token, secretConfig);
      expect(identity).toMatchObject({ userId: "u1", name: "Una", role: "admin", rooms: ["a", "b-*"] });
      expect(identity.exp).toBeGreaterThan(Date.now());
    }
  });

  it("defaults the role to member and the name to the sub", async () => {
    const identity = await verifyToken(await mintToken({ sub: "bob" }), secretConfig);
    expect(identity).toMatchObject({ role: "member", name: "bob", rooms: undefined });
  });

  it.each([
    ["garbage", async () => "garbage"],
    ["three garbage parts", async () => "a.b.c"],
    ["an empty signature", async () => `${(await mintToken()).split(".").slice(0, 2).join(".")}.`],
    ["an expired token", () => mintToken({ ttl: -3600 })],
    ["a token signed with another key", () => mintToken({ key: new TextEncoder().encode("x".repeat(40)) })],
    ["alg none", async () => new UnsecuredJWT({ sub: "alice" }).setExpirationTime("1h").encode()],
    [
      "a token with no exp",
      () =>
        new SignJWT({})
          .setProtectedHeader({ alg: "HS256" })
          .setSubject("alice")
          .sign(new TextEncoder().encode(TEST_JWT_SECRET)),
    ],
    [
      "a token with no sub",
      () =>
        new SignJWT({})
          .setProtectedHeader({ alg: "HS256" })
          .setExpirationTime("1h")
          .sign(new TextEncoder().encode(TEST_JWT_SECRET)),
    ],
    ["a non-string sub", () => signRaw({ alg: "HS256" }, { sub: 42, exp: now() + 3600 })],
    ["a non-number exp", () => signRaw({ alg: "HS256" }, { sub: "a", exp: "tomorrow" })],
    ["a sub over 128 characters", () => mintToken({ sub: "s".repeat(129) })],
    ["a name over 64 characters", () => mintToken({ name: "n".repeat(65) })],
    ["an unknown role", () => mintToken({ role: "root" })],
    ["rooms that are not a list", () => mintToken({ extra: { rooms: "lobby" } })],
    ["a room pattern with bad characters", () => mintToken({ rooms: ["../x"] })],
    ["a not-yet-valid token (nbf an hour ahead)", () => mintToken({ extra: { nbf: now() + 3600 } })],
    [
      "a crit header jose does not know",
      () => signRaw({ alg: "HS256", crit: ["x-unknown"], "x-unknown": 1 }, { sub: "a", exp: now() + 3600 }),
    ],
    [
      "a wrong kid with a wrong key",
      () =>
        new SignJWT({})
          .setProtectedHeader({ alg: "HS256", kid: "other" })
          .setSubject("a")
          .setExpirationTime("1h")
          .sign(new TextEncoder().encode("y".repeat(40))),
    ],
  ])("refuses %s with invalid_token", async (_what, make) => {
    expect(await verdict(await make())).toBe("invalid_token");
  });

  it("accepts a hand-signed token with well-formed claims (so the raw-signed refusals above are about their claims)", async () => {
    expect(await verdict(await signRaw({ alg: "HS256" }, { sub: "a", exp: now() + 3600 }))).toBe("ok");
  });

  it("allows a small clock skew on exp (JWT_CLOCK_TOLERANCE_SECONDS, default 30)", async () => {
    expect(await verdict(await mintToken({ exp: now() - 10 }))).toBe("ok");
    expect(await verdict(await mintToken({ exp: now() - 60 }))).toBe("invalid_token");
  });

  it("checks iss and aud when JWT_ISSUER and JWT_AUDIENCE are set", async () => {
    const cfg = config({ JWT_SECRET: TEST_JWT_SECRET, JWT_ISSUER: "https://issuer.example", JWT_AUDIENCE: "rooms" });
    const good = await mintToken({ extra: { iss: "https://issuer.example", aud: "rooms" } });
    expect(await verdict(good, cfg)).toBe("ok");
    expect(await verdict(await mintToken({ extra: { iss: "https://evil.example", aud: "rooms" } }), cfg)).toBe(
      "invalid_token",
    );
    expect(await verdict(await mintToken({ extra: { iss: "https://issuer.example", aud: "other" } }), cfg)).toBe(
      "invalid_token",
    );
    expect(await verdict(await mintToken(), cfg)).toBe("invalid_token");
  });

  it("verifies RS256 with JWT_PUBLIC_KEY and refuses HS256 signed with the public key's text (alg confusion)", async () => {
    const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
    const pem = await exportSPKI(publicKey);
    const cfg = config({ JWT_PUBLIC_KEY: pem, ALLOW_ANY_AUDIENCE: "true" });
    const rs = await new SignJWT({})
      .setProtectedHeader({ alg: "RS256" })
      .setSubject("a")
      .setExpirationTime("1h")
      .sign(privateKey);
    expect(await verdict(rs, cfg)).toBe("ok");
    const confused = await mintToken({ key: new TextEncoder().encode(pem) });
    expect(await verdict(confused, cfg)).toBe("invalid_token");
    // And a secret-configured server refuses RS256 whatever the key.
    expect(await verdict(rs)).toBe("invalid_token");
  });

  it("verifies ES256 and Ed25519 public keys, each only with its own algorithm", async () => {
    for (const alg of ["ES256", "Ed25519"] as const) {
      const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
      const cfg = config({ JWT_PUBLIC_KEY: await exportSPKI(publicKey), ALLOW_ANY_AUDIENCE: "true" });
      const token = await new SignJWT({})
        .setProtectedHeader({ alg })
        .setSubject("a")
        .setExpirationTime("1h")
        .sign(privateKey);
      expect(await verdict(token, cfg)).toBe("ok");
      expect(await verdict(await mintToken(), cfg)).toBe("invalid_token");
    }
  });

  it("answers an 8 KiB token with 401 invalid_token through the gate", async () => {
    const token = await mintToken({ extra: { pad: "x".repeat(8192) } });
    const res = await upgrade(uniqueRoom(), { token: `${token.slice(0, -2)}xx` });
    expect(await errorOf(res)).toMatchObject({ status: 401, code: "invalid_token" });
  });

  it("answers an expired token with 401 invalid_token through the gate", async () => {
    const res = await upgrade(uniqueRoom(), { token: await mintToken({ ttl: -3600 }) });
    expect(await errorOf(res)).toMatchObject({ status: 401, code: "invalid_token", message: "the token has expired" });
  });
});

describe("room access", () => {
  it("matches exact room ids and * prefixes, and no claim means every room", () => {
    expect(canAccessRoom({ rooms: undefined }, "any")).toBe(true);
    expect(canAccessRoom({ rooms: [] }, "any")).toBe(false);
    expect(canAccessRoom({ rooms: ["lobby"] }, "lobby")).toBe(true);
    expect(canAccessRoom({ rooms: ["lobby"] }, "lobby2")).toBe(false);
    expect(canAccessRoom({ rooms: ["team-*"] }, "team-a")).toBe(true);
    expect(canAccessRoom({ rooms: ["team-*"] }, "team")).toBe(false);
    expect(canAccessRoom({ rooms: ["*"] }, "x")).toBe(true);
  });
});

describe("a remote key set (JWKS_URL)", () => {
  afterEach(() => vi.restoreAllMocks());

  let n = 0;
  /** A key pair, a config pointing at a fresh JWKS URL, and a fetch mock serving the key set. */
  async function jwksSetup(answer?: () => Response | Promise<Response>) {
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
    n += 1;
    const url = `https://issuer.example/${n}/jwks.json`;
    const fetchMock = vi
      .spyOn(globalThis, "fetch")
      .mockImplementation(async () => (answer ? answer() : Response.json({ keys: [jwk] })));
    const sign = (sub = "a") =>
      new SignJWT({})
        .setProtectedHeader({ alg: "ES256", kid: "k1" })
        .setSubject(sub)
        .setExpirationTime("1h")
        .sign(privateKey);
    return { cfg: config({ JWKS_URL: url, ALLOW_ANY_AUDIENCE: "true" }), fetchMock, sign, url };
  }

  it("verifies a token signed by a key in the set, fetching the set once per isolate", async () => {
    const { cfg, fetchMock, sign, url } = await jwksSetup();
    expect(await verdict(await sign("a"), cfg)).toBe("ok");
    expect(await verdict(await sign("b"), cfg)).toBe("ok");
    expect(fetchMock).toHaveBeenCalledTimes(1);
    expect(String(fetchMock.mock.calls[0]?.[0])).toBe(url);
  });

  it("refuses HS256 (even signed with the key set's text) and a kid it does not have", async () => {
    const { cfg, sign } = await jwksSetup();
    expect(await verdict(await mintToken(), cfg)).toBe("invalid_token");
    const other = await generateKeyPair("ES256");
    const stranger = await new SignJWT({})
      .setProtectedHeader({ alg: "ES256", kid: "k2" })
      .setSubject("a")
      .setExpirationTime("1h")
      .sign(other.privateKey);
    expect(await verdict(stranger, cfg)).toBe("invalid_token");
    expect(await verdict(await sign(), cfg)).toBe("ok");
  });

  it.each([
    ["answers 500", () => new Response("down", { status: 500 })],
    ["answers something that is not a key set", () => Response.json({ nope: true })],
    ["answers text that is not JSON", () => new Response("<html>", { status: 200 })],
    [
      "cannot be reached",
      () => {
        throw new TypeError("network connection lost");
      },
    ],
  ])("answers 503 auth_unavailable, not 401, when the key set %s", async (_what, answer) => {
    const { cfg, sign } = await jwksSetup(answer);
    const token = await sign();
    try {
      await verifyToken(token, cfg);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(HttpError);
      expect((error as HttpError).code).toBe("auth_unavailable");
      expect((error as HttpError).status).toBe(503);
    }
  });
});

describe("the per-isolate cache of verified tokens", () => {
  const cfg = config({ JWT_SECRET: TEST_JWT_SECRET, JWT_CLOCK_TOLERANCE_SECONDS: "0" });

  it("checks a cached token's expiry again on every hit", async () => {
    const token = await mintToken({ sub: "brief", ttl: 2 });
    expect(await verdict(token, cfg)).toBe("ok");
    expect(await verdict(token, cfg)).toBe("ok");
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      vi.setSystemTime(Date.now() + 3000);
      expect(await verdict(token, cfg)).toBe("invalid_token");
    } finally {
      vi.useRealTimers();
    }
  });

  it("is keyed by the key source and the checks: a token verified under one secret is not under another", async () => {
    const token = await mintToken({ sub: "keyed" });
    expect(await verdict(token, cfg)).toBe("ok");
    const other = config({ JWT_SECRET: "another-secret-of-at-least-32-bytes-0123456789" });
    expect(await verdict(token, other)).toBe("invalid_token");
    const withAudience = config({ JWT_SECRET: TEST_JWT_SECRET, JWT_AUDIENCE: "some-app" });
    expect(await verdict(token, withAudience)).toBe("invalid_token");
  });

  it("never caches a failure: a token refused once is refused again, and a good one still passes", async () => {
    const forged = `${(await mintToken({ sub: "forged" })).slice(0, -4)}AAAA`;
    expect(await verdict(forged, cfg)).toBe("invalid_token");
    expect(await verdict(forged, cfg)).toBe("invalid_token");
    expect(await verdict(await mintToken({ sub: "fine" }), cfg)).toBe("ok");
  });
});
