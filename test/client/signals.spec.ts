/**
 * `signal()` and `setPresence()` against `wrangler dev`: signals reach the others with their sender,
 * states show in `users`, and a state is set again after a reconnect.
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeClients, makeClient, mintToken, uniqueRoom } from "./helpers";

afterEach(() => closeClients());

async function twoClients(what: string) {
  const room = uniqueRoom(what);
  const alice = makeClient({
    room,
    token: await mintToken("alice", { name: "Alice" }),
    reconnect: { initialDelayMs: 100, jitter: 0 },
  });
  await alice.log.wait("welcome", () => true, "alice's welcome");
  const bob = makeClient({ room, token: await mintToken("bob", { name: "Bob" }) });
  await bob.log.wait("welcome", () => true, "bob's welcome");
  return { room, alice, bob };
}

describe("signals and presence state in RoomClient", () => {
  it("sends a signal that the others get as a `signal` event with its sender", async () => {
    const { alice, bob } = await twoClients("signal");
    expect(alice.client.signal({ typing: true })).toBe(true);
    const got = await bob.log.wait("signal", () => true, "bob: the signal");
    expect(got).toEqual({ from: { id: "alice", name: "Alice" }, data: { typing: true } });
    expect(alice.client.signal("to bob", { to: "bob" })).toBe(true);
    expect(await bob.log.wait("signal", (s) => s.to === "bob", "bob: the direct signal")).toMatchObject({
      data: "to bob",
    });
    expect(alice.log.all("signal")).toEqual([]);
  });

  it("refuses data that is not JSON with a TypeError, and writes nothing while closed", async () => {
    const { alice } = await twoClients("signal-bad");
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(() => alice.client.signal(cycle)).toThrow(TypeError);
    expect(() => alice.client.setPresence([1] as unknown as Record<string, unknown>)).toThrow(TypeError);
    alice.client.close();
    expect(alice.client.signal(1)).toBe(false);
  });

  it("shows presence states in `users` and sets the state again after a reconnect", async () => {
    const { alice, bob } = await twoClients("presence");
    alice.client.setPresence({ status: "busy" });
    await bob.log.wait("presence", (p) => p.event === "update", "bob: alice's update");
    expect(bob.client.users.find((u) => u.id === "alice")).toEqual({
      id: "alice",
      name: "Alice",
      state: { status: "busy" },
    });
    alice.client.setPresence({ status: "away" });
    await bob.log.wait("presence", (p) => p.event === "update" && p.state?.status === "away", "bob: away");

    // After a drop the client sets its state again on the new connection: bob hears it once more.
    const from = bob.log.events.length;
    alice.lab.last.terminate();
    await alice.log.wait("welcome", () => true, "alice: welcomed again", { from: alice.log.events.length });
    const back = await bob.log.wait("presence", (p) => p.event === "update", "bob: the state again", { from });
    expect(back).toMatchObject({ user: { id: "alice" }, state: { status: "away" } });
    expect(bob.client.users.find((u) => u.id === "alice")?.state).toEqual({ status: "away" });
  });
});
