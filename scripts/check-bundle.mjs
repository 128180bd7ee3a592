#!/usr/bin/env node
// After `wrangler deploy --dry-run --outdir build/worker`: the production bundle must exist and must not
// carry the dev-only or test secrets.
import { readFileSync } from "node:fs";
import { DEV_JWT_SECRET } from "./dev-secret.mjs";

const bundle = readFileSync("build/worker/index.js", "utf8");
const leaks = [DEV_JWT_SECRET, "edge-rooms-test-secret"].filter((s) => bundle.includes(s));
if (leaks.length > 0) {
  console.error("check-bundle: the production bundle contains a dev or test secret");
  process.exit(1);
}
if (!/\bRoom = class\b|class Room\b/.test(bundle)) {
  console.error("check-bundle: the bundle does not export the Room Durable Object");
  process.exit(1);
}
console.log(`check-bundle: ok (${(bundle.length / 1024).toFixed(0)} KiB, no dev or test secret)`);
