/**
 * A real `wrangler dev` for the Node-side suites (e2e, client, browser): on a free loopback port, with
 * its own persistence dir, a random test-only secret and an empty env file; restartable (gently, or
 * with SIGKILL to test crash recovery) on the same port with the same persisted state. Processes are
 * started in their own group and stopped by that group's id only.
 *
 * Set WRANGLER_LOG=1 to echo wrangler's output (the Worker's logs included) to stderr.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { devTokenVars } from "../../scripts/lib/dev-args.mjs";
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
import { writeHarnessConfig } from "../../scripts/lib/wrangler-config.mjs";

export { freePort, HOST, REPO_ROOT };

const STARTUP_DEADLINE_MS = 60_000;
const POLL_INTERVAL_MS = 200;
const PROBE_TIMEOUT_MS = 2_000;
const STOP_GRACE_MS = 4_000;
const OUTPUT_LINES_SHOWN = 40;

/** Builds the demo page with the project's own build script. */
function buildDemo(): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, "scripts", "build-client.mjs")], { stdio: "inherit" });
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`build-client exited with ${code}`))));
  });
}

export interface ServerOptions {
  /** Extra `--var NAME:value` settings (JWT_SECRET is always set). */
  vars?: Record<string, string>;
  /** Build the demo page and serve it as static assets, as `npm run dev` does. */
  demo?: boolean;
  /** Switch the dev token endpoint on the way `npm run dev` does (DEV_TOKENS and a per-run DEV_TOKENS_RUN). */
  devTokens?: boolean;
  /** The address wrangler listens on; default 127.0.0.1. Requests still go to 127.0.0.1. */
  ip?: string;
  /**
   * `"shipped"`: the CONNECT_LIMITER of wrangler.toml as it is. Default: a copy of wrangler.toml
   * whose limit no test reaches (the suites connect hundreds of times a minute from one address).
   */
  connectLimit?: "shipped";
  /** Texts counted in every line of its output over the whole run, restarts included (`count`). */
  watch?: string[];
}

/** A `wrangler dev` process group on a fixed port, with its own persistence dir and secret. */
export class WranglerServer {
  readonly secret = `test-only-${randomBytes(32).toString("hex")}`;
  readonly baseUrl: string;
  #child: ChildProcess | undefined;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #output = new OutputTail();
  /** Counts of the watched texts from the outputs of earlier starts. */
  readonly #counted = new Map<string, number>();
  readonly #onExit = () => this.kill();

  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly options: ServerOptions,
  ) {
    this.baseUrl = `http://${HOST}:${port}`;
  }

  /** Starts a server on a free port and waits for `/healthz`; tries another port if it was taken. */
  static async start(options: ServerOptions = {}): Promise<WranglerServer> {
    const dir = await mkdtemp(join(tmpdir(), "edge-rooms-client-"));
    await writeFile(join(dir, "empty.env"), "");
    for (let attempt = 1; ; attempt++) {
      const server = new WranglerServer(await freePort(), dir, options);
      try {
        await server.#startProcess();
        return server;
      } catch (error) {
        await server.stop();
        if (!server.#output.includes("EADDRINUSE") || attempt >= 3) {
          await rm(dir, { recursive: true, force: true });
          throw error;
        }
      }
    }
  }

  /** The process group id (wrangler and the workerd it started). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Stops the server and starts it again on the same port with the same persisted state. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#startProcess();
  }

  /**
   * Kills wrangler and workerd at once with SIGKILL, as a crash would, then starts them again on the
   * same port and persisted state.
   */
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

  /** The last lines wrangler printed (the Worker's logs included). */
  output(lines = OUTPUT_LINES_SHOWN): string {
    return this.#output.last(lines);
  }

  /** How many lines of its output, over every start, held `text` (one of `options.watch`). */
  count(text: string): number {
    return (this.#counted.get(text) ?? 0) + this.#output.count(text);
  }

  /** Stops wrangler and everything it started: SIGTERM, then SIGKILL. */
  async stop(): Promise<void> {
    const pid = this.#child?.pid;
    this.#child = undefined;
    process.removeListener("exit", this.#onExit);
    if (pid !== undefined) await stopGroup(pid, STOP_GRACE_MS);
  }

  /** Stops the server and removes its state. */
  async dispose(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }

  /** Last resort, synchronous: for process exit. */
  kill(): void {
    const pid = this.#child?.pid;
    if (pid !== undefined) signalGroup(pid, "SIGKILL");
  }

  async #startProcess(): Promise<void> {
    const vars = {
      // Per-connection open/close lines: some tests read them (production's default is `info`).
      LOG_LEVEL: "debug",
      ...this.options.vars,
      ...(this.options.devTokens ? devTokenVars() : {}),
      JWT_SECRET: this.secret,
    };
    if (this.options.demo) await buildDemo();
    const config =
      this.options.connectLimit === "shipped" ? join(REPO_ROOT, "wrangler.toml") : writeHarnessConfig(this.dir);
    const args = [
      "dev",
      "--config",
      config,
      "--ip",
      this.options.ip ?? HOST,
      "--port",
      String(this.port),
      "--persist-to",
      join(this.dir, "state"),
      // An empty env file: a developer's .dev.vars or .env must not change the server under test.
      "--env-file",
      join(this.dir, "empty.env"),
      ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
      "--show-interactive-dev-session=false",
      ...(this.options.demo ? ["--assets", join(REPO_ROOT, "build", "public")] : []),
    ];
    for (const text of this.options.watch ?? []) this.#counted.set(text, this.count(text));
    this.#output = new OutputTail(200, this.options.watch ?? []);
    this.#exit = undefined;
    const child = spawn(WRANGLER, args, {
      cwd: REPO_ROOT,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: wranglerEnv(),
    });
    this.#child = child;
    process.once("exit", this.#onExit);
    const echo = process.env.WRANGLER_LOG === "1" || process.env.WRANGLER_LOG === "true";
    for (const stream of [child.stdout, child.stderr]) {
      stream?.on("data", (chunk: Buffer) => {
        this.#output.push(chunk);
        if (echo) process.stderr.write(chunk);
      });
    }
    child.once("exit", (code, signal) => {
      this.#exit = { code, signal };
    });
    child.once("error", (error) => {
      this.#output.push(Buffer.from(`\n[tests] could not start ${WRANGLER}: ${error.message}\n`));
      this.#exit = { code: null, signal: null };
    });
    await this.#waitHealthy();
  }

  async #waitHealthy(): Promise<void> {
    const deadline = Date.now() + STARTUP_DEADLINE_MS;
    let last = "no answer yet";
    while (Date.now() < deadline && this.#exit === undefined) {
      try {
        const response = await fetch(`${this.baseUrl}/healthz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
        const body = await response.text();
        if (response.status === 200) return;
        last = `HTTP ${response.status} ${body.slice(0, 300)}`;
      } catch (error) {
        const cause = (error as { cause?: { code?: string; message?: string } }).cause;
        last = cause?.code ?? cause?.message ?? (error as Error).message;
      }
      await sleep(POLL_INTERVAL_MS);
    }
    const state =
      this.#exit === undefined
        ? `still not healthy after ${STARTUP_DEADLINE_MS / 1000} s`
        : `it exited (code ${this.#exit.code}, signal ${this.#exit.signal})`;
    throw new Error(
      `wrangler dev on ${this.baseUrl}: ${state}; last probe: ${last}.\n` +
        `Last lines of its output:\n${this.#output.last(OUTPUT_LINES_SHOWN) || "(none)"}`,
    );
  }
}
