/**
 * Ephemeral frames across a sharded room (docs/scaling.md): signals, presence-state `update`s and
 * binary frames said in one object reach the members of every other. Never stored, no seq: a shard
 * sends them to the orderer, which sends them to its own sockets and to every other shard; the
 * orderer's own go to every shard. The sender's object has already applied its limits (size, the
 * signal bucket, the coalescing of updates, the message buckets for binary) and sent them to its own
 * sockets; the relay only carries them further.
 *
 * One queue per destination with one call in flight, batched. Lossy like the frames it carries: a
 * failed call is logged and its batch dropped (a signal is stale by the time a retry would land; a
 * lost presence update is in the user's attachments and comes with the next `welcome`), and a queue
 * past RELAY_MAX_QUEUED_BYTES drops what comes (a destination down for long).
 */
import { describeError, log } from "../common/log";
import type { ShardMap } from "./shard-map";

/** A frame to send on: text (`presence`: through the presence queue), or binary after its `binary` text. */
export interface RelayItem {
  frame: string;
  bytes?: ArrayBuffer;
  presence?: boolean;
}

export interface RelayPort {
  relay(from: number, items: RelayItem[]): Promise<void>;
}

export const RELAY_MAX_ITEMS = 256;
export const RELAY_MAX_QUEUED_BYTES = 4 * 1024 * 1024;

const sizeOf = (item: RelayItem) => item.frame.length + (item.bytes?.byteLength ?? 0);

/** One destination: a queue, one call in flight. */
class Pipe {
  #items: RelayItem[] = [];
  #bytes = 0;
  #isSending = false;
  #hasWarned = false;

  constructor(
    readonly to: number,
    readonly send: (items: RelayItem[]) => Promise<void>,
  ) {}

  push(item: RelayItem): void {
    const size = sizeOf(item);
    if (this.#bytes + size > RELAY_MAX_QUEUED_BYTES) {
      if (!this.#hasWarned) log("warn", "relay_dropped", { to: this.to, queuedBytes: this.#bytes });
      this.#hasWarned = true;
      return;
    }
    this.#items.push(item);
    this.#bytes += size;
    this.#pump();
  }

  #pump(): void {
    if (this.#isSending || this.#items.length === 0) return;
    this.#isSending = true;
    const batch = this.#items.splice(0, RELAY_MAX_ITEMS);
    for (const item of batch) this.#bytes -= sizeOf(item);
    this.send(batch)
      .catch((error: unknown) =>
        log("warn", "relay_failed", { to: this.to, items: batch.length, ...describeError(error) }),
      )
      .finally(() => {
        this.#isSending = false;
        this.#hasWarned = false;
        this.#pump();
      });
  }
}

export class Relay {
  readonly #k: number;
  readonly #map: () => ShardMap;
  readonly #port: (k: number) => RelayPort;
  readonly #pipes = new Map<number, Pipe>();

  constructor(k: number, map: () => ShardMap, port: (k: number) => RelayPort) {
    this.#k = k;
    this.#map = map;
    this.#port = port;
  }

  /** Said here (and sent to this object's sockets): to every other object of the room. */
  out(item: RelayItem): void {
    if (this.#k > 0) this.#pipe(0).push(item);
    else this.#toShards(item, 0);
  }

  /** Orderer: items from shard `from`, already sent to this object's sockets: on to every other shard. */
  onward(from: number, items: RelayItem[]): void {
    for (const item of items) this.#toShards(item, from);
  }

  #toShards(item: RelayItem, except: number): void {
    const n = this.#map().n;
    for (let k = 1; k < n; k++) if (k !== except) this.#pipe(k).push(item);
  }

  #pipe(to: number): Pipe {
    let pipe = this.#pipes.get(to);
    if (pipe === undefined) {
      pipe = new Pipe(to, (items) => this.#port(to).relay(this.#k, items));
      this.#pipes.set(to, pipe);
    }
    return pipe;
  }
}

/** Where relayed items land in an object: its sockets, presence updates through its presence queue. */
export interface RelayTarget {
  broadcast(frame: string | ArrayBuffer, except?: WebSocket, before?: string): void;
}

/** Sends relayed items to this object's own sockets, in order. */
export function applyRelayed(
  items: RelayItem[],
  sockets: RelayTarget,
  presence: { relayedUpdate(frame: string): void },
): void {
  for (const item of items) {
    if (item.bytes !== undefined) sockets.broadcast(item.bytes, undefined, item.frame);
    else if (item.presence) presence.relayedUpdate(item.frame);
    else sockets.broadcast(item.frame);
  }
}
