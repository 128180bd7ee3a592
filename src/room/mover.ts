/**
 * After a room grew, each of its objects sends the sockets of users that are no longer its own off
 * to reconnect (4307, "moved": the client resumes at once, the Worker routes it to its new shard),
 * a few at a time so that the new shard is not hit by a storm (SHARD_MOVES_PER_SECOND).
 */
import { log } from "../common/log";
import { CLOSE_CODES } from "../protocol";
import type { Connections } from "./connections";
import { type ShardMap, shardOf } from "./shard-map";

const TICK_MS = 100;

export class Mover {
  readonly #k: number;
  readonly #perTick: number;
  readonly #connections: () => Connections;
  #map: ShardMap | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(k: number, movesPerSecond: number, connections: () => Connections) {
    this.#k = k;
    this.#perTick = Math.max(1, Math.ceil((movesPerSecond * TICK_MS) / 1000));
    this.#connections = connections;
  }

  /** The room's map changed: start moving whoever is not this object's under it. */
  start(map: ShardMap): void {
    this.#map = map;
    if (this.#timer === undefined) this.#timer = setTimeout(() => this.#tick(), 0);
  }

  #tick(): void {
    this.#timer = undefined;
    const map = this.#map;
    if (map === undefined) return;
    const connections = this.#connections();
    const away = connections.live().filter((c) => shardOf(c.attachment.user.id, map.n) !== this.#k);
    for (const conn of away.slice(0, this.#perTick)) {
      connections.close(conn, CLOSE_CODES.moved, "moved: reconnect");
    }
    if (away.length > 0) log("info", "shard_moving", { shard: this.#k, n: map.n, left: away.length });
    if (away.length > this.#perTick) this.#timer = setTimeout(() => this.#tick(), TICK_MS);
  }
}
