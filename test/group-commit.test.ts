import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { CommitQueue } from "../src/room/commit-queue";
import { History, TRIM_EVERY } from "../src/room/history";
import { join, roomStub, settle, uniqueRoom } from "./helpers";

/** Runs `fn` over a fresh room object's real storage. */
function withStorage<T>(fn: (storage: DurableObjectStorage) => T): Promise<T> {
  return runInDurableObject(roomStub(uniqueRoom("batch")), (_i, state) => fn(state.storage));
}

const stored = (seq: number, text: string) => ({ seq, ts: seq, userId: "u", messageId: `m${seq}`, frame: text });
/** Makes every insert of a frame containing "boom" fail, as a storage failure would. */
function failOnBoom(storage: DurableObjectStorage): void {
  storage.sql.exec(
    "CREATE TRIGGER IF NOT EXISTS boom BEFORE INSERT ON messages WHEN NEW.frame LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'boom'); END",
  );
}

describe("group commit", () => {
  it("stores a batch in one go and only then runs what waited on it, in seq order", async () => {
    const result = await withStorage((storage) => {
      const history = new History(storage, 100);
      const queue = new CommitQueue(history);
      const events: string[] = [];
      for (let i = 0; i < 3; i++) {
        const seq = queue.nextSeq;
        queue.add({
          stored: stored(seq, `{"seq":${seq}}`),
          // What a broadcast would see: the message must already be in storage.
          onStored: () => events.push(`sent ${seq}, stored ${history.latestSeq >= seq}`),
          onFailed: () => events.push(`failed ${seq}`),
        });
      }
      queue.after(() => events.push("after"));
      const before = { latest: history.latestSeq, events: [...events] };
      queue.flush();
      return { before, events, latest: history.latestSeq };
    });
    // Nothing went out before the flush; then each one, stored, in order.
    expect(result.before).toEqual({ latest: 0, events: [] });
    expect(result.events).toEqual(["sent 1, stored true", "sent 2, stored true", "sent 3, stored true", "after"]);
    expect(result.latest).toBe(3);
  });

  it("refuses a batch that fails to store as a whole: nothing is sent, and its seqs are given again", async () => {
    const result = await withStorage((storage) => {
      const history = new History(storage, 100);
      history.append(stored(1, '{"seq":1}'));
      failOnBoom(storage);
      const queue = new CommitQueue(history);
      const events: string[] = [];
      for (const text of ["fine", "boom", "fine too"]) {
        const seq = queue.nextSeq;
        queue.add({
          stored: stored(seq, `{"seq":${seq},"text":"${text}"}`),
          onStored: () => events.push(`sent ${seq}`),
          onFailed: () => events.push(`failed ${seq}`),
        });
      }
      queue.flush();
      const rows = storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM messages").one().n;
      const next = queue.nextSeq;
      return { events, rows, latest: history.latestSeq, next };
    });
    expect(result.events).toEqual(["failed 2", "failed 3", "failed 4"]);
    expect(result.rows).toBe(1);
    expect(result.latest).toBe(1);
    expect(result.next).toBe(2);
  });

  it("fans a run of messages out as one run, cut at what else was queued, each message then its ack", async () => {
    const events = await withStorage((storage) => {
      const history = new History(storage, 100);
      const events: string[] = [];
      const fanOut = {
        run: (frames: string[]) => {
          events.push(`run ${frames.join(" ")}`);
          return true;
        },
        one: (frame: string, isPlainOnly: boolean) => events.push(`one ${frame}${isPlainOnly ? " plain" : ""}`),
      };
      const queue = new CommitQueue(history, undefined, fanOut);
      const add = () => {
        const seq = queue.nextSeq;
        queue.add({ stored: stored(seq, `m${seq}`), onStored: () => events.push(`ack ${seq}`), onFailed: () => {} });
      };
      add();
      add();
      queue.after(() => events.push("direct"));
      add();
      queue.after(() => events.push("retry ack"));
      add();
      add();
      add();
      queue.flush();
      return events;
    });
    expect(events).toEqual([
      "run m1 m2",
      "one m1 plain",
      "ack 1",
      "one m2 plain",
      "ack 2",
      "direct",
      // A run of one is no batch: the frame goes to every connection.
      "one m3",
      "ack 3",
      "retry ack",
      "run m4 m5 m6",
      "one m4 plain",
      "ack 4",
      "one m5 plain",
      "ack 5",
      "one m6 plain",
      "ack 6",
    ]);
  });

  it("trims the log when a batch jumps over a multiple of TRIM_EVERY", async () => {
    const rows = await withStorage((storage) => {
      const history = new History(storage, 20);
      for (let start = 1; start <= 100; start += 7) {
        const batch = [];
        for (let seq = start; seq < start + 7; seq++) batch.push(stored(seq, `{"seq":${seq}}`));
        history.appendBatch(batch);
      }
      return storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM messages").one().n;
    });
    expect(rows).toBeLessThanOrEqual(20 + TRIM_EVERY);
  });

  it("acks a retry of a message still queued with the first seq, and stores and sends it once", async () => {
    const room = uniqueRoom();
    const sender = await join(room, { sub: "sender" });
    const observer = await join(room, { sub: "observer" });
    // Back to back: the second arrives while the first waits for its batch.
    sender.client.send({ type: "message", text: "once", id: "same" });
    sender.client.send({ type: "message", text: "once", id: "same" });
    sender.client.send({ type: "message", text: "other", id: "same" });
    await sender.client.waitFor(
      (f) => f.filter((x) => x.type === "ack" || x.type === "error").length >= 3,
      "3 answers",
    );
    const acks = sender.client.all("ack");
    expect(acks.map((a) => a.seq)).toEqual([1, 1]);
    expect(sender.client.all("error").map((e) => [e.code, e.id])).toEqual([["id_conflict", "same"]]);
    await settle(100);
    expect(observer.client.all("message").map((m) => m.seq)).toEqual([1]);
    sender.client.close();
    observer.client.close();
  });

  it("tells every sender of a batch that failed to store, with its id, and sends nobody any of it", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "a" });
    const b = await join(room, { sub: "b" });
    const observer = await join(room, { sub: "observer" });
    // The log's table exists once a message was stored: store one, then arm the failure.
    a.client.send({ type: "message", text: "first", id: "a1" });
    await a.client.next("ack");
    await runInDurableObject(roomStub(room), (_i, state) => failOnBoom(state.storage));
    b.client.send({ type: "message", text: "boom", id: "b1" });
    const refused = await b.client.next("error");
    expect([refused.code, refused.id]).toEqual(["store_failed", "b1"]);
    // Nothing of it reached anyone; the room goes on, gapless.
    a.client.send({ type: "message", text: "second", id: "a2" });
    expect((await a.client.next("ack")).seq).toBe(2);
    await observer.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 2, "2 messages");
    expect(observer.client.all("message").map((m) => [m.seq, m.text])).toEqual([
      [1, "first"],
      [2, "second"],
    ]);
    for (const c of [a, b, observer]) c.client.close();
  });
});
