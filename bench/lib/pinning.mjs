/**
 * CPU pinning (bench/README.md, "CPU pinning"): with `taskset` and at least 2 CPUs, this process (the
 * client) runs on its CPUs and the servers on theirs (wrangler.mjs moves each runtime there), so that
 * neither side's load shows up as the other's latency. Also which CPUs each side has, to tell a step
 * that other processes disturbed.
 */
import { execFileSync } from "node:child_process";
import { availableParallelism } from "node:os";

/** "0-2,5" → [0, 1, 2, 5]. @param {string} cpuList */
function parseCpuList(cpuList) {
  return cpuList.split(",").flatMap((part) => {
    const [a = "", b = a] = part.split("-");
    const out = [];
    for (let c = Number(a); c <= Number(b); c++) out.push(c);
    return out;
  });
}

/**
 * Pins this process to `clientCpus` where it can; says how the sides are pinned, or why not.
 * @param {{ noPin?: boolean, clientCpus?: string, serverCpus?: string }} o
 */
export function pinClient({ noPin = false, clientCpus = "0", serverCpus = "1" }) {
  const nproc = availableParallelism();
  const hasTaskset = (() => {
    try {
      execFileSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  })();
  const pinning = { enabled: !noPin && hasTaskset && nproc >= 2, clientCpus, serverCpus, note: "" };
  if (noPin) pinning.note = "--no-pin";
  else if (!hasTaskset) pinning.note = "taskset not found (apt-get install util-linux)";
  else if (nproc < 2) pinning.note = "fewer than 2 CPUs";
  const coreSides = pinning.enabled
    ? { client: parseCpuList(clientCpus), server: parseCpuList(serverCpus), clientExtraPct: 0 }
    : undefined;
  // All threads of this process, the client; the servers are started under `taskset -c`.
  if (pinning.enabled)
    execFileSync("taskset", ["-a", "-p", "-c", clientCpus, String(process.pid)], { stdio: "ignore" });
  return { nproc, pinning, coreSides };
}
