/**
 * Starts and stops `wrangler dev` (local workerd) for a server under test, the way
 * test/e2e/wrangler-dev.ts does: a free port of 127.0.0.1, a fresh persistence dir, an empty env file
 * (a developer's .dev.vars must not change the server under test), CI=1 and no telemetry, `/healthz`
 * polled until 200, port retries, and the whole process group stopped (SIGTERM, then SIGKILL).
 *
 * Added for the bench: the group can be started under `taskset` (pinned to the server's CPUs), and
 * the processes of the group are found in /proc so that the harness can read the runtime's RSS and
 * CPU time and, by default, talk to the Worker's own workerd directly rather than through wrangler's
 * dev proxy (a second workerd that relays every frame).
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
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
  wranglerEnv,
} from "../../scripts/lib/processes.mjs";
import { raiseConnectLimitIn } from "../../scripts/lib/wrangler-config.mjs";

export { freePort, HOST, REPO_ROOT, signalGroup, sleep, stopGroup };

const STARTUP_DEADLINE_MS = 90_000;
const POLL_INTERVAL_MS = 250;
const PROBE_TIMEOUT_MS = 2_000;
const STOP_GRACE_MS = 4_000;
const MAX_START_ATTEMPTS = 3;
const OUTPUT_LINES_KEPT = 200;

/** Output lines counted over the whole run: wrangler says this when it restarts the runtime. */
const WATCHED_LINES = ["Reloading local server"];

/**
 * The processes of a group, from /proc: pid, parent, command name and command line.
 * @param {number} pgid
 * @returns {{ pid: number, ppid: number, comm: string, cmdline: string }[]}
 */
export function groupProcesses(pgid) {
  const found = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      // fields[0] is the state, [1] the parent, [2] the process group.
      if (Number(fields[2]) !== pgid) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ");
      found.push({ pid: Number(entry), ppid: Number(fields[1]), comm, cmdline });
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

/** CPU time (user + system) of a process in seconds; 0 when it is gone. @param {number} pid */
export function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime are fields 14 and 15 of stat, i.e. [11] and [12] after the command name.
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}
/** Linux's USER_HZ; 100 on every architecture Node supports. */
const CLOCK_TICKS = 100;

/** Resident set size of a process in KiB, from /proc/<pid>/status; NaN when it is gone. @param {number} pid */
export function rssKiB(pid) {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Ports a process listens on (TCP, IPv4), from /proc/net/tcp and its socket fds. @param {number} pid */
function listeningPorts(pid) {
  const inodes = new Set();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match) inodes.add(match[1]);
    } catch {
      // Closed while we looked.
    }
  }
  const ports = [];
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    // cols: sl local rem st ... inode(9). State 0A is LISTEN.
    if (cols.length < 10 || cols[3] !== "0A" || !inodes.has(cols[9])) continue;
    ports.push(Number.parseInt(cols[1]?.split(":")[1] ?? "", 16));
  }
  return ports;
}

// -- a frozen copy of the code under test -----------------------------------------------------------

/** What a snapshot leaves out: dependencies (linked instead), VCS and build output, bench results. */
const SNAPSHOT_SKIP = new Set(["node_modules", ".git", ".wrangler", "dist", "build", "test-results"]);

/**
 * Copies the repo (sources, configs, bench servers; not node_modules, which is linked) to `dir`.
 * `wrangler dev` watches its sources and restarts its runtime on any change; run from a snapshot, the
 * servers keep the code they started with even when someone edits src/ during the bench.
 * @param {string} dir
 */
export function snapshotRepo(dir) {
  mkdirSync(dir, { recursive: true });
  for (const entry of readdirSync(REPO_ROOT)) {
    if (SNAPSHOT_SKIP.has(entry)) continue;
    cpSync(join(REPO_ROOT, entry), join(dir, entry), {
      recursive: true,
      filter: (source) => !source.startsWith(join(REPO_ROOT, "bench", "results")),
    });
  }
  symlinkSync(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  // Connect storms come from one address: the shipped per-IP limit would refuse them.
  raiseConnectLimitIn(join(dir, "wrangler.toml"));
}

/** Output of a git command run in the repo. @param {string[]} args */
export function gitOut(args) {
  return execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" }).trim();
}

/**
 * The repo's files as of git `ref` (committed files only), in `dir`, sharing the repo's node_modules:
 * a baseline to run beside the working tree.
 * @param {string} ref
 * @param {string} dir
 */
export function snapshotRef(ref, dir) {
  mkdirSync(dir, { recursive: true });
  const archive = execFileSync("git", ["archive", "--format=tar", ref], { cwd: REPO_ROOT, maxBuffer: 1 << 30 });
  execFileSync("tar", ["-x", "-C", dir], { input: archive });
  symlinkSync(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  raiseConnectLimitIn(join(dir, "wrangler.toml"));
}

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
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const dir = join(base, `edge-rooms-bench-${spec.name}-${process.pid}-${randomBytes(4).toString("hex")}`);
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

/** Moves every thread of `pid` to `cpuList`. @param {number} pid @param {string} cpuList */
function pin(pid, cpuList) {
  try {
    execFileSync("taskset", ["-a", "-p", "-c", cpuList, String(pid)], { stdio: "ignore" });
  } catch (error) {
    process.stderr.write(`[bench] could not pin ${pid} to CPU ${cpuList}: ${/** @type {Error} */ (error).message}\n`);
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

/** Groups started and not yet stopped, with their temp dirs; killed on any exit of the harness. */
/** @type {Map<number, string>} */
export const liveGroups = new Map();
/** Other temp dirs to remove on any exit (the repo snapshot). */
/** @type {Set<string>} */
export const liveDirs = new Set();

/** Last resort: SIGKILL every group still running and remove the dirs (synchronous: safe in `exit`). */
export function killAllGroupsNow() {
  for (const [pgid, dir] of liveGroups) {
    // A process group id is a positive pid; never signal -1 or 0 (every process, our own group).
    if (Number.isInteger(pgid) && pgid > 1) signalGroup(pgid, "SIGKILL");
    liveDirs.add(dir);
  }
  liveGroups.clear();
  for (const dir of liveDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // workerd may still hold a file for an instant; the dir is under /dev/shm or the temp dir.
    }
  }
  liveDirs.clear();
}
