/**
 * Shard → orderer forwarding under faults (docs/scaling.md): a lost `submitBatch` answer and a
 * repeated batch. `store_failed` keeps its meaning ("not stored": send it again), and no message is
 * stored twice, with or without a client id.
 */
import { describe, expect, it } from "vitest";
import type { MessageFrame } from "../../src/protocol";
import { type Client, settle } from "../helpers";
import { expectExactlyOnce, objectOf, twoShardRoom, waitForSeq } from "./support";

/** The texts the orderer stored, in seq order. */
async function storedTexts(room: string): Promise<string[]> {
  const page = await objectOf(room, 0).readMessages({ since: 0, limit: 100 });
  return page.frames.map((f) => (JSON.parse(f) as MessageFrame).text ?? "");
}

describe("sharded rooms: a lost or repeated submitBatch", () => {
  it("an id-less message whose submitBatch answer was lost is stored once, and its sender is not told to resend", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    await objectOf(room, 1).loseNextSubmitAnswers(1);
    cb.send({ type: "message", text: "once" });
    await waitForSeq(ca, 1);
    await settle(400);
    // As a client does on store_failed ("send it again"): resend. Here it must not have been told to.
    const failed = cb.all("error").filter((e) => e.code === "store_failed");
    for (const _ of failed) cb.send({ type: "message", text: "once" });
    cb.send({ type: "message", text: "next" });
    for (const c of clients) await waitForSeq(c, 2);
    await settle(200);
    expect(failed).toEqual([]);
    expect(await storedTexts(room)).toEqual(["once", "next"]);
    expectExactlyOnce([ca, cb, cc], 1, 2);
  });

  it("a message with an id whose answer was lost is retried: stored once, acked once with its seq", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    await objectOf(room, 1).loseNextSubmitAnswers(2);
    cb.send({ type: "message", text: "with id", id: "w1" });
    expect(await cb.next("ack")).toMatchObject({ id: "w1", seq: 1 });
    await settle(200);
    expect(cb.all("ack")).toHaveLength(1);
    expect(cb.all("error")).toEqual([]);
    expect(await storedTexts(room)).toEqual(["with id"]);
    expectExactlyOnce([ca, cb, cc], 1, 1);
  });

  it("a repeated batch (the same forwarded messages twice) is stored once; each answer names the same seq", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    const orderer = objectOf(room, 0);
    const user = { id: "b-direct", name: "B" };
    const items = [
      { user, body: { text: "no id" }, key: "~test~".padEnd(80, "k") },
      { user, body: { text: "with id", id: "r1" } },
    ];
    const counts = { connections: 2, users: 2 };
    const first = await orderer.submitBatch(1, items, counts);
    const again = await orderer.submitBatch(1, items, counts);
    expect(first).toMatchObject([
      { seq: 1, outcome: "stored" },
      { seq: 2, outcome: "stored" },
    ]);
    expect(again).toMatchObject([
      { seq: 1, outcome: "duplicate" },
      { seq: 2, outcome: "duplicate" },
    ]);
    for (const c of clients) await waitForSeq(c, 2);
    await settle(200);
    expect(await storedTexts(room)).toEqual(["no id", "with id"]);
    expectExactlyOnce([ca, cb, cc], 1, 2);
  });
});
