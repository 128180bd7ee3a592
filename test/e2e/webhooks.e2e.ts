/**
 * End-to-end webhooks: a real `wrangler dev` (its local Queues included) posting to a real HTTP
 * receiver on 127.0.0.1 that answers 500 for a while, then 200. Every event arrives, signed, with
 * duplicates only as byte-identical copies under the same id, and the room's members get every ack
 * and broadcast while the receiver fails.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { HOST, WranglerServer } from "../support/wrangler-server";

const WEBHOOK_SECRET = `whsec-e2e-${"0123456789abcdef".repeat(3)}`;
const MESSAGES_EACH = 10;
const DEADLINE_MS = 45_000;

interface Delivery {
  status: number;
  events: { id: string; type: string; raw: string }[];
  isSigned: boolean;
}

/** A receiver that answers 500 while `failing`, 200 after; it records every request it gets. */
class Receiver {
  failing = true;
  readonly deliveries: Delivery[] = [];
  readonly #server: Server;

  constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        const status = this.failing ? 500 : 200;
        const parsed = JSON.parse(body) as { events: { id: string; type: string }[] };
        this.deliveries.push({
          status,
          events: parsed.events.map((e) => ({ id: e.id, type: e.type, raw: JSON.stringify(e) })),
          isSigned: isValidSignature(String(req.headers["edge-rooms-signature"] ?? ""), body),
        });
        res.writeHead(status).end();
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, HOST, resolve));
    return `http://${HOST}:${(this.#server.address() as AddressInfo).port}/hooks`;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  /** Ids answered 200. */
  delivered(): Set<string> {
    return new Set(this.deliveries.filter((d) => d.status === 200).flatMap((d) => d.events.map((e) => e.id)));
  }
}

/** Verification as the README shows it (Node flavour): HMAC over `${t}.${body}`, 5-minute window. */
function isValidSignature(header: string, body: string): boolean {
  const fields = new Map(header.split(",").map((p) => p.split("=", 2) as [string, string]));
  const t = Number(fields.get("t"));
  if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > 300) return false;
  const expected = createHmac("sha256", WEBHOOK_SECRET).update(`${t}.${body}`).digest();
  const given = Buffer.from(fields.get("v1") ?? "", "hex");
  return given.length === expected.length && timingSafeEqual(given, expected);
}

async function until(what: string, check: () => boolean, ms = DEADLINE_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A member: its frames by type, and a way to wait for them. */
class Member {
  readonly frames: { type: string; id?: string; seq?: number; code?: string }[] = [];
  readonly ws: WebSocket;

  constructor(url: string, token: string) {
    this.ws = new WebSocket(url, ["rooms.v1", `bearer.${token}`]);
    this.ws.on("message", (data) => {
      const frame = JSON.parse(String(data));
      if (frame.type === "heartbeat") this.ws.send(String(data));
      this.frames.push(frame);
    });
  }

  count(type: string): number {
    return this.frames.filter((f) => f.type === type).length;
  }

  async closed(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    await new Promise((resolve) => this.ws.once("close", resolve));
  }
}

describe("webhooks through Queues under wrangler dev", () => {
  const receiver = new Receiver();
  let server: WranglerServer;

  beforeAll(async () => {
    const url = await receiver.listen();
    server = await WranglerServer.start({
      vars: {
        WEBHOOK_URL: url,
        WEBHOOK_SECRET,
        // Retries after 1, 2, 4… s: the whole test stays well under a minute.
        WEBHOOK_RETRY_BASE_SECONDS: "1",
        // The last leave (and room_empty) at once rather than after the grace.
        PRESENCE_GRACE_MS: "0",
      },
    });
  });

  afterAll(async () => {
    await server?.dispose();
    await receiver.close();
  });

  it("delivers every event, signed, while members see no error as the receiver fails then recovers", async () => {
    const room = `hooks-${Date.now()}`;
    const token = (sub: string) =>
      new SignJWT({ name: sub })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(sub)
        .setExpirationTime("1h")
        .sign(new TextEncoder().encode(server.secret));
    const url = `${server.baseUrl.replace(/^http/, "ws")}/ws/chat/${room}`;
    const alice = new Member(url, await token("alice"));
    await until("alice's welcome", () => alice.count("welcome") === 1, 15_000);
    const bob = new Member(url, await token("bob"));
    await until("bob's welcome", () => bob.count("welcome") === 1, 15_000);

    // The receiver is failing: the room must not notice.
    await until("a first (failed) delivery attempt", () => receiver.deliveries.length > 0);
    for (let i = 0; i < MESSAGES_EACH; i++) {
      alice.ws.send(JSON.stringify({ type: "message", text: `a${i}`, id: `a${i}` }));
      bob.ws.send(JSON.stringify({ type: "message", text: `b${i}`, id: `b${i}` }));
    }
    const total = 2 * MESSAGES_EACH;
    await until("every ack", () => alice.count("ack") === MESSAGES_EACH && bob.count("ack") === MESSAGES_EACH, 15_000);
    await until("every broadcast", () => alice.count("message") === total && bob.count("message") === total, 15_000);
    expect(alice.count("error") + bob.count("error")).toBe(0);
    expect(receiver.failing).toBe(true);

    alice.ws.close(1000);
    bob.ws.close(1000);
    await Promise.all([alice.closed(), bob.closed()]);
    // Let a few more attempts fail (retries included), then recover.
    await until("three failed attempts", () => receiver.deliveries.length >= 3);
    receiver.failing = false;

    const expected = total + 2 /* joins */ + 2 /* leaves */ + 1; /* room_empty */
    await until(`${expected} distinct events delivered`, () => receiver.delivered().size >= expected);

    const all = receiver.deliveries.flatMap((d) => d.events);
    expect(receiver.deliveries.every((d) => d.isSigned)).toBe(true);
    expect(receiver.deliveries.some((d) => d.status === 500)).toBe(true);
    // Duplicates (the failed attempts, any redelivery) are the very same event under the same id.
    const byId = new Map<string, string>();
    for (const e of all) {
      expect(byId.get(e.id) ?? e.raw).toBe(e.raw);
      byId.set(e.id, e.raw);
    }
    const delivered = receiver.delivered();
    expect(delivered.size).toBe(expected);
    for (let seq = 1; seq <= total; seq++) expect(delivered.has(`evt_${room}_${seq}`)).toBe(true);
    const types = [...byId.values()].map((raw) => JSON.parse(raw) as { type: string; user?: { id: string } });
    const who = (type: string) =>
      types
        .filter((e) => e.type === type)
        .map((e) => e.user?.id)
        .sort();
    expect(who("join")).toEqual(["alice", "bob"]);
    expect(who("leave")).toEqual(["alice", "bob"]);
    expect(types.filter((e) => e.type === "room_empty")).toHaveLength(1);
  });
});
