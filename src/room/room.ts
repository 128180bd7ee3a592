/**
 * The room: one Durable Object per room id. It accepts connections with the WebSocket Hibernation
 * API and dispatches what they send. The parts live beside it: who is connected and every send
 * (connections.ts), what members say and read back (messages.ts), presence (presence-feed.ts), the
 * alarm (alarms.ts), per-user limits (users.ts, admission.ts). This class orchestrates.
 */
import { DurableObject } from "cloudflare:workers";
import * as v from "valibot";
import type { Config } from "../common/config";
import { HttpError } from "../common/errors";
import { describeError, log } from "../common/log";
import { CLOSE_CODES, PING_FRAME, PONG_FRAME, type User } from "../protocol";
import { refuseConnect } from "./admission";
import type { Alarms } from "./alarms";
import { logFieldsOf, tagForUser } from "./connection";
import type { Connections } from "./connections";
import type { Ephemeral } from "./ephemeral";
import { accept } from "./greeting";
import { HANDOFF_HEADER, HandoffSchema } from "./handoff";
import type { History, Page, PageQuery } from "./history";
import type { Inbound } from "./inbound";
import type { MessageBody, Messages, Published } from "./messages";
import type { PresenceFeed } from "./presence-feed";
import { applyRelayed, type RelayItem } from "./relay";
import { localRoster, type RoomInfo, roomInfo } from "./room-info";
import { assembleRoom, type RoomParts } from "./room-parts";
import type { Sharding, ShardStatus } from "./room-sharding";
import { redirectResponse } from "./shard-map";
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
import { isReservedCloseCode, safeClose } from "./socket-chores";
import { applyFault, type TestFault } from "./test-faults";
import type { Users } from "./users";

export type { MessageBody, Published } from "./messages";

export type { RoomInfo } from "./room-info";

export class Room extends DurableObject<Env> {
  readonly #config: Config | undefined;
  readonly #history: History;
  readonly #users: Users;
  readonly #connections: Connections;
  readonly #messages: Messages;
  readonly #presence: PresenceFeed;
  readonly #alarms: Alarms;
  readonly #ephemeral: Ephemeral;
  readonly #sharding: Sharding;
  readonly #inbound: Inbound;
  readonly #parts: RoomParts;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const parts = assembleRoom(ctx, env);
    this.#parts = parts;
    this.#config = parts.config;
    this.#history = parts.history;
    this.#users = parts.users;
    this.#connections = parts.connections;
    this.#messages = parts.messages;
    this.#presence = parts.presence;
    this.#alarms = parts.alarms;
    this.#ephemeral = parts.ephemeral;
    this.#sharding = parts.sharding;
    this.#inbound = parts.inbound;
    // Answered by the runtime without waking the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
  }

  // -- runtime entry points ------------------------------------------------------------------

  override async fetch(request: Request): Promise<Response> {
    try {
      const config = this.#config;
      if (!config) return new HttpError("server_misconfigured", "the server is misconfigured").toResponse();
      const handoff = v.safeParse(HandoffSchema, JSON.parse(request.headers.get(HANDOFF_HEADER) ?? "null"));
      if (!handoff.success || request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
        return new HttpError("invalid_request", "not a room connect request").toResponse();
      }
      const refusal = refuseConnect(this.#connections, handoff.output, config, this.#users, Date.now());
      if (refusal !== undefined) {
        const { room, user, ip } = handoff.output;
        log("info", "gate_refused", { room, user: user.id, ip, status: refusal.status, code: refusal.code });
        return refusal.toResponse();
      }
      // A user that is not this object's under the room's map: the Worker asks the right one.
      const elsewhere = this.#sharding.route(handoff.output.user.id);
      if (elsewhere !== undefined) return redirectResponse(elsewhere, this.#sharding.map);
      await this.#sharding.shard?.warm(handoff.output.since);
      await this.#alarms.ensureBy(handoff.output.exp, config);
      const parts = {
        connections: this.#connections,
        presence: this.#presence,
        messages: this.#messages,
        history: this.#sharding.shard?.log ?? this.#history,
        users: this.#users,
        states: this.#ephemeral.states,
      };
      const response = accept(this.ctx, handoff.output, config, parts);
      this.#sharding.countsChanged();
      this.#presence.countsChanged();
      return response;
    } catch (error) {
      log("error", "connect_failed", describeError(error));
      return new HttpError("internal_error", "internal error").toResponse();
    }
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const config = this.#config;
    if (!config) {
      this.#closeMisconfigured(ws);
      return;
    }
    const conn = this.#connections.all().get(ws);
    if (!conn || conn.isGone) return;
    try {
      await this.#inbound.take(conn, message, config);
    } catch (error) {
      log("error", "frame_failed", { ...logFieldsOf(conn), ...describeError(error) });
      this.#connections.close(conn, CLOSE_CODES.internalError, "internal error");
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    // Answer the peer's close frame. Newer compatibility dates make the runtime do it (and ignore
    // this call), but wrangler 4.86's local runtime leaves hibernatable sockets half-closed without it.
    safeClose(ws, isReservedCloseCode(code) ? CLOSE_CODES.normal : code, reason);
    this.#onGone(ws, code, reason);
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    const conn = this.#connections.peek(ws);
    log("warn", "socket_error", { ...(conn ? logFieldsOf(conn) : {}), ...describeError(error) });
    this.#onGone(ws, 1006, "socket error");
  }

  override async alarm(): Promise<void> {
    const config = this.#config;
    if (!config) return;
    await this.#alarms.run(config, (now) => {
      this.#connections.reconcile();
      this.#users.prune(now, (userId) => this.ctx.getWebSockets(tagForUser(userId)).length > 0);
      this.#ephemeral.states.prune((userId) => this.#presence.has(userId));
    });
  }

  // -- RPC for the HTTP API (the Worker has already checked the token and the role) ------------

  /** Publishes a message as `from`, exactly like one sent over a socket. */
  async publish(room: string, from: User, body: MessageBody): Promise<Published> {
    this.#requireConfig();
    this.#connections.all();
    return this.#messages.publish(room, from, body, Date.now());
  }

  /** A page of stored messages. Reads only: a room that never existed stays without storage. */
  async readMessages(query: PageQuery, maxBytes?: number): Promise<Page> {
    return this.#history.page(query, maxBytes);
  }

  /** Who is connected, and the latest seq. Reads only. */
  async info(): Promise<RoomInfo> {
    this.#requireConfig();
    return roomInfo(this.#parts, (after, limit) => this.localRoster(after, limit));
  }

  /** Closes every connection of `userId` with 4403; returns how many were closed. */
  async kick(userId: string): Promise<number> {
    this.#requireConfig();
    const kicked = this.#connections.live(tagForUser(userId));
    for (const conn of kicked) this.#connections.close(conn, CLOSE_CODES.forbidden, "kicked");
    // In a sharded room the user's connections are in its shard (and, while it moves, maybe here).
    return kicked.length + (await this.#sharding.kickElsewhere(userId));
  }

  // -- RPC between the orderer and its shards (docs/scaling.md) ---------------------------------

  /** Orderer: members' room messages forwarded by shard `k`; answers once they are durable. */
  async submitBatch(k: number, items: ForwardItem[], counts: Counts): Promise<ForwardResult[]> {
    this.#requireConfig();
    return this.#sharding.submitBatch(this.#messages, k, items, counts);
  }

  /** Orderer: stored frames after `since`, oldest first (a shard's catch-up and resume reads). */
  async readSince(since: number, limit: number): Promise<HistoryRange> {
    this.#requireConfig();
    return this.#sharding.readSince(since, limit);
  }

  /** Orderer: shard `k`'s counts, maybe its users (src/room/roster-sync.ts), and the version of the room's users it holds. */
  async report(k: number, counts: Counts, roster?: RosterReport, rosterAt?: number): Promise<void> {
    this.#requireConfig();
    this.#sharding.heard(k, counts, roster, rosterAt);
  }

  /** Orderer: a page of the room's users over all its objects, by id (the HTTP API's roster). */
  async roster(after: string | undefined, limit: number): Promise<{ users: RoomInfo["users"]; next?: string }> {
    this.#requireConfig();
    return this.#sharding.roster(after, limit, (a: string | undefined, l: number) => this.localRoster(a, l));
  }

  /** This object's own users after `after`, by id, at most `limit`. */
  localRoster(after: string | undefined, limit: number): RoomInfo["users"] {
    return localRoster(this.#parts, after, limit);
  }

  /** Shard: the orderer attaches this shard, which starts delivering after `attach.seq`. */
  async attach(attach: Attach): Promise<void> {
    this.#requireConfig();
    await this.#sharding.requireShard().attach(attach);
  }

  /** Shard: frames the orderer committed, from `batch.from` on. */
  async deliver(batch: DeliverBatch): Promise<DeliverResult> {
    this.#requireConfig();
    this.#connections.all();
    return this.#sharding.requireShard().deliver(batch);
  }

  /** A direct message from another object of the room to `to`'s connections here; how many got it. */
  async directIn(to: string, text: string, after?: number): Promise<number> {
    this.#requireConfig();
    return this.#sharding.directIn(to, text, after);
  }

  /** Signals, presence updates and binary frames said in object `from` (src/room/relay.ts); never stored. */
  async relay(from: number, items: RelayItem[]): Promise<void> {
    this.#requireConfig();
    this.#connections.all();
    this.#sharding.relayIn(from, items, (got) => applyRelayed(got, this.#connections, this.#presence));
  }

  /** Where this object stands: its role, the map, its last seq and its counts. For tests and operators. */
  async shardStatus(): Promise<ShardStatus> {
    return this.#sharding.status();
  }

  /** Test hook: the orderer's next `n` deliveries with frames fail as if the call was lost. */
  async failNextDeliveries(n: number): Promise<void> {
    this.#sharding.requireOrderer().fanout.failNext = n;
  }

  /** Test hook (a shard): the answers to its next `n` submitBatch calls are lost after the orderer stored them. */
  async loseNextSubmitAnswers(n: number): Promise<void> {
    this.#sharding.requireShard().forwarder.loseAnswers = n;
  }

  /** Test hook: direct messages and signals sent here from other objects wait until `releaseDirectIn`. */
  async holdDirectIn(): Promise<void> {
    this.#sharding.directGate.hold();
  }

  async releaseDirectIn(): Promise<void> {
    this.#sharding.directGate.release();
  }

  /** Test only (TEST_FAULTS=true, src/room/test-faults.ts): injects `fault` in this object. */
  async testFault(fault: TestFault): Promise<void> {
    if (!this.#requireConfig().testFaults) throw new Error("test faults are off");
    applyFault(fault, {
      abort: (reason) => this.ctx.abort(reason),
      fanout: () => this.#sharding.requireOrderer().fanout,
      forwarder: () => this.#sharding.requireShard().forwarder,
    });
  }

  #requireConfig(): Config {
    if (!this.#config) throw new Error("the room is misconfigured");
    return this.#config;
  }

  // -- connection bookkeeping ----------------------------------------------------------------

  /** The peer closed, or the socket failed. */
  #onGone(ws: WebSocket, code: number, reason: string): void {
    if (!this.#config) return;
    const connections = this.#connections;
    const conn = connections.forget(ws, code, reason);
    if (conn?.isDying) {
      // Found closing at a wake, so never counted in: announce its user's leave if nobody is left.
      conn.isDying = false;
      const user = conn.attachment.user;
      this.#presence.leftUncounted(user, connections.live(tagForUser(user.id)).length > 0);
    }
    if (connections.liveCount() === 0) this.#alarms.clear();
    this.#sharding.countsChanged();
    this.#presence.countsChanged();
  }

  #closeMisconfigured(ws: WebSocket): void {
    log("error", "room_misconfigured", {});
    safeClose(ws, CLOSE_CODES.internalError, "server misconfigured");
  }
}
