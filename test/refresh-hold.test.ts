/**
 * While an `auth` frame's token is verified (a cold JWKS fetch can take seconds), the connection's
 * later frames wait for its answer. A member must not be able to park unbounded frames there: the
 * waiting frames are bounded by the rate burst and by bytes, and beyond either the connection closes
 * with 4429, as a flood past the rate limit does.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { join, mintToken, uniqueRoom } from "./helpers";

/** Makes the next `n` signature checks wait until the returned function is called. */
function holdNextVerify(n = 1): () => void {
  let release = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const verify = crypto.subtle.verify.bind(crypto.subtle);
  let held = 0;
  vi.spyOn(crypto.subtle, "verify").mockImplementation(async (...args: Parameters<SubtleCrypto["verify"]>) => {
    if (held++ < n) await gate;
    return verify(...args);
  });
  return release;
}

let minted = 0;
/** A token never seen before, so that it is verified (none comes from the verified-token cache). */
const freshToken = (sub?: string) => mintToken({ sub, name: `Fresh ${++minted}` });

const PING = '{ "type" : "ping" }'; // not the exact text the runtime answers itself

describe("frames behind a token refresh being verified", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("answers them in order once the token is verified, within the burst", async () => {
    const { client } = await join(uniqueRoom());
    const token = await freshToken();
    const release = holdNextVerify();
    client.send({ type: "auth", token });
    for (let i = 0; i < 10; i++) client.send(PING);
    await new Promise((r) => setTimeout(r, 100));
    expect(client.all("pong")).toEqual([]); // still held behind the auth frame
    release();
    await client.waitFor((f) => f.filter((x) => x.type === "pong").length === 10, "ten pongs");
    const answers = client.frames
      .slice(1)
      .map((f) => f.type)
      .filter((t) => t === "auth" || t === "pong");
    expect(answers[0]).toBe("auth");
    expect(client.closed).toBeUndefined();
    client.close();
  });

  it("closes with 4429 when more frames than the rate burst wait", async () => {
    const { client } = await join(uniqueRoom());
    const token = await freshToken();
    const release = holdNextVerify();
    client.send({ type: "auth", token });
    for (let i = 0; i < 41; i++) client.send(PING); // the test pool's burst is 40
    expect((await client.nextClose()).code).toBe(4429);
    release();
  });

  it("bounds the waiting frames per user: more sockets do not hold more", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "mallory" });
    const b = await join(room, { sub: "mallory" });
    const release = holdNextVerify(2);
    a.client.send({ type: "auth", token: await freshToken("mallory") });
    b.client.send({ type: "auth", token: await freshToken("mallory") });
    // 25 + 25 waiting frames: each socket under the burst of 40, the user over it.
    for (let i = 0; i < 25; i++) a.client.send(PING);
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 25; i++) b.client.send(PING);
    expect((await b.client.nextClose()).code).toBe(4429);
    expect(a.client.closed).toBeUndefined();
    release();
    await a.client.waitFor((f) => f.filter((x) => x.type === "pong").length === 25, "a's pongs");
    a.client.close();
  });

  it("closes with 4429 when the waiting frames hold more than 4 × MAX_MESSAGE_BYTES", async () => {
    const { client } = await join(uniqueRoom());
    const token = await freshToken();
    const release = holdNextVerify();
    client.send({ type: "auth", token });
    const big = JSON.stringify({ type: "message", text: "x".repeat(60_000) }); // over MAX_TEXT_LENGTH, under 64 KiB
    for (let i = 0; i < 5; i++) client.send(big);
    expect((await client.nextClose()).code).toBe(4429);
    release();
  });
});
