/**
 * The production bundle (`wrangler deploy --dry-run`) served by the bare workerd runtime that wrangler
 * 4.86 ships, with wrangler.toml's compatibility date and flags, and no dev tooling in front.
 *
 * Why: under `wrangler dev` every socket passes wrangler's dev proxy and miniflare's entry Worker,
 * and those negotiate WebSocket compression with the client themselves, whatever the Worker's own
 * flags say. What a deployed Worker negotiates can only be seen with the runtime serving it directly.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, HOST, REPO_ROOT, sleep, stopGroup, WRANGLER, wranglerEnv } from "../../scripts/lib/processes.mjs";

/** The workerd binary of the pinned wrangler (its npm package exports the binary's path). */
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

/** A workerd process serving the production bundle on a free loopback port. */
export class WorkerdServer {
  readonly baseUrl: string;
  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly child: ChildProcess,
    readonly secret: string,
  ) {
    this.baseUrl = `http://${HOST}:${port}`;
  }

  static async start(secret: string): Promise<WorkerdServer> {
    const dir = await mkdtemp(join(tmpdir(), "edge-rooms-workerd-"));
    await run(WRANGLER, ["deploy", "--dry-run", "--outdir", join(dir, "bundle")]);
    const toml = await readFile(join(REPO_ROOT, "wrangler.toml"), "utf8");
    const date = /^compatibility_date = "([^"]+)"$/m.exec(toml)?.[1];
    const flags = /^compatibility_flags = (\[[^\]]*\])$/m.exec(toml)?.[1] ?? "[]";
    if (date === undefined) throw new Error("wrangler.toml has no compatibility_date");
    await mkdir(join(dir, "disk"));
    const port = await freePort();
    const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker), (name = "disk", disk = (path = ${JSON.stringify(join(dir, "disk"))}, writable = true)) ],
  sockets = [ (name = "http", address = "${HOST}:${port}", http = (), service = "main") ],
);
const worker :Workerd.Worker = (
  modules = [ (name = "index.js", esModule = embed "bundle/index.js") ],
  compatibilityDate = "${date}",
  compatibilityFlags = ${flags},
  durableObjectNamespaces = [ (className = "Room", uniqueKey = "edge-rooms-room", enableSql = true) ],
  durableObjectStorage = (localDisk = "disk"),
  bindings = [ (name = "ROOMS", durableObjectNamespace = "Room"), (name = "JWT_SECRET", text = ${JSON.stringify(secret)}) ],
);
`;
    await writeFile(join(dir, "config.capnp"), config);
    const child = spawn(workerdBinary(), ["serve", join(dir, "config.capnp"), "--experimental"], {
      cwd: dir,
      detached: true,
      stdio: "ignore",
    });
    const server = new WorkerdServer(port, dir, child, secret);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${server.baseUrl}/healthz`)).status === 200) return server;
      } catch {
        // not listening yet
      }
      await sleep(200);
    }
    await server.dispose();
    throw new Error("workerd did not answer /healthz within 30 s");
  }

  async dispose(): Promise<void> {
    if (this.child.pid !== undefined) await stopGroup(this.child.pid, 4_000);
    await rm(this.dir, { recursive: true, force: true });
  }
}
