/**
 * `npm run bench -- --sweep [flags]`: the room-size sweep of issue 14 (bench/README.md, "Room-size
 * sweep"). For each room size, one room of N sockets with a few senders at a fixed rate, on edge-rooms
 * as one object ("single"), edge-rooms spread over several objects ("sharded") and the ceiling;
 * then the per-message cost of ordering (the "orderer" phase) and the cost model. Writes
 * bench/results/sweep-<timestamp>.json and bench/results/sweep.md.
 *
 * Only 127.0.0.1 is contacted; every server started here is stopped on the way out.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { guardProcess, removeDir } from "./lib/cleanup.mjs";
import { pinClient } from "./lib/pinning.mjs";
import { snapshotHere } from "./lib/snapshots.mjs";
import { sweepOptions } from "./lib/sweep-options.mjs";
import { sweepPhases } from "./lib/sweep-phases.mjs";
import { renderAgain, sweepMarkdown } from "./lib/sweep-report.mjs";
import { sweepServers } from "./lib/sweep-servers.mjs";

const { flags, options } = sweepOptions();
const quick = options.quick;
if (flags.render !== undefined) {
  process.stdout.write(`${renderAgain(flags.render, options.out)}\n`);
  process.exit(0);
}

const log = (/** @type {string} */ line) => process.stdout.write(`${line}\n`);
guardProcess("bench --sweep", options.maxSeconds).unref();
// Pinned as the default bench is (bench/README.md, "CPU pinning").
const pinned = pinClient({}).pinning.enabled;
const snapshot = snapshotHere("edge-rooms-sweep-src");
const servers = sweepServers({ options, snapshot, pinned, verbose: flags.verbose === true, log });
const { baseVars, edgeVars, start } = servers;

// -- the sweep ------------------------------------------------------------------------------------

const startedAt = new Date();
const load0 = loadavg();
log(
  `bench --sweep: sizes ${options.sizes.join(", ")}; modes ${options.modes.join(", ")}; ${options.deliveries} deliveries/s; ` +
    `${options.senders} senders; ${options.seconds} s steps; ${pinned ? "client on CPU 0, runtime on CPU 1" : "not pinned"}; ` +
    `load ${load0.map((l) => l.toFixed(2)).join(" ")}`,
);

/** @type {any[]} */
const rows = [];
/** @type {any[]} */
const orderer = [];

const { runSize, runOrderer } = sweepPhases({ options, servers, rows, orderer, log });

/** @type {string[]} */
const errors = [];
const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
/** Writes what is measured so far (after every row, so an aborted sweep keeps its rows). */
function save() {
  const result = {
    startedAt: startedAt.toISOString(),
    options,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      pinned,
      node: process.version,
      loadBefore: load0,
      loadAfter: loadavg(),
      edgeVars: { ...baseVars, JWT_SECRET: "(random)" },
    },
    rows,
    orderer,
    errors,
  };
  mkdirSync(options.out, { recursive: true });
  writeFileSync(join(options.out, `sweep-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
  const table = sweepMarkdown(result);
  writeFileSync(join(options.out, quick ? "sweep-quick.md" : "sweep.md"), `${table}\n`);
  return table;
}

try {
  // Size by size, every mode side by side; a fresh server for each (a sharded room's grow threshold
  // is its size ÷ the shards), so one size's rooms never share a runtime with another's.
  for (const n of options.sizes) {
    for (const mode of options.modes) {
      const edge = mode !== "ceiling";
      const server = await start(
        `${mode}-${n}`,
        edge ? edgeVars(/** @type {"single" | "sharded"} */ (mode), n) : {},
        edge ? undefined : "bench/ceiling/wrangler.toml",
      );
      try {
        await runSize(server, mode, n);
        save();
        if (edge && options.orderer && n === Math.min(...options.sizes)) {
          await runOrderer(server, mode);
          save();
        }
      } finally {
        await server.stop();
      }
    }
  }
} catch (error) {
  errors.push(error instanceof Error ? error.message : String(error));
  process.stderr.write(`bench --sweep: ${errors[0]}\n`);
}
const table = save();
log(`\n${table}`);
removeDir(snapshot);
process.exit(errors.length > 0 ? 1 : 0);
