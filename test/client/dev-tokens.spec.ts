/**
 * The dev-only token endpoint (src/worker/dev-tokens.ts): its answers on a test app, then its use against
 * the real Worker, and that nothing can switch it on in production.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { jwtVerify } from "jose";
import { describe, expect, it } from "vitest";
import { devArgs, isLoopbackIp } from "../../scripts/lib/dev-args.mjs";
import { devTokens } from "../../src/worker/dev-tokens";
import { REPO_ROOT } from "../support/wrangler-server";
import { BASE_URL, closeClients, makeClient, uniqueRoom } from "./helpers";

const SECRET = "dev-tokens-test-secret-0123456789abcdef";
const RUN = "0123456789abcdef0123456789abcdef";
const ON = { DEV_TOKENS: "true", DEV_TOKENS_RUN: RUN, JWT_SECRET: SECRET };

function post(body: unknown, env: Record<string, string>, raw?: string) {
  return devTokens.request(
    "/dev/token",
    { method: "POST", headers: { "Content-Type": "application/json" }, body: raw ?? JSON.stringify(body) },
    env,
  );
}

describe("POST /dev/token", () => {
  it("is absent (404 not_found) unless DEV_TOKENS is exactly true", async () => {
    for (const env of [{ JWT_SECRET: SECRET }, { ...ON, DEV_TOKENS: "false" }, { ...ON, DEV_TOKENS: "1" }]) {
      const response = await post({ sub: "alice" }, env);
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual({ error: { code: "not_found", message: "no such route" } });
    }
  });

  it("is absent (404) with DEV_TOKENS=true alone, as .dev.vars, .env or a --var would set it", async () => {
    for (const env of [
      { DEV_TOKENS: "true", JWT_SECRET: SECRET },
      { ...ON, DEV_TOKENS_RUN: "true" },
    ]) {
      expect((await post({ sub: "alice" }, env)).status).toBe(404);
    }
  });

  it("is absent (404) on a host that is not loopback, even with DEV_TOKENS on (a deployed Worker)", async () => {
    const response = await devTokens.request(
      "https://rooms.example.com/dev/token",
      { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"sub":"alice"}' },
      ON,
    );
    expect(response.status).toBe(404);
  });

  it("is absent (404) to a caller on another machine, whatever Host it claims", async () => {
    const response = await devTokens.request(
      "http://localhost/dev/token",
      {
        method: "POST",
        headers: { "Content-Type": "application/json", "CF-Connecting-IP": "192.0.2.10" },
        body: '{"sub":"alice"}',
      },
      ON,
    );
    expect(response.status).toBe(404);
  });

  it("signs an HS256 token with the claims asked for", async () => {
    const before = Math.floor(Date.now() / 1000);
    const response = await post({ sub: "alice", name: "Alice", rooms: ["lobby"], ttl: 120 }, ON);
    expect(response.status).toBe(200);
    expect(response.headers.get("Cache-Control")).toBe("no-store");
    const body = (await response.json()) as { token: string; expiresAt: number };
    const { payload, protectedHeader } = await jwtVerify(body.token, new TextEncoder().encode(SECRET));
    expect(protectedHeader.alg).toBe("HS256");
    expect(payload).toMatchObject({ sub: "alice", name: "Alice", rooms: ["lobby"] });
    expect(payload.exp).toBeGreaterThanOrEqual(before + 120);
    expect(payload.exp).toBeLessThanOrEqual(before + 121);
    expect(body.expiresAt).toBe((payload.exp ?? 0) * 1000);
    expect(payload).not.toHaveProperty("role");
  });

  it("sets the issuer and audience the server checks", async () => {
    const env = { ...ON, JWT_ISSUER: "https://issuer.example", JWT_AUDIENCE: "rooms" };
    const body = (await (await post({ sub: "bob" }, env)).json()) as { token: string };
    const { payload } = await jwtVerify(body.token, new TextEncoder().encode(SECRET), {
      issuer: "https://issuer.example",
      audience: "rooms",
    });
    expect(payload.sub).toBe("bob");
  });

  it("answers 400 invalid_request for a body it cannot use", async () => {
    const cases: Array<[unknown, string | undefined]> = [
      [undefined, "{not json"],
      [{}, undefined],
      [{ sub: "" }, undefined],
      [{ sub: "a", rooms: ["no spaces allowed"] }, undefined],
      [{ sub: "a", ttl: 86_401 }, undefined],
      [{ sub: "a", role: "root" }, undefined],
    ];
    for (const [body, raw] of cases) {
      const response = await post(body, ON, raw);
      expect(response.status, JSON.stringify(body ?? raw)).toBe(400);
      const json = (await response.json()) as { error: { code: string } };
      expect(json.error.code).toBe("invalid_request");
    }
  });

  it("answers 500 server_misconfigured when there is no secret to sign with", async () => {
    const env = { DEV_TOKENS: "true", DEV_TOKENS_RUN: RUN, JWKS_URL: "https://keys.example/jwks.json" };
    const response = await post({ sub: "a" }, { ...env, ALLOW_ANY_AUDIENCE: "true" });
    expect(response.status).toBe(500);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe("server_misconfigured");
  });

  it("gives tokens the real Worker accepts, for a client that asks before every connect", async () => {
    const room = uniqueRoom("devtoken");
    let asked = 0;
    const { client, log } = makeClient({
      room,
      token: async () => {
        asked += 1;
        const response = await fetch(`${BASE_URL}/dev/token`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ sub: "dev-user", name: "Dev User", rooms: [room] }),
        });
        return ((await response.json()) as { token: string }).token;
      },
    });
    try {
      const welcome = await log.wait("welcome", () => true, "the welcome");
      expect(welcome.user).toEqual({ id: "dev-user", name: "Dev User" });
      expect(asked).toBe(1);
      expect(client.state).toBe("open");
    } finally {
      closeClients();
    }
  });

  it("is never switched on by wrangler.toml, so a deploy cannot carry it", () => {
    const toml = readFileSync(join(REPO_ROOT, "wrangler.toml"), "utf8");
    const settings = toml.split("\n").filter((line) => !line.trimStart().startsWith("#"));
    expect(settings.filter((line) => line.includes("DEV_TOKENS"))).toEqual([]);
  });
});

describe("npm run dev (scripts/lib/dev-args.mjs): the only way dev tokens take effect", () => {
  const varsOf = (args: string[]) => args.flatMap((a, i) => (args[i - 1] === "--var" ? [a] : []));

  it("listens on 127.0.0.1 and switches dev tokens on with a fresh random run value", () => {
    const first = devArgs([], "", "dev-secret");
    const second = devArgs([], "", "dev-secret");
    expect(first.devTokens).toBe(true);
    expect(first.wranglerArgs.slice(0, 5)).toEqual(["dev", "--ip", "127.0.0.1", "--port", "8787"]);
    const run = varsOf(first.wranglerArgs).find((v) => v.startsWith("DEV_TOKENS_RUN:"));
    expect(run).toMatch(/^DEV_TOKENS_RUN:[0-9a-f]{32}$/);
    expect(varsOf(second.wranglerArgs)).not.toContain(run);
    expect(varsOf(first.wranglerArgs)).toContain("DEV_TOKENS:true");
  });

  it("switches them off, over any DEV_TOKENS in .dev.vars, when asked to listen beyond loopback", () => {
    for (const ip of ["0.0.0.0", "192.0.2.2", "::"]) {
      const result = devArgs(["--ip", ip], "DEV_TOKENS=true\n", "dev-secret");
      expect(result.devTokens).toBe(false);
      expect(result.wranglerArgs.slice(0, 3)).toEqual(["dev", "--ip", ip]);
      expect(varsOf(result.wranglerArgs)).toContain("DEV_TOKENS:false");
      expect(varsOf(result.wranglerArgs).some((v) => v.startsWith("DEV_TOKENS_RUN"))).toBe(false);
    }
    expect(devArgs(["--ip=127.0.0.5"], "", "s").devTokens).toBe(true);
  });

  it("refuses a DEV_TOKENS or DEV_TOKENS_RUN passed with --var, and signs with no key the developer brought", () => {
    expect(devArgs(["--var", "DEV_TOKENS:true"], "", "s").error).toBeDefined();
    expect(devArgs(["--var", "DEV_TOKENS_RUN:abc"], "", "s").error).toBeDefined();
    expect(devArgs([], "JWT_SECRET=mine-mine-mine\n", "s").devTokens).toBe(false);
  });

  it("knows loopback addresses", () => {
    for (const ip of ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"]) expect(isLoopbackIp(ip), ip).toBe(true);
    for (const ip of ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "localhost.example"])
      expect(isLoopbackIp(ip), ip).toBe(false);
  });
});
