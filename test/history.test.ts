import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { History, TRIM_EVERY } from "../src/room/history";
import { roomStub, uniqueRoom } from "./helpers";

/** Runs `fn` over a fresh room object's real storage. */
function withStorage<T>(fn: (storage: DurableObjectStorage) => T): Promise<T> {
  return runInDurableObject(roomStub(uniqueRoom("history")), (_i, state) => fn(state.storage));
}

function fill(history: History, n: number, frameOf = (seq: number) => `{"seq":${seq}}`) {
  for (let seq = history.latestSeq + 1; seq <= n; seq++) {
    history.append({ seq, ts: seq, userId: "u", messageId: `m${seq}`, frame: frameOf(seq) });
  }
}

const seqsOf = (frames: string[]) => frames.map((f) => JSON.parse(f).seq);

describe("history", () => {
  it("refuses an append that does not follow the latest seq, and changes nothing", async () => {
    const result = await withStorage((storage) => {
      const history = new History(storage, 100);
      fill(history, 3);
      expect(() => history.append({ seq: 5, ts: 0, userId: "u", messageId: undefined, frame: "{}" })).toThrow();
      return { latest: history.latestSeq, stored: history.page({ since: 0, limit: 10 }).frames.length };
    });
    expect(result).toEqual({ latest: 3, stored: 3 });
  });

  it("leaves seq and log agreeing when a write fails", async () => {
    const result = await withStorage((storage) => {
      const history = new History(storage, 100);
      fill(history, 2);
      history.append({ seq: 3, ts: 3, userId: "u", messageId: "dup", frame: '{"seq":3}' });
      // A duplicate (sender, id) breaks the unique index: the insert fails, nothing moves.
      expect(() => history.append({ seq: 4, ts: 4, userId: "u", messageId: "dup", frame: '{"seq":4}' })).toThrow();
      return { latest: history.latestSeq, reread: new History(storage, 100).latestSeq };
    });
    expect(result).toEqual({ latest: 3, reread: 3 });
  });

  it("shows only the newest `limit` messages, trimming old rows in batches", async () => {
    const result = await withStorage((storage) => {
      const history = new History(storage, 20);
      fill(history, 25);
      const rows = storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM messages").one().n;
      fill(history, 40);
      const rowsLater = storage.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM messages").one().n;
      return {
        rows,
        rowsLater,
        newest: seqsOf(history.page({ limit: 100 }).frames),
        forward: history.page({ since: 0, limit: 3 }),
        replay: history.after(0),
      };
    });
    expect(result.rows).toBeLessThanOrEqual(20 + TRIM_EVERY);
    expect(result.rowsLater).toBeLessThanOrEqual(20 + TRIM_EVERY);
    expect(result.newest).toEqual(Array.from({ length: 20 }, (_, i) => i + 21));
    expect(seqsOf(result.forward.frames)).toEqual([21, 22, 23]);
    expect(result.forward.hasMore).toBe(true);
    expect(result.replay.recovered).toBe(false);
    expect(seqsOf(result.replay.frames)[0]).toBe(21);
  });

  it("finds a sender's id among the stored messages", async () => {
    const found = await withStorage((storage) => {
      const history = new History(storage, 100);
      fill(history, 5);
      return {
        hit: history.findById("u", "m3"),
        otherUser: history.findById("v", "m3"),
        miss: history.findById("u", "x"),
      };
    });
    expect(found).toEqual({ hit: { seq: 3, ts: 3, contentHash: 0 }, otherUser: undefined, miss: undefined });
  });

  it("replays everything after since when it fits, and says recovered", async () => {
    const replay = await withStorage((storage) => {
      const history = new History(storage, 100);
      fill(history, 5);
      return history.after(2);
    });
    expect(replay).toEqual({ frames: ['{"seq":3}', '{"seq":4}', '{"seq":5}'], recovered: true });
  });

  it("replays only the newest messages that fit the byte budget, in order, and says not recovered", async () => {
    const replay = await withStorage((storage) => {
      const history = new History(storage, 100);
      fill(history, 10, (seq) => JSON.stringify({ seq, pad: "x".repeat(90) }));
      return { fit: history.after(0, 350), tiny: history.after(0, 10) };
    });
    expect(replay.fit.recovered).toBe(false);
    expect(seqsOf(replay.fit.frames)).toEqual([8, 9, 10]);
    // A budget under one message still replays the newest: the client is never left with nothing.
    expect(seqsOf(replay.tiny.frames)).toEqual([10]);
  });

  it("cuts a page short at its byte budget in the direction of paging, never below one message", async () => {
    const pages = await withStorage((storage) => {
      const history = new History(storage, 100);
      // Each frame is 111 bytes in UTF-8 (the é takes two), 110 characters.
      fill(history, 10, (seq) => JSON.stringify({ seq, pad: `é${"x".repeat(89)}` }).padEnd(110, " "));
      return {
        // Three frames are 333 bytes but 330 characters: counted in bytes, only two fit.
        forward: history.page({ since: 2, limit: 5 }, 332),
        backward: history.page({ before: 9, limit: 5 }, 350),
        newest: history.page({ limit: 5 }, 50),
        whole: history.page({ since: 0, limit: 3 }, 1_000_000),
      };
    });
    expect(seqsOf(pages.forward.frames)).toEqual([3, 4]);
    expect(pages.forward.hasMore).toBe(true);
    expect(seqsOf(pages.backward.frames)).toEqual([6, 7, 8]);
    expect(pages.backward.hasMore).toBe(true);
    // One message over the budget still makes a page: paging always moves on.
    expect(seqsOf(pages.newest.frames)).toEqual([10]);
    expect(pages.newest.hasMore).toBe(true);
    expect(seqsOf(pages.whole.frames)).toEqual([1, 2, 3]);
    expect(pages.whole.hasMore).toBe(true);
  });

  it("keeps the counter when HISTORY_LIMIT is 0, storing nothing, and across a change of limit", async () => {
    const result = await withStorage((storage) => {
      fill(new History(storage, 0), 4);
      const atZero = { latest: new History(storage, 0).latestSeq, replay: new History(storage, 0).after(0) };
      fill(new History(storage, 100), 6);
      fill(new History(storage, 0), 7);
      return { atZero, later: new History(storage, 100).latestSeq };
    });
    expect(result).toEqual({ atZero: { latest: 4, replay: { frames: [], recovered: false } }, later: 7 });
  });
});
