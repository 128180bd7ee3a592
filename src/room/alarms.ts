/**
 * The room's one alarm: heartbeat rounds every HEARTBEAT_INTERVAL_MS, and each connection's token
 * expiry at its `exp` (src/room/alarm-plan.ts plans when). Alarms are at-least-once and retried: a repeat
 * finds the round done (its due time is stored) and closes only what has expired since.
 */

import type { Config } from "../common/config";
import { describeError, log } from "../common/log";
import { CLOSE_CODES } from "../protocol";
import { alarmForExpiry, HEARTBEAT_DUE_KEY, isRoundDue, nextAlarmAt } from "./alarm-plan";
import { type Connection, logFieldsOf } from "./connection";
import type { Connections } from "./connections";
import { judgeConnection } from "./heartbeat";
import { rememberName } from "./object-name";

export class Alarms {
  readonly #ctx: DurableObjectState;
  readonly #connections: Connections;
  /** Whether this object knows an alarm is set (read from storage once per wake), and for when. */
  #hasAlarm = false;
  #dueAt = 0;

  constructor(ctx: DurableObjectState, connections: Connections) {
    this.#ctx = ctx;
    this.#connections = connections;
  }

  /**
   * Makes sure an alarm is set, by `exp` at the latest. Storage's alarm is read once per wake, not
   * per connect: after that this object keeps track itself, and looks again only if the alarm is
   * overdue (its retries ran out, say).
   */
  async ensureBy(exp: number, config: Config): Promise<void> {
    const now = Date.now();
    const storage = this.#ctx.storage;
    let isUnset = false;
    if (!this.#hasAlarm || now > this.#dueAt + config.heartbeatIntervalMs) {
      // An alarm may wake this object before anything else does, and then without its name.
      rememberName(this.#ctx);
      const current = await storage.getAlarm();
      isUnset = current === null || current < now;
      if (current === null) {
        // The room's first connection (again): the heartbeat rounds start from now.
        this.#dueAt = now + config.heartbeatIntervalMs;
        await storage.put(HEARTBEAT_DUE_KEY, this.#dueAt);
      } else {
        this.#dueAt = current;
      }
      this.#hasAlarm = true;
    }
    const at = alarmForExpiry(this.#dueAt, exp, now) ?? (isUnset ? Math.max(this.#dueAt, now) : undefined);
    if (at === undefined) return;
    this.#dueAt = at;
    await storage.setAlarm(at);
  }

  /** An empty room keeps no alarm. */
  clear(): void {
    this.#hasAlarm = false;
    this.#ctx.storage.deleteAlarm().catch((error) => log("error", "alarm_delete_failed", describeError(error)));
  }

  /** The alarm fired: judge every connection, heartbeat them at a round, and plan the next alarm. */
  async run(config: Config, chores: (now: number) => void): Promise<void> {
    const connections = this.#connections;
    const now = Date.now();
    const dueAt = await this.#ctx.storage.get<number>(HEARTBEAT_DUE_KEY);
    const isRound = isRoundDue(now, dueAt, config.heartbeatIntervalMs);
    try {
      chores(now);
      for (const conn of connections.all().values()) {
        if (conn.isGone) continue;
        // One connection's failure must not stop the heartbeat for the others.
        try {
          this.#judge(conn, now, config, isRound);
        } catch (error) {
          log("error", "heartbeat_failed", { ...logFieldsOf(conn), ...describeError(error) });
          connections.close(conn, CLOSE_CODES.internalError, "internal error");
        }
      }
      connections.enforceBudgets(now);
    } finally {
      // Rescheduled whatever happened above, or the room would keep live sockets with no alarm.
      const live = [...connections.all().values()].filter((conn) => !conn.isGone);
      this.#hasAlarm = live.length > 0;
      if (this.#hasAlarm) {
        const roundAt = isRound || dueAt === undefined ? now + config.heartbeatIntervalMs : dueAt;
        if (isRound) await this.#ctx.storage.put(HEARTBEAT_DUE_KEY, roundAt);
        this.#dueAt = nextAlarmAt(
          now,
          roundAt,
          live.map((conn) => conn.attachment.exp),
        );
        await this.#ctx.storage.setAlarm(this.#dueAt);
      }
    }
  }

  /** Closes `conn` if its token expired, it went quiet or it stopped reading; at a round, heartbeats it. */
  #judge(conn: Connection, now: number, config: Config, isRound: boolean): void {
    const connections = this.#connections;
    const pinged = this.#ctx.getWebSocketAutoResponseTimestamp(conn.ws)?.getTime() ?? 0;
    const verdict = judgeConnection({
      now,
      exp: conn.attachment.exp,
      lastActivity: Math.max(conn.lastFrameAt, conn.attachment.connectedAt, pinged),
      unechoedSince: conn.attachment.awaiting?.since,
      timeoutMs: config.heartbeatTimeoutMs,
    });
    if (verdict.action === "close") {
      connections.close(conn, verdict.code, verdict.reason);
      return;
    }
    if (connections.isBehind(conn, now)) {
      // Over the unread budget and late: a burst that ended, or a room gone quiet, sends nothing
      // more that would have judged it.
      connections.closeBehind(conn);
      return;
    }
    if (!isRound) return;
    conn.attachment.seenAt = Math.max(conn.attachment.seenAt, conn.lastFrameAt);
    connections.sendHeartbeat(conn, now); // saves the attachment, seenAt with it
  }
}
