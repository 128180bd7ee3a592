import { describe, expect, it, vi } from "vitest";
import { verifyToken } from "../src/common/auth";
import { type Config, parseConfig } from "../src/common/config";
import { HttpError } from "../src/common/errors";
import { mintToken, TEST_JWT_SECRET } from "./helpers";

function config(env: Record<string, string>): Config {
  const result = parseConfig(env);
  if (!result.ok) throw result.error;
  return result.config;
}

async function verdict(token: string, cfg: Config): Promise<string> {
  try {
    await verifyToken(token, cfg);
    return "ok";
  } catch (error) {
    if (error instanceof HttpError) return error.code;
    throw error;
  }
}

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
