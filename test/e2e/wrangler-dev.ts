/**
 * Vitest global setup for the e2e suite: starts the real local server (`wrangler dev`) once, on a free
 * port of 127.0.0.1 with a fresh persistence dir and a random test-only JWT secret, waits until
 * `/healthz` answers 200, and hands the base URL and secret to the tests (`inject("e2eBaseUrl")`,
 * `inject("e2eJwtSecret")`). Teardown stops wrangler's whole process group and removes the dir.
 *
 * Set E2E_WRANGLER_LOG=1 to echo wrangler's output (including the Worker's logs) to stderr.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

declare module "vitest" {
  export interface ProvidedContext {
    /** `http://127.0.0.1:<port>` of the running `wrangler dev`. */
    e2eBaseUrl: string;
    /** The HS256 secret the server verifies tokens with. */
    e2eJwtSecret: string;
  }
}

const HOST = "127.0.0.1";
const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
const WRANGLER = join(REPO_ROOT, "node_modules", ".bin", "wrangler");
/** Overall budget for the server to come up, port retries included. */
const STARTUP_DEADLINE_MS = 60_000;
const POLL_INTERVAL_MS = 250;
const PROBE_TIMEOUT_MS = 2_000;
/** Time between SIGTERM and SIGKILL of the process group. */
const STOP_GRACE_MS = 4_000;
const MAX_START_ATTEMPTS = 3;
const OUTPUT_LINES_KEPT = 200;
const OUTPUT_LINES_SHOWN = 40;

/** Binds port 0 on 127.0.0.1, reads the port the OS chose, and releases it. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : undefined;
      server.close((error) => {
        if (error) reject(error);
        else if (port === undefined) reject(new Error("could not read the port of a probe server"));
        else resolve(port);
      });
    });
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The last lines a child wrote to stdout and stderr, interleaved in arrival order. */
class OutputTail {
  readonly #lines: string[] = [];
  #partial = "";

  push(chunk: Buffer): void {
    const text = this.#partial + chunk.toString("utf8");
    const lines = text.split(/\r?\n/);
    this.#partial = lines.pop() ?? "";
    this.#lines.push(...lines);
    if (this.#lines.length > OUTPUT_LINES_KEPT) this.#lines.splice(0, this.#lines.length - OUTPUT_LINES_KEPT);
  }

  last(n: number): string {
    const lines = [...this.#lines, ...(this.#partial ? [this.#partial] : [])].slice(-n);
    // Strip ANSI colours so the text reads well inside an error message.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: matching the ESC of colour codes is the point
    return lines.map((l) => l.replace(/\u001b\[[0-9;]*[A-Za-z]/g, "")).join("\n");
  }

  includes(text: string): boolean {
    return this.#lines.some((l) => l.includes(text)) || this.#partial.includes(text);
  }
}

/** Whether any process of the group led by `pid` still exists. */
function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

async function waitGroupGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!groupAlive(pid)) return true;
    await sleep(100);
  }
  return !groupAlive(pid);
}

/** Stops wrangler and everything it started (esbuild, workerd): SIGTERM, then SIGKILL. */
async function stopGroup(pid: number): Promise<void> {
  signalGroup(pid, "SIGTERM");
  if (await waitGroupGone(pid, STOP_GRACE_MS)) return;
  signalGroup(pid, "SIGKILL");
  await waitGroupGone(pid, 2_000);
}

interface Started {
  child: ChildProcess;
  output: OutputTail;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

function startWrangler(port: number, persistDir: string, envFile: string, secret: string): Started {
  const args = [
    "dev",
    "--ip",
    HOST,
    "--port",
    String(port),
    "--persist-to",
    persistDir,
    // An empty env file: a developer's .dev.vars or .env must not change the server under test.
    "--env-file",
    envFile,
    "--var",
    `JWT_SECRET:${secret}`,
    "--show-interactive-dev-session=false",
  ];
  const child = spawn(WRANGLER, args, {
    cwd: REPO_ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      CI: "1",
      NO_COLOR: "1",
      // Keep the run local and quiet: no telemetry, no Request.cf download, no update check
      // (the banner is what triggers it), and no process env leaking into the Worker's env.
      WRANGLER_SEND_METRICS: "false",
      WRANGLER_SEND_ERROR_REPORTS: "false",
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      WRANGLER_HIDE_BANNER: "true",
      CLOUDFLARE_INCLUDE_PROCESS_ENV: "false",
    },
  });
  const output = new OutputTail();
  const echo = process.env.E2E_WRANGLER_LOG === "1" || process.env.E2E_WRANGLER_LOG === "true";
  for (const stream of [child.stdout, child.stderr]) {
    stream?.on("data", (chunk: Buffer) => {
      output.push(chunk);
      if (echo) process.stderr.write(chunk);
    });
  }
  const started: Started = {
    child,
    output,
    exit: undefined,
    exited: new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        started.exit = { code, signal };
        resolve({ code, signal });
      });
      child.once("error", (error) => {
        output.push(Buffer.from(`\n[e2e] could not start ${WRANGLER}: ${error.message}\n`));
        started.exit = { code: null, signal: null };
        resolve({ code: null, signal: null });
      });
    }),
  };
  return started;
}

/** Polls `/healthz` until it answers 200, the child exits, or the deadline passes. */
async function waitHealthy(
  started: Started,
  baseUrl: string,
  deadline: number,
): Promise<{ ok: true } | { ok: false; last: string }> {
  let last = "no answer yet";
  while (Date.now() < deadline && started.exit === undefined) {
    try {
      const response = await fetch(`${baseUrl}/healthz`, {
        signal: AbortSignal.timeout(Math.min(PROBE_TIMEOUT_MS, Math.max(1, deadline - Date.now()))),
      });
      const body = await response.text();
      if (response.status === 200) return { ok: true };
      last = `HTTP ${response.status} ${body.slice(0, 300)}`;
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      last = cause?.code ?? cause?.message ?? (error as Error).message;
    }
    await sleep(POLL_INTERVAL_MS);
  }
  return { ok: false, last };
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(join(tmpdir(), "edge-rooms-e2e-"));
  const persistDir = join(dir, "state");
  const envFile = join(dir, "empty.env");
  await writeFile(envFile, "");
  // Test-only and random per run: 32 random bytes as hex, well over the server's 32-byte minimum.
  const secret = `e2e-only-${randomBytes(32).toString("hex")}`;

  let current: Started | undefined;
  const killOnExit = () => {
    if (current?.child.pid !== undefined) signalGroup(current.child.pid, "SIGKILL");
  };
  // Last resort if vitest exits without running the teardown.
  process.once("exit", killOnExit);

  const cleanup = async () => {
    const pid = current?.child.pid;
    if (pid !== undefined) await stopGroup(pid);
    current = undefined;
    process.removeListener("exit", killOnExit);
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  };

  try {
    const deadline = Date.now() + STARTUP_DEADLINE_MS;
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const baseUrl = `http://${HOST}:${port}`;
      current = startWrangler(port, persistDir, envFile, secret);
      const result = await waitHealthy(current, baseUrl, deadline);
      if (result.ok) {
        project.provide("e2eBaseUrl", baseUrl);
        project.provide("e2eJwtSecret", secret);
        return cleanup;
      }
      const exit = current.exit;
      const portTaken = current.output.includes("EADDRINUSE") || current.output.includes("Address already in use");
      if (exit !== undefined && portTaken && attempt < MAX_START_ATTEMPTS && Date.now() < deadline) {
        // Someone took the port between our probe and wrangler's bind: try another one.
        const pid = current.child.pid;
        if (pid !== undefined) await stopGroup(pid);
        continue;
      }
      const state =
        exit === undefined
          ? `it is still running after ${STARTUP_DEADLINE_MS / 1000} s`
          : `it exited (code ${exit.code}, signal ${exit.signal})`;
      throw new Error(
        `wrangler dev did not answer 200 on ${baseUrl}/healthz: ${state}; last probe: ${result.last}.\n` +
          `Last lines of wrangler's output:\n${current.output.last(OUTPUT_LINES_SHOWN) || "(none)"}`,
      );
    }
  } catch (error) {
    await cleanup();
    throw error;
  }
}
