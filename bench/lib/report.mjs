/**
 * Summaries of a bench result: per figure, the median over runs with min and max for each server,
 * and edge-rooms' figure as a ratio to the ceiling's and to the peer's *from the same run* (the
 * median, min and max of those per-run ratios). Rendered as a Markdown table.
 */
import { round } from "./stats.mjs";

/** @param {number[]} values */
export function median(values) {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] ?? Number.NaN) : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

/** @param {number[]} values */
function spread(values) {
  const v = values.filter((x) => Number.isFinite(x));
  return {
    median: median(v),
    min: v.length ? Math.min(...v) : Number.NaN,
    max: v.length ? Math.max(...v) : Number.NaN,
    n: v.length,
  };
}

/**
 * The moderate load of a fan-out shape, msg/s per client: its own (a big room's ladder) or `--moderate-rate`.
 * @param {{ moderateRate: number, fanout?: { shape: string, moderateRate?: number }[] }} options
 * @param {string} shape
 */
export function moderateRateOf(options, shape) {
  return options.fanout?.find((f) => f.shape === shape)?.moderateRate ?? options.moderateRate;
}

/**
 * The figures of one server in one run, by key.
 * @param {any} suite
 * @param {{ moderateRate: number, fanout?: { shape: string, moderateRate?: number }[] }} options
 * @returns {Record<string, number>}
 */
export function figuresOf(suite, options) {
  /** @type {Record<string, number>} */
  const f = {};
  if (suite.storm) {
    f.storm_cps = suite.storm.perSecond;
    f.storm_p50 = suite.storm.p50;
    f.storm_p99 = suite.storm.p99;
    f.storm_failed = suite.storm.failed;
    f.storm_cpu = suite.storm.serverCpuMsPerConnection;
  }
  for (const [shape, result] of Object.entries(suite.fanout ?? {})) {
    const r = /** @type {any} */ (result);
    f[`fanout_${shape}_capacity`] = r.error ? Number.NaN : r.capacity;
    const rate = moderateRateOf(options, shape);
    const moderate = (r.steps ?? []).find((/** @type {any} */ s) => s.rate === rate);
    f[`fanout_${shape}_p50`] = moderate?.p50 ?? Number.NaN;
    f[`fanout_${shape}_p99`] = moderate?.p99 ?? Number.NaN;
    f[`fanout_${shape}_cpu`] = moderate?.serverCpuUsPerDelivery ?? Number.NaN;
  }
  return f;
}

/**
 * @param {string} key
 * @param {{ moderateRate: number, stormN: number, stormRooms: number, idleN: number, idleRooms: number }} o
 * @returns {{ label: string, better: "higher" | "lower", digits: number }}
 */
function describe(key, o) {
  if (key === "storm_cps")
    return { label: `connect storm: connects/s (${o.stormN} in ${o.stormRooms} rooms)`, better: "higher", digits: 0 };
  if (key === "storm_p50") return { label: "connect storm: p50 connect→welcome, ms", better: "lower", digits: 1 };
  if (key === "storm_p99") return { label: "connect storm: p99 connect→welcome, ms", better: "lower", digits: 1 };
  if (key === "storm_failed") return { label: "connect storm: failed connects", better: "lower", digits: 0 };
  if (key === "storm_cpu")
    return { label: "connect storm: runtime CPU per connection, ms", better: "lower", digits: 2 };
  if (key === "idle_kib")
    return {
      label: `idle: runtime RSS per open idle connection, KiB (${o.idleN} in ${o.idleRooms} rooms, 3 batches)`,
      better: "lower",
      digits: 1,
    };
  const m = /^fanout_(.+)_(capacity|p50|p99|cpu)$/.exec(key);
  if (m) {
    const shape = (m[1] ?? "").replace("x", "×");
    const rate = moderateRateOf(/** @type {any} */ (o), m[1] ?? "");
    if (m[2] === "cpu")
      return {
        label: `fan-out ${shape}: runtime CPU per delivered message at ${rate} msg/s/client, µs`,
        better: "lower",
        digits: 2,
      };
    if (m[2] === "capacity")
      return { label: `fan-out ${shape}: **capacity**, delivered msg/s`, better: "higher", digits: 0 };
    return {
      label: `fan-out ${shape}: ${m[2]} latency at ${rate} msg/s/client, ms`,
      better: "lower",
      digits: 2,
    };
  }
  return { label: key, better: "higher", digits: 2 };
}

/**
 * @param {any} result The whole result object (runs with per-server suites).
 */
export function summarize(result) {
  const o = result.options;
  const servers = /** @type {string[]} */ (result.servers.map((/** @type {any} */ s) => s.name));
  /** @type {Record<string, Record<string, number>>[]} per run: server → figures */
  const perRun = result.runs.map((/** @type {any} */ run) =>
    Object.fromEntries(servers.map((s) => [s, run.suites[s] ? figuresOf(run.suites[s], o) : {}])),
  );
  // Idle memory is measured once per server, in batches: batch i stands in for run i.
  if (result.idle) {
    const batches = Math.max(...servers.map((s) => result.idle[s]?.kibPerConnection?.length ?? 0));
    for (let i = 0; i < batches; i++) {
      perRun[i] ??= Object.fromEntries(servers.map((s) => [s, {}]));
      for (const s of servers) {
        const row = perRun[i]?.[s];
        if (row) row.idle_kib = result.idle[s]?.kibPerConnection?.[i] ?? Number.NaN;
      }
    }
  }
  const keys = [...new Set(perRun.flatMap((r) => servers.flatMap((s) => Object.keys(r[s] ?? {}))))];
  const rows = keys.map((key) => {
    const d = describe(key, o);
    /** @type {Record<string, ReturnType<typeof spread>>} */
    const byServer = {};
    for (const s of servers) byServer[s] = spread(perRun.map((r) => r[s]?.[key] ?? Number.NaN));
    /** @type {Record<string, ReturnType<typeof spread>>} */
    const ratios = {};
    for (const other of servers.filter((s) => s !== "edge-rooms")) {
      ratios[other] = spread(
        perRun.map((r) => {
          const a = r["edge-rooms"]?.[key];
          const b = r[other]?.[key];
          return a !== undefined && b !== undefined && b !== 0 ? a / b : Number.NaN;
        }),
      );
    }
    /** @type {Record<string, number>} runs whose ramp never failed: their capacity is a lower bound */
    const censored = {};
    const m = /^fanout_(.+)_capacity$/.exec(key);
    for (const s of servers) {
      censored[s] = m
        ? result.runs.filter((/** @type {any} */ run) => run.suites[s]?.fanout?.[m[1] ?? ""]?.censored).length
        : 0;
    }
    return { key, ...d, byServer, ratios, censored };
  });
  return { servers, rows };
}

/** @param {ReturnType<typeof spread>} s @param {number} digits */
function cell(s, digits) {
  if (s.n === 0) return "—";
  const f = (/** @type {number} */ x) => String(round(x, digits));
  return s.n > 1 && s.min !== s.max ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median);
}

/**
 * @param {any} result
 * @param {ReturnType<typeof summarize>} summary
 * @param {string} [targets] The targets table (bench/lib/targets.mjs), shown first.
 */
export function markdown(result, summary, targets = "") {
  const o = result.options;
  const m = result.machine;
  const lines = [];
  lines.push(`### Bench ${result.startedAt} (${o.quick ? "quick" : "full"}, ${o.runs} run${o.runs > 1 ? "s" : ""})`);
  lines.push("");
  lines.push(
    `Machine: ${m.nproc} cores (${m.cpuModel}), Node ${m.node}, wrangler ${m.wrangler}. ` +
      `Client ${m.pinning.enabled ? `pinned to CPU ${m.pinning.clientCpus}, servers to CPU ${m.pinning.serverCpus}` : "and servers not pinned"}; ` +
      `clients connect ${result.servers.every((/** @type {any} */ s) => s.via === "direct") ? "directly to the Worker's workerd" : "through wrangler's dev proxy"}. ` +
      `Other processes used ${m.background.otherCpuPct}% of one core on average during the run ` +
      `(load average ${m.loadBefore.join(" ")} before, ${m.loadAfter.join(" ")} after): ${m.background.verdict}.`,
  );
  lines.push("");
  if (targets) lines.push(targets, "");
  lines.push(
    "Each cell: median over runs (min–max). Ratios are edge-rooms ÷ the other server, per run, then median " +
      "(min–max); for latency and memory lower is better, so a ratio under 1 favours edge-rooms there.",
  );
  lines.push("");
  const others = summary.servers.filter((s) => s !== "edge-rooms");
  const hasEdge = summary.servers.includes("edge-rooms");
  const header = ["Figure", ...summary.servers, ...(hasEdge ? others.map((s) => `edge-rooms / ${s}`) : [])];
  lines.push(`| ${header.join(" | ")} |`);
  lines.push(`| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`);
  for (const row of summary.rows) {
    const cells = [
      row.label,
      ...summary.servers.map(
        (s) => (row.censored[s] ? "≥ " : "") + cell(/** @type {any} */ (row.byServer[s]), row.digits),
      ),
      ...(hasEdge ? others.map((s) => cell(/** @type {any} */ (row.ratios[s]), 2)) : []),
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("");
  if (summary.rows.some((r) => Object.values(r.censored).some((n) => n > 0))) {
    lines.push(
      `≥: in at least one run every step passed up to --max-rate ${o.maxRate}, so that capacity is a lower bound.`,
    );
    lines.push("");
  }
  const restarts = result.runs.flatMap((/** @type {any} */ run) =>
    Object.entries(run.suites).flatMap(([server, suite]) =>
      /** @type {any} */ (suite.restarts ?? []).map((/** @type {any} */ r) => `${server} run ${run.run} ${r.scenario}`),
    ),
  );
  if (restarts.length > 0) {
    lines.push(
      `**Runtime restarts** (wrangler restarted a server's workerd; that scenario was run again): ${restarts.join("; ")}.`,
    );
    lines.push("");
  }
  lines.push(stepTable(result));
  return lines.join("\n");
}

/** Per fan-out step: medians over the runs that reached the step, and how many of them passed it. @param {any} result */
function stepTable(result) {
  const o = result.options;
  const servers = result.servers.map((/** @type {any} */ s) => s.name);
  const lines = [
    `Fan-out steps (pass = p99 ≤ ${o.p99LimitMs} ms and nothing lost; medians over the runs that reached the step; ` +
      "other CPU = the busiest of the two pinned CPUs' time used by neither the client nor the runtime, i.e. " +
      "other processes; a failed step with over 30% is measured once more and the retry counts; msg/frame = " +
      "messages per received frame, over 1 only with batch frames):",
    "",
    "| Scenario | Server | msg/s/client | passed | delivered/s | p50 ms | p95 ms | p99 ms | lost | msg/frame | client CPU % | runtime CPU % | other CPU % |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const shapes = [...new Set(result.runs.flatMap((/** @type {any} */ r) => Object.values(r.suites)))].flatMap(
    (/** @type {any} */ suite) => Object.keys(suite.fanout ?? {}),
  );
  for (const shape of [...new Set(shapes)]) {
    for (const server of servers) {
      /** @type {Map<number, any[]>} */
      const byRate = new Map();
      for (const run of result.runs) {
        for (const step of run.suites[server]?.fanout?.[shape]?.steps ?? []) {
          byRate.set(step.rate, [...(byRate.get(step.rate) ?? []), step]);
        }
      }
      for (const rate of [...byRate.keys()].sort((a, b) => a - b)) {
        const steps = byRate.get(rate) ?? [];
        const med = (/** @type {string} */ k, digits = 0) => {
          const m = median(steps.map((s) => s[k]));
          return Number.isFinite(m) ? round(m, digits) : "—";
        };
        lines.push(
          `| ${shape.replace("x", "×")} | ${server} | ${rate} | ${steps.filter((s) => s.pass).length}/${steps.length} | ` +
            `${med("deliveredPerSec")} | ${med("p50", 1)} | ${med("p95", 1)} | ${med("p99", 1)} | ${med("lost")} | ${med("perFrame", 2)} | ` +
            `${med("clientCpuPct")} | ${med("serverCpuPct")} | ${med("foreignPct")} |`,
        );
      }
    }
  }
  return lines.join("\n");
}
