/**
 * The peer: a chat room on partyserver, written the way its templates write one (partykit's
 * durable-chat: `hibernate: true`, `this.broadcast(message)` of the frame as received, then the
 * message parsed and stored in the object's SQLite). No auth and no validation.
 *
 * Differences from the template, to keep the three servers comparable: the first frame is a small
 * `{"type":"welcome"}` instead of the whole history, and the table keeps the newest 1000 messages
 * (edge-rooms' default HISTORY_LIMIT) instead of growing without bound.
 *
 * `GET /parties/chat/:room` → 101 (routePartykitRequest). `GET /healthz` → 200.
 */
import { routePartykitRequest, Server } from "partyserver";

const WELCOME = '{"type":"welcome"}';
const HISTORY_LIMIT = 1000;

export class Chat extends Server {
  static options = { hibernate: true };

  /** Sequence of the newest stored message; read from storage on start. */
  seq = 0;

  onStart() {
    this.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, frame TEXT NOT NULL)");
    const row = this.ctx.storage.sql.exec("SELECT MAX(seq) AS seq FROM messages").toArray()[0];
    this.seq = Number(row?.seq ?? 0);
  }

  onConnect(connection) {
    connection.send(WELCOME);
  }

  onMessage(_connection, message) {
    // Everyone, the sender included, gets the frame as it came.
    this.broadcast(message);
    if (typeof message !== "string") return;
    let parsed;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    if (parsed?.type !== "message") return;
    this.seq += 1;
    this.ctx.storage.sql.exec("INSERT INTO messages (seq, frame) VALUES (?, ?)", this.seq, message);
    this.ctx.storage.sql.exec("DELETE FROM messages WHERE seq <= ?", this.seq - HISTORY_LIMIT);
  }
}

export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === "/healthz") return new Response('{"ok":true}');
    return (await routePartykitRequest(request, env)) ?? new Response("not found", { status: 404 });
  },
};
