import { env } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import worker from "../src/worker/index";
import { errorOf, handshake, mintToken, uniqueRoom } from "./helpers";

type LimiterEnv = Env & { CONNECT_LIMITER_STRICT: RateLimit };

/** An upgrade from `ip` through the real fetch handler, with `bindings` over the test env. */
async function upgradeFrom(ip: string | undefined, bindings: Partial<Env>, token?: string): Promise<Response> {
  const headers: Record<string, string> = { ...handshake(), Authorization: `Bearer ${token ?? (await mintToken())}` };
  if (ip !== undefined) headers["CF-Connecting-IP"] = ip;
  const res = await worker.fetch(
    new Request(`https://rooms.test/ws/chat/${uniqueRoom()}`, { headers }),
    { ...env, ...bindings } as Env,
    {} as ExecutionContext,
  );
  res.webSocket?.accept();
  res.webSocket?.close();
  return res;
}

// The workerd suite's own CONNECT_LIMITER is generous (vitest.config.ts); CONNECT_LIMITER_STRICT is
// the same binding type with a limit of 3, so these tests see the runtime's real refusals.
describe("the per-IP connect limit (CONNECT_LIMITER)", () => {
  const strict = () => ({ CONNECT_LIMITER: (env as LimiterEnv).CONNECT_LIMITER_STRICT });

  it("answers 429 too_many_requests with Retry-After past the limit, before any room is touched", async () => {
    const ip = `198.18.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;
    const token = await mintToken();
    const statuses: number[] = [];
    let refused: Response | undefined;
    // Windows are aligned to the clock: over 7 attempts at least 4 fall in one window of limit 3.
    for (let i = 0; i < 7 && refused === undefined; i++) {
      const res = await upgradeFrom(ip, strict(), token);
      statuses.push(res.status);
      if (res.status === 429) refused = res;
    }
    expect(refused, `statuses: ${statuses.join()}`).toBeDefined();
    const error = await errorOf(refused as Response);
    expect(error).toMatchObject({ status: 429, code: "too_many_requests" });
    expect(Number(error.headers.get("Retry-After"))).toBeGreaterThan(0);
    const untouchable = new Proxy({}, { get: () => expect.fail("the room namespace was touched") });
    const again = await upgradeFrom(ip, { ...strict(), ROOMS: untouchable as Env["ROOMS"] }, token);
    expect(again.status).toBe(429);
  });

  it("counts each IP apart: another IP still connects", async () => {
    const ip = `198.19.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;
    for (let i = 0; i < 7; i++) await upgradeFrom(ip, strict());
    expect((await upgradeFrom(ip.replace("198.19.", "198.17."), strict())).status).not.toBe(429);
  });

  it("logs a refusal as gate_refused with status 429", async () => {
    const lines: string[] = [];
    const spy = vi.spyOn(console, "log").mockImplementation((line: unknown) => lines.push(String(line)));
    const ip = "198.18.255.1";
    try {
      for (let i = 0; i < 7; i++) await upgradeFrom(ip, strict());
    } finally {
      spy.mockRestore();
    }
    const refusals = lines
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.status === 429);
    expect(refusals[0]).toMatchObject({ event: "gate_refused", code: "too_many_requests", ip });
  });

  it("still admits connections when the binding is absent (someone removed it from wrangler.toml)", async () => {
    const res = await upgradeFrom("198.18.0.1", { CONNECT_LIMITER: undefined } as unknown as Partial<Env>);
    expect(res.status).toBe(101);
  });
});
