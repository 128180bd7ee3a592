/**
 * Issue 13's targets, as ratios to the ceiling from the same run: p99 at moderate load ≤ 1.25× the
 * ceiling's (every shape), fan-out capacity ≥ 0.9× (1×50 and 10×10; a bigger room is reported without
 * a target) and connects/s ≥ 0.8×. For edge-rooms and, with `--baseline` or `--servers …,edge-rooms-v1`,
 * the baseline or the v1 clients beside it, so that before and after are one table. A verdict is taken on the median of the per-run ratios.
 */

import { figuresOf, median, moderateRateOf } from "./report.mjs";
import { round } from "./stats.mjs";

/** Shapes whose capacity has a target; other shapes' capacity is reported only. */
const CAPACITY_TARGET_SHAPES = new Set(["1x50", "10x10"]);

/**
 * The rows: figure key, label, the target (or none) and which side of it passes.
 * @param {any} o the bench options
 * @param {string[]} shapes
 */
function targetRows(o, shapes) {
  /** @type {{ key: string, label: string, limit: number | undefined, better: "lower" | "higher" }[]} */
  const rows = [];
  for (const shape of shapes) {
    const s = shape.replace("x", "×");
    rows.push({
      key: `fanout_${shape}_p99`,
      label: `${s} p99 at ${moderateRateOf(o, shape)} msg/s/client`,
      limit: 1.25,
      better: "lower",
    });
  }
  for (const shape of shapes) {
    rows.push({
      key: `fanout_${shape}_capacity`,
      label: `${shape.replace("x", "×")} capacity`,
      limit: CAPACITY_TARGET_SHAPES.has(shape) ? 0.9 : undefined,
      better: "higher",
    });
  }
  rows.push({
    key: "storm_cps",
    label: `connects/s (${o.stormN} in ${o.stormRooms} rooms)`,
    limit: 0.8,
    better: "higher",
  });
  return rows;
}

/**
 * Whether other processes disturbed the steps a figure rests on: the moderate step for p99, the
 * failing steps for capacity (a step with over 30% of a pinned CPU taken by other work, see fanout.mjs).
 * @param {any} suite @param {string} key @param {any} options
 */
function contended(suite, key, options) {
  const m = /^fanout_(.+)_(p99|capacity)$/.exec(key);
  if (!m) return false;
  const steps = suite?.fanout?.[m[1] ?? ""]?.steps ?? [];
  if (m[2] === "p99") {
    const rate = moderateRateOf(options, m[1] ?? "");
    return steps.some((/** @type {any} */ s) => s.rate === rate && s.contended);
  }
  return steps.some((/** @type {any} */ s) => !s.pass && s.contended);
}

/**
 * Per run, `server`'s figure ÷ the ceiling's; the median and the range over the runs where neither
 * side's steps were disturbed by other processes (those are counted in `left`).
 * @param {any} result @param {string} server @param {string} key
 */
function ratioToCeiling(result, server, key) {
  let left = 0;
  const ratios = result.runs
    .map((/** @type {any} */ run) => {
      const mine = run.suites[server];
      const ceiling = run.suites.ceiling;
      if (!mine || !ceiling) return Number.NaN;
      if (contended(mine, key, result.options) || contended(ceiling, key, result.options)) {
        left++;
        return Number.NaN;
      }
      const a = figuresOf(mine, result.options)[key];
      const b = figuresOf(ceiling, result.options)[key];
      return a !== undefined && b !== undefined && b > 0 ? a / b : Number.NaN;
    })
    .filter((/** @type {number} */ x) => Number.isFinite(x));
  return { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios), n: ratios.length, left };
}

/**
 * The targets table (Markdown), or "" when the ceiling or edge-rooms was not run.
 * @param {any} result
 */
export function targetsMarkdown(result) {
  const names = result.servers.map((/** @type {any} */ s) => s.name);
  if (!names.includes("ceiling")) return "";
  const sides = ["edge-rooms", "edge-rooms-v1", "baseline"].filter((s) => names.includes(s));
  if (sides.length === 0) return "";
  const o = result.options;
  /** @type {string[]} */
  const shapes = o.scenarios.includes("fanout") ? o.fanout.map((/** @type {any} */ f) => f.shape) : [];
  const rows = targetRows(o, shapes).filter((r) => r.key !== "storm_cps" || o.scenarios.includes("storm"));
  const label = (/** @type {string} */ s) => (s === "baseline" ? `baseline (${o.baseline})` : s);
  const lines = [
    "Issue 13's targets: each server ÷ the ceiling from the same run, median of the runs (min–max); " +
      "PASS/MISS on the median. Capacity ratios move in ladder steps (×1.41 or ×2). A run whose steps behind a " +
      "figure (the moderate step for p99, the failing steps for capacity) had over 30% of a pinned CPU taken " +
      "by other processes, on either side, is left out of that figure ([n runs contended]).",
    "",
    `| Figure ÷ ceiling | target | ${sides.map((s) => `${label(s)} | PASS/MISS | `).join("")}`.trimEnd(),
    `| --- | --- | ${sides.map(() => "---: | :---: | ").join("")}`.trimEnd(),
  ];
  /** @type {any} */
  const verdicts = {};
  for (const row of rows) {
    const cells = [row.label, row.limit === undefined ? "—" : `${row.better === "lower" ? "≤" : "≥"} ${row.limit}`];
    for (const side of sides) {
      const r = ratioToCeiling(result, side, row.key);
      const text =
        (r.n === 0
          ? "—"
          : r.n > 1 && r.min !== r.max
            ? `${round(r.median, 2)} (${round(r.min, 2)}–${round(r.max, 2)})`
            : String(round(r.median, 2))) + (r.left > 0 ? ` [${r.left} run${r.left > 1 ? "s" : ""} contended]` : "");
      let verdict = "—";
      if (row.limit !== undefined && r.n > 0) {
        const ok = row.better === "lower" ? r.median <= row.limit : r.median >= row.limit;
        verdict = ok ? "PASS" : "MISS";
      }
      cells.push(text, verdict);
      verdicts[side] = {
        ...(verdicts[side] ?? {}),
        [row.key]: { ratio: round(r.median, 3), runs: r.n, contendedRuns: r.left, verdict },
      };
    }
    lines.push(`| ${cells.join(" | ")} |`);
  }
  const censored = shapes.filter((/** @type {string} */ shape) =>
    result.runs.some((/** @type {any} */ run) => run.suites.ceiling?.fanout?.[shape]?.censored),
  );
  if (censored.length > 0) {
    lines.push(
      "",
      `The ceiling passed every step of ${censored.join(", ")} in some run: its capacity there is a lower bound, ` +
        "so the ratio is an upper bound.",
    );
  }
  result.targets = verdicts;
  return lines.join("\n");
}
