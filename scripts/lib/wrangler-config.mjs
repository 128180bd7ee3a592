/**
 * A copy of the project's wrangler.toml for a local server under test, with the per-IP
 * connect limit (`CONNECT_LIMITER`) raised: those harnesses open hundreds of sockets a minute from
 * 127.0.0.1, which the shipped limit (real users behind one address) would refuse. Everything else
 * stays as shipped; `main` is made absolute so that the copy can live in a temporary directory.
 * The bench raises the limit in its snapshots' own wrangler.toml instead (`raiseConnectLimitIn`).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./processes.mjs";

/** A connect limit no harness reaches. */
export const HARNESS_CONNECT_LIMIT = 1_000_000;

const LIMIT_LINE = /^simple = \{ limit = \d+, period = (10|60) \}$/m;

/**
 * Raises the connect limit of a wrangler.toml in place (a bench snapshot's own copy). A config without
 * the binding (an older ref) is left as it is.
 * @param {string} path
 */
export function raiseConnectLimitIn(path) {
  const text = readFileSync(path, "utf8");
  if (!LIMIT_LINE.test(text)) return;
  writeFileSync(
    path,
    text.replace(LIMIT_LINE, (_line, period) => `simple = { limit = ${HARNESS_CONNECT_LIMIT}, period = ${period} }`),
  );
}

/**
 * Writes the copy into `dir` and returns its path.
 * @param {string} dir
 * @param {{ connectLimit?: number }} [options]
 * @returns {string}
 */
export function writeHarnessConfig(dir, options = {}) {
  const source = readFileSync(join(REPO_ROOT, "wrangler.toml"), "utf8");
  if (!LIMIT_LINE.test(source)) throw new Error("wrangler.toml: no CONNECT_LIMITER `simple = { limit, period }` line");
  const limit = options.connectLimit ?? HARNESS_CONNECT_LIMIT;
  const text = source
    .replace(/^main = "(.+)"$/m, (_line, main) => `main = ${JSON.stringify(join(REPO_ROOT, main))}`)
    .replace(LIMIT_LINE, (_line, period) => `simple = { limit = ${limit}, period = ${period} }`);
  const path = join(dir, "wrangler.toml");
  writeFileSync(path, text);
  return path;
}
