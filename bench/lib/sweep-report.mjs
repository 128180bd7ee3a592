/**
 * The sweep's tables (bench/results/sweep.md): per size and mode side by side, the orderer phase, and
 * the cost model; and the cost model and the tables again from a sweep's JSON (`--render`).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { costOf } from "./cost-model.mjs";

/** The cost model of a measured row (cost-model.mjs). @param {any} row */
export function rowCost(row) {
  return costOf(row.usage, {
    messages: row.sent,
    heartbeatEchoes: row.heartbeatEchoes,
    framesOut: row.framesOut,
    objects: row.objects,
    roomRate: row.roomRate,
  });
}

/**
 * The cost model again for every edge-rooms row of a sweep's JSON `file` (rewritten), and its tables
 * into `outDir`/sweep.md; returns the tables.
 * @param {string} file @param {string} outDir
 */
export function renderAgain(file, outDir) {
  const result = JSON.parse(readFileSync(file, "utf8"));
  for (const row of result.rows) {
    if (row.mode === "ceiling") continue;
    row.cost = rowCost(row);
  }
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  const table = sweepMarkdown(result);
  writeFileSync(join(outDir, "sweep.md"), `${table}\n`);
  return table;
}

/** @param {unknown} x */
const f = (x) => (typeof x === "number" && Number.isFinite(x) ? String(x) : "–");

/** @param {any} result */
export function sweepMarkdown(result) {
  const o = result.options;
  const m = result.machine;
  const out = [];
  out.push(`# Room-size sweep (${result.startedAt})`);
  out.push("");
  out.push(
    `${o.senders} senders per room, room rate = ${o.deliveries} deliveries/s ÷ size, ${o.seconds} s per step; ` +
      `sharded: SHARD_MAX ${o.shards}, SHARD_GROW_AT = size ÷ ${o.shards}. ${m.cpus} CPUs (${m.cpuModel}); ` +
      `${m.pinned ? "client on CPU 0, runtime on CPU 1" : "not pinned"}; load average before ${m.loadBefore.map((/** @type {number} */ l) => l.toFixed(2)).join(" ")}, after ${m.loadAfter.map((/** @type {number} */ l) => l.toFixed(2)).join(" ")}.`,
  );
  out.push("");
  out.push(
    "| Size | Mode | Objects | Room msg/s | Deliveries/s | p50 ms | p99 ms | Lost | Out of order | Runtime CPU % | µs CPU / delivery | Client CPU % |",
  );
  out.push("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  const sizes = [...new Set(result.rows.map((/** @type {any} */ r) => r.size))].sort((a, b) => a - b);
  for (const n of sizes) {
    for (const r of result.rows.filter((/** @type {any} */ r) => r.size === n)) {
      if (r.notFilled) {
        out.push(
          `| ${n} | ${r.mode} | – | did not fill: ${r.open.opened} of ${n} sockets after ${r.open.seconds} s ` +
            `(runtime RSS ${Math.round(r.runtimeRssKiB / 1024)} MiB) | | | | | | | | |`,
        );
        continue;
      }
      out.push(
        `| ${n} | ${r.mode} | ${f(r.objects)} | ${f(r.roomRate)} | ${f(r.deliveredPerSec)} | ${f(r.p50)} | ${f(r.p99)} | ` +
          `${f(r.lost)} | ${f(r.outOfOrder)} | ${f(r.serverCpuPct)} | ${f(r.cpuUsPerDelivery)} | ${f(r.clientCpuPct)} |`,
      );
    }
  }
  if (result.orderer.length > 0) {
    out.push("");
    out.push("## Per-message CPU (the orderer phase)");
    out.push("");
    out.push(
      "| Mode | Objects | Room msg/s | µs/msg, senders only | µs/msg, + listeners | µs / delivery | µs / message (fixed) | ≤ msg/s per core |",
    );
    out.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const r of result.orderer) {
      out.push(
        `| ${r.mode} | ${f(r.objects)} | ${f(r.roomRate)} | ${f(r.narrow.cpuUsPerMessage)} (${r.narrow.receivers} recv) | ` +
          `${f(r.wide.cpuUsPerMessage)} (${r.wide.receivers} recv) | ${f(r.perDeliveryUs)} | ${f(r.perMessageUs)} | ${f(r.ceilingMsgPerSec)} |`,
      );
    }
  }
  const costed = result.rows.filter((/** @type {any} */ r) => r.cost);
  if (costed.length > 0) {
    out.push("");
    out.push("## Cost model: counts per message (measured) and $ per million messages");
    out.push("");
    out.push(
      "| Size | Mode | Worker req | DO fetch | RPC calls (by method) | WS in (echoes) | WS out | SQL stmts | Rows read | Rows written | Billed DO req | $ requests | $ rows | $ duration | $ total / M msg |",
    );
    out.push(
      "| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const r of costed) {
      const p = r.cost.perMessage;
      const d = r.cost.dollarsPerMillion;
      const byMethod =
        Object.entries(p.rpcByMethod)
          .map(([k, v]) => `${k} ${v}`)
          .join(", ") || "–";
      out.push(
        `| ${r.size} | ${r.mode} | ${f(p.workerRequests)} | ${f(p.doFetches)} | ${f(p.rpcCalls)} (${byMethod}) | ${f(p.wsIn)} (${f(p.heartbeatEchoes)}) | ${f(p.wsOut)} | ` +
          `${f(p.sqlStatements)} | ${f(p.rowsRead)} | ${f(p.rowsWritten)} | ${f(r.cost.billedDoRequestsPerMessage)} | ` +
          `${f(d.requests)} | ${f(Math.round((d.rowsWritten + d.rowsRead) * 1000) / 1000)} | ${f(d.duration)} | ${f(d.total)} |`,
      );
    }
  }
  if (result.errors.length > 0) {
    out.push("");
    out.push(`Errors: ${result.errors.join("; ")}`);
  }
  return out.join("\n");
}
