/** `welcome.missed`: which seqs a resume asked for and did not get (HISTORY_LIMIT=20 in this pool). */
import { describe, expect, it } from "vitest";
import { join, roomStub, uniqueRoom } from "./helpers";

async function roomWith(count: number): Promise<string> {
  const room = uniqueRoom("missed");
  const from = { id: "backend", name: "Backend" };
  for (let i = 0; i < count; i++) await roomStub(room).publish(room, from, { text: `m${i + 1}` });
  return room;
}

describe("welcome.missed", () => {
  it("names the seqs trimmed from history that a resume asked for, and the replay carries the rest", async () => {
    const room = await roomWith(25);
    const { client, welcome } = await join(room, { since: 2 });
    expect(welcome).toMatchObject({ seq: 25, recovered: false, missed: { from: 3, to: 5 } });
    expect((await client.next("message")).seq).toBe(6);
    client.close();
  });

  it("is absent when everything asked for came, without since, and for a since ahead of the room", async () => {
    const room = await roomWith(25);
    for (const since of [5, 25, 99, undefined]) {
      const { client, welcome } = await join(room, since === undefined ? {} : { since });
      expect(welcome.missed).toBeUndefined();
      client.close();
    }
  });
});
