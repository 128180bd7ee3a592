/**
 * Batch frames in RoomClient against `wrangler dev`: the client asks for them (`batch=1`) and takes
 * a batch frame's messages exactly like single frames, in order, each once.
 */
import { afterEach, describe, expect, it } from "vitest";
import { closeClients, makeClient, mintToken, uniqueRoom } from "./helpers";

afterEach(() => closeClients());

const SENDERS = 6;
const EACH = 15;

describe("batch frames in RoomClient", () => {
  it("gets every message of a busy room exactly once, in seq order, some of them in batch frames", async () => {
    const room = uniqueRoom("batch");
    const reader = makeClient({ room, token: await mintToken("reader") });
    await reader.log.wait("welcome", () => true, "the reader's welcome");
    expect(reader.lab.last.requestedUrl).toMatch(/[?&]batch=1(&|$)/);
    expect(reader.log.all("welcome")[0]?.batch).toBe(true);
    const texts: string[] = [];
    reader.lab.last.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) texts.push(data.toString());
    });

    const senders = [];
    for (let s = 0; s < SENDERS; s++) {
      const sender = makeClient({ room, token: await mintToken(`s${s}`) });
      await sender.log.wait("welcome", () => true, `sender ${s}'s welcome`);
      senders.push(sender);
    }
    // All at once, from every sender: messages arrive together and are stored (and sent) together.
    const acks = await Promise.all(
      senders.flatMap((sender, s) => Array.from({ length: EACH }, (_, i) => sender.client.send(`${s}:${i}`))),
    );
    const total = SENDERS * EACH;
    expect(new Set(acks.map((a) => a.seq)).size).toBe(total);
    await reader.log.wait("message", (m) => m.seq === total, "the reader: the last message");

    const got = reader.log.all("message");
    expect(got.map((m) => m.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    // Each sender's messages in the order it sent them.
    for (let s = 0; s < SENDERS; s++) {
      const mine = got.filter((m) => m.text?.startsWith(`${s}:`)).map((m) => m.text);
      expect(mine).toEqual(Array.from({ length: EACH }, (_, i) => `${s}:${i}`));
    }
    // The room was busy enough to batch: fewer frames than messages, some of them arrays.
    const batches = texts.filter((t) => t.startsWith("["));
    expect(batches.length).toBeGreaterThan(0);
    // Senders settle their own sends too: each got its message back as well as its ack.
    for (const [s, sender] of senders.entries()) {
      const own = sender.log.all("message").filter((m) => m.text?.startsWith(`${s}:`));
      expect(own).toHaveLength(EACH);
    }
  });
});
