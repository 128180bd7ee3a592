/**
 * The ceiling: a Durable Object per room that accepts hibernatable sockets without auth and sends
 * each text frame, as received, to every socket in the room (the sender included). Nothing else:
 * no parsing, no storage, no attachment. What the runtime itself can do.
 *
 * `GET /ws/:room` → 101. On connect the room sends `{"type":"welcome"}` so that the harness times
 * handshake-to-first-frame the same way for every server. `GET /healthz` → 200.
 */
import { DurableObject } from "cloudflare:workers";

const WELCOME = '{"type":"welcome"}';

export class CeilingRoom extends DurableObject {
  async fetch() {
    const { 0: client, 1: server } = new WebSocketPair();
    this.ctx.acceptWebSocket(server);
    server.send(WELCOME);
    return new Response(null, { status: 101, webSocket: client });
  }

  async webSocketMessage(_ws, message) {
    for (const ws of this.ctx.getWebSockets()) {
      try {
        ws.send(message);
      } catch {
        // Closing; its close event follows.
      }
    }
  }

  async webSocketClose(ws, code, reason) {
    // wrangler 4.86's local runtime leaves hibernatable sockets half-closed unless we answer.
    try {
      ws.close(code === 1005 || code === 1006 || code === 1015 ? 1000 : code, reason);
    } catch {
      // Already closed.
    }
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/healthz") return new Response('{"ok":true}');
    const match = /^\/ws\/([A-Za-z0-9_-]{1,64})$/.exec(url.pathname);
    if (!match || request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
      return new Response("not found", { status: 404 });
    }
    return env.ROOMS.get(env.ROOMS.idFromName(match[1])).fetch(request);
  },
};
