import { createExecutionContext, createMessageBatch, env, getQueueResult } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { parseConfig } from "../src/common/config";
import { WEBHOOK_EVENT_TYPES } from "../src/common/webhook-events";
import { SIGNATURE_HEADER, signWebhook, verifyWebhook } from "../src/common/webhook-signature";
import type { StoredMessage } from "../src/room/history";
import { messageEvent, RoomEvents } from "../src/room/room-events";
import { deliverWebhooks, RETRY_MAX_SECONDS, retryDelaySeconds, verdictOf } from "../src/worker/webhooks";

const SECRET = "whsec-test-0123456789abcdefghijklmnopqrstuv";
const HOOK = { JWT_SECRET: "k".repeat(32), WEBHOOK_URL: "https://hooks.example.com/rooms", WEBHOOK_SECRET: SECRET };
const ALICE = { id: "alice", name: "Alice" };

function settingsOf(raw: Record<string, unknown>) {
  const result = parseConfig(raw);
  if (!result.ok) throw new Error(`expected a valid config, got ${result.error.setting}`);
  return result.config.webhooks;
}

function refusedSetting(raw: Record<string, unknown>): string | undefined {
  const result = parseConfig(raw);
  return result.ok ? undefined : result.error.setting;
}

function stored(seq: number, text: string): StoredMessage {
  const frame = JSON.stringify({ type: "message", seq, room: "lobby", from: ALICE, text, ts: 1000 + seq });
  return { seq, ts: 1000 + seq, userId: ALICE.id, messageId: undefined, frame };
}

/** A queue that records what is sent to it. */
function recordingQueue() {
  const sent: string[][] = [];
  const queue = {
    sendBatch: async (messages: Iterable<MessageSendRequest>) => {
      sent.push([...messages].map((m) => m.body as string));
    },
  } as unknown as Queue;
  return { queue, sent };
}

describe("webhook signatures", () => {
  it("signs HMAC-SHA256 over the timestamp, a dot and the body (a known vector)", async () => {
    expect(await signWebhook(SECRET, 1_700_000_000, '{"events":[]}')).toBe(
      "t=1700000000,v1=61caabee4d4d02494f43b48e25858bcdfeff25c6214e3c30c918efadb4984ef8",
    );
  });

  it("verifies its own signature within the tolerance and refuses a changed body, secret or old one", async () => {
    const header = await signWebhook(SECRET, 1_700_000_000, "body");
    expect(await verifyWebhook(SECRET, header, "body", 1_700_000_100)).toBe(true);
    expect(await verifyWebhook(SECRET, header, "body!", 1_700_000_100)).toBe(false);
    expect(await verifyWebhook(`${SECRET}x`, header, "body", 1_700_000_100)).toBe(false);
    expect(await verifyWebhook(SECRET, header, "body", 1_700_000_301)).toBe(false);
    expect(await verifyWebhook(SECRET, "t=1700000000,v1=zz", "body", 1_700_000_000)).toBe(false);
    expect(await verifyWebhook(SECRET, null, "body", 1_700_000_000)).toBe(false);
  });
});

describe("webhook settings", () => {
  it("are off without WEBHOOK_URL, and on with every event by default", () => {
    expect(settingsOf({ JWT_SECRET: "k".repeat(32) })).toBeUndefined();
    const on = settingsOf(HOOK);
    expect([...(on?.events ?? [])]).toEqual([...WEBHOOK_EVENT_TYPES]);
    expect(on?.retryBaseSeconds).toBe(10);
  });

  it("take https anywhere and http only to loopback", () => {
    expect(settingsOf({ ...HOOK, WEBHOOK_URL: "http://127.0.0.1:9999/hook" })?.url).toBe("http://127.0.0.1:9999/hook");
    expect(settingsOf({ ...HOOK, WEBHOOK_URL: "http://localhost/hook" })).toBeDefined();
    expect(refusedSetting({ ...HOOK, WEBHOOK_URL: "http://hooks.example.com/rooms" })).toBe("WEBHOOK_URL");
    expect(refusedSetting({ ...HOOK, WEBHOOK_URL: "ftp://hooks.example.com/" })).toBe("WEBHOOK_URL");
    expect(refusedSetting({ ...HOOK, WEBHOOK_URL: "not a url" })).toBe("WEBHOOK_URL");
    expect(refusedSetting({ ...HOOK, WEBHOOK_URL: "https://u:p@hooks.example.com/" })).toBe("WEBHOOK_URL");
  });

  it("require a secret of at least 32 bytes and known event names", () => {
    expect(refusedSetting({ ...HOOK, WEBHOOK_SECRET: undefined })).toBe("WEBHOOK_SECRET");
    expect(refusedSetting({ ...HOOK, WEBHOOK_SECRET: "short" })).toBe("WEBHOOK_SECRET");
    expect(refusedSetting({ ...HOOK, WEBHOOK_EVENTS: "message,typing" })).toBe("WEBHOOK_EVENTS");
    expect(refusedSetting({ ...HOOK, WEBHOOK_RETRY_BASE_SECONDS: "0" })).toBe("WEBHOOK_RETRY_BASE_SECONDS");
    expect([...(settingsOf({ ...HOOK, WEBHOOK_EVENTS: " message , room_empty" })?.events ?? [])]).toEqual([
      "message",
      "room_empty",
    ]);
  });
});

describe("room events (the producer)", () => {
  it("builds a message's event with the id evt_<room>_<seq> around the frame members got", () => {
    const message = stored(7, "hi");
    const event = JSON.parse(messageEvent("lobby", message));
    expect(event).toEqual({
      id: "evt_lobby_7",
      type: "message",
      room: "lobby",
      ts: 1007,
      message: JSON.parse(message.frame),
    });
    expect(messageEvent("lobby", message)).toBe(messageEvent("lobby", message));
  });

  it("sends a message too big for one queue message without its text, marked truncated", () => {
    const event = JSON.parse(messageEvent("lobby", stored(3, "x".repeat(130_000))));
    expect(event.id).toBe("evt_lobby_3");
    expect(event.message).toMatchObject({ seq: 3, from: ALICE, truncated: true });
    expect(event.message.text).toBeUndefined();
  });

  it("never says room_empty for one shard of a sharded room going empty (its count is its own)", () => {
    const { queue, sent } = recordingQueue();
    const events = new RoomEvents(settingsOf(HOOK), queue, "lobby");
    events.announced("leave", ALICE, 0, 6000, false);
    expect(sent.map((batch) => batch.map((e) => JSON.parse(e).type))).toEqual([["leave"]]);
  });

  it("sends one commit's events in one batch, and join, leave, then room_empty with the last leave", () => {
    const { queue, sent } = recordingQueue();
    const events = new RoomEvents(settingsOf(HOOK), queue, "lobby");
    events.committed([stored(1, "a"), stored(2, "b")]);
    events.announced("join", ALICE, 1, 5000);
    events.announced("leave", ALICE, 0, 6000);
    expect(sent.map((batch) => batch.map((e) => JSON.parse(e).type))).toEqual([
      ["message", "message"],
      ["join"],
      ["leave", "room_empty"],
    ]);
    const [join, leave, empty] = [sent[1]?.[0], sent[2]?.[0], sent[2]?.[1]].map((e) => JSON.parse(e ?? "{}"));
    expect(join).toMatchObject({ type: "join", room: "lobby", ts: 5000, user: ALICE, online: 1 });
    expect(leave).toMatchObject({ type: "leave", room: "lobby", ts: 6000, user: ALICE, online: 0 });
    expect(empty).toMatchObject({ type: "room_empty", room: "lobby", ts: 6000 });
    const ids = [join.id, leave.id, empty.id];
    for (const id of ids) expect(id).toMatch(/^evt_[0-9a-f]{32}$/);
    expect(new Set(ids).size).toBe(3);
  });

  it("sends only the chosen events, and nothing without a URL or a queue binding", () => {
    const chosen = recordingQueue();
    const some = new RoomEvents(settingsOf({ ...HOOK, WEBHOOK_EVENTS: "room_empty" }), chosen.queue, "lobby");
    some.committed([stored(1, "a")]);
    some.announced("join", ALICE, 1, 1);
    some.announced("leave", ALICE, 0, 2);
    some.announced("update", ALICE, 0, 3);
    expect(chosen.sent.map((b) => b.map((e) => JSON.parse(e).type))).toEqual([["room_empty"]]);

    const off = recordingQueue();
    for (const events of [
      new RoomEvents(undefined, off.queue, "lobby"),
      new RoomEvents(settingsOf(HOOK), undefined, "lobby"),
    ]) {
      events.committed([stored(1, "a")]);
      events.announced("leave", ALICE, 0, 1);
    }
    expect(off.sent).toEqual([]);
  });

  it("splits a large commit into sends of at most 100 events", () => {
    const { queue, sent } = recordingQueue();
    new RoomEvents(settingsOf(HOOK), queue, "lobby").committed(
      Array.from({ length: 128 }, (_, i) => stored(i + 1, "m")),
    );
    expect(sent.map((b) => b.length)).toEqual([100, 28]);
  });
});

describe("webhook delivery (the consumer)", () => {
  it("decides by status: 2xx delivered, 408/429/5xx/3xx/no answer retried, other 4xx refused", () => {
    for (const s of [200, 202, 204]) expect(verdictOf(s)).toBe("delivered");
    for (const s of [undefined, 301, 408, 429, 500, 502, 503]) expect(verdictOf(s)).toBe("retry");
    for (const s of [400, 401, 403, 404, 410, 413, 422]) expect(verdictOf(s)).toBe("refused");
  });

  it("backs off exponentially from the base, capped", () => {
    expect([1, 2, 3, 4].map((a) => retryDelaySeconds(a, 10))).toEqual([10, 20, 40, 80]);
    expect(retryDelaySeconds(30, 10)).toBe(RETRY_MAX_SECONDS);
  });

  /** Runs the consumer on `bodies` against a receiver answering `status` (or failing). */
  async function consume(
    bodies: unknown[],
    status: number | "network_error",
    raw: Record<string, string> = HOOK,
    attempts = 1,
  ) {
    const requests: Request[] = [];
    const post = (async (url: string, init: RequestInit) => {
      requests.push(new Request(url, init));
      if (status === "network_error") throw new TypeError("fetch failed");
      return new Response(status === 204 ? null : "ok", { status });
    }) as typeof fetch;
    const batch = createMessageBatch(
      "edge-rooms-webhooks",
      bodies.map((body, i) => ({ id: `m${i}`, timestamp: 1000, attempts, body })),
    );
    // The test batch records which messages were retried, not their delays: spy on those.
    const delays = batch.messages.map((m) => vi.spyOn(m, "retry"));
    const ctx = createExecutionContext();
    await deliverWebhooks(batch, raw, post, () => 1_700_000_000_000);
    const retried = delays.map((spy) => spy.mock.calls[0]?.[0]?.delaySeconds);
    return { result: await getQueueResult(batch, ctx), requests, retried };
  }

  const events = [messageEvent("lobby", stored(1, "a")), messageEvent("lobby", stored(2, "b"))];

  it("posts every event of a batch in one signed request and acks them on 2xx", async () => {
    const { result, requests } = await consume(events, 204);
    expect(requests).toHaveLength(1);
    const request = requests[0] as Request;
    expect(request.method).toBe("POST");
    expect(request.url).toBe(HOOK.WEBHOOK_URL);
    expect(request.headers.get("Content-Type")).toBe("application/json");
    const body = await request.text();
    expect(JSON.parse(body).events.map((e: { id: string }) => e.id)).toEqual(["evt_lobby_1", "evt_lobby_2"]);
    expect(await verifyWebhook(SECRET, request.headers.get(SIGNATURE_HEADER), body, 1_700_000_000)).toBe(true);
    expect(result.explicitAcks.sort()).toEqual(["m0", "m1"]);
    expect(result.retryMessages).toEqual([]);
  });

  it("retries each event with its backoff on 500, 429 and a network error", async () => {
    for (const status of [500, 429, "network_error"] as const) {
      const { result, retried } = await consume(events, status, { ...HOOK, WEBHOOK_RETRY_BASE_SECONDS: "2" }, 3);
      expect(result.explicitAcks).toEqual([]);
      expect(result.retryMessages).toEqual([{ msgId: "m0" }, { msgId: "m1" }]);
      expect(retried).toEqual([8, 8]);
    }
  });

  it("acks (drops, logged) events the receiver refuses with a 4xx, and malformed bodies", async () => {
    const refused = await consume(events, 400);
    expect(refused.result.explicitAcks.sort()).toEqual(["m0", "m1"]);
    const malformed = await consume(["not json", { id: "x" }], 200);
    expect(malformed.requests).toHaveLength(0);
    expect(malformed.result.explicitAcks.sort()).toEqual(["m0", "m1"]);
  });

  it("acks without posting when webhooks were switched off since the events were produced", async () => {
    const { result, requests } = await consume(events, 200, { JWT_SECRET: "k".repeat(32) });
    expect(requests).toHaveLength(0);
    expect(result.ackAll).toBe(true);
  });

  it("runs in the pool end to end: the binding's batch reaches this Worker's queue() handler", async () => {
    // The pool has the queue but no WEBHOOK_URL: the handler acknowledges and logs `webhook_dropped`.
    const warn = vi.spyOn(console, "warn");
    try {
      await env.WEBHOOK_QUEUE.sendBatch([{ body: events[0], contentType: "text" }]);
      const deadline = Date.now() + 10_000;
      const seen = () => warn.mock.calls.some((c) => String(c[0]).includes('"webhook_dropped"'));
      while (!seen() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(seen()).toBe(true);
    } finally {
      warn.mockRestore();
    }
  });
});
