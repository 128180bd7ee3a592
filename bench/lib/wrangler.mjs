/**
 * Starts and stops `wrangler dev` (local workerd) for a server under test, the way
 * test/e2e/wrangler-dev.ts does: a free port of 127.0.0.1, a fresh persistence dir, an empty env file
 * (a developer's .dev.vars must not change the server under test), CI=1 and no telemetry, `/healthz`
 * polled until 200, port retries, and the whole process group stopped (SIGTERM, then SIGKILL).
 *
 * Added for the bench: the group can be started under `taskset` (pinned to the server's CPUs), and
 * the processes of the group are found in /proc (procfs.mjs) so that the harness can read the
 * runtime's RSS and CPU time and, by default, talk to the Worker's own workerd directly rather than
 * through wrangler's dev proxy (a second workerd that relays every frame).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  freePort,
  groupProcesses,
  HOST,
  OutputTail,
  REPO_ROOT,
  signalGroup,
  sleep,
  stopGroup,
  WRANGLER,
  wranglerEnv,
} from "../../scripts/lib/processes.mjs";
import { liveGroups } from "./cleanup.mjs";
import { cpuSeconds, listeningPorts, pin, rssKiB } from "./procfs.mjs";
import { scratchDir } from "./snapshots.mjs";

export { freePort, HOST, REPO_ROOT, signalGroup, sleep, stopGroup };

const STARTUP_DEADLINE_MS = 90_000;
const POLL_INTERVAL_MS = 250;
const PROBE_TIMEOUT_MS = 2_000;
const STOP_GRACE_MS = 4_000;
const MAX_START_ATTEMPTS = 3;
const OUTPUT_LINES_KEPT = 200;

/** Output lines counted over the whole run: wrangler says this when it restarts the runtime. */
const WATCHED_LINES = ["Reloading local server"];

// -- the server -----------------------------------------------------------------------------------

/**
 * @typedef {object} ServerSpec
 * @property {string} name Label in reports.
 * @property {string} root Directory wrangler runs in (a snapshot of the repo).
 * @property {string | undefined} config wrangler.toml path relative to `root` (undefined: the repo's own).
 * @property {Record<string, string>} vars `--var` settings.
 * @property {{ server: string, tools: string } | undefined} cpus `taskset -c` lists: the Worker's
 *   runtime goes to `server`, wrangler's own processes (node, esbuild, the dev proxy) to `tools`;
 *   undefined leaves everything unpinned.
 * @property {boolean} direct Talk to the Worker's workerd directly (else through wrangler's dev proxy).
 * @property {boolean} echo Echo wrangler's output to stderr.
 * @property {string} [logLevel] wrangler's `--log-level`.
 */

/**
 * A running `wrangler dev`.
 * @typedef {object} RunningServer
 * @property {string} name
 * @property {number} pgid
 * @property {string} baseUrl Where the harness connects (direct or proxy).
 * @property {string} publicUrl wrangler's own `http://127.0.0.1:<port>`.
 * @property {"direct" | "proxy"} via
 * @property {number | undefined} runtimePid The workerd that runs the Worker and its objects.
 * @property {() => number} cpu CPU seconds used so far by the processes on the server's CPU: the
 *   runtime (and, `via: "proxy"`, the dev proxy).
 * @property {() => number} toolsCpu CPU seconds used so far by the rest of the group (wrangler's node).
 * @property {() => number} rss RSS in KiB of the Worker's workerd.
 * @property {() => number} reloads How many times wrangler restarted the runtime so far.
 * @property {() => Promise<boolean>} refresh After a reload: find the new runtime (pid, port, pinning).
 * @property {() => string} tail Last lines of wrangler's output.
 * @property {() => Promise<void>} stop
 */

/**
 * Starts wrangler dev for `spec` and waits until `/healthz` answers 200.
 * @param {ServerSpec} spec
 * @returns {Promise<RunningServer>}
 */
export async function startServer(spec) {
  const dir = join(scratchDir(), `edge-rooms-bench-${spec.name}-${process.pid}-${randomBytes(4).toString("hex")}`);
  mkdirSync(dir, { recursive: true });
  const envFile = join(dir, "empty.env");
  writeFileSync(envFile, "");
  const removeDir = () => rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });

  const deadline = Date.now() + STARTUP_DEADLINE_MS;
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const inspectorPort = await freePort();
    const args = [
      "dev",
      ...(spec.config ? ["--config", spec.config] : []),
      "--ip",
      HOST,
      "--port",
      String(port),
      "--inspector-port",
      String(inspectorPort),
      "--persist-to",
      join(dir, "state"),
      "--env-file",
      envFile,
      "--show-interactive-dev-session=false",
      ...(spec.logLevel ? ["--log-level", spec.logLevel] : []),
      ...Object.entries(spec.vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
    ];
    // Everything starts on the tools' CPU; the runtime is moved to the server's CPU once found.
    const [command, commandArgs] = spec.cpus
      ? ["taskset", ["-c", spec.cpus.tools, WRANGLER, ...args]]
      : [WRANGLER, args];
    const child = spawn(command, commandArgs, {
      cwd: spec.root,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      env: wranglerEnv(),
    });
    const output = new OutputTail(OUTPUT_LINES_KEPT, WATCHED_LINES);
    for (const stream of [child.stdout, child.stderr]) {
      stream?.on("data", (/** @type {Buffer} */ chunk) => {
        output.push(chunk);
        if (spec.echo) process.stderr.write(chunk);
      });
    }
    /** @type {{ code: number | null, signal: string | null } | undefined} */
    let exit;
    child.once("exit", (code, signal) => {
      exit = { code, signal };
    });
    child.once("error", (error) => {
      output.push(Buffer.from(`\n[bench] could not start ${command}: ${error.message}\n`));
      exit = { code: null, signal: null };
    });
    const pgid = child.pid;
    if (pgid === undefined) {
      removeDir();
      throw new Error(`could not start ${command}`);
    }
    liveGroups.set(pgid, dir);
    const stop = async () => {
      await stopGroup(pgid, STOP_GRACE_MS);
      liveGroups.delete(pgid);
      removeDir();
    };

    const publicUrl = `http://${HOST}:${port}`;
    let last = "no answer yet";
    let healthy = false;
    while (Date.now() < deadline && exit === undefined) {
      const probe = await probeHealth(publicUrl, Math.min(PROBE_TIMEOUT_MS, Math.max(1, deadline - Date.now())));
      if (probe === true) {
        healthy = true;
        break;
      }
      last = probe;
      await sleep(POLL_INTERVAL_MS);
    }
    if (healthy) {
      /** @type {RunningServer} */
      const server = {
        name: spec.name,
        pgid,
        baseUrl: publicUrl,
        publicUrl,
        via: "proxy",
        runtimePid: undefined,
        cpu: () => {
          let sum = 0;
          for (const pid of [server.runtimePid, ...(server.via === "proxy" ? [proxyPid(pgid, port)] : [])]) {
            if (pid !== undefined) sum += cpuSeconds(pid);
          }
          return sum;
        },
        toolsCpu: () => {
          const onServer = new Set([server.runtimePid, ...(server.via === "proxy" ? [proxyPid(pgid, port)] : [])]);
          return groupProcesses(pgid)
            .filter((p) => !onServer.has(p.pid))
            .reduce((sum, p) => sum + cpuSeconds(p.pid), 0);
        },
        rss: () => (server.runtimePid === undefined ? Number.NaN : rssKiB(server.runtimePid)),
        reloads: () => output.count("Reloading local server"),
        refresh: async () => {
          const runtimePid = findRuntimePid(pgid, port);
          if (runtimePid === undefined) return false;
          server.runtimePid = runtimePid;
          if (spec.cpus) {
            pin(runtimePid, spec.cpus.server);
            const proxy = proxyPid(pgid, port);
            if (!spec.direct && proxy !== undefined) pin(proxy, spec.cpus.server);
          }
          if (spec.direct) {
            const direct = await findDirectUrl(runtimePid);
            if (direct) {
              server.baseUrl = direct;
              server.via = "direct";
              return true;
            }
            process.stderr.write(`[bench] ${spec.name}: no port of the runtime answered; using the dev proxy\n`);
          }
          server.baseUrl = publicUrl;
          server.via = "proxy";
          return true;
        },
        tail: () => output.last(40),
        stop,
      };
      await server.refresh();
      return server;
    }
    const portTaken = output.includes("EADDRINUSE") || output.includes("Address already in use");
    await stopGroup(pgid, STOP_GRACE_MS);
    liveGroups.delete(pgid);
    if (exit !== undefined && portTaken && attempt < MAX_START_ATTEMPTS && Date.now() < deadline) continue;
    removeDir();
    const state = exit === undefined ? "it did not become healthy in time" : `it exited (code ${exit.code})`;
    throw new Error(
      `${spec.name}: wrangler dev did not answer 200 on ${publicUrl}/healthz: ${state}; last probe: ${last}.\n` +
        `Last lines of its output:\n${output.last(40) || "(none)"}`,
    );
  }
}

/** @param {string} baseUrl @param {number} timeoutMs @returns {Promise<true | string>} */
async function probeHealth(baseUrl, timeoutMs) {
  try {
    const response = await fetch(`${baseUrl}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    const body = await response.text();
    if (response.status === 200 && body.includes('"ok":true')) return true;
    return `HTTP ${response.status} ${body.slice(0, 200)}`;
  } catch (error) {
    const cause = /** @type {{ cause?: { code?: string, message?: string } }} */ (error).cause;
    return cause?.code ?? cause?.message ?? /** @type {Error} */ (error).message;
  }
}

/**
 * wrangler dev runs two workerd processes: the dev proxy, which listens on the public port, and the
 * runtime, which runs the Worker and its Durable Objects. The runtime is the workerd that is not
 * bound to the public port.
 * @param {number} pgid @param {number} publicPort
 */
function findRuntimePid(pgid, publicPort) {
  const workerds = groupProcesses(pgid).filter((p) => p.comm === "workerd");
  const runtime = workerds.filter((p) => !p.cmdline.includes(`entry=${HOST}:${publicPort}`));
  return runtime.length === 1 ? runtime[0]?.pid : undefined;
}

/** The dev proxy: the workerd bound to the public port. @param {number} pgid @param {number} publicPort */
function proxyPid(pgid, publicPort) {
  return groupProcesses(pgid).find((p) => p.comm === "workerd" && p.cmdline.includes(`entry=${HOST}:${publicPort}`))
    ?.pid;
}

/** The runtime's entry socket: the one of its listening ports that answers our `/healthz`. @param {number} pid */
async function findDirectUrl(pid) {
  for (const port of listeningPorts(pid)) {
    if (Number.isNaN(port)) continue;
    const url = `http://${HOST}:${port}`;
    if ((await probeHealth(url, 1_000)) === true) return url;
  }
  return undefined;
}
