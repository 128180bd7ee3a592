/**
 * Tools for the attack suite (test/e2e/attacks.e2e.ts): tokens minted with a server's secret, a raw
 * `ws` client that keeps counts rather than parsed frames (floods of 60 KB frames stay cheap), can
 * stop reading or read at a set pace, and reports a refused upgrade as its HTTP answer; seeding and
 * reading a room's history over the HTTP API; and the RSS of the workerd processes a `wrangler dev`
 * process group runs.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { SignJWT } from "jose";
import WebSocket, { type RawData } from "ws";
import { until as untilHolds } from "./until";
import type { WranglerServer } from "./wrangler-server";

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `check()` holds; rejects naming what was awaited after `timeoutMs`. */
export function until(check: () => boolean, what: string | (() => string), timeoutMs = 30_000): Promise<void> {
  return untilHolds(check, what, timeoutMs);
}

export function mintToken(server: WranglerServer, sub: string, role = "member"): Promise<string> {
  return new SignJWT({ role, name: sub })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setExpirationTime(Math.floor(Date.now() / 1000) + 3600)
    .sign(new TextEncoder().encode(server.secret));
}

/** The head of a server frame: enough to count it, without parsing a 60 KB payload. */
export interface FrameHead {
  type: string;
  seq?: number;
  code?: string;
  id?: string;
  event?: string;
  user?: { id: string };
  from?: { id: string };
  recovered?: boolean;
}

/** A refused upgrade: the HTTP status, the JSON body's error code, and Retry-After. */
export interface Refusal {
  status: number;
  code: string | undefined;
  retryAfter: string | undefined;
}

export interface OpenOptions {
  since?: number;
  /** Stop reading at once after the upgrade (the TCP connection stays open). */
  stalled?: boolean;
  /** Read at most about this many bytes per second. */
  readBytesPerSecond?: number;
}

/** Frames smaller than this are parsed whole; larger ones only by their head. */
const PARSE_WHOLE_BELOW = 4096;
const HEAD = /^\{"type":"(\w+)"(?:,"seq":(\d+))?/;

/**
 * One raw socket. Echoes every heartbeat it reads (byte for byte, as edge-rooms/client does), keeps
 * small frames whole and large ones as their head, counts bytes and the seqs of room messages.
 */
export class RawClient {
  readonly frames: FrameHead[] = [];
  readonly seqs: number[] = [];
  bytes = 0;
  /** Bytes of room messages and of history pages received. */
  messageBytes = 0;
  historyBytes = 0;
  closeCode: number | undefined;
  #welcome: FrameHead | undefined;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data: RawData, isBinary: boolean) => this.#onMessage(data, isBinary));
    ws.on("close", (code: number) => {
      this.closeCode = code;
    });
    ws.on("error", () => {});
  }

  /** Connects to `room`; resolves with the client once `welcome` arrived, or with the refusal. */
  static open(server: WranglerServer, room: string, token: string, options: OpenOptions = {}) {
    const since = options.since === undefined ? "" : `?since=${options.since}`;
    const url = `${server.baseUrl.replace(/^http/, "ws")}/ws/chat/${room}${since}`;
    // Local workerd can take seconds to close TCP after its close frame; the frame is what counts.
    // No permessage-deflate: the bytes on the wire are then the bytes the room counts, which a
    // reader's pace (and a stalled socket's kernel buffers) is measured in.
    const wsOptions = {
      headers: { Authorization: `Bearer ${token}` },
      closeTimeout: 1000,
      perMessageDeflate: false,
    };
    const ws = new WebSocket(url, wsOptions as WebSocket.ClientOptions);
    const client = new RawClient(ws);
    return new Promise<RawClient | Refusal>((resolve, reject) => {
      ws.once("unexpected-response", (_req, res: IncomingMessage) => {
        readJsonCode(res).then((code) => {
          const retryAfter = res.headers["retry-after"];
          resolve({
            status: res.statusCode ?? 0,
            code,
            retryAfter: typeof retryAfter === "string" ? retryAfter : undefined,
          });
          ws.terminate();
        }, reject);
      });
      ws.once("error", (error) => reject(error));
      ws.once("open", () => {
        if (options.stalled) {
          ws.pause();
          resolve(client);
          return;
        }
        if (options.readBytesPerSecond !== undefined) client.#throttle(options.readBytesPerSecond);
        until(() => client.#welcome !== undefined || client.closeCode !== undefined, "welcome", 15_000).then(
          () => resolve(client),
          reject,
        );
      });
    });
  }

  /** The `welcome` frame (undefined for a stalled client until it reads again). */
  get welcome(): FrameHead | undefined {
    return this.#welcome;
  }

  errors(code: string): FrameHead[] {
    return this.frames.filter((f) => f.type === "error" && f.code === code);
  }

  send(frame: object): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  /** A frame only the room answers (the runtime answers the exact `{"type":"ping"}` itself): its
   * `pong` arrives after everything the room sent this socket before. */
  async roundTrip(timeoutMs = 15_000): Promise<void> {
    const pongs = this.frames.filter((f) => f.type === "pong").length;
    this.ws.send('{ "type": "ping" }');
    await until(() => this.frames.filter((f) => f.type === "pong").length > pongs, "a pong from the room", timeoutMs);
  }

  stopReading(): void {
    this.ws.pause();
  }

  readAgain(): void {
    this.ws.resume();
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (isBinary) return;
    const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data;
    this.bytes += bytes.length;
    let head: FrameHead;
    if (bytes.length < PARSE_WHOLE_BELOW) {
      const text = bytes.toString("utf8");
      head = JSON.parse(text) as FrameHead;
      if (head.type === "heartbeat") this.ws.send(text);
    } else {
      const match = HEAD.exec(bytes.subarray(0, 64).toString("latin1"));
      head = { type: match?.[1] ?? "unknown", ...(match?.[2] ? { seq: Number(match[2]) } : {}) };
    }
    if (head.type === "welcome") this.#welcome = head;
    if (head.type === "message" && head.seq !== undefined) {
      this.seqs.push(head.seq);
      this.messageBytes += bytes.length;
    }
    if (head.type === "history") this.historyBytes += bytes.length;
    this.frames.push(head);
  }

  /** Reads at about `rate` bytes/s: pauses the socket whenever it is ahead of that pace. */
  #throttle(rate: number): void {
    const socket = (this.ws as unknown as { _socket: NodeJS.EventEmitter })._socket;
    const started = Date.now();
    let taken = 0;
    socket.on("data", (chunk: Buffer) => {
      taken += chunk.length;
      const aheadMs = (taken / rate) * 1000 - (Date.now() - started);
      if (aheadMs > 5 && !this.ws.isPaused) {
        this.ws.pause();
        setTimeout(() => this.ws.resume(), aheadMs);
      }
    });
  }
}

export function isRefusal(x: RawClient | Refusal): x is Refusal {
  return !(x instanceof RawClient);
}

function readJsonCode(res: IncomingMessage): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (chunk: Buffer) => chunks.push(chunk));
    res.once("error", reject);
    res.once("end", () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { error?: { code?: string } };
        resolve(body.error?.code);
      } catch {
        resolve(undefined);
      }
    });
  });
}

/** A stored message as the HTTP API returns it. */
export interface StoredMessage {
  seq: number;
  from: { id: string };
}

/** Every stored message of `room`, in seq order (HTTP API, a readonly token). */
export async function history(server: WranglerServer, room: string): Promise<StoredMessage[]> {
  const token = await mintToken(server, "auditor", "readonly");
  const all: StoredMessage[] = [];
  for (let since = 0; ; ) {
    const res = await fetch(`${server.baseUrl}/api/rooms/${room}/messages?since=${since}&limit=500`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    if (res.status !== 200) throw new Error(`history of ${room}: HTTP ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { messages: StoredMessage[]; hasMore: boolean };
    all.push(...page.messages);
    const last = page.messages.at(-1);
    if (!page.hasMore || last === undefined) return all;
    since = last.seq;
  }
}

/** Stores `count` messages of about `bytes` each in `room` (HTTP API, an admin token). */
export async function seed(server: WranglerServer, room: string, count: number, bytes: number): Promise<void> {
  const token = await mintToken(server, "seeder", "admin");
  const pad = "x".repeat(bytes);
  for (let n = 0; n < count; n++) {
    const res = await fetch(`${server.baseUrl}/api/rooms/${room}/messages`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ id: `seed-${n}`, data: { pad } }),
    });
    if (res.status !== 201) throw new Error(`seeding ${room}: HTTP ${res.status} ${await res.text()}`);
  }
}

/**
 * Resident memory (VmRSS) of the workerd processes in the process group `pgid` (wrangler starts
 * workerd in its own group, see WranglerServer), in bytes.
 */
export function workerdRss(pgid: number): number {
  let total = 0;
  let found = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis.
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const pgrp = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
      if (pgrp !== pgid || !comm.startsWith("workerd")) continue;
      const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${entry}/status`, "utf8"));
      total += Number(rss?.[1] ?? 0) * 1024;
      found += 1;
    } catch {
      // The process ended while being read.
    }
  }
  if (found === 0) throw new Error(`no workerd process in process group ${pgid}`);
  return total;
}

export const MiB = 1024 * 1024;
