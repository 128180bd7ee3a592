/**
 * The shard role (docs/scaling.md): a room object named `<room>~s<k>` holds sockets like any room,
 * but sends its members' room messages to the orderer (batched, one call in flight) and delivers
 * what the orderer committed, in seq order, from its cursor: repeated frames skipped, gaps read from
 * the orderer's history once for all its sockets. Acks go out once the acked seq was delivered here.
 */
import { describeError, log } from "../common/log";
import { type AckFrame, CLOSE_CODES, type ClientMessageFrame } from "../protocol";
import type { Connection } from "./connection";
import type { Connections } from "./connections";
import type { Page, PageQuery } from "./history";
import { ReplyOrder } from "./reply-order";
import { type PendingAck, ShardForwarder } from "./shard-forwarder";
import type { ShardLog } from "./shard-log";
import { type ShardMap, shardOf } from "./shard-map";
import { ShardReports, type ShardReportsParts } from "./shard-reports";
import type {
  Attach,
  Counts,
  DeliverBatch,
  DeliverResult,
  ForwardItem,
  ForwardResult,
  HistoryRange,
  RosterReport,
} from "./shard-rpc";

/** What a shard asks of its orderer (RPC methods of src/room/room.ts). */
export interface OrdererPort {
  submitBatch(k: number, items: ForwardItem[], counts: Counts): Promise<ForwardResult[]>;
  readSince(since: number, limit: number): Promise<HistoryRange>;
  readMessages(query: PageQuery, maxBytes?: number): Promise<Page>;
  report(k: number, counts: Counts, roster?: RosterReport, rosterAt?: number): Promise<void>;
}

const READ_LIMIT = 500;
/** An ack whose seq was not delivered this long after the orderer answered makes the shard read it. */
const ACK_PULL_AFTER_MS = 200;

export class ShardRole {
  readonly k: number;
  readonly log: ShardLog;
  readonly #orderer: () => OrdererPort;
  readonly #connections: () => Connections;
  readonly #counts: () => Counts;
  readonly #onMap: (map: ShardMap) => void;
  /** Counts and users to the orderer; the room-wide ones from it (src/room/shard-reports.ts). */
  readonly reports: ShardReports;
  /** Everything that moves the cursor runs one at a time, in order. */
  #chain: Promise<unknown> = Promise.resolve();
  /** Members' room messages to the orderer. */
  readonly forwarder: ShardForwarder;
  /** Each connection's answers in the order of its frames (src/room/reply-order.ts). */
  readonly order = new ReplyOrder();
  /** Direct messages from other objects waiting for this shard to deliver a seq their sender saw. */
  #waiters: Array<{ seq: number; resolve: () => void }> = [];
  /** Acks waiting for their seq to be delivered here. */
  #acks: PendingAck[] = [];
  /** Reads of the orderer's history since this object woke (shardStatus; a storm should cost ~1). */
  reads = 0;

  constructor(
    k: number,
    shardLog: ShardLog,
    parts: ShardReportsParts & { orderer: () => OrdererPort; onMap: (map: ShardMap) => void },
  ) {
    this.k = k;
    this.log = shardLog;
    this.#orderer = parts.orderer;
    this.#connections = parts.connections;
    this.#counts = parts.counts;
    this.#onMap = parts.onMap;
    this.reports = new ShardReports(k, parts);
    this.forwarder = new ShardForwarder(k, {
      orderer: parts.orderer,
      connections: parts.connections,
      counts: parts.counts,
      order: this.order,
      answered: (acks) => this.#answered(acks),
    });
  }

  /** `undefined` when `userId` is this shard's under its map; else the shard to ask instead. */
  route(userId: string): number | undefined {
    const map = this.log.map;
    if (map === undefined) return 0;
    const k = shardOf(userId, map.n);
    return k === this.k ? undefined : k;
  }

  attach(attach: Attach): Promise<void> {
    return this.#serial(async () => {
      // New, or attached again after the room shrank and grew: with no socket left it starts afresh;
      // one still moving its members out catches up instead, so that they miss nothing.
      if (this.log.map === undefined || this.#counts().connections === 0) this.log.restart(attach.seq);
      else if (attach.seq > this.log.latestSeq) await this.#pull(attach.seq);
      this.#adopt(attach.map);
    });
  }

  deliver(batch: DeliverBatch): Promise<DeliverResult> {
    return this.#serial(async () => {
      if (this.log.map === undefined) this.log.restart(batch.from - 1);
      this.#adopt(batch.map);
      const first = Math.max(0, this.log.latestSeq + 1 - batch.from); // before it: repeated
      if (first < batch.frames.length && batch.from + first > this.log.latestSeq + 1) {
        await this.#pull(batch.from + first - 1); // a gap
      }
      const at = this.log.latestSeq + 1 - batch.from;
      if (at >= 0) this.#deliverRun(batch.frames.slice(at));
      if (batch.latest > this.log.latestSeq) await this.#pull(batch.latest);
      this.log.save();
      this.#flushAcks();
      return { last: this.log.latestSeq, counts: this.#counts(), ...this.reports.told(batch) };
    });
  }

  /** Before a connection is accepted: the buffer covers what it resumes from (one read per shard). */
  warm(since: number | undefined): Promise<void> {
    if (since === undefined) return Promise.resolve();
    return this.#serial(async () => {
      if (since > this.log.latestSeq) {
        // It saw more elsewhere (it moved here): catch up first.
        await this.#pull(since);
        this.log.save();
        this.#flushAcks();
      }
      const end = this.log.recentFrom - 1;
      if (since >= end) return;
      const frames: string[] = [];
      let from: number | undefined;
      let cursor = since;
      while (cursor < end) {
        this.reads += 1;
        const range = await this.#orderer().readSince(cursor, Math.min(READ_LIMIT, end - cursor));
        const usable = range.frames.slice(0, Math.max(0, end - range.from + 1));
        if (usable.length === 0) break;
        if (from === undefined) from = range.from;
        else if (range.from !== from + frames.length) break;
        frames.push(...usable);
        cursor = range.from + usable.length - 1;
      }
      if (from !== undefined && from + frames.length === end + 1) this.log.prepend(from, frames);
    });
  }

  /** A member's room message, validated and rate-limited here: to the orderer (src/room/shard-forwarder.ts). */
  forward(conn: Connection, frame: ClientMessageFrame): void {
    this.forwarder.forward(conn, frame);
  }

  /**
   * Resolves once this shard delivered `seq` to its sockets: a direct message from another object
   * then never overtakes a room message its sender saw before sending it. If the delivery does not
   * come soon (lost), the shard reads it rather than wait.
   */
  delivered(seq: number): Promise<void> {
    if (seq <= this.log.latestSeq) return Promise.resolve();
    const reached = new Promise<void>((resolve) => this.#waiters.push({ seq, resolve }));
    this.#pullSoon(seq);
    return reached;
  }

  readPage(query: PageQuery, maxBytes: number): Promise<Page> {
    return this.#orderer().readMessages(query, maxBytes);
  }

  #serial<T>(run: () => Promise<T>): Promise<T> {
    const next = this.#chain.then(run);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  #adopt(map: ShardMap): void {
    const current = this.log.map;
    if (current !== undefined && current.epoch >= map.epoch) return;
    this.log.setMap(map);
    this.#onMap(map);
  }

  /** Reads and delivers the orderer's frames until this shard has delivered `target`. */
  async #pull(target: number): Promise<void> {
    while (this.log.latestSeq < target) {
      const last = this.log.latestSeq;
      this.reads += 1;
      const range = await this.#orderer().readSince(last, READ_LIMIT);
      // Before the empty check: with HISTORY_LIMIT=0 the orderer has no frame, only a gap to tell.
      if (range.from > last + 1) this.#lost(last, range.from - 1);
      if (range.frames.length === 0) return;
      const at = this.log.latestSeq + 1 - range.from;
      if (at >= 0) this.#deliverRun(range.frames.slice(at));
      if (this.log.latestSeq === last) return;
    }
  }

  /**
   * Frames after `last` up to `upTo` are gone from the orderer's history: this shard's clients
   * missed them. Each is sent off to resume (4307), where `welcome.recovered` tells it.
   */
  #lost(last: number, upTo: number): void {
    log("warn", "shard_gap_lost", { shard: this.k, after: last, upTo });
    const connections = this.#connections();
    for (const conn of connections.live()) connections.close(conn, CLOSE_CODES.moved, "history gap: resume");
    this.log.restart(upTo);
  }

  /**
   * Frames latestSeq + 1, + 2, … to this shard's sockets, as the orderer's commit queue sends a run:
   * as batch frames to the connections that take them, one by one to the others.
   */
  #deliverRun(frames: string[]): void {
    if (frames.length === 0) return;
    const connections = this.#connections();
    const isPlainOnly = frames.length > 1 && connections.broadcastRun(frames);
    for (const frame of frames) {
      connections.broadcast(frame, undefined, undefined, isPlainOnly);
      this.log.push(frame);
    }
  }

  #flushAcks(): void {
    const last = this.log.latestSeq;
    const connections = this.#connections();
    const waiting: PendingAck[] = [];
    for (const ack of this.#acks) {
      const id = ack.id;
      if (ack.seq > last) waiting.push(ack);
      else if (id === undefined) ack.release(() => undefined);
      else
        ack.release(() =>
          connections.send(ack.conn, JSON.stringify({ type: "ack", id, seq: ack.seq } satisfies AckFrame)),
        );
    }
    this.#acks = waiting;
    const still: Array<{ seq: number; resolve: () => void }> = [];
    for (const w of this.#waiters) {
      if (w.seq > last) still.push(w);
      else w.resolve();
    }
    this.#waiters = still;
  }

  /** The orderer answered forwarded messages: each answer goes out once its seq was delivered here. */
  #answered(acks: PendingAck[]): void {
    this.#acks.push(...acks);
    this.#flushAcks();
    const highest = Math.max(0, ...acks.map((a) => a.seq));
    // Its delivery is on its way; if it does not come soon (lost), read it rather than wait.
    if (highest > this.log.latestSeq) this.#pullSoon(highest);
  }

  /** Reads up to `seq` from the orderer unless it was delivered within ACK_PULL_AFTER_MS. */
  #pullSoon(seq: number): void {
    setTimeout(() => {
      if (seq <= this.log.latestSeq) return;
      void this.#serial(async () => {
        await this.#pull(seq);
        this.log.save();
        this.#flushAcks();
      }).catch((error: unknown) => log("warn", "shard_pull_failed", { shard: this.k, ...describeError(error) }));
    }, ACK_PULL_AFTER_MS);
  }
}
