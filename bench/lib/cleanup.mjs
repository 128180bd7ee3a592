/**
 * Everything the bench starts is stopped, whatever the way out: the process groups of the servers
 * (wrangler.mjs registers them) and the temp dirs (snapshots, persistence) are killed and removed on
 * exit, on SIGINT/SIGTERM/SIGHUP, and by a watchdog after the run's time limit.
 */
import { rmSync } from "node:fs";
import { signalGroup } from "../../scripts/lib/processes.mjs";

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

/**
 * Stops everything on any exit of this process, and aborts it (exit 3) after `maxSeconds`. `label`
 * starts the lines it writes to stderr. Returns the watchdog, to clear once the run is done.
 * @param {string} label @param {number} maxSeconds
 */
export function guardProcess(label, maxSeconds) {
  process.on("exit", killAllGroupsNow);
  for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM", "SIGHUP"])) {
    process.on(signal, () => {
      process.stderr.write(`\n${label}: ${signal}, stopping the servers\n`);
      killAllGroupsNow();
      process.exit(130);
    });
  }
  return setTimeout(() => {
    process.stderr.write(`\n${label}: still running after ${maxSeconds} s (--max-seconds); aborting\n`);
    killAllGroupsNow();
    process.exit(3);
  }, maxSeconds * 1000);
}

/** Removes a temp dir now (and forgets it). @param {string} dir */
export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}
