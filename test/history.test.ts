import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { History } from "../src/history";
import { roomStub, uniqueRoom } from "./helpers";

/** Runs `fn` with a History over a fresh room object's real storage. */
function withHistory<T>(fn: (history: History, storage: DurableObjectStorage) => T): Promise<T> {
  return runInDurableObject(roomStub(uniqueRoom("history")), (_i, state) =>
    fn(new History(state.storage), state.storage),
  );
}

function fill(history: History, n: number, limit = 100, frameOf = (seq: number) => `{"seq":${seq}}`) {
  for (let seq = history.latestSeq + 1; seq <= n; seq++) {
    history.append({ seq, ts: seq, userId: "u", messageId: undefined, frame: frameOf(seq) }, limit);
  }
}

describe("history", () => {
  it("refuses an append that does not follow the latest seq, and changes nothing", async () => {
    const result = await withHistory((history) => {
      fill(history, 3);
      expect(() => history.append({ seq: 5, ts: 0, userId: "u", messageId: undefined, frame: "{}" }, 100)).toThrow();
      return { latest: history.latestSeq, stored: history.page({ since: 0, limit: 10 }).frames.length };
    });
    expect(result).toEqual({ latest: 3, stored: 3 });
  });

  it("rolls an append back whole when a write fails, so seq and log never disagree", async () => {
    const result = await withHistory((history, storage) => {
      fill(history, 2);
      // A duplicate (sender, id) breaks the unique index inside the transaction.
      history.append({ seq: 3, ts: 3, userId: "u", messageId: "dup", frame: '{"seq":3}' }, 100);
      expect(() => history.append({ seq: 4, ts: 4, userId: "u", messageId: "dup", frame: '{"seq":4}' }, 100)).toThrow();
      const meta = storage.sql.exec<{ value: number }>("SELECT value FROM room_meta WHERE key = 'seq'").one();
      return {
        latest: history.latestSeq,
        meta: meta.value,
        rows: storage.sql.exec("SELECT seq FROM messages").toArray().length,
      };
    });
    expect(result).toEqual({ latest: 3, meta: 3, rows: 3 });
  });

  it("replays everything after since when it fits, and says recovered", async () => {
    const replay = await withHistory((history) => {
      fill(history, 5);
      return history.after(2);
    });
    expect(replay).toEqual({ frames: ['{"seq":3}', '{"seq":4}', '{"seq":5}'], recovered: true });
  });

  it("replays only the newest messages that fit the byte budget, in order, and says not recovered", async () => {
    const replay = await withHistory((history) => {
      fill(history, 10, 100, (seq) => JSON.stringify({ seq, pad: "x".repeat(90) }));
      return history.after(0, 350);
    });
    expect(replay.recovered).toBe(false);
    expect(replay.frames.map((f) => JSON.parse(f).seq)).toEqual([8, 9, 10]);
  });

  it("keeps the counter when HISTORY_LIMIT is 0, storing nothing", async () => {
    const result = await withHistory((history) => {
      fill(history, 4, 0);
      return { latest: history.latestSeq, replay: history.after(0) };
    });
    expect(result).toEqual({ latest: 4, replay: { frames: [], recovered: false } });
  });
});
