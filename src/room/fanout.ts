/**
 * Orderer → shards delivery (docs/scaling.md): after each group commit the committed frames are
 * queued for every shard; one RPC in flight per shard, batched, retried with backoff. A shard's
 * answer says the last seq it delivered; frames up to it leave the queue.
 */
import { describeError, log } from "../common/log";
import type { StoredMessage } from "./history";
import type { ShardMap } from "./shard-map";
import type { DeliverBatch, DeliverResult, Occupancy, RosterPush } from "./shard-rpc";

export const DELIVER_MAX_FRAMES = 256;
export const DELIVER_MAX_BYTES = 1024 * 1024;
/** Past this many queued bytes a shard is far behind: the queue is dropped, the shard reads history. */
export const LINK_MAX_BYTES = 4 * 1024 * 1024;
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 2000;

export interface ShardPort {
  deliver(batch: DeliverBatch): Promise<DeliverResult>;
}

interface Link {
  k: number;
  /** Consecutive frames not yet confirmed, from seq `from` on. */
  from: number;
  frames: string[];
  bytes: number;
  inFlight: boolean;
  /** Send even without frames: the map, the latest seq or the occupancy changed. */
  isDue: boolean;
  retryMs: number;
  /** False while the shard is being attached: frames queue, nothing is sent. */
  isReady: boolean;
  /** The version of the roster push the shard said it holds (src/room/roster-sync.ts). */
  rosterAt: number;
}

export interface FanoutSource {
  map(): ShardMap;
  latest(): number;
  occupancy(): Occupancy | undefined;
  /** Shard `k` answered a delivery (its counts, maybe its roster report). */
  reported(k: number, result: DeliverResult): void;
  /** The version of shard `k`'s roster report held (0: none): asked for with every delivery. */
  rosterOf(k: number): number;
  /** The roster push shard `k` is due, holding version `at`; `undefined` when none. */
  rosterFor(k: number, at: number): RosterPush | undefined;
}

export class Fanout {
  readonly #links = new Map<number, Link>();
  readonly #port: (k: number) => ShardPort;
  readonly #source: FanoutSource;
  /** Test hook: how many of the next deliveries with frames fail as if the call was lost. */
  failNext = 0;
  /** Test hook: how many of the next deliveries with frames are sent twice (src/room/test-faults.ts). */
  repeatNext = 0;

  constructor(port: (k: number) => ShardPort, source: FanoutSource) {
    this.#port = port;
    this.#source = source;
  }

  /** A link to shard `k`, whose delivery starts after `seq`; not sent to before `ready`. False: it had one. */
  add(k: number, seq: number, isReady = true): boolean {
    if (this.#links.has(k)) return false;
    this.#links.set(k, {
      k,
      from: seq + 1,
      frames: [],
      bytes: 0,
      inFlight: false,
      isDue: true,
      retryMs: RETRY_FIRST_MS,
      isReady,
      rosterAt: 0,
    });
    return true;
  }

  remove(k: number): void {
    this.#links.delete(k);
  }

  ready(k: number): void {
    const link = this.#links.get(k);
    if (!link) return;
    link.isReady = true;
    this.#pump(link);
  }

  get size(): number {
    return this.#links.size;
  }

  /** The shards delivered to (retiring ones included). */
  shards(): number[] {
    return [...this.#links.keys()];
  }

  /** Shard `k` said it holds roster push `at` (a report): a delivery goes if it is due another. */
  heard(k: number, at: number): void {
    const link = this.#links.get(k);
    if (link === undefined) return;
    link.rosterAt = at;
    if (this.#source.rosterFor(k, at) !== undefined) {
      link.isDue = true;
      this.#pump(link);
    }
  }

  /** Frames just made durable, in seq order. */
  committed(stored: readonly StoredMessage[]): void {
    const first = stored[0];
    if (first === undefined) return;
    for (const link of this.#links.values()) {
      if (link.frames.length === 0 || link.from + link.frames.length !== first.seq) {
        // Empty, or not contiguous (dropped): the queue restarts here; the shard fills the gap.
        link.from = first.seq;
        link.frames = [];
        link.bytes = 0;
      }
      for (const m of stored) {
        link.frames.push(m.frame);
        link.bytes += m.frame.length;
      }
      if (link.bytes > LINK_MAX_BYTES) {
        log("warn", "shard_behind", { shard: link.k, bytes: link.bytes });
        link.frames = [];
        link.bytes = 0;
      }
      link.isDue = true;
      this.#pump(link);
    }
  }

  /** Sends every shard the map, the latest seq and the occupancy, with or without frames. */
  nudge(): void {
    for (const link of this.#links.values()) {
      link.isDue = true;
      this.#pump(link);
    }
  }

  #pump(link: Link): void {
    if (link.inFlight || !link.isReady || !link.isDue) return;
    link.inFlight = true;
    link.isDue = false;
    let n = 0;
    let bytes = 0;
    while (n < link.frames.length && n < DELIVER_MAX_FRAMES) {
      bytes += (link.frames[n] as string).length;
      if (bytes > DELIVER_MAX_BYTES && n > 0) break;
      n++;
    }
    const roster = this.#source.rosterFor(link.k, link.rosterAt);
    const batch: DeliverBatch = {
      map: this.#source.map(),
      from: link.from,
      frames: link.frames.slice(0, n),
      latest: this.#source.latest(),
      occupancy: this.#source.occupancy(),
      rosterOf: this.#source.rosterOf(link.k),
      ...(roster === undefined ? {} : { roster }),
    };
    const sent = link.from + n - 1;
    void this.#send(link, batch).then(
      (result) => {
        link.inFlight = false;
        link.retryMs = RETRY_FIRST_MS;
        link.rosterAt = result.rosterAt ?? link.rosterAt;
        this.#source.reported(link.k, result);
        // Whatever the shard says, what was sent is done with: it delivered it or will read history.
        this.#confirm(link, Math.max(sent, result.last));
        if (link.frames.length > 0 || this.#source.rosterFor(link.k, link.rosterAt) !== undefined) link.isDue = true;
        this.#pump(link);
      },
      (error: unknown) => {
        link.inFlight = false;
        link.isDue = true;
        log("warn", "shard_deliver_failed", { shard: link.k, retryMs: link.retryMs, ...describeError(error) });
        const delay = link.retryMs;
        link.retryMs = Math.min(RETRY_MAX_MS, link.retryMs * 2);
        setTimeout(() => this.#pump(link), delay);
      },
    );
  }

  #send(link: Link, batch: DeliverBatch): Promise<DeliverResult> {
    if (this.failNext > 0 && batch.frames.length > 0) {
      this.failNext -= 1;
      return Promise.reject(new Error("deliver lost (test hook)"));
    }
    if (this.repeatNext > 0 && batch.frames.length > 0) {
      this.repeatNext -= 1;
      return this.#port(link.k)
        .deliver(batch)
        .then(() => this.#port(link.k).deliver(batch));
    }
    return this.#port(link.k).deliver(batch);
  }

  #confirm(link: Link, last: number): void {
    const done = Math.min(link.frames.length, Math.max(0, last - link.from + 1));
    if (done === 0) return;
    for (const f of link.frames.slice(0, done)) link.bytes -= f.length;
    link.frames = link.frames.slice(done);
    link.from += done;
  }
}
