/**
 * Processes and CPUs as Linux's /proc shows them, for the bench's view of the servers it starts (the
 * members of a process group: scripts/lib/processes.mjs `groupProcesses`): a process's CPU time, its RSS and the ports it listens on, each CPU's
 * busy time; and pinning a process to CPUs with `taskset`. Every read tolerates a process that ends
 * while it is read.
 */
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

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
export function listeningPorts(pid) {
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

/** Moves every thread of `pid` to `cpuList`. @param {number} pid @param {string} cpuList */
export function pin(pid, cpuList) {
  try {
    execFileSync("taskset", ["-a", "-p", "-c", cpuList, String(pid)], { stdio: "ignore" });
  } catch (error) {
    process.stderr.write(`[bench] could not pin ${pid} to CPU ${cpuList}: ${/** @type {Error} */ (error).message}\n`);
  }
}

/**
 * Busy and total time of each CPU so far, from /proc/stat (every process's work, the kernel's
 * included: the truest sign of which side saturates). Empty where /proc/stat cannot be read.
 * @returns {{ busy: number, total: number }[]}
 */
export function coreTimes() {
  try {
    return readFileSync("/proc/stat", "utf8")
      .split("\n")
      .filter((l) => /^cpu\d+ /.test(l))
      .map((l) => {
        const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = l
          .trim()
          .split(/\s+/)
          .slice(1)
          .map(Number);
        const busy = user + nice + system + irq + softirq + steal;
        return { busy, total: busy + idle + iowait };
      });
  } catch {
    return [];
  }
}

/** Busy % of each CPU between two `coreTimes()` readings. @param {ReturnType<typeof coreTimes>} a @param {ReturnType<typeof coreTimes>} b */
export function coreBusyPct(a, b) {
  return b.map((t, i) => {
    const before = a[i] ?? { busy: 0, total: 0 };
    const total = t.total - before.total;
    return total > 0 ? Math.round(((t.busy - before.busy) / total) * 100) : Number.NaN;
  });
}

/** Busy CPU seconds of the whole machine, from /proc/stat. */
export function machineBusySeconds() {
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return (user + nice + system + irq + softirq + steal) / 100;
}
