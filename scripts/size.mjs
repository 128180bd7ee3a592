#!/usr/bin/env node
// `npm run size`: what `edge-rooms/client` costs a browser app. Bundles the client's entry (all its
// exports, valibot tree-shaken) with esbuild as an app's bundler would, minified, and prints the bytes
// raw and gzipped. `--max-kib N` fails when the gzipped size is over N KiB.
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const { values } = parseArgs({ options: { "max-kib": { type: "string" } } });
const entry = fileURLToPath(new URL("../src/client/index.ts", import.meta.url));
const result = await build({
  entryPoints: [entry],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  legalComments: "none",
  write: false,
  metafile: true,
});
const code = result.outputFiles[0].contents;
const gzipped = gzipSync(code, { level: 9 }).length;
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
const byPackage = new Map();
const [output] = Object.values(result.metafile.outputs);
for (const [path, input] of Object.entries(output.inputs)) {
  const name = path.includes("node_modules/") ? path.split("node_modules/")[1].split("/")[0] : "edge-rooms";
  byPackage.set(name, (byPackage.get(name) ?? 0) + input.bytesInOutput);
}
console.log(`edge-rooms/client: ${kib(code.length)} minified, ${kib(gzipped)} minified + gzipped`);
for (const [name, bytes] of byPackage) console.log(`  ${name}: ${kib(bytes)} minified`);
const max = values["max-kib"] === undefined ? undefined : Number(values["max-kib"]);
if (max !== undefined && gzipped > max * 1024) {
  console.error(`size: over the budget of ${max} KiB gzipped`);
  process.exit(1);
}
