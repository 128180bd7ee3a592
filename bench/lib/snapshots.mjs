/**
 * Frozen copies of the code under test: the working tree (`snapshotRepo`) or a git ref
 * (`snapshotRef`), each sharing the repo's node_modules and with the per-IP connect limit raised (the
 * bench's storms all come from 127.0.0.1). `wrangler dev` watches its sources and restarts its runtime
 * on any change; run from a snapshot, a server keeps the code it started with.
 */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../../scripts/lib/processes.mjs";
import { raiseConnectLimitIn } from "../../scripts/lib/wrangler-config.mjs";
import { liveDirs } from "./cleanup.mjs";

/** Where the bench's temporary dirs go: memory when the machine has /dev/shm. */
export function scratchDir() {
  return existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
}

/**
 * A temp dir named `name` (unique to this process), removed on any way out (cleanup.mjs), holding a
 * snapshot of the working tree.
 * @param {string} name
 */
export function snapshotHere(name) {
  const dir = join(scratchDir(), `${name}-${process.pid}`);
  liveDirs.add(dir);
  snapshotRepo(dir);
  return dir;
}

/** What a snapshot leaves out: dependencies (linked instead), VCS and build output, bench results. */
const SNAPSHOT_SKIP = new Set(["node_modules", ".git", ".wrangler", "dist", "build", "test-results"]);

/**
 * Copies the repo (sources, configs, bench servers; not node_modules, which is linked) to `dir`, so
 * that edits made to src/ during the bench do not reach the servers.
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
