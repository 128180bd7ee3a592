/**
 * Child-process chores shared by the Node test harness (test/support/wrangler-server.ts) and the
 * benchmark (bench/lib/wrangler.mjs): the repo's root and wrangler, a free loopback port, the
 * environment of a `wrangler dev` child, the tail of a child's output, and a process group: its
 * members (from /proc) and stopping it. Plain ESM with JSDoc types, so both can import it.
 */
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const HOST = "127.0.0.1";
/** The repository's root directory. */
export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** The project's own (pinned) wrangler. */
export const WRANGLER = join(REPO_ROOT, "node_modules", ".bin", "wrangler");

/**
 * The environment a `wrangler dev` child runs with: this process's, quiet (no colour, banner,
 * telemetry or error reports), and without the shell's CLOUDFLARE_* settings leaking into the Worker.
 * @returns {NodeJS.ProcessEnv}
 */
export function wranglerEnv() {
  return {
    ...process.env,
    CI: "1",
    NO_COLOR: "1",
    WRANGLER_SEND_METRICS: "false",
    WRANGLER_SEND_ERROR_REPORTS: "false",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_HIDE_BANNER: "true",
    CLOUDFLARE_INCLUDE_PROCESS_ENV: "false",
  };
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Binds port 0 on 127.0.0.1, reads the port the OS chose, and releases it.
 * @returns {Promise<number>}
 */
export function freePort() {
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

/** The last lines a child wrote to stdout and stderr, interleaved in arrival order. */
export class OutputTail {
  /** @type {string[]} */
  #lines = [];
  #partial = "";
  /** @type {Map<string, number>} */
  #counts = new Map();

  /**
   * @param {number} [keep] how many lines to keep
   * @param {string[]} [watched] texts counted over the whole run (kept lines or not)
   */
  constructor(keep = 200, watched = []) {
    this.keep = keep;
    this.watched = watched;
  }

  /** @param {Buffer} chunk */
  push(chunk) {
    const lines = (this.#partial + chunk.toString("utf8")).split(/\r?\n/);
    this.#partial = lines.pop() ?? "";
    this.#lines.push(...lines);
    for (const line of lines) {
      for (const text of this.watched) {
        if (line.includes(text)) this.#counts.set(text, (this.#counts.get(text) ?? 0) + 1);
      }
    }
    if (this.#lines.length > this.keep) this.#lines.splice(0, this.#lines.length - this.keep);
  }

  /**
   * The last `n` lines, without colour codes.
   * @param {number} n
   */
  last(n) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping colour codes is the point
    const plain = (/** @type {string} */ l) => l.replace(/\u001b\[[0-9;]*[A-Za-z]/g, "");
    return [...this.#lines, ...(this.#partial ? [this.#partial] : [])].slice(-n).map(plain).join("\n");
  }

  /** @param {string} text one of the watched texts */
  count(text) {
    return this.#counts.get(text) ?? 0;
  }

  /** @param {string} text */
  includes(text) {
    return this.#lines.some((l) => l.includes(text)) || this.#partial.includes(text);
  }
}

/** @param {number} pgid */
function groupAlive(pgid) {
  if (!Number.isInteger(pgid) || pgid <= 1) return false;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return /** @type {NodeJS.ErrnoException} */ (error).code === "EPERM";
  }
}

/**
 * Signals every process of a group (a child spawned with `detached: true` leads its own).
 * @param {number} pgid
 * @param {NodeJS.Signals} signal
 */
export function signalGroup(pgid, signal) {
  if (!Number.isInteger(pgid) || pgid <= 1) return;
  try {
    process.kill(-pgid, signal);
  } catch {
    // The group is gone already.
  }
}

/**
 * Waits up to `ms` for a group to be gone; true when it is.
 * @param {number} pgid
 * @param {number} ms
 */
export async function waitGroupGone(pgid, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!groupAlive(pgid)) return true;
    await sleep(100);
  }
  return !groupAlive(pgid);
}

/**
 * Stops a group: SIGTERM, then SIGKILL after `graceMs`.
 * @param {number} pgid
 * @param {number} [graceMs]
 */
export async function stopGroup(pgid, graceMs = 4_000) {
  signalGroup(pgid, "SIGTERM");
  if (await waitGroupGone(pgid, graceMs)) return;
  signalGroup(pgid, "SIGKILL");
  await waitGroupGone(pgid, 2_000);
}

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
