/**
 * Reading a bench command's flags (node:util's parseArgs): `--help` prints the usage and exits 0; a
 * bad value prints what is wrong and the usage, and exits 2.
 */
import { parseArgs } from "node:util";

/**
 * @template {import("node:util").ParseArgsConfig["options"]} O
 * @param {object} o
 * @param {string} o.command Starts error lines (`bench`, `bench --sweep`).
 * @param {string} o.help The usage.
 * @param {O} o.options
 * @param {string[]} [o.args]
 */
export function readFlags({ command, help, options, args }) {
  const { values } = parseArgs({ args, options });
  if (/** @type {Record<string, unknown>} */ (values).help) {
    process.stdout.write(help);
    process.exit(0);
  }
  /** @param {string} message @returns {never} */
  const fail = (message) => {
    process.stderr.write(`${command}: ${message}\n${help}`);
    process.exit(2);
  };
  /** A number ≥ `min`, or `fallback` when the flag is absent. @param {string | undefined} raw @param {number} fallback @param {string} name */
  const num = (raw, fallback, name, min = 0) => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) fail(`--${name} must be a number ≥ ${min}`);
    return n;
  };
  return { flags: values, fail, num };
}

/** "a, b,,c" → ["a", "b", "c"]. @param {string} raw */
export function list(raw) {
  return raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}
