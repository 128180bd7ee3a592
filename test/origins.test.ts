import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../src/worker/index";
import { handshake, mintToken, uniqueRoom } from "./helpers";

/** The status of an upgrade from `origin` with ALLOWED_ORIGINS set to `allowed`. */
async function statusFrom(origin: string, allowed: string): Promise<number> {
  const token = await mintToken();
  const res = await worker.fetch(
    new Request(`https://rooms.test/ws/chat/${uniqueRoom()}`, {
      headers: { ...handshake(), Origin: origin, Authorization: `Bearer ${token}` },
    }),
    { ...env, ALLOWED_ORIGINS: allowed } as Env,
    {} as ExecutionContext,
  );
  res.webSocket?.accept();
  res.webSocket?.close();
  return res.status;
}

describe("ALLOWED_ORIGINS", () => {
  it("compares the request's Origin normalized: case and a default port do not matter", async () => {
    expect(await statusFrom("https://APP.example.com", "https://app.example.com")).toBe(101);
    expect(await statusFrom("https://app.example.com:443", "https://App.Example.com/")).toBe(101);
    expect(await statusFrom("https://app.example.com:8443", "https://app.example.com")).toBe(403);
    expect(await statusFrom("null", "https://app.example.com")).toBe(403);
  });

  it("lets https://*.example.com match any subdomain, never the apex, another scheme or another port", async () => {
    const allowed = "https://*.example.com";
    for (const origin of ["https://app.example.com", "https://a.b.example.com", "https://APP.Example.com"]) {
      expect(await statusFrom(origin, allowed), origin).toBe(101);
    }
    for (const origin of [
      "https://example.com",
      "http://app.example.com",
      "https://app.example.com:8443",
      "https://app.example.com.evil.test",
      "https://evilexample.com",
    ]) {
      expect(await statusFrom(origin, allowed), origin).toBe(403);
    }
  });
});
