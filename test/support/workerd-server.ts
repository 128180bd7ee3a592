/**
 * The production bundle (`wrangler deploy --dry-run`) served by the bare workerd that wrangler 4.86
 * ships, with settings as text bindings and Durable Object storage on a local disk: restartable (with
 * SIGKILL, as a crash or a deploy would) on the same port and state.
 *
 * Why not `wrangler dev`: every socket there also passes wrangler's dev proxy and miniflare's entry
 * Worker. They negotiate WebSocket compression with the client themselves, whatever the Worker's own
 * flags say (test/e2e/compression.e2e.ts needs what a deployed Worker negotiates), and the proxy holds
 * about 6 file descriptors per proxied WebSocket (measured: ~2,800 for 500 sockets), so the full-size
 * shard soak's 16,000 sockets cannot fit the 20,000 descriptors a process may open here. Bare workerd
 * holds about one per socket.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  freePort,
  HOST,
  OutputTail,
  REPO_ROOT,
  signalGroup,
  sleep,
  stopGroup,
  WRANGLER,
  waitGroupGone,
  wranglerEnv,
} from "../../scripts/lib/processes.mjs";

function workerdBinary(): string {
  const require = createRequire(join(REPO_ROOT, "node_modules", "wrangler", "package.json"));
  return (require("workerd") as { default: string }).default;
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: REPO_ROOT, stdio: "ignore", env: wranglerEnv() });
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${command} exited with ${code}`))));
  });
}

export interface WorkerdOptions {
  vars?: Record<string, string>;
  /** Texts counted in its output over the whole run, restarts included (`count`). */
  watch?: string[];
}

export class WorkerdServer {
  readonly secret = `test-only-${randomBytes(32).toString("hex")}`;
  readonly baseUrl: string;
  #child: ChildProcess | undefined;
  #output = new OutputTail();
  readonly #counted = new Map<string, number>();
  readonly #onExit = () => this.kill();

  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly options: WorkerdOptions,
  ) {
    this.baseUrl = `http://${HOST}:${port}`;
  }

  static async start(options: WorkerdOptions = {}): Promise<WorkerdServer> {
    const dir = await mkdtemp(join(tmpdir(), "edge-rooms-workerd-"));
    const server = new WorkerdServer(await freePort(), dir, options);
    try {
      await server.#configure();
      await server.#startProcess();
      return server;
    } catch (error) {
      await server.dispose();
      throw error;
    }
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  count(text: string): number {
    return (this.#counted.get(text) ?? 0) + this.#output.count(text);
  }

  output(lines = 40): string {
    return this.#output.last(lines);
  }

  /** SIGKILL, then a new process on the same port and state. */
  async crashAndRestart(): Promise<void> {
    const pid = this.#child?.pid;
    this.#child = undefined;
    process.removeListener("exit", this.#onExit);
    if (pid !== undefined) {
      signalGroup(pid, "SIGKILL");
      await waitGroupGone(pid, 5_000);
    }
    await this.#startProcess();
  }

  kill(): void {
    const pid = this.#child?.pid;
    if (pid !== undefined) signalGroup(pid, "SIGKILL");
  }

  async dispose(): Promise<void> {
    const pid = this.#child?.pid;
    this.#child = undefined;
    process.removeListener("exit", this.#onExit);
    if (pid !== undefined) await stopGroup(pid, 4_000);
    await rm(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }

  async #configure(): Promise<void> {
    await run(WRANGLER, ["deploy", "--dry-run", "--outdir", join(this.dir, "bundle")]);
    const toml = await readFile(join(REPO_ROOT, "wrangler.toml"), "utf8");
    const date = /^compatibility_date = "([^"]+)"$/m.exec(toml)?.[1];
    const flags = /^compatibility_flags = (\[[^\]]*\])$/m.exec(toml)?.[1] ?? "[]";
    if (date === undefined) throw new Error("wrangler.toml has no compatibility_date");
    await mkdir(join(this.dir, "disk"));
    const vars = { ...this.options.vars, JWT_SECRET: this.secret };
    const bindings = [
      '(name = "ROOMS", durableObjectNamespace = "Room")',
      ...Object.entries(vars).map(
        ([name, value]) => `(name = ${JSON.stringify(name)}, text = ${JSON.stringify(value)})`,
      ),
    ];
    // No CONNECT_LIMITER and no WEBHOOK_QUEUE binding: the gate admits without a per-IP limit, and
    // rooms post no webhooks (both documented as optional).
    const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker), (name = "disk", disk = (path = ${JSON.stringify(join(this.dir, "disk"))}, writable = true)) ],
  sockets = [ (name = "http", address = "${HOST}:${this.port}", http = (), service = "main") ],
);
const worker :Workerd.Worker = (
  modules = [ (name = "index.js", esModule = embed "bundle/index.js") ],
  compatibilityDate = "${date}",
  compatibilityFlags = ${flags},
  durableObjectNamespaces = [ (className = "Room", uniqueKey = "edge-rooms-room", enableSql = true) ],
  durableObjectStorage = (localDisk = "disk"),
  bindings = [ ${bindings.join(", ")} ],
);
`;
    await writeFile(join(this.dir, "config.capnp"), config);
  }

  async #startProcess(): Promise<void> {
    for (const text of this.options.watch ?? []) this.#counted.set(text, this.count(text));
    this.#output = new OutputTail(200, this.options.watch ?? []);
    const child = spawn(workerdBinary(), ["serve", join(this.dir, "config.capnp"), "--experimental"], {
      cwd: this.dir,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.#child = child;
    process.once("exit", this.#onExit);
    for (const stream of [child.stdout, child.stderr]) stream?.on("data", (chunk: Buffer) => this.#output.push(chunk));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${this.baseUrl}/healthz`)).status === 200) return;
      } catch {
        // not listening yet
      }
      await sleep(200);
    }
    throw new Error(`workerd did not answer /healthz within 30 s:\n${this.#output.last(40)}`);
  }
}
