/**
 * A TCP proxy in front of `wrangler dev` that can break the way real links break: it forwards both
 * ways, can stop forwarding either way without closing anything (a half-open link: a NAT timeout, a
 * phone in a tunnel, a proxy that silently drops), and can then cut every socket it holds.
 */
import { createServer, type Server, Socket } from "node:net";

export class BlackHoleProxy {
  /** Client → server bytes are forwarded (else dropped without a trace). */
  isForwardingUp = true;
  /** Server → client bytes are forwarded. */
  isForwardingDown = true;
  /** Connections accepted so far. */
  accepted = 0;
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(server: Server) {
    this.#server = server;
  }

  /** Listens on a free port of `host` and forwards to `target` (`http://host:port`). */
  static async start(target: string, host = "127.0.0.1"): Promise<BlackHoleProxy> {
    const { hostname, port } = new URL(target);
    const server = createServer();
    const proxy = new BlackHoleProxy(server);
    server.on("connection", (client) => proxy.#pipe(client, hostname, Number(port)));
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    return proxy;
  }

  /** The proxy's base URL, for the client's `url`. */
  get url(): string {
    const address = this.#server.address();
    if (address === null || typeof address === "string") throw new Error("the proxy is not listening");
    return `http://${address.address}:${address.port}`;
  }

  /** Silently drops everything, both ways, closing nothing. */
  blackHole(): void {
    this.isForwardingUp = false;
    this.isForwardingDown = false;
  }

  /** Destroys every socket it holds (the old link is gone for good) and forwards again. */
  restore(): void {
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    this.isForwardingUp = true;
    this.isForwardingDown = true;
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #pipe(client: Socket, host: string, port: number): void {
    this.accepted += 1;
    const upstream = new Socket();
    upstream.connect(port, host);
    for (const socket of [client, upstream]) {
      this.#sockets.add(socket);
      socket.setNoDelay(true);
      socket.on("error", () => {});
      socket.on("close", () => {
        this.#sockets.delete(socket);
        // Passed on only while forwarding: a black hole does not report a close either.
        const other = socket === client ? upstream : client;
        if (this.isForwardingUp && this.isForwardingDown) other.destroy();
      });
    }
    client.on("data", (chunk) => {
      if (this.isForwardingUp) upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (this.isForwardingDown) client.write(chunk);
    });
  }
}
